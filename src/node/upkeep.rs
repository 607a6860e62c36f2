//! Keeping the directory of holders true outside of reads and writes.
//!
//! - **Flushes.** A node that (re)starts, or whose ZooKeeper session ended,
//!   has lost track of what the caches below it hold. It drops its own cache
//!   and tells its children to drop theirs, asking each again until it
//!   acknowledges or its own session has ended (then it drops its cache by
//!   itself). Until every child has done one or the other, the node's
//!   directory is incomplete, and every invalidation it receives goes on to
//!   all of its children.
//! - **Release notices.** A child that dropped a key tells its parent, so
//!   that directory entries do not pile up (see `store::releases` for why a
//!   notice is bounded by its deadline).
//! - **Expiry.** Values whose time to live ran out are dropped every second,
//!   read or not, so that they do not hold memory (`store::expiry`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::metrics::bump;
use crate::node::failed::Error;
use crate::peer::UpstreamError;
use crate::tree::{Side, Tree};
use crate::wire::{self, Flush, Flushed, Peer, Release, Released};

use super::{Node, NodeError};

/// Most keys one release notice carries.
const RELEASE_BATCH: usize = 2000;
/// Pause between attempts to flush a child that did not answer.
const FLUSH_RETRY: Duration = Duration::from_millis(200);

impl Node {
    /// `POST /internal/flush`: drops everything this node caches (with
    /// `slots`, the keys of those hash slots), and has its children do the
    /// same (in the background, retried as the module documentation says).
    pub fn flush(&self, flush: Flush) -> Flushed {
        if self.root.is_none() {
            match &flush.slots {
                None => self.store.clear(),
                Some(ranges) => {
                    let slots = crate::shards::SlotSet::of(ranges);
                    self.store.clear_where(&|key| slots.holds(key))
                }
            }
        }
        let children = self.position.children();
        let count = children.len();
        self.flush_below(children, flush);
        Flushed {
            flushed: true,
            children: count,
        }
    }

    /// This node got a new ZooKeeper session (`generation`): the caches
    /// below may hold what its parent no longer knows about, if its old
    /// session ended. Drops its cache and flushes its children before it
    /// answers from its cache again.
    pub fn session_changed(&self, generation: u64) {
        if self.root.is_none() {
            if self.cache_generation.load(Ordering::SeqCst) != 0 {
                log::warn!(
                    "new ZooKeeper session (generation {generation}): dropping this node's \
                     cache and the caches below it"
                );
            }
            self.store.clear();
            if self.position.joined() {
                let children = self.children_in_tree(Deadline::after(self.config.upstream_timeout));
                self.flush_below(children, Flush::default());
            }
        }
        self.cache_generation.store(generation, Ordering::SeqCst);
    }

    /// After joining: the children of this node's slot, as the root knows
    /// them, may hold what an earlier run of this node served them.
    pub fn flush_after_join(&self) {
        let children = self.children_in_tree(Deadline::after(self.config.upstream_timeout));
        self.flush_below(children, Flush::default());
    }

    /// The nodes in this node's child slots, from the root's table.
    fn children_in_tree(&self, deadline: Deadline) -> Vec<Peer> {
        let Some(slot) = self.position.place().map(|p| p.slot) else {
            return Vec::new();
        };
        let Some(doc) = self.tree_document(deadline) else {
            return Vec::new();
        };
        let tree = Tree::new(doc.depth);
        [Side::Left, Side::Right]
            .into_iter()
            .filter_map(|side| {
                let child = wire::peer_at(&doc, tree.child(slot, side)?)?;
                // Invalidations while the directory is incomplete go here.
                self.position.note_child(side, child.clone());
                Some(child)
            })
            .collect()
    }

    /// Marks the directory incomplete and flushes `children` in the
    /// background; the directory is complete again once each has
    /// acknowledged or its session has ended.
    fn flush_below(&self, children: Vec<Peer>, flush: Flush) {
        self.directory_incomplete.store(true, Ordering::SeqCst);
        if children.is_empty() {
            // No node below: nothing can hold what the directory lost.
            if self.flushes_running.load(Ordering::SeqCst) == 0 {
                self.directory_incomplete.store(false, Ordering::SeqCst);
            }
            return;
        }
        self.flushes_running.fetch_add(1, Ordering::SeqCst);
        let Some(node) = self.me.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("flush".into())
            .spawn(move || {
                node.flush_all(&children, &flush);
                if node.flushes_running.fetch_sub(1, Ordering::SeqCst) == 1 {
                    node.directory_incomplete.store(false, Ordering::SeqCst);
                }
            });
        if spawned.is_err() {
            log::error!(
                "cannot start a thread to flush the children; the directory stays incomplete"
            );
        }
    }

    /// Flushes every child in `children` at once, each until it acknowledges
    /// or its session has ended; returns when all are done.
    pub fn flush_all(&self, children: &[Peer], flush: &Flush) {
        std::thread::scope(|scope| {
            for child in children {
                scope.spawn(move || self.flush_until_done(child, flush));
            }
        });
        log::info!(
            "the {} children below this node have dropped what they cached",
            children.len()
        );
    }

    /// Flushes `child` until it acknowledges or its session has ended.
    fn flush_until_done(&self, child: &Peer, flush: &Flush) {
        let mut said = false;
        loop {
            let deadline = Deadline::after(self.config.hop_timeout);
            match self.links.down.flush(child, flush, deadline) {
                Ok(()) => return,
                Err(e) => {
                    if let Ok(true) = self.links.sessions.ended(&child.name) {
                        log::info!(
                            "{} cannot be flushed and its session has ended: it drops its \
                             cache itself when it comes back",
                            child.name
                        );
                        return;
                    }
                    if !said {
                        log::warn!("flushing {} failed ({e:?}); trying again", child.name);
                        said = true;
                    }
                    std::thread::sleep(FLUSH_RETRY);
                }
            }
        }
    }

    /// Drops the values whose time to live has run out. Run every second by
    /// a background thread.
    pub fn sweep_expired(&self) {
        let dropped = self.store.sweep_expired();
        if dropped > 0 {
            log::debug!("{dropped} expired values dropped");
        }
    }

    /// `POST /internal/evicted`: a child's notice that it dropped `keys`,
    /// applied only before the notice's deadline.
    pub fn release(&self, notice: &Release, deadline: Deadline) -> Result<Released, Error> {
        let side = self
            .position
            .side_of_child(notice.slot)
            .map_err(|e| match e.mine {
                None => Error::from(NodeError::NotPlaced),
                Some(mine) => Error::from(NodeError::NotAChild {
                    slot: notice.slot,
                    mine,
                }),
            })?;
        match self.store.release(&notice.keys, side, deadline.0) {
            Ok(released) => Ok(Released { released }),
            Err(_) => Err(NodeError::ReleaseLate.into()),
        }
    }

    /// Sends the keys this node dropped to its parent, in batches. Run
    /// periodically by a background thread on non-root nodes. Whether
    /// there was any key to send.
    pub fn send_releases(&self) -> bool {
        let Some(me) = self.position.place() else {
            return false;
        };
        let mut any = false;
        loop {
            let deadline = Deadline::after(self.config.upstream_timeout);
            let batch = self.release_batches.fetch_add(1, Ordering::Relaxed);
            let keys = self.store.take_releases(RELEASE_BATCH, batch, deadline.0);
            if keys.is_empty() {
                return any;
            }
            any = true;
            let mut stop = false;
            for (shard, keys) in self.by_parent_shard(me.depth, keys) {
                let notice = Release {
                    keys,
                    slot: me.slot,
                };
                let sent = match shard {
                    0 => self.to_parent(deadline, |parent| {
                        self.links.up.release(parent, &notice, deadline)
                    }),
                    s => self.to_shard(s, |primary| {
                        self.links.up.release(primary, &notice, deadline)
                    }),
                };
                match sent {
                    Ok(()) => {
                        bump(&self.metrics.releases_sent);
                        self.store.releases_acknowledged(&notice.keys, batch);
                    }
                    Err(UpstreamError::Unreachable { .. }) => {
                        // Not delivered: the parent still names us. Later.
                        self.store.releases_undelivered(&notice.keys, batch);
                        stop = true;
                    }
                    Err(e) => {
                        // Maybe applied: the keys wait for the deadline to pass.
                        log::debug!("a release notice went unacknowledged ({e:?})");
                        stop = true;
                    }
                }
            }
            if stop {
                return true;
            }
        }
    }

    /// The keys of a release notice by the node that keeps their directory
    /// entry: at the root's children, each key's shard's primary (0: the
    /// parent); below them, the parent alone.
    fn by_parent_shard(&self, depth: u32, keys: Vec<String>) -> Vec<(u32, Vec<String>)> {
        if depth != 2 || self.config.root_shards == 1 {
            return vec![(0, keys)];
        }
        let mut groups: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
        for key in keys {
            groups.entry(self.shard_of(&key)).or_default().push(key);
        }
        groups.into_iter().collect()
    }
}
