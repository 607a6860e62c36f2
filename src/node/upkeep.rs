//! Keeping the directory of holders true outside of reads and writes:
//! flushes (a restarted node's directory is empty, so the caches below it
//! must drop what it no longer tracks) and release notices (a child that
//! dropped a key tells its parent, so that directory entries do not pile up).

use crate::deadline::Deadline;
use crate::error::Error;
use crate::metrics::bump;
use crate::wire::{Flushed, Peer, Release, Released};

use super::Node;

/// Most keys one release notice carries.
const RELEASE_BATCH: usize = 2000;

impl Node {
    /// `POST /internal/flush`: drops everything this node caches and passes
    /// the flush on to the children it has served.
    pub fn flush(&self, deadline: Deadline) -> Flushed {
        if !self.is_root() {
            self.store.clear();
        }
        let children = self.flush_children(&self.position.children(), deadline);
        Flushed {
            flushed: true,
            children,
        }
    }

    /// Tells `children` to flush, best effort: a child that cannot be
    /// reached holds nothing it could serve from us. Returns how many
    /// acknowledged.
    pub fn flush_children(&self, children: &[Peer], deadline: Deadline) -> usize {
        children
            .iter()
            .filter(|child| match self.links.down.flush(child, deadline) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("flushing {} failed: {e:?}", child.name);
                    false
                }
            })
            .count()
    }

    /// `POST /internal/evicted`: a child's notice that it dropped `keys`.
    pub fn release(&self, notice: &Release) -> Result<Released, Error> {
        let side = self
            .position
            .side_of_child(notice.slot)
            .map_err(|e| match e.mine {
                None => Error::Unavailable("This node is still joining the tree.".into()),
                Some(mine) => Error::Conflict(format!(
                    "Slot {} is not a child of slot {mine}.",
                    notice.slot
                )),
            })?;
        Ok(Released {
            released: self.store.release(&notice.keys, side),
        })
    }

    /// Sends the keys this node dropped to its parent, those of `backlog`
    /// first; what is not acknowledged stays in `backlog` for the next call.
    /// Run periodically by a background thread on non-root nodes.
    pub fn send_releases(&self, backlog: &mut Vec<String>) {
        backlog.extend(self.store.take_releases());
        let Some(me) = self.position.place() else {
            return;
        };
        if backlog.is_empty() {
            return;
        }
        let batch: Vec<String> = backlog.drain(..backlog.len().min(RELEASE_BATCH)).collect();
        let notice = Release {
            keys: batch,
            slot: me.slot,
        };
        let deadline = Deadline::after(self.config.upstream_timeout);
        match self.to_parent(deadline, |parent| {
            self.links.up.release(parent, &notice, deadline)
        }) {
            Ok(()) => {
                bump(&self.metrics.releases_sent);
                self.store.releases_acknowledged(&notice.keys);
            }
            Err(e) => {
                log::debug!("release notice not delivered ({e:?}); will retry");
                backlog.splice(0..0, notice.keys);
            }
        }
    }
}
