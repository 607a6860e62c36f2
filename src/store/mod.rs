//! The data a node holds, and the bookkeeping that keeps caches coherent.
//!
//! One [`Store`] serves both roles. On the root it is the primary copy: it never
//! evicts, and may refuse writes once `--max-store-bytes` is reached. On every
//! other node it is a byte-bounded LRU cache. In both it keeps, per key:
//! - the value (compact JSON) and the version of the write that produced it;
//! - the directory: which children hold the key (two bits), and which
//!   children were answered a fill of it recently (they may still be passing
//!   that answer to requests that joined their fill);
//! - on the root, whether a write of the key is under way (`pending`);
//! - on caches, the fill in flight for the key, if any, and whether an
//!   invalidation has passed it (then its answer must not be cached).
//!
//! Everything about one key happens under its shard's lock, which is what makes
//! "check the fence, then cache" and "answer a child, then record it as a
//! holder" atomic with respect to invalidations.
//!
//! All changes go through a few methods ([`Store::apply`] for the root's writes);
//! a write-ahead log can later be put in front of `apply` without touching callers.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::flight::Flight;
use crate::tree::Side;
use entry::{Blob, Meta, HAS_VALUE, NO_LRU};
use fills::Fills;
use lru::Lru;
use releases::Releases;

mod directory;
mod entry;
mod fills;

// The store never asks the order for its length: `Lru::len` and `Lru::is_empty`
// serve only the order's own tests now that the module is private to the store.
#[allow(dead_code)]
mod lru;
mod releases;
mod writes;

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

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Stored,
    Deleted,
    /// A delete of a key that does not exist.
    Absent,
    /// A put that would grow the store past its bound.
    Full,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Blob, Meta>,
    lru: Lru<Box<str>>,
    fills: Fills,
    releases: Releases,
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
}

/// The sharded store. See the module documentation.
pub struct Store {
    mode: Mode,
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    next_flight: AtomicU64,
    bytes: AtomicU64,
    keys: AtomicU64,
    pub stats: StoreStats,
}

impl Store {
    pub fn new(mode: Mode) -> Store {
        Store {
            mode,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            next_flight: AtomicU64::new(1),
            bytes: AtomicU64::new(0),
            keys: AtomicU64::new(0),
            stats: StoreStats::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Bytes held, as charged against the bound (values, keys and overhead).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Keys with a value.
    pub fn keys(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        lock(&self.shards[i])
    }

    /// Every shard in turn, each locked only until the next is taken.
    fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.shards.iter().map(lock)
    }

    fn entry_cost(&self, key: &str, value_len: usize) -> u64 {
        let key_copies = match self.mode {
            Mode::Cache { .. } => 2, // the blob and the LRU's copy
            Mode::Primary { .. } => 1,
        };
        2 + key_copies * key.len() as u64 + value_len as u64 + ENTRY_OVERHEAD
    }

    /// Looks a key up. `out` renders the value while the lock is held, so a hit
    /// costs one copy. When a child asks (`child` is set) the answer is
    /// cacheable only if this node holds the value and records the child as a
    /// holder, in the same critical section; a key whose write is pending at
    /// the root is never cacheable.
    pub fn lookup<R>(
        &self,
        key: &str,
        child: Option<Side>,
        out: impl FnOnce(&[u8]) -> R,
    ) -> Lookup<R> {
        let mut shard = self.shard(key);
        let shard = &mut *shard;
        let Some((blob, meta)) = shard.map.get_key_value(key) else {
            return Lookup::Miss { pending: false };
        };
        if !meta.has_value() {
            return Lookup::Miss {
                pending: meta.pending(),
            };
        }
        let out = out(blob.value());
        let version = meta.version;
        let lru = meta.lru;
        let pending = meta.pending();
        let cacheable = !pending;
        if let Some(side) = child.filter(|_| cacheable) {
            if let Some(meta) = shard.map.get_mut(key) {
                meta.holders |= side.bit();
            }
        }
        if lru != NO_LRU {
            shard.lru.touch(lru);
        }
        Lookup::Hit {
            out,
            version,
            cacheable: cacheable && child.is_some(),
            pending,
        }
    }

    /// Drops everything (a cache whose parent lost track of it).
    pub fn clear(&self) {
        for mut shard in self.each_shard() {
            let keys = shard.map.values().filter(|m| m.has_value()).count() as u64;
            self.bytes.fetch_sub(shard.bytes, Ordering::Relaxed);
            self.keys.fetch_sub(keys, Ordering::Relaxed);
            shard.fills.fence_all();
            shard.map.clear();
            shard.lru = Lru::default();
            shard.bytes = 0;
        }
    }

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

    /// Caches the value a fill brought, unless this is not a cache, the value
    /// would take more than the shard's share of the bound, or a newer value
    /// is here already. Returns whether it did.
    fn cache_fill(&self, shard: &mut Shard, key: &str, value: &[u8], version: u64) -> bool {
        let Mode::Cache { max_bytes } = self.mode else {
            return false;
        };
        let cost = self.entry_cost(key, value.len());
        if cost > max_bytes / SHARDS as u64 {
            return false;
        }
        if let Some(meta) = shard.map.get(key) {
            if meta.has_value() && meta.version >= version {
                return false;
            }
        }
        // Keep the directory bits of a tombstone being refilled.
        let holders = self.remove_entry(shard, key).map_or(0, |m| m.holders);
        let lru = shard.lru.insert(key.into());
        shard.map.insert(
            Blob::new(key, value),
            Meta {
                version,
                lru,
                holders,
                flags: HAS_VALUE,
            },
        );
        self.charge(shard, cost as i64, 1);
        self.evict(shard, max_bytes / SHARDS as u64);
        true
    }

    /// Evicts least recently used values until the shard is within `cap`.
    /// A value some child still holds leaves a tombstone with its directory
    /// bits, so the next invalidation still reaches that child.
    fn evict(&self, shard: &mut Shard, cap: u64) {
        while shard.bytes > cap {
            let Some(key) = shard.lru.pop_oldest() else {
                break;
            };
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            let Some((blob, meta)) = shard.map.remove_entry(&*key) else {
                continue;
            };
            let cost = self.entry_cost(&key, blob.value().len());
            self.charge(shard, -(cost as i64), -1);
            if meta.holders == 0 {
                self.note_release(shard, &key);
            } else {
                self.insert_placeholder(shard, &key, meta.version, meta.holders, meta.flags);
            }
        }
    }
}

/// Helpers shared by the tests of the store's files.
/// Locks a shard. A thread that panicked while holding the lock does not
/// make the shard unusable for the others.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod test_support {
    use super::{Begin, Lookup, Mode, Store};

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
        let Begin::Lead { id, .. } = store.begin_fill(key) else {
            panic!("expected to lead");
        };
        store.complete_fill(key, id, v, version, true).cached
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{cache, fill, value};
    use super::*;

    #[test]
    fn the_cache_stays_within_its_bound_and_evicts_oldest_first() {
        let cap = 16 * 1024;
        let s = cache(cap);
        for i in 0..400 {
            fill(&s, &format!("key-{i}"), &[b'x'; 200], 1);
            assert!(s.bytes() <= cap, "{} > {cap}", s.bytes());
        }
        assert!(s.stats.evictions.load(Ordering::Relaxed) > 0);
        assert!(value(&s, "key-399").is_some());
        assert!(value(&s, "key-0").is_none());
        // Released keys are reported, and not cached again until acknowledged.
        let released = s.take_releases();
        assert!(released.contains(&"key-0".to_string()));
        assert!(!fill(&s, "key-0", b"1", 1));
        s.releases_acknowledged(&released);
        assert!(fill(&s, "key-0", b"1", 1));
    }

    #[test]
    fn an_evicted_value_with_holders_leaves_its_directory_entry() {
        let s = cache(16 * 1024);
        fill(&s, "held", &[b'x'; 200], 1);
        assert!(s.register_holder("held", 1, Side::Right));
        for i in 0..400 {
            fill(&s, &format!("key-{i}"), &[b'x'; 200], 1);
        }
        assert_eq!(value(&s, "held"), None, "the value was evicted");
        assert!(!s.take_releases().contains(&"held".to_string()));
        // The next invalidation still names the child.
        assert_eq!(s.invalidate("held"), (false, Side::Right.bit()));
    }

    #[test]
    fn clearing_drops_everything() {
        let s = cache(1 << 20);
        fill(&s, "a", b"1", 1);
        fill(&s, "b", b"2", 1);
        s.clear();
        assert_eq!((s.keys(), s.bytes()), (0, 0));
        assert_eq!(value(&s, "a"), None);
    }
}
