//! The root's writes. A write runs in three steps, the middle one in
//! `node.rs`: [`Store::begin_write`] marks the key pending and takes its
//! directory bits; the caller invalidates those children; then
//! [`Store::apply`] changes the data, or [`Store::abort_write`] puts the bits
//! back of children that may still hold the key. While a key is pending, no
//! child is recorded as a holder and every answer about it says `pending`,
//! so that no child caches a value the write is about to replace.
//!
//! `apply` is the only place where the root's values change, which is why a
//! write-ahead log will hook in there (see the comment in its body).

use super::entry::{Blob, Meta, HAS_VALUE, NO_LRU, PENDING};
use super::{Applied, Mode, Mutation, Shard, Store};

impl Store {
    /// Starts a write of `key` at the root: marks it pending (fills answered
    /// meanwhile are not cacheable) and takes its directory bits, which the
    /// caller must invalidate before calling [`Store::apply`].
    /// A key with no value gets a placeholder entry for the time of the
    /// write, so that fills answered meanwhile (404s) are marked pending too.
    /// The bits include children recently answered a fill of the key.
    pub fn begin_write(&self, key: &str) -> u8 {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let recent = shard.fills.take_recent(key);
        if let Some(meta) = shard.map.get_mut(key) {
            meta.flags |= PENDING;
            return std::mem::take(&mut meta.holders) | recent;
        }
        self.insert_placeholder(shard, key, 0, 0, PENDING);
        recent
    }

    /// Whether `key` currently has a value.
    pub fn contains(&self, key: &str) -> bool {
        let shard = self.shard(key);
        shard.map.get(key).is_some_and(Meta::has_value)
    }

    /// Whether putting `len` bytes under `key` keeps the store within its bound.
    pub fn fits(&self, key: &str, len: usize) -> bool {
        let Mode::Primary {
            max_bytes: Some(max),
        } = self.mode
        else {
            return true;
        };
        let shard = self.shard(key);
        self.within(&shard, key, len, max)
    }

    /// Whether `len` bytes under `key` instead of what it holds now stay within `max`.
    fn within(&self, shard: &Shard, key: &str, len: usize, max: u64) -> bool {
        let old = shard
            .map
            .get_key_value(key)
            .map_or(0, |(b, _)| self.entry_cost(key, b.value().len()));
        self.bytes() - old + self.entry_cost(key, len) <= max
    }

    /// Applies a write at the root with `version`, ending its pending state.
    pub fn apply(&self, key: &str, mutation: Mutation, version: u64) -> Applied {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        if let (
            Mutation::Put(value),
            Mode::Primary {
                max_bytes: Some(max),
            },
        ) = (&mutation, self.mode)
        {
            if !self.within(shard, key, value.len(), max) {
                self.end_pending(shard, key, 0);
                return Applied::Full;
            }
        }
        // Write-ahead log hook. From here on the write is decided and changes
        // memory: a durable log will record each applied write (key, mutation,
        // version) right here, before `apply` changes memory, and under the
        // shard's lock, so that the log orders the writes of a key as memory
        // does. A refused put has returned above without changing any data.
        // Every change to the root's data passes this point, so callers need
        // not change when the log arrives.
        match mutation {
            Mutation::Delete => {
                let existed = shard.map.get(key).is_some_and(Meta::has_value);
                match self.remove_entry(shard, key) {
                    // Children that registered while the delete ran did not cache.
                    Some(_) if existed => Applied::Deleted,
                    _ => Applied::Absent,
                }
            }
            Mutation::Put(value) => {
                let holders = self.remove_entry(shard, key).map_or(0, |m| m.holders);
                let cost = self.entry_cost(key, value.len());
                shard.map.insert(
                    Blob::new(key, &value),
                    Meta {
                        version,
                        lru: NO_LRU,
                        holders,
                        flags: HAS_VALUE,
                    },
                );
                self.charge(shard, cost as i64, 1);
                Applied::Stored
            }
        }
    }

    /// Ends a write that could not be applied, restoring directory bits.
    pub fn abort_write(&self, key: &str, holders: u8) {
        let mut guard = self.shard(key);
        self.end_pending(&mut guard, key, holders);
    }

    /// Clears the pending mark, restores bits, and drops a placeholder left empty.
    fn end_pending(&self, shard: &mut Shard, key: &str, holders: u8) {
        let Some(meta) = shard.map.get_mut(key) else {
            return;
        };
        meta.flags &= !PENDING;
        meta.holders |= holders;
        if !meta.has_value() && meta.holders == 0 {
            self.remove_entry(shard, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::test_support::{primary, value};
    use crate::store::Lookup;
    use crate::tree::Side;

    #[test]
    fn the_primary_applies_puts_and_deletes() {
        let s = primary();
        assert_eq!(
            s.apply("k", Mutation::Put(b"1".to_vec()), 1),
            Applied::Stored
        );
        assert_eq!(value(&s, "k").unwrap(), b"1");
        assert_eq!(
            s.apply("k", Mutation::Put(b"22".to_vec()), 2),
            Applied::Stored
        );
        assert_eq!(value(&s, "k").unwrap(), b"22");
        assert_eq!(s.keys(), 1);
        assert_eq!(s.apply("k", Mutation::Delete, 3), Applied::Deleted);
        assert_eq!(s.apply("k", Mutation::Delete, 4), Applied::Absent);
        assert_eq!(value(&s, "k"), None);
        assert_eq!((s.keys(), s.bytes()), (0, 0));
    }

    #[test]
    fn the_primary_refuses_growth_past_its_bound() {
        let s = Store::new(Mode::Primary {
            max_bytes: Some(200),
        });
        assert_eq!(
            s.apply("a", Mutation::Put(vec![b'1'; 50]), 1),
            Applied::Stored
        );
        assert!(!s.fits("b", 100));
        assert_eq!(
            s.apply("b", Mutation::Put(vec![b'1'; 100]), 2),
            Applied::Full
        );
        // Replacing a value by one of the same size still fits.
        assert!(s.fits("a", 50));
        assert_eq!(
            s.apply("a", Mutation::Put(vec![b'2'; 50]), 3),
            Applied::Stored
        );
    }

    #[test]
    fn a_failed_invalidation_keeps_the_holder() {
        let s = primary();
        s.apply("k", Mutation::Put(b"1".to_vec()), 1);
        s.lookup("k", Some(Side::Right), |_| ());
        let bits = s.begin_write("k");
        s.abort_write("k", bits);
        assert_eq!(s.begin_write("k"), Side::Right.bit());
    }

    #[test]
    fn a_write_of_an_absent_key_marks_fills_pending_and_takes_recent_children() {
        let s = Store::new(Mode::Primary { max_bytes: None });
        s.note_fill("k", Side::Left, Instant::now() + Duration::from_secs(5));
        assert_eq!(s.begin_write("k"), Side::Left.bit());
        assert_eq!(
            s.lookup("k", Some(Side::Right), |_| ()),
            Lookup::Miss { pending: true }
        );
        assert_eq!(
            s.apply("k", Mutation::Put(b"1".to_vec()), 7),
            Applied::Stored
        );
        assert!(matches!(
            s.lookup("k", None, |_| ()),
            Lookup::Hit {
                pending: false,
                version: 7,
                ..
            }
        ));
        // An aborted write of an absent key leaves nothing behind.
        s.begin_write("other");
        s.abort_write("other", 0);
        assert_eq!(
            s.lookup("other", None, |_| ()),
            Lookup::Miss { pending: false }
        );
        assert_eq!(s.keys(), 1);
    }
}
