//! Writes: applied at the root after every cached copy is gone, forwarded to
//! the root from any other node; and invalidations passed down the tree.

use std::sync::atomic::Ordering;

use crate::deadline::Deadline;
use crate::error::Error;
use crate::metrics::bump;
use crate::root::Root;
use crate::store::{Applied, Mutation};
use crate::tree::Side;
use crate::wire::{ForwardedWrite, Invalidate, Invalidated, Peer};

use super::Node;

/// How a write ended on this node.
pub enum Written<R> {
    /// Applied here, at the root; `R` is the answer rendered before applying.
    Applied(R),
    /// Forwarded to the root, whose answer this is, to be relayed unchanged.
    Relayed(crate::wire::Answer),
}

impl Node {
    /// `PUT`/`DELETE /store/{key}`: applied at the root, forwarded there from
    /// any other node with the `body` it came with. On the root, `render`
    /// builds the answer from the mutation before the value moves into the
    /// store (so that a large value is not copied for it).
    pub fn write<R>(
        &self,
        key: &str,
        mutation: Mutation,
        body: &[u8],
        deadline: Deadline,
        render: impl FnOnce(&Mutation) -> R,
    ) -> Result<Written<R>, Error> {
        let _counted = self.writes.begin()?;
        let Some(root) = &self.root else {
            let write = ForwardedWrite {
                method: match mutation {
                    Mutation::Put(_) => "PUT",
                    Mutation::Delete => "DELETE",
                },
                key,
                body,
            };
            let answer = self.to_root(|root| self.links.up.forward(root, &write, deadline))?;
            return Ok(Written::Relayed(answer));
        };
        let answer = render(&mutation);
        self.write_at_root(root, key, mutation, deadline)?;
        Ok(Written::Applied(answer))
    }

    /// Applies a write at the root (see the module documentation of `node`
    /// for the order).
    fn write_at_root(
        &self,
        root: &Root,
        key: &str,
        mutation: Mutation,
        deadline: Deadline,
    ) -> Result<Applied, Error> {
        root.require_open()?;
        let _serialized = root.lock_key(key);
        let room = match &mutation {
            Mutation::Put(value) => self
                .store
                .reserve(key, value.len())
                .ok_or_else(store_full)?,
            Mutation::Delete if !self.store.contains(key) => {
                return Err(Error::not_found(key));
            }
            Mutation::Delete => self.store.reserve(key, 0).expect("a delete needs no room"),
        };
        let holders = self.store.begin_write(key);
        let version = root.next_version();
        if let Err((e, failed)) = self.invalidate_children(key, version, holders, deadline) {
            self.store.abort_write(key, failed);
            return Err(e);
        }
        let logged = match root.log(key, version, &mutation) {
            Ok(logged) => logged,
            Err(e) => {
                self.store.abort_write(key, 0);
                return Err(e);
            }
        };
        let applied = self.store.apply(key, mutation, version, room);
        drop(logged);
        match applied {
            Applied::Absent => Err(Error::not_found(key)),
            applied => Ok(applied),
        }
    }

    /// `POST /internal/invalidate` from the parent: drop the key, pass the
    /// invalidation on to our own holders, and acknowledge only when they have.
    pub fn invalidate(
        &self,
        message: &Invalidate,
        deadline: Deadline,
    ) -> Result<Invalidated, Error> {
        bump(&self.metrics.invalidations_received);
        let key = &message.key;
        let (dropped, holders) = self.store.invalidate(key);
        if let Err((e, failed)) = self.invalidate_children(key, message.version, holders, deadline)
        {
            self.store.restore_holders(key, failed);
            return Err(e);
        }
        Ok(Invalidated {
            key: key.clone(),
            dropped,
        })
    }

    /// Sends the invalidation to each holder (both at once when there are two)
    /// and waits. On failure, returns the error and the bits of the children
    /// that may still hold the key.
    fn invalidate_children(
        &self,
        key: &str,
        version: u64,
        holders: u8,
        deadline: Deadline,
    ) -> Result<(), (Error, u8)> {
        let targets: Vec<(Side, Option<Peer>)> = Side::from_bits(holders)
            .map(|s| (s, self.position.child(s)))
            .collect();
        let message = Invalidate {
            key: key.to_string(),
            version,
        };
        let send = |side: Side, peer: &Option<Peer>| -> Result<(), (Error, u8)> {
            let Some(peer) = peer else {
                return Ok(()); // Never seen: it cannot hold anything from us.
            };
            bump(&self.metrics.invalidations_sent);
            self.links
                .down
                .invalidate(peer, &message, deadline)
                .map_err(|e| {
                    log::warn!(
                        "invalidating {key:?} at {} ({}) failed: {e:?}",
                        peer.name,
                        peer.address
                    );
                    (Error::from(e), side.bit())
                })
        };
        match targets.as_slice() {
            [] => Ok(()),
            [(side, peer)] => send(*side, peer),
            [(ls, lp), (rs, rp)] => {
                let (left, right) = std::thread::scope(|scope| {
                    let left = scope.spawn(|| send(*ls, lp));
                    let right = send(*rs, rp);
                    (left.join().unwrap_or(Ok(())), right)
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
}

/// A write counted as under way until dropped.
pub(super) struct UnderWay<'a>(&'a super::Writes);

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.0.under_way.fetch_sub(1, Ordering::SeqCst);
    }
}

impl super::Writes {
    /// Counts a write as under way, unless the node is stopping (503).
    fn begin(&self) -> Result<UnderWay<'_>, Error> {
        // Counted before the check: `Node::stop` sets the flag, then waits
        // for the count, so no write slips past both.
        self.under_way.fetch_add(1, Ordering::SeqCst);
        let counted = UnderWay(self);
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(
                "This node is stopping and takes no more writes.".into(),
            ));
        }
        Ok(counted)
    }
}

fn store_full() -> Error {
    Error::StoreFull("The root's store is full (MAX_STORE_BYTES); the value was not stored.".into())
}
