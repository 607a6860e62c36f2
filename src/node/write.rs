//! Writes: applied at the root after every cached copy is gone, forwarded to
//! the root from any other node.
//!
//! A write at the root, for one key:
//! 1. wait for the key's earlier write to end (not past the deadline), then
//!    mark the key pending and take its directory bits;
//! 2. check the write's condition (`If-Match`, `If-None-Match`) against the
//!    key's version: the pending mark is the key's write lock, so nothing
//!    changes the key between this check and step 4, and a compare-and-set
//!    is atomic;
//! 3. invalidate every child that may hold it (`node::invalidate`);
//! 4. check the deadline once more: a write whose client may already have
//!    been told it failed is never applied;
//! 5. commit it (`Root::commit`): log it (with `--data-dir`, its expiry as
//!    a Unix time), replicate it, apply it; and answer.
//!
//! A put with a time to live expires that long after step 5 begins; every
//! copy of it below expires no later (see `crate::expiry`). A put without
//! one makes the key permanent again; like any write, it first invalidates
//! the copies of the value it replaces.
//!
//! A forwarded write carries a request id, the same on every retry, and the
//! root applies a write at most once per id (`root::dedup`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::node::failed::Error;
use crate::peer::UpstreamError;
use crate::precondition::Condition;
use crate::root::dedup::{Claim, Fingerprint};
use crate::root::primary::Commit;
use crate::root::Root;
use crate::store::{Applied, Mutation, Reservation, StoreError};
use crate::wire::{Answer, ForwardedWrite, Invalidate};

use super::{Node, NodeError};

/// A write as a client asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub mutation: Mutation,
    /// How long a put's value lives; `None`: for good.
    pub ttl: Option<Duration>,
    /// What the key's version must be for the write to happen (412 if not).
    pub condition: Option<Condition>,
}

impl Node {
    /// `PUT`/`DELETE /store/{key}`: applied at the root, forwarded there
    /// from any other node with the `body` it came with and its condition.
    /// `request_id` makes retries harmless (one is made when the client sent
    /// none). On the root, `render` builds the answer from the mutation and
    /// its version before the value moves into the store (so that a large
    /// value is not copied for it).
    pub fn write(
        &self,
        key: &str,
        write: Write,
        body: &[u8],
        request_id: Option<&str>,
        deadline: Deadline,
        render: impl FnOnce(&Mutation, u64) -> Answer,
    ) -> Result<Answer, Error> {
        let _counted = self.writes.begin()?;
        // A cache node, a standby of the root group, or a root group of
        // another shard: the primary of the key's shard applies it.
        let owner = self
            .root
            .as_ref()
            .filter(|r| r.is_primary() && self.owns(key));
        let Some(root) = owner else {
            return self.forward_write(key, &write, body, request_id, deadline);
        };
        let Some(id) = request_id else {
            return self.write_at_root(root, key, write, None, deadline, render);
        };
        // The same id on another write (another method, key or body) is
        // another request: only a true retry gets the first answer.
        let method = match write.mutation {
            Mutation::Put(_) => "PUT",
            Mutation::Delete => "DELETE",
        };
        let retry_of = crate::root::dedup::fingerprint(id, method, key, body);
        match root.dedup().claim(retry_of, deadline.0) {
            None => Err(Error::Upstream(UpstreamError::TimedOut {
                name: self.config.name(),
                address: self.config.advertise.clone(),
            })),
            // The retry asks for what the first attempt did: the same answer.
            Some(Claim::Answered(version)) => Ok(render(&write.mutation, version)),
            Some(Claim::First(ticket)) => {
                let mut applied = None;
                let outcome =
                    self.write_at_root(root, key, write, Some(retry_of), deadline, |m, version| {
                        applied = Some(version);
                        render(m, version)
                    });
                ticket.finish(applied.filter(|_| outcome.is_ok()));
                outcome
            }
        }
    }

    /// Sends a write to the primary of the key's shard, under the client's
    /// request id or one made here: its answer, whatever its status.
    fn forward_write(
        &self,
        key: &str,
        write: &Write,
        body: &[u8],
        request_id: Option<&str>,
        deadline: Deadline,
    ) -> Result<Answer, Error> {
        let shard = self.shard_of(key);
        let made;
        let request_id = match request_id {
            Some(id) => id,
            None => {
                made = self.request_ids.next();
                &made
            }
        };
        let forwarded = ForwardedWrite {
            method: match write.mutation {
                Mutation::Put(_) => "PUT",
                Mutation::Delete => "DELETE",
            },
            key,
            body,
            request_id,
            condition: write.condition.as_ref(),
            shard: (self.config.root_shards > 1).then_some(shard),
        };
        Ok(self.to_shard(shard, |primary| {
            self.links.up.forward(primary, &forwarded, deadline)
        })?)
    }

    /// Applies a write at the root (see the module documentation);
    /// `retry_of`: what the write is remembered under, for its retries.
    fn write_at_root(
        &self,
        root: &Root,
        key: &str,
        write: Write,
        retry_of: Option<Fingerprint>,
        deadline: Deadline,
        render: impl FnOnce(&Mutation, u64) -> Answer,
    ) -> Result<Answer, Error> {
        root.require_open()?;
        let holders = self
            .store
            .begin_write(key, deadline.0)
            .ok_or_else(|| not_applied_in_time(key))?;
        // The key is ours until `apply` or `abort_write`. Every answer from
        // here on, a 404 or a 412 too, is given only by the primary under its
        // lease; and what the key's version is now, it stays until this write
        // changes it.
        let room = match self.admit(root, key, &write) {
            Ok(room) => room,
            Err(e) => {
                self.store.abort_write(key, holders);
                return Err(e);
            }
        };
        let version = root.next_version();
        let message = Invalidate {
            key: key.to_string(),
            version,
        };
        if let Err((e, failed)) = self.invalidate_below(&message, holders, deadline) {
            self.store.abort_write(key, failed);
            return Err(e);
        }
        if deadline.passed() {
            self.store.abort_write(key, 0);
            return Err(not_applied_in_time(key));
        }
        let answer = render(&write.mutation, version);
        let commit = Commit {
            key,
            mutation: write.mutation,
            version,
            expires: write.ttl.map(|ttl| Instant::now() + ttl),
            retry_of,
            deadline,
        };
        match root.commit(commit, room, &*self.links.sessions)? {
            Applied::Absent => Err(Error::not_found(key)),
            _ => Ok(answer),
        }
    }

    /// Whether the write may go ahead, with the key pending: this process
    /// is the primary under its lease, the write's condition holds, a
    /// delete finds the key, and the store has room for it.
    fn admit(&self, root: &Root, key: &str, write: &Write) -> Result<Reservation<'_>, Error> {
        root.group().require_primacy(&*self.links.sessions)?;
        let current = self.store.version_of(key);
        if let Some(condition) = &write.condition {
            condition
                .check(current)
                .map_err(|unmet| NodeError::Precondition {
                    key: key.to_string(),
                    unmet,
                })?;
        }
        let room = match &write.mutation {
            Mutation::Put(value) => self.store.reserve(key, value.len()),
            Mutation::Delete if current.is_some() => self.store.reserve(key, 0),
            Mutation::Delete => return Err(Error::not_found(key)),
        };
        room.ok_or_else(store_full)
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
            return Err(NodeError::StoppingWrites.into());
        }
        Ok(counted)
    }
}

fn store_full() -> Error {
    Error::Store(StoreError::Full)
}

fn not_applied_in_time(key: &str) -> Error {
    Error::from(NodeError::NotAppliedInTime {
        key: key.to_string(),
    })
}
