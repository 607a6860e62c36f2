//! What a node does with data: read through its parent, write at the root,
//! and keep every cached copy coherent. This is the policy; the mechanisms
//! live in `store` (data and directory), `flight` (coalescing) and
//! `upstream` (calls to other nodes).
//!
//! A write at the root, for one key, under that key's write lock:
//! 1. mark the key pending and take its directory bits (`Store::begin_write`);
//! 2. invalidate every child that holds it and wait for their acknowledgements
//!    (each passes the invalidation on to its own holders first);
//! 3. apply the write with a new version, and answer.
//!
//! Applying last is what makes a write linearizable: until step 3 every reader
//! sees the old value, and after it no cache anywhere still holds the old one.
//! Fills answered while the key is pending are marked not cacheable, so no
//! child can pick up the old value after the directory was emptied.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::error::{Error, UpstreamError};
use crate::flight::{Fetched, FillOutcome, Leader};
use crate::membership::Membership;
use crate::metrics::{bump, Gauges, Metrics};
use crate::registry::Registry;
use crate::store::{Applied, Begin, Lookup, Mode, Mutation, Store};
use crate::tree::Side;
use crate::upstream::{Deadline, Fill, Peer, Upstream};

const WRITE_STRIPES: usize = 1024;

/// Where this node sits in the tree once it has joined.
#[derive(Clone, Debug)]
pub struct Position {
    pub slot: usize,
    pub depth: u32,
    pub parent: Option<Peer>,
}

/// A child asking for a fill.
#[derive(Clone, Debug)]
pub struct Child {
    pub side: Side,
    pub peer: Peer,
}

/// A read as a node answers it.
#[derive(Debug)]
pub struct Answer {
    /// The value as compact JSON; `None` when the key exists nowhere.
    pub value: Option<Vec<u8>>,
    pub version: u64,
    /// Whether the asking child may cache it (it was recorded as a holder).
    pub cacheable: bool,
    /// Whether requests that joined the asking child's fill must fill again
    /// (see `flight::Fetched::fenced`).
    pub fenced: bool,
}

/// A node's shared state.
pub struct Node {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    pub upstream: Upstream,
    pub registry: Registry,
    /// The slot table; the root's only.
    pub membership: Option<Mutex<Membership>>,
    /// The root has rebuilt its table from ZooKeeper and accepts joins.
    pub tree_loaded: AtomicBool,
    position: RwLock<Option<Position>>,
    /// The children this node has seen fill from it, by side.
    children: [RwLock<Option<Peer>>; 2],
    next_version: AtomicU64,
    write_locks: Box<[Mutex<()>]>,
}

impl Node {
    pub fn new(config: Config, upstream: Upstream, registry: Registry) -> Node {
        let root = config.is_root();
        let mode = if root {
            Mode::Primary {
                max_bytes: config.max_store_bytes,
            }
        } else {
            Mode::Cache {
                max_bytes: config.cache_max_bytes,
            }
        };
        let membership = root.then(|| {
            Mutex::new(Membership::new(
                config.tree,
                config.root_id,
                config.advertise.clone(),
                &config.zk_prefix,
            ))
        });
        let position = root.then_some(Position {
            slot: 0,
            depth: 1,
            parent: None,
        });
        // Versions start at the clock so that a restarted root keeps counting up.
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Node {
            store: Store::new(mode),
            metrics: Metrics::default(),
            upstream,
            registry,
            membership,
            tree_loaded: AtomicBool::new(false),
            position: RwLock::new(position),
            children: Default::default(),
            next_version: AtomicU64::new(start),
            write_locks: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(),
            config,
        }
    }

    pub fn is_root(&self) -> bool {
        self.config.is_root()
    }

    pub fn position(&self) -> Option<Position> {
        self.position.read().unwrap().clone()
    }

    pub fn joined(&self) -> bool {
        self.position.read().unwrap().is_some()
    }

    pub fn set_position(&self, position: Position) {
        *self.position.write().unwrap() = Some(position);
    }

    /// Fails with 503 until the node has joined the tree.
    pub fn require_joined(&self) -> Result<(), Error> {
        if self.joined() {
            Ok(())
        } else {
            Err(Error::Unavailable(format!(
                "{} is still joining the tree; try again shortly.",
                self.config.name()
            )))
        }
    }

    /// Records who a child is, as it introduced itself in a fill.
    pub fn child_from(&self, slot: usize, name: &str, address: &str) -> Result<Child, Error> {
        let me = self
            .position()
            .ok_or_else(|| Error::Unavailable("This node is still joining the tree.".into()))?;
        let side = crate::tree::Tree::side_of(me.slot, slot).ok_or_else(|| {
            Error::Conflict(format!(
                "Slot {slot} is not a child of {} (slot {}).",
                self.config.name(),
                me.slot
            ))
        })?;
        let peer = Peer {
            name: name.to_string(),
            address: address.to_string(),
        };
        let known = self.children[side.index()].read().unwrap().clone();
        if known.as_ref() != Some(&peer) {
            *self.children[side.index()].write().unwrap() = Some(peer.clone());
        }
        Ok(Child { side, peer })
    }

    /// Answers from this node's own copy only. `render` builds the response
    /// body while the value is locked. Counts the hit or miss.
    pub fn read_local<R>(
        &self,
        key: &str,
        child: Option<&Child>,
        render: impl FnOnce(&[u8]) -> R,
    ) -> Lookup<R> {
        let found = self.store.lookup(key, child.map(|c| c.side), render);
        match found {
            Lookup::Hit { .. } => bump(&self.metrics.hits),
            Lookup::Miss { .. } => bump(&self.metrics.misses),
        }
        found
    }

    /// Reads `key` through the parent after a local miss.
    ///
    /// Concurrent misses share one fill. A request that joined a fill whose
    /// answer came back fenced fills again: the answer may predate a write
    /// that was acknowledged after the fill began but before this request
    /// did (see `flight::Fetched::fenced`).
    pub fn read_through(
        &self,
        key: &str,
        child: Option<&Child>,
        deadline: Deadline,
    ) -> Result<Answer, Error> {
        if self.is_root() {
            return Ok(self.answer_from_store(key, child));
        }
        loop {
            let fetched = match self.store.begin_fill(key) {
                Begin::Present => match self.answer_from_store(key, child) {
                    found @ Answer { value: Some(_), .. } => return Ok(found),
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
                Begin::Lead { id, flight } => self.fill(key, id, Leader::new(flight), deadline)?,
            };
            return Ok(self.answer_fetched(key, child, fetched));
        }
    }

    /// Leads one fill from the parent and publishes its outcome to any waiters.
    fn fill(&self, key: &str, id: u64, leader: Leader, deadline: Deadline) -> FillOutcome {
        bump(&self.metrics.upstream_fetches);
        let outcome = match self.upstream.fill(key, deadline) {
            Ok(Fill::Found {
                value,
                version,
                cacheable,
                fenced,
            }) => {
                let end = self
                    .store
                    .complete_fill(key, id, &value, version, cacheable);
                Ok(Fetched {
                    value: Some(value.into()),
                    version,
                    cached: end.cached,
                    fenced: fenced || end.fenced,
                })
            }
            Ok(Fill::Absent { fenced }) => {
                let fenced_here = self.store.abandon_fill(key, id);
                Ok(Fetched {
                    value: None,
                    version: 0,
                    cached: false,
                    fenced: fenced || fenced_here,
                })
            }
            Err(e) => {
                self.store.abandon_fill(key, id);
                Err(Error::from(e))
            }
        };
        leader.finish(outcome.clone());
        outcome
    }

    /// A fetched value, as answered to a client or a child. A child may cache
    /// it only if this node cached that very version and records the child.
    fn answer_fetched(&self, key: &str, child: Option<&Child>, f: Fetched) -> Answer {
        let cacheable = match child {
            Some(c) => f.cached && self.store.register_holder(key, f.version, c.side),
            None => false,
        };
        Answer {
            value: f.value.map(|v| v.to_vec()),
            version: f.version,
            cacheable,
            fenced: f.fenced,
        }
    }

    fn answer_from_store(&self, key: &str, child: Option<&Child>) -> Answer {
        match self
            .store
            .lookup(key, child.map(|c| c.side), <[u8]>::to_vec)
        {
            Lookup::Hit {
                out,
                version,
                cacheable,
                pending,
            } => Answer {
                value: Some(out),
                version,
                cacheable,
                fenced: pending,
            },
            Lookup::Miss { pending } => Answer {
                value: None,
                version: 0,
                cacheable: false,
                fenced: pending,
            },
        }
    }

    fn parent_timed_out(&self) -> Error {
        let parent = self.upstream.parent();
        Error::Upstream(UpstreamError::TimedOut {
            name: parent
                .as_ref()
                .map_or("the parent".into(), |p| p.name.clone()),
            address: parent.map_or("(unknown)".into(), |p| p.address),
        })
    }

    fn write_lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let stripe = (fixed_hash(key) as usize) % WRITE_STRIPES;
        self.write_locks[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a write at the root (see the module documentation for the order).
    pub fn write_at_root(
        &self,
        key: &str,
        mutation: Mutation,
        deadline: Deadline,
    ) -> Result<Applied, Error> {
        let _serialized = self.write_lock(key);
        match &mutation {
            Mutation::Put(value) if !self.store.fits(key, value.len()) => {
                return Err(store_full());
            }
            Mutation::Delete if !self.store.contains(key) => {
                return Err(not_found(key));
            }
            _ => {}
        }
        let holders = self.store.begin_write(key);
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        if let Err((e, failed)) = self.invalidate_children(key, version, holders, deadline) {
            self.store.abort_write(key, failed);
            return Err(e);
        }
        match self.store.apply(key, mutation, version) {
            Applied::Full => Err(store_full()),
            Applied::Absent => Err(not_found(key)),
            applied => Ok(applied),
        }
    }

    /// An invalidation from the parent: drop the key, pass it on to our own
    /// holders, and acknowledge only when they have. Returns whether a value
    /// was dropped here.
    pub fn invalidate(&self, key: &str, version: u64, deadline: Deadline) -> Result<bool, Error> {
        bump(&self.metrics.invalidations_received);
        let (dropped, holders) = self.store.invalidate(key);
        if let Err((e, failed)) = self.invalidate_children(key, version, holders, deadline) {
            self.store.restore_holders(key, failed);
            return Err(e);
        }
        Ok(dropped)
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
            .map(|s| (s, self.children[s.index()].read().unwrap().clone()))
            .collect();
        let send = |side: Side, peer: &Option<Peer>| -> Result<(), (Error, u8)> {
            let Some(peer) = peer else {
                return Ok(()); // Never seen: it cannot hold anything from us.
            };
            bump(&self.metrics.invalidations_sent);
            self.upstream
                .invalidate(peer, key, version, deadline)
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

    /// Drops everything this node caches and passes the flush on to the
    /// children it has served. Returns how many children acknowledged.
    pub fn flush(&self, deadline: Deadline) -> usize {
        if !self.is_root() {
            self.store.clear();
        }
        let children: Vec<Peer> = self
            .children
            .iter()
            .filter_map(|c| c.read().unwrap().clone())
            .collect();
        self.flush_children(&children, deadline)
    }

    /// Tells `children` to flush, best effort: a child that cannot be
    /// reached holds nothing it could serve from us.
    pub fn flush_children(&self, children: &[Peer], deadline: Deadline) -> usize {
        children
            .iter()
            .filter(|child| match self.upstream.flush(child, deadline) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("flushing {} failed: {e:?}", child.name);
                    false
                }
            })
            .count()
    }

    /// A child's notice that it dropped `keys`.
    pub fn release(&self, keys: &[String], slot: usize) -> Result<usize, Error> {
        let me = self
            .position()
            .ok_or_else(|| Error::Unavailable("This node is still joining the tree.".into()))?;
        let side = crate::tree::Tree::side_of(me.slot, slot).ok_or_else(|| {
            Error::Conflict(format!("Slot {slot} is not a child of slot {}.", me.slot))
        })?;
        Ok(self.store.release(keys, side))
    }

    /// Values for `/metrics` that live outside the counters.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            evictions: self.store.stats.evictions.load(Ordering::Relaxed),
            cache_bytes: self.store.bytes(),
            store_keys: self.store.keys(),
            upstream_connections: self.upstream.stats.connections.load(Ordering::Relaxed),
        }
    }

    /// Sends pending release notices to the parent; run periodically by a
    /// background thread on non-root nodes.
    pub fn send_releases(&self, backlog: &mut Vec<String>) {
        backlog.extend(self.store.take_releases());
        if backlog.is_empty() || !self.joined() {
            return;
        }
        let batch: Vec<String> = backlog.drain(..backlog.len().min(2000)).collect();
        let deadline = Deadline::after(self.config.upstream_timeout);
        match self.upstream.release(&batch, deadline) {
            Ok(()) => {
                bump(&self.metrics.releases_sent);
                self.store.releases_acknowledged(&batch);
            }
            Err(e) => {
                log::debug!("release notice not delivered ({e:?}); will retry");
                backlog.splice(0..0, batch);
            }
        }
    }
}

/// FNV-1a: a stable hash for choosing a write stripe.
fn fixed_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("The key {key:?} does not exist."))
}

fn store_full() -> Error {
    Error::StoreFull("The root's store is full (MAX_STORE_BYTES); the value was not stored.".into())
}
