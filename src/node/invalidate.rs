//! Invalidations, both ends: sending one to the children that may hold a
//! key, and answering one from the parent.
//!
//! **Sending.** A node waits for a child's acknowledgement only as long as
//! the child's ZooKeeper session lives. Each call is bounded by the hop
//! timeout; a child that does not answer (refused, timed out) is asked again
//! until it answers or ZooKeeper says its session has ended. Then the
//! invalidation completes without it: a child whose session ended answers
//! nothing from its cache (its lease ran out a third of a timeout before the
//! session could end) and drops its cache before it answers from it again.
//! Its own children may still hold what it served them, and they are alive,
//! so the invalidation goes to them instead, with the same rules, one level
//! further down.
//!
//! **Answering.** The key is dropped at once, under its shard's lock. When
//! children of this node hold it too, the invalidation goes on to them in
//! the background, and the parent's call is answered within a fraction of
//! its hop timeout: 200 when done, else 202 (still working); the parent then
//! calls again and waits some more. A frozen grandchild thus costs the
//! parent a series of short calls, not a thread held for the whole session
//! timeout, and never a timeout that would look like this node's own death.
//! Every invalidation of a key waits for the one under way for that key, so
//! none is acknowledged while an earlier one may still leave a holder below.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::awaited::Awaited;
use crate::deadline::Deadline;
use crate::metrics::bump;
use crate::node::failed::Error;
use crate::peer::UpstreamError;
use crate::tree::{Side, Tree};
use crate::wire::{self, Invalidate, Invalidated, Peer, Progress};

use super::{Node, NodeError};

/// Pause between calls to a child that did not answer.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Invalidations under way at this node, by key.
#[derive(Default)]
pub(super) struct InProgress {
    works: Mutex<HashMap<String, Arc<Work>>>,
}

/// One invalidation passed on to the children, running in the background:
/// whether a value was dropped, or the error, once it ended.
type Work = Awaited<Result<bool, Error>>;

impl Node {
    /// `POST /internal/invalidate`: drops the key here and, if children may
    /// hold it, has them drop it too. Answers within `answer_by`: done, or
    /// still working (call again).
    pub fn invalidate(
        &self,
        message: &Invalidate,
        deadline: Deadline,
        answer_by: Instant,
    ) -> Result<Progress, Error> {
        if self.root.is_some() {
            return Err(NodeError::InvalidateRoot {
                name: self.config.name(),
            }
            .into());
        }
        bump(&self.metrics.invalidations_received);
        let key = &message.key;
        if !self.position.joined() {
            // A new process of a node the parent still counts as a holder: it
            // does not know its children yet, which may hold what its earlier
            // run served them. The parent asks again until it has joined.
            return Ok(Progress::Working { key: key.clone() });
        }
        loop {
            let running = {
                let works = self.invalidations.works.lock().unwrap();
                works.get(key).cloned()
            };
            if let Some(work) = running {
                // An earlier invalidation of the key is still reaching a
                // holder below: this one is not done before it.
                match work.wait_until(answer_by) {
                    None => return Ok(Progress::Working { key: key.clone() }),
                    Some(_) => {
                        let mut works = self.invalidations.works.lock().unwrap();
                        if works.get(key).is_some_and(|w| Arc::ptr_eq(w, &work)) {
                            works.remove(key);
                        }
                        continue;
                    }
                }
            }
            let mut works = self.invalidations.works.lock().unwrap();
            if works.contains_key(key) {
                continue;
            }
            let (dropped, holders) = self.store.invalidate(key);
            let holders = holders | self.unknown_holders();
            if holders == 0 {
                return Ok(done(key, dropped));
            }
            let work: Arc<Work> = Arc::default();
            works.insert(key.clone(), work.clone());
            drop(works);
            self.spawn_invalidation(message.clone(), holders, dropped, deadline, work.clone());
            return match work.wait_until(answer_by) {
                None => Ok(Progress::Working { key: key.clone() }),
                Some(Ok(dropped)) => Ok(done(key, dropped)),
                Some(Err(e)) => Err(e),
            };
        }
    }

    /// Passes an invalidation on to `holders` on a thread of its own, so
    /// that no worker of the server waits on a slow child.
    fn spawn_invalidation(
        &self,
        message: Invalidate,
        holders: u8,
        dropped: bool,
        deadline: Deadline,
        work: Arc<Work>,
    ) {
        let Some(node) = self.me.upgrade() else {
            self.store.restore_holders(&message.key, holders);
            work.set(Err(NodeError::Stopping.into()));
            return;
        };
        let key = message.key.clone();
        let finish = work.clone();
        let spawned = std::thread::Builder::new()
            .name("invalidate".into())
            .spawn(move || {
                let outcome = match node.invalidate_below(&message, holders, deadline) {
                    Ok(()) => Ok(dropped),
                    Err((e, failed)) => {
                        node.store.restore_holders(&message.key, failed);
                        Err(e)
                    }
                };
                work.set(outcome);
            });
        if let Err(e) = spawned {
            self.store.restore_holders(&key, holders);
            finish.set(Err(NodeError::NoThread(e.to_string()).into()));
        }
    }

    /// The children this node must treat as holders of every key: all of
    /// them while its directory is incomplete (after a restart or a lost
    /// session, until they have acknowledged a flush).
    pub(super) fn unknown_holders(&self) -> u8 {
        if self
            .directory_incomplete
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            Side::Left.bit() | Side::Right.bit()
        } else {
            0
        }
    }

    /// Sends the invalidation to each holder in `holders` (both at once
    /// when there are two) and waits for each as the module documentation
    /// says. On failure, returns the error and the bits of the children
    /// that may still hold the key.
    pub(super) fn invalidate_below(
        &self,
        message: &Invalidate,
        holders: u8,
        deadline: Deadline,
    ) -> Result<(), (Error, u8)> {
        let mine = self.position.place().map(|p| p.slot);
        let targets: Vec<(Side, Option<Peer>)> = Side::from_bits(holders)
            .map(|s| (s, self.position.child(s)))
            .collect();
        let send = |side: Side, peer: &Option<Peer>| -> Result<(), (Error, u8)> {
            let slot = mine.map(|m| 2 * m + 1 + side.index());
            let peer = match peer {
                Some(peer) => peer.clone(),
                // Not seen by this process, whose directory is incomplete:
                // the child may hold what an earlier run of this node
                // served it, and must drop it before this invalidation is
                // done. The tree says where it is.
                None if self.unknown_holders() & side.bit() != 0 => {
                    let doc = self
                        .tree_document(deadline)
                        .ok_or_else(|| (Error::from(NodeError::NoTree), side.bit()))?;
                    match slot.and_then(|s| wire::peer_at(&doc, s)) {
                        Some(peer) => peer,
                        None => return Ok(()), // No node in that slot.
                    }
                }
                None => return Ok(()), // Never seen: it cannot hold anything from us.
            };
            self.invalidate_peer(&peer, slot, message, deadline)
                .map_err(|e| (e, side.bit()))
        };
        match targets.as_slice() {
            [] => Ok(()),
            [(side, peer)] => send(*side, peer),
            [(ls, lp), (rs, rp)] => {
                let (left, right) = std::thread::scope(|scope| {
                    let left = scope.spawn(|| send(*ls, lp));
                    let right = send(*rs, rp);
                    let left = left.join().unwrap_or_else(|_| {
                        Err((Error::from(NodeError::InvalidationFailed), ls.bit()))
                    });
                    (left, right)
                });
                match (left, right) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err((e, a)), Err((_, b))) => Err((e, a | b)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            _ => unreachable!("a node has two children at most"),
        }
    }

    /// Invalidates at `peer` (in `slot`, when known), waiting as long as its
    /// session lives; once it has ended, at its children instead.
    fn invalidate_peer(
        &self,
        peer: &Peer,
        slot: Option<usize>,
        message: &Invalidate,
        deadline: Deadline,
    ) -> Result<(), Error> {
        loop {
            bump(&self.metrics.invalidations_sent);
            let hop = self.config.hop_timeout;
            match self.links.down.invalidate(peer, message, deadline, hop) {
                Ok(Progress::Done(_)) => return Ok(()),
                Ok(Progress::Working { .. }) => continue,
                Err(e @ UpstreamError::Relayed { .. }) => return Err(Error::from(e)),
                Err(e) => {
                    match self.links.sessions.ended(&peer.name) {
                        Ok(true) => {
                            log::warn!(
                                "{} ({}) does not answer and its session has ended: \
                                 invalidating {:?} below it instead",
                                peer.name,
                                peer.address,
                                message.key
                            );
                            return self.invalidate_below_dead(slot, message, deadline);
                        }
                        Ok(false) => {}
                        Err(why) => log::debug!("cannot tell whether {} lives: {why}", peer.name),
                    }
                    if deadline.passed() {
                        log::warn!(
                            "invalidating {:?} at {} ({}) failed: {e:?}",
                            message.key,
                            peer.name,
                            peer.address
                        );
                        return Err(Error::from(e));
                    }
                    std::thread::sleep(RETRY_PAUSE.min(deadline.remaining()));
                }
            }
        }
    }

    /// The children of a node whose session ended, which may hold what it
    /// served them: each is invalidated as that node would have.
    fn invalidate_below_dead(
        &self,
        slot: Option<usize>,
        message: &Invalidate,
        deadline: Deadline,
    ) -> Result<(), Error> {
        let Some(slot) = slot else {
            return Ok(());
        };
        let doc = self
            .tree_document(deadline)
            .ok_or_else(|| Error::from(NodeError::NoTree))?;
        let tree = Tree::new(doc.depth);
        let below: Vec<(usize, Peer)> = [Side::Left, Side::Right]
            .into_iter()
            .filter_map(|side| tree.child(slot, side))
            .filter_map(|s| wire::peer_at(&doc, s).map(|p| (s, p)))
            .collect();
        std::thread::scope(|scope| {
            let calls: Vec<_> = below
                .iter()
                .map(|(s, p)| {
                    scope.spawn(move || self.invalidate_peer(p, Some(*s), message, deadline))
                })
                .collect();
            calls
                .into_iter()
                .map(|c| {
                    c.join()
                        .unwrap_or_else(|_| Err(NodeError::InvalidationFailed.into()))
                })
                .collect::<Result<Vec<()>, Error>>()
                .map(drop)
        })
    }
}

fn done(key: &str, dropped: bool) -> Progress {
    Progress::Done(Invalidated {
        key: key.to_string(),
        dropped,
    })
}
