//! The holder directory: for each key, which children hold it (two bits in
//! `Meta::holders`), so that a write or an invalidation reaches exactly the
//! children that could serve a stale value.
//!
//! A child is recorded in the same critical section in which it is answered
//! (`Store::lookup`, `Store::register_holder`): an invalidation of the key
//! either comes first, and the child is not given the old value, or comes
//! after and finds the child's bit. Bits leave when a write takes them
//! (`Store::begin_write`), an invalidation drops the key, or the child
//! releases the key; a failed invalidation puts them back.

use std::time::Instant;

use super::entry::PENDING;
use super::Store;
use crate::tree::Side;

impl Store {
    /// Records `side` as a holder of `key` if this node holds exactly `version`
    /// of it. Returns whether it did: the child may cache the value only then.
    pub fn register_holder(&self, key: &str, version: u64, side: Side) -> bool {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        self.expire_if_due(shard, key, Instant::now());
        match shard.map.get_mut(key) {
            Some(meta) if meta.has_value() && !meta.pending() && meta.version == version => {
                meta.holders |= side.bit();
                true
            }
            _ => false,
        }
    }

    /// An invalidation from the parent: drops the value and the directory
    /// entry, fences any fill under way, and returns the holders that must be
    /// invalidated in turn. Returns whether a value was dropped.
    pub fn invalidate(&self, key: &str) -> (bool, u8) {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        shard.fills.fence(key);
        let recent = shard.fills.take_recent(key);
        match self.remove_entry(shard, key) {
            Some(meta) => (meta.has_value(), meta.holders | recent),
            None => (false, recent),
        }
    }

    /// Puts back directory bits for children whose invalidation failed: they
    /// may still hold the key, so the next write must try them again.
    pub fn restore_holders(&self, key: &str, bits: u8) {
        if bits == 0 {
            return;
        }
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        if let Some(meta) = shard.map.get_mut(key) {
            meta.holders |= bits;
            meta.flags &= !PENDING;
            return;
        }
        self.insert_placeholder(shard, key, 0, bits, 0);
    }

    /// A child's notice that it no longer holds `keys`, applied only before
    /// `deadline` (checked under each key's lock: the child relies on no
    /// notice being applied after it). Returns how many directory bits were
    /// cleared, as `Err` when the deadline passed before every key was done.
    pub fn release(&self, keys: &[String], side: Side, deadline: Instant) -> Result<usize, usize> {
        let mut released = 0;
        for key in keys {
            let mut guard = self.shard(key);
            let shard = &mut *guard;
            if Instant::now() >= deadline {
                return Err(released);
            }
            let Some(meta) = shard.map.get_mut(key.as_str()) else {
                continue;
            };
            if meta.holders & side.bit() != 0 {
                meta.holders &= !side.bit();
                released += 1;
            }
            if !meta.has_value() && meta.holders == 0 && !meta.pending() {
                self.remove_entry(shard, key);
                self.note_release(shard, key);
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{cache, far, fill, primary, value};
    use crate::store::{Applied, Lookup, Mutation};

    #[test]
    fn children_are_recorded_only_when_the_answer_is_cacheable() {
        let s = primary();
        s.apply_now("k", Mutation::Put(b"1".to_vec()), 1);
        let hit = s.lookup("k", Some(Side::Left), |_| ());
        assert!(matches!(
            hit,
            Lookup::Hit {
                cacheable: true,
                version: 1,
                ..
            }
        ));
        // A write takes the directory bits and makes fills uncacheable.
        assert_eq!(s.begin_write("k", far()).unwrap(), Side::Left.bit());
        let hit = s.lookup("k", Some(Side::Right), |_| ());
        assert!(matches!(
            hit,
            Lookup::Hit {
                cacheable: false,
                ..
            }
        ));
        assert_eq!(
            s.apply_now("k", Mutation::Put(b"2".to_vec()), 2),
            Applied::Stored
        );
        assert_eq!(
            s.begin_write("k", far()).unwrap(),
            0,
            "no child registered while pending"
        );
        s.abort_write("k", 0);
        assert!(matches!(
            s.lookup("k", Some(Side::Right), |_| ()),
            Lookup::Hit {
                cacheable: true,
                version: 2,
                ..
            }
        ));
    }

    #[test]
    fn invalidation_returns_the_holders_to_pass_it_to() {
        let s = cache(1 << 20);
        fill(&s, "k", b"v", 1);
        assert!(s.register_holder("k", 1, Side::Left));
        assert!(!s.register_holder("k", 2, Side::Right), "version mismatch");
        assert_eq!(s.invalidate("k"), (true, Side::Left.bit()));
        assert_eq!(value(&s, "k"), None);
        assert!(!s.register_holder("k", 1, Side::Left));
    }

    #[test]
    fn a_tombstone_goes_when_its_last_holder_releases_it() {
        let s = cache(4 * 1024);
        fill(&s, "held", &[b'x'; 100], 1);
        s.register_holder("held", 1, Side::Left);
        for i in 0..200 {
            fill(&s, &format!("key-{i}"), &[b'x'; 100], 1);
        }
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        s.take_releases(usize::MAX, 1, later);
        assert_eq!(s.release(&["held".to_string()], Side::Left, later), Ok(1));
        assert!(s
            .take_releases(usize::MAX, 2, later)
            .contains(&"held".to_string()));
        assert_eq!(s.invalidate("held"), (false, 0));
    }

    #[test]
    fn bits_put_back_after_a_failed_invalidation_reach_the_next_one() {
        let s = cache(1 << 20);
        s.restore_holders("k", 0);
        assert_eq!(s.bytes(), 0, "no bits, no entry");
        // The key is gone here, but the child may still hold it.
        s.restore_holders("k", Side::Left.bit());
        assert_eq!((s.keys(), value(&s, "k")), (0, None));
        assert_eq!(s.invalidate("k"), (false, Side::Left.bit()));
        assert_eq!(s.bytes(), 0);
    }
}
