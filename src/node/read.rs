//! Reads: from this node's copy, else through the parent; and the fills this
//! node serves to the nodes below it.
//!
//! Concurrent misses of one key share one fill (`flight`). Two rules keep
//! what a fill brings coherent (the store enforces both under the key's
//! shard lock):
//! - A fill that an invalidation passed on its way is not cached, and
//!   requests that joined it fill again (they may have started after the
//!   write that invalidated it was acknowledged).
//! - A child may cache a value only if this node holds that very version and
//!   records the child as a holder, so that the next invalidation reaches it.
//!   A node further below (reading around its dead parent) is answered, but
//!   never recorded, so it may not cache what it gets.
//!
//! A cache node answers from its copy only under a valid lease (its
//! ZooKeeper session confirmed within 2/3 of its timeout, see
//! `lease::Lease`); without one its reads go upstream. The lease is
//! checked after the value is read, so that the moment the value was read
//! is covered by the lease however long the thread is held up between.
//!
//! A value that expires travels with the time it has left, which the node
//! that asked counts from the moment it asked (`crate::expiry`): no copy
//! outlives the root's, so from the moment a key expires at the root no node
//! answers it.

use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::expiry;
use crate::flight::{Fetched, FillError, FillOutcome, Leader};
use crate::metrics::bump;
use crate::node::failed::Error;
use crate::node::position::Below;
use crate::peer::UpstreamError;
use crate::root::RootError;
use crate::store::{Begin, Lookup};
use crate::tree::Side;
use crate::wire::{Fill, FillRequest};

use super::{Node, NodeError};

/// Slack past the end of a child's fill during which it is still sent invalidations.
const FILL_GRACE: Duration = Duration::from_millis(100);

/// A value as a read found it, for a client.
#[derive(Clone, Debug, PartialEq)]
pub struct Found<T> {
    /// The value, or what it was rendered into.
    pub value: T,
    /// The version of the write that produced it: its ETag.
    pub version: u64,
    /// When it expires, on this node's clock.
    pub expires: Option<Instant>,
}

impl Node {
    /// `GET /store/{key}` from this node's copy: `Some` on a hit (rendered by
    /// `render` while the value is locked), `None` when the read must go
    /// upstream (`Node::read`), 404 when it may not (at the root, or
    /// `local`), 503 for `local` when this node cannot vouch for its copy.
    pub fn read_now<R>(
        &self,
        key: &str,
        local: bool,
        render: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<Found<R>>, Error> {
        let (found, trusted) = self.own_copy(key, render);
        self.count_lookup(&found);
        if !trusted {
            if local {
                return Err(self.untrusted());
            }
            return Ok(None);
        }
        match found {
            Lookup::Hit {
                out,
                version,
                expires,
                ..
            } => Ok(Some(Found {
                value: out,
                version,
                expires,
            })),
            Lookup::Miss { .. } if local || self.owns(key) => Err(Error::not_found(key)),
            Lookup::Miss { .. } => Ok(None),
        }
    }

    /// `GET /store/{key}` answered at once, as [`Node::read_now`] would
    /// answer it without `local`, when it is a hit: `Some` only for a value
    /// this node may serve from its copy right now. Anything else (a miss,
    /// no lease) is `None` and counts nothing, so that the request can go
    /// the usual way, through `read_now`, and be counted there once. It
    /// holds the key's shard lock only while the value is rendered, and
    /// calls nothing outside this process: the HTTP server's event loop
    /// (`http::server`) asks it.
    pub fn hit_now<R>(&self, key: &str, render: impl FnOnce(&[u8]) -> R) -> Option<Found<R>> {
        let (found, trusted) = self.own_copy(key, render);
        let (
            Lookup::Hit {
                out,
                version,
                expires,
                ..
            },
            true,
        ) = (found, trusted)
        else {
            return None;
        };
        bump(&self.metrics.hits);
        Some(Found {
            value: out,
            version,
            expires,
        })
    }

    /// This node's copy of `key` as a client's read finds it, and whether
    /// the node may answer from it: the lease is checked after the value is
    /// read (see the module docs). Counts nothing.
    fn own_copy<R>(&self, key: &str, render: impl FnOnce(&[u8]) -> R) -> (Lookup<R>, bool) {
        let found = self.store.lookup(key, None, render);
        (found, self.cache_trusted())
    }

    /// `GET /store/{key}` after a miss: through the parent (or around it).
    /// `None`: the key exists nowhere.
    pub fn read(&self, key: &str, deadline: Deadline) -> Result<Option<Found<Vec<u8>>>, Error> {
        if self.is_standby() || self.foreign_root(key) {
            return self.read_at_primary(key, deadline);
        }
        let read = self.read_through(key, None, deadline, self.config.hop_timeout);
        match read {
            Ok(Fill::Found {
                value,
                version,
                ttl_ms,
                ..
            }) => Ok(Some(Found {
                value,
                version,
                expires: ttl_ms.map(|ms| expiry::copied_deadline(Instant::now(), ms)),
            })),
            Ok(Fill::Absent { .. }) => Ok(None),
            Err(Error::Upstream(above)) if !self.cache_trusted() => {
                Err(Error::from(NodeError::UntrustedAlone {
                    name: self.config.name(),
                    above,
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// A standby's read, or a root group's of another shard's key: the
    /// answer of the primary of the key's shard.
    fn read_at_primary(
        &self,
        key: &str,
        deadline: Deadline,
    ) -> Result<Option<Found<Vec<u8>>>, Error> {
        let asked = Instant::now();
        let shard = self.shard_of(key);
        let read = self.to_shard(shard, |primary| {
            self.links.up.read(primary, key, Some(shard), deadline)
        })?;
        Ok(read.map(|v| Found {
            value: v.value,
            version: v.version,
            expires: v.ttl_ms.map(|ms| expiry::copied_deadline(asked, ms)),
        }))
    }

    /// A fill from below, answered from this node's copy when it can be;
    /// `None` when it must go upstream first (`Node::serve_fill`).
    pub fn serve_fill_now(
        &self,
        request: &FillRequest,
        deadline: Deadline,
    ) -> Result<Option<Fill>, Error> {
        self.refuse_foreign(&request.key)?;
        let (asking, side) = self.asking_noted(request, deadline)?;
        let found = self.lookup(&request.key, side, <[u8]>::to_vec);
        if !self.cache_trusted() {
            return Ok(None);
        }
        let fill = match found {
            found @ Lookup::Hit { .. } => fill_of(found),
            Lookup::Miss { pending } if self.is_root() => Fill::Absent { fenced: pending },
            Lookup::Miss { .. } => return Ok(None),
        };
        Ok(Some(for_asking(asking, fill)))
    }

    /// Whether [`Node::fill_hit_now`] may answer a fill of `key` (the root
    /// of its shard, or a cache holding it), looked at without noting the
    /// fill: `false` leaves the fill to a worker, which goes upstream.
    pub fn may_fill_now(&self, key: &str) -> bool {
        !self.foreign_root(key) && (self.is_root() || self.store.holds_value(key))
    }

    /// A fill from below answered at once, when it can be without going
    /// upstream: as [`Node::serve_fill_now`] answers it, but counting the
    /// lookup only when it answers (`None` leaves the fill, and its count,
    /// to a worker's `serve_fill_now`), so that the server's loop may try it
    /// first.
    pub fn fill_hit_now(&self, request: &FillRequest, deadline: Deadline) -> Option<Fill> {
        if self.foreign_root(&request.key) {
            return None;
        }
        let (asking, side) = self.asking_noted(request, deadline).ok()?;
        let found = self.store.lookup(&request.key, side, <[u8]>::to_vec);
        if !self.cache_trusted() {
            return None;
        }
        let answers = matches!(found, Lookup::Hit { .. }) || self.is_root();
        if !answers {
            return None;
        }
        self.count_lookup(&found);
        let fill = match found {
            found @ Lookup::Hit { .. } => fill_of(found),
            Lookup::Miss { pending } => Fill::Absent { fenced: pending },
        };
        Some(for_asking(asking, fill))
    }

    /// Who asks for a fill, and the asking child's side; for a child, its
    /// fill is noted: until it has surely ended, invalidations of the key
    /// go to that child too, whatever we answer (see `Store::note_fill`).
    fn asking_noted(
        &self,
        request: &FillRequest,
        deadline: Deadline,
    ) -> Result<(Below, Option<Side>), Error> {
        let asking = self.asking(request)?;
        let side = match asking {
            Below::Child(side) => {
                self.store
                    .note_fill(&request.key, side, deadline.callers_end(FILL_GRACE));
                Some(side)
            }
            Below::Descendant => None,
        };
        Ok((asking, side))
    }

    /// A fill from below that missed here: read through our own parent
    /// first, each call bounded by `hop` (a little less than the asking
    /// node's own hop timeout, so that we answer, even with an error, before
    /// it gives up on us).
    pub fn serve_fill(
        &self,
        request: &FillRequest,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Fill, Error> {
        self.refuse_foreign(&request.key)?;
        let asking = self.asking(request)?;
        let side = match asking {
            Below::Child(side) => Some(side),
            Below::Descendant => None,
        };
        let fill = self.read_through(&request.key, side, deadline, hop)?;
        Ok(for_asking(asking, fill))
    }

    fn asking(&self, request: &FillRequest) -> Result<Below, Error> {
        if self.is_standby() {
            return Err(NodeError::StandbyFill.into());
        }
        self.position.below(&request.child).map_err(|e| {
            Error::from(match e.mine {
                None => NodeError::NotPlaced,
                Some(mine) => NodeError::NotBelow {
                    slot: request.child.slot,
                    name: self.config.name(),
                    mine,
                },
            })
        })
    }

    /// Whether this node may answer from its own copy: the root always; a
    /// cache under a valid lease of the session its cache belongs to.
    pub(super) fn cache_trusted(&self) -> bool {
        if let Some(root) = &self.root {
            // The primary's copy is the data; a standby answers nothing itself.
            return root.group().may_answer(&*self.links.sessions);
        }
        let lease = self.links.sessions.lease();
        lease.valid
            && lease.generation
                == self
                    .cache_generation
                    .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn untrusted(&self) -> Error {
        Error::from(NodeError::Untrusted {
            name: self.config.name(),
        })
    }

    /// Why a process of the root group does not answer from its copy.
    pub(super) fn untrusted_root(&self) -> Error {
        Error::from(if self.is_standby() {
            RootError::Standby
        } else {
            RootError::Unconfirmed
        })
    }

    /// Reads `key` through the parent after a local miss, for a client
    /// (`child` is `None`) or a child.
    ///
    /// Concurrent misses share one fill. A request that joined a fill whose
    /// answer came back fenced fills again: the answer may predate a write
    /// that was acknowledged after the fill began but before this request
    /// did (see `flight::Fetched::fenced`).
    fn read_through(
        &self,
        key: &str,
        child: Option<Side>,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Fill, Error> {
        if self.root.is_some() {
            // The root group's copy is the data: nothing is above it.
            if !self.cache_trusted() {
                return Err(self.untrusted_root());
            }
            return Ok(self.answer_from_store(key, child));
        }
        loop {
            let use_copy = self.cache_trusted();
            let fetched = match self.store.begin_fill(key, use_copy) {
                Begin::Present => match self.answer_from_store(key, child) {
                    found @ Fill::Found { .. } if self.cache_trusted() => return Ok(found),
                    _ => continue,
                },
                Begin::Join(flight) => {
                    bump(&self.metrics.coalesced_waits);
                    let fetched = flight
                        .wait(deadline.0)
                        .ok_or_else(|| self.parent_timed_out())??;
                    if fetched.fenced {
                        continue;
                    }
                    fetched
                }
                Begin::Lead { id, flight } => {
                    self.lead_fill(key, id, Leader::new(flight), deadline, hop)?
                }
            };
            return Ok(self.answer_fetched(key, child, fetched));
        }
    }

    /// Leads one fill from above and publishes its outcome to any waiters.
    fn lead_fill(
        &self,
        key: &str,
        id: u64,
        leader: Leader,
        deadline: Deadline,
        hop: Duration,
    ) -> FillOutcome {
        bump(&self.metrics.upstream_fetches);
        // The time a value has left counts from here, before the node above
        // measured it: no copy outlives the value it copies.
        let asked = Instant::now();
        let outcome = match self.fill_from_above(key, deadline, hop) {
            Ok(Fill::Found {
                value,
                version,
                ttl_ms,
                cacheable,
                fenced,
            }) => {
                let expires = ttl_ms.map(|ms| expiry::copied_deadline(asked, ms));
                let end = self
                    .store
                    .complete_fill(key, id, &value, version, expires, cacheable);
                Ok(Fetched {
                    value: Some(value.into()),
                    version,
                    expires,
                    cached: end.cached,
                    fenced: fenced || end.fenced,
                })
            }
            Ok(Fill::Absent { fenced }) => {
                let fenced_here = self.store.abandon_fill(key, id);
                Ok(Fetched {
                    value: None,
                    version: 0,
                    expires: None,
                    cached: false,
                    fenced: fenced || fenced_here,
                })
            }
            Err(e) => {
                self.store.abandon_fill(key, id);
                Err(FillError::Upstream(e))
            }
        };
        leader.finish(outcome.clone());
        outcome
    }

    /// A fetched value as answered to a client or a child. A child may cache
    /// it only if this node cached that very version and records the child.
    fn answer_fetched(&self, key: &str, child: Option<Side>, f: Fetched) -> Fill {
        let Some(value) = f.value else {
            return Fill::Absent { fenced: f.fenced };
        };
        let cacheable = match child {
            Some(side) => f.cached && self.store.register_holder(key, f.version, side),
            None => false,
        };
        Fill::Found {
            value: value.to_vec(),
            version: f.version,
            ttl_ms: f.expires.map(|at| expiry::left_ms(at, Instant::now())),
            cacheable,
            fenced: f.fenced,
        }
    }

    fn answer_from_store(&self, key: &str, child: Option<Side>) -> Fill {
        fill_of(self.store.lookup(key, child, <[u8]>::to_vec))
    }

    fn parent_timed_out(&self) -> Error {
        let parent = self.position.parent();
        Error::Upstream(UpstreamError::TimedOut {
            name: parent
                .as_ref()
                .map_or("the parent".into(), |p| p.name.clone()),
            address: parent.map_or("(unknown)".into(), |p| p.address),
        })
    }
}

/// What a lookup found, as a fill answers it: a key being written is
/// answered fenced; a value that expires, with the time it has left now.
fn fill_of(found: Lookup<Vec<u8>>) -> Fill {
    match found {
        Lookup::Hit {
            out,
            version,
            expires,
            cacheable,
            pending,
        } => Fill::Found {
            value: out,
            version,
            ttl_ms: expires.map(|at| expiry::left_ms(at, Instant::now())),
            cacheable,
            fenced: pending,
        },
        Lookup::Miss { pending } => Fill::Absent { fenced: pending },
    }
}

/// A fill as answered to the node that asked: a node further below than a
/// child is never recorded here, so it may not cache the answer, and
/// requests that joined its fill must fill again.
fn for_asking(asking: Below, fill: Fill) -> Fill {
    match (asking, fill) {
        (Below::Child(_), fill) => fill,
        (
            Below::Descendant,
            Fill::Found {
                value,
                version,
                ttl_ms,
                ..
            },
        ) => Fill::Found {
            value,
            version,
            ttl_ms,
            cacheable: false,
            fenced: true,
        },
        (Below::Descendant, Fill::Absent { .. }) => Fill::Absent { fenced: true },
    }
}
