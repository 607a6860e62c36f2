//! The data a node holds, and the bookkeeping that keeps caches coherent.
//!
//! One [`Store`] serves both roles. On the root it is the primary copy: it never
//! evicts, and may refuse writes once `--max-store-bytes` is reached. On every
//! other node it is a byte-bounded LRU cache. In both it keeps, per key:
//! - the value (compact JSON) and the version of the write that produced it;
//! - when the value expires, if it was written with a time to live;
//! - the directory: which children hold the key (two bits), and which
//!   children were answered a fill of it recently (they may still be passing
//!   that answer to requests that joined their fill);
//! - on the root, whether a write of the key is under way (`pending`);
//! - on caches, the fill in flight for the key, if any, and whether an
//!   invalidation has passed it (then its answer must not be cached);
//! - on caches, whether the key was dropped and the parent has yet to
//!   acknowledge the release notice.
//!
//! # What lives where
//! - this file: [`Store`] and its shards, choosing and locking a shard, the
//!   byte and key accounting, and the public types (its one error,
//!   [`StoreError`], included);
//! - `entry`: one key's entry, the key and value in one allocation plus the
//!   bits every concern keeps (version, LRU handle, holder bits, flags), and
//!   the one way to insert a placeholder entry that has no value;
//! - `lru`: the least-recently-used order caches evict by;
//! - `values`: lookups, caching what a fill brought, eviction, clearing;
//! - `fills`: fills in flight and their fences, and the children recently
//!   answered a fill;
//! - `writes`: the root's writes (pending mark, apply, abort, the bound), and
//!   the place where a write-ahead log will record them;
//! - `expiry`: the deadlines of values that expire, and dropping them;
//! - `listing`: the keys in byte order, a page at a time;
//! - `directory`: which children hold each key: recording, restoring and
//!   releasing holders, and invalidating;
//! - `releases`: the release notices a cache owes its parent.
//!
//! A concern with data of its own keeps it in its own struct inside each
//! shard (`Fills`, `Releases`, `Expiries`). The entry map is shared, because one entry
//! carries bits of several concerns: one allocation per key is what keeps
//! the root near 100 bytes per small key.
//!
//! # The one rule
//! Everything about one key happens under its shard's lock, which is what makes
//! "check the fence, then cache" and "answer a child, then record it as a
//! holder" atomic with respect to invalidations. A public method does all its
//! work on a key within one hold of that lock; a helper that takes
//! `&mut Shard` runs inside the hold of its caller and never locks again.
//!
//! # Outside and inside
//! Code outside this module may use the public methods of [`Store`], its
//! `stats`, and the public types declared here; nothing else. Shards,
//! entries, the LRU order, the per-concern structs and every helper that
//! takes a `&mut Shard` are internal: private to `store`, and shared among its
//! files only through `pub(super)`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::flight::Flight;
use entry::{Blob, Meta};
use expiry::Expiries;
use fills::Fills;
use lru::Lru;
use releases::Releases;

mod directory;
mod entry;
mod expiry;
mod fills;
mod listing;

// The store never asks the order for its length: `Lru::len` and `Lru::is_empty`
// serve only the order's own tests now that the module is private to the store.
#[allow(dead_code)]
mod lru;
mod releases;
mod values;
mod writes;

pub use writes::Reservation;

const SHARDS: usize = 16;
/// Bytes charged per entry beyond its key and value: map slot, LRU link, allocation.
const ENTRY_OVERHEAD: u64 = 64;

/// What the store is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The root's primary copy: never evicts; refuses growth past `max_bytes`.
    Primary { max_bytes: Option<u64> },
    /// A non-root node's cache: evicts least recently used values past `max_bytes`.
    Cache { max_bytes: u64 },
}

/// A write at the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put(Vec<u8>),
    Delete,
}

/// Why the store did not take a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The root's store is full (`MAX_STORE_BYTES`).
    Full,
}

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Stored,
    Deleted,
    /// A delete of a key that does not exist.
    Absent,
}

/// One of the `SHARDS` parts of the store, each behind its own lock.
#[derive(Default)]
struct Shard {
    /// Every key the shard knows, with the bits each concern keeps about it.
    map: HashMap<Blob, Meta>,
    /// Caches only: the order in which values are evicted.
    lru: Lru<Box<str>>,
    fills: Fills,
    releases: Releases,
    expiries: Expiries,
    /// What this shard is charged; a cache holds each shard to its share of
    /// the bound.
    bytes: u64,
}

/// How a lookup ended. `pending` (root only): a write of the key is under
/// way, so the answer may be superseded before it arrives.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<R> {
    /// The key is here; `cacheable` says whether the asking child was recorded as a holder.
    Hit {
        out: R,
        version: u64,
        /// When the value expires, if it does.
        expires: Option<Instant>,
        cacheable: bool,
        pending: bool,
    },
    Miss {
        pending: bool,
    },
}

/// How an attempt to start a fill ended.
pub enum Begin {
    /// The key has a value now (another fill just ended): look it up again.
    Present,
    /// Another fill of the key is under way and may be joined.
    Join(Arc<Flight>),
    /// This request leads a new fill; finish it with `complete_fill`/`abandon_fill`.
    Lead { id: u64, flight: Arc<Flight> },
}

/// How a fill ended at this node.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct FillEnd {
    /// The value was cached here.
    pub cached: bool,
    /// An invalidation passed the fill while it was under way.
    pub fenced: bool,
}

/// Counters the store keeps for `/metrics`.
#[derive(Default)]
pub struct StoreStats {
    pub evictions: AtomicU64,
    /// Values dropped because their time to live ran out.
    pub expirations: AtomicU64,
}

/// The sharded store. See the module documentation.
pub struct Store {
    mode: Mode,
    shards: Box<[Mutex<Shard>]>,
    /// One per shard: signalled when a write of one of its keys ends, for the
    /// writes of that key waiting their turn (`Store::begin_write`).
    write_ended: Box<[Condvar]>,
    hasher: std::collections::hash_map::RandomState,
    next_flight: AtomicU64,
    bytes: AtomicU64,
    /// Room reserved by puts under way at the root (see `Store::reserve`).
    reserved: AtomicU64,
    keys: AtomicU64,
    pub stats: StoreStats,
}

impl Store {
    pub fn new(mode: Mode) -> Store {
        Store {
            mode,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            write_ended: (0..SHARDS).map(|_| Condvar::new()).collect(),
            hasher: Default::default(),
            next_flight: AtomicU64::new(1),
            bytes: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            keys: AtomicU64::new(0),
            stats: StoreStats::default(),
        }
    }

    /// Bytes held, as charged against the bound (values, keys and overhead).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Keys with a value.
    pub fn keys(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }

    /// Locks the shard of `key`: everything about one key happens under it.
    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.shard_index(key)])
    }

    fn shard_index(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// Every shard in turn, each locked only until the next is taken.
    fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.shards.iter().map(lock)
    }

    /// What an entry is charged against the bound: an estimate of its memory.
    fn entry_cost(&self, key: &str, value_len: usize) -> u64 {
        let key_copies = match self.mode {
            Mode::Cache { .. } => 2, // the blob and the LRU's copy
            Mode::Primary { .. } => 1,
        };
        2 + key_copies * key.len() as u64 + value_len as u64 + ENTRY_OVERHEAD
    }

    /// Adds to (or, negative, takes from) the shard's and the store's bytes
    /// and keys. The store's totals are read without a lock, by `/metrics`
    /// and by the root's bound check.
    fn charge(&self, shard: &mut Shard, bytes: i64, keys: i64) {
        shard.bytes = (shard.bytes as i64 + bytes) as u64;
        if bytes >= 0 {
            self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub((-bytes) as u64, Ordering::Relaxed);
        }
        if keys >= 0 {
            self.keys.fetch_add(keys as u64, Ordering::Relaxed);
        } else {
            self.keys.fetch_sub((-keys) as u64, Ordering::Relaxed);
        }
    }
}

/// Locks a shard. A thread that panicked while holding the lock does not
/// make the shard unusable for the others.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// Helpers shared by the tests of the store's files.
#[cfg(test)]
mod test_support {
    use super::{Begin, Lookup, Mode, Store};

    /// A deadline no test reaches.
    pub(super) fn far() -> std::time::Instant {
        std::time::Instant::now() + std::time::Duration::from_secs(60)
    }

    pub(super) fn value(store: &Store, key: &str) -> Option<Vec<u8>> {
        match store.lookup(key, None, |v| v.to_vec()) {
            Lookup::Hit { out, .. } => Some(out),
            Lookup::Miss { .. } => None,
        }
    }

    pub(super) fn primary() -> Store {
        Store::new(Mode::Primary { max_bytes: None })
    }

    pub(super) fn cache(max_bytes: u64) -> Store {
        Store::new(Mode::Cache { max_bytes })
    }

    /// Leads a fill of `key` and completes it with `v`; returns whether it was cached.
    pub(super) fn fill(store: &Store, key: &str, v: &[u8], version: u64) -> bool {
        let Begin::Lead { id, .. } = store.begin_fill(key, true) else {
            panic!("expected to lead");
        };
        store.complete_fill(key, id, v, version, None, true).cached
    }
}
