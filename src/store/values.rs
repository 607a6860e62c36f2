//! Values on caches and on the root: looking them up, caching what a fill
//! brought, and, on caches, evicting the least recently used ones to stay
//! within the bound.
//!
//! Eviction never loses directory bits: a value some child still holds
//! leaves a placeholder (a tombstone) carrying them, so the next invalidation
//! still reaches that child. A value no child holds goes entirely, and the
//! parent is told (see `releases`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::entry::{Blob, Meta, HAS_VALUE, NO_LRU};
use super::lru::Lru;
use super::{Lookup, Mode, Shard, Store, SHARDS};
use crate::tree::Side;

impl Store {
    /// Looks a key up. `out` renders the value while the lock is held, so a hit
    /// costs one copy. When a child asks (`child` is set) the answer is
    /// cacheable only if this node holds the value and records the child as a
    /// holder, in the same critical section; a key whose write is pending at
    /// the root is never cacheable. An expired value is a miss.
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
        // Only values that expire look for their deadline.
        let expires = Store::deadline(shard, key, meta);
        if expires.is_some_and(|at| at <= Instant::now()) {
            self.expire_if_due(shard, key, Instant::now());
            return Lookup::Miss {
                pending: shard.map.get(key).is_some_and(Meta::pending),
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
            expires,
            cacheable: cacheable && child.is_some(),
            pending,
        }
    }

    /// Whether this store holds a value for `key` (expired or not), without
    /// touching it: a look before deciding who answers.
    pub fn holds_value(&self, key: &str) -> bool {
        self.shard(key).map.get(key).is_some_and(Meta::has_value)
    }

    /// Drops everything (a cache whose parent lost track of it).
    pub fn clear(&self) {
        for mut shard in self.each_shard() {
            let keys = shard.map.values().filter(|m| m.has_value()).count() as u64;
            self.bytes.fetch_sub(shard.bytes, Ordering::Relaxed);
            self.keys.fetch_sub(keys, Ordering::Relaxed);
            shard.fills.fence_all();
            shard.releases.clear();
            shard.expiries = Default::default();
            shard.map.clear();
            shard.lru = Lru::default();
            shard.bytes = 0;
        }
    }

    /// Drops the entries of the keys `pick` picks (those of one root shard's
    /// slots, when that shard's directory was lost), fencing their fills
    /// under way, as [`Store::clear`] does for every key.
    pub fn clear_where(&self, pick: &dyn Fn(&str) -> bool) {
        for mut guard in self.each_shard() {
            let shard = &mut *guard;
            shard.fills.fence_where(pick);
            let keys: Vec<Box<str>> = shard
                .map
                .keys()
                .filter(|b| pick(b.key()))
                .map(|b| b.key().into())
                .collect();
            for key in keys {
                self.remove_entry(shard, &key);
            }
        }
    }

    /// Caches the value a fill brought, expiring at `expires`, unless this is
    /// not a cache, the value would take more than the shard's share of the
    /// bound, it has expired already, or a newer value is here already.
    /// Returns whether it did.
    pub(super) fn cache_fill(
        &self,
        shard: &mut Shard,
        key: &str,
        value: &[u8],
        version: u64,
        expires: Option<Instant>,
    ) -> bool {
        let Mode::Cache { max_bytes } = self.mode else {
            return false;
        };
        let cost = self.entry_cost(key, value.len());
        if cost > max_bytes / SHARDS as u64 {
            return false;
        }
        let now = Instant::now();
        if expires.is_some_and(|at| at <= now) {
            return false;
        }
        self.expire_if_due(shard, key, now);
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
        self.set_deadline(shard, key, expires);
        self.evict(shard, max_bytes / SHARDS as u64);
        // Evicted at once (its deadline took the room)? Then it is not cached.
        shard.map.get(key).is_some_and(Meta::has_value)
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
            if meta.expires() {
                self.forget_deadline(shard, &key);
            }
            if meta.holders == 0 {
                self.note_release(shard, &key);
            } else {
                self.insert_placeholder(shard, &key, meta.version, meta.holders, meta.flags);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{cache, fill, value};

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
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let released = s.take_releases(usize::MAX, 1, later);
        assert!(released.contains(&"key-0".to_string()));
        assert!(!fill(&s, "key-0", b"1", 1));
        s.releases_acknowledged(&released, 1);
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
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        assert!(!s
            .take_releases(usize::MAX, 1, later)
            .contains(&"held".to_string()));
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
