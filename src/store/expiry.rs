//! Values that expire: each one's deadline, and dropping it once passed.
//!
//! A value written with a time to live carries a deadline on this process's
//! monotonic clock (`crate::expiry` says how one is made from the time left
//! that a fill carries, or from the root's log). Keys without one pay
//! nothing for it: deadlines live in a map of their own in each shard, and
//! the entry's `EXPIRES` flag says whether to look there.
//!
//! An expired value is dropped as eviction drops one: by the first operation
//! that touches the key ([`Store::expire_if_due`], which every method that
//! looks at a value calls first), and by a sweep every second
//! ([`Store::sweep_expired`]), which frees the memory of keys nobody reads.
//! Its directory bits stay behind in a placeholder, as after an eviction:
//! the children's copies expire no later than this one, but keeping the bits
//! makes the next write of the key reach them anyway, whatever their clocks
//! did. A cache that drops a key entirely tells its parent, as after an
//! eviction; on the root a write under way keeps its pending mark.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::entry::{Meta, EXPIRES};
use super::{Shard, Store};

/// Bytes charged per deadline beyond its copy of the key: map slot and allocation.
const DEADLINE_OVERHEAD: u64 = 48;

/// A shard's deadlines, of the keys whose values have one.
#[derive(Default)]
pub(super) struct Expiries {
    at: HashMap<Box<str>, Instant>,
}

impl Store {
    /// Gives the value of `key` (whose entry must exist) the deadline
    /// `deadline`, or none.
    pub(super) fn set_deadline(&self, shard: &mut Shard, key: &str, deadline: Option<Instant>) {
        let Some(meta) = shard.map.get_mut(key) else {
            return;
        };
        match deadline {
            Some(at) => {
                meta.flags |= EXPIRES;
                if shard.expiries.at.insert(key.into(), at).is_none() {
                    self.charge(shard, deadline_cost(key), 0);
                }
            }
            None => {
                meta.flags &= !EXPIRES;
                self.forget_deadline(shard, key);
            }
        }
    }

    /// Drops the deadline of `key`, if it has one (its entry is going).
    pub(super) fn forget_deadline(&self, shard: &mut Shard, key: &str) {
        if shard.expiries.at.remove(key).is_some() {
            self.charge(shard, -deadline_cost(key), 0);
        }
    }

    /// The deadline of `key`'s value, if it has one.
    pub(super) fn deadline(shard: &Shard, key: &str, meta: &Meta) -> Option<Instant> {
        match meta.expires() {
            true => shard.expiries.at.get(key).copied(),
            false => None,
        }
    }

    /// Drops the value of `key` if its deadline is `now` or earlier, leaving
    /// a placeholder for its directory bits or its pending mark (see the
    /// module documentation). Returns whether it did.
    pub(super) fn expire_if_due(&self, shard: &mut Shard, key: &str, now: Instant) -> bool {
        let due = shard
            .map
            .get(key)
            .and_then(|meta| Store::deadline(shard, key, meta))
            .is_some_and(|at| at <= now);
        if !due {
            return false;
        }
        let meta = self.remove_entry(shard, key).expect("the entry is there");
        self.stats.expirations.fetch_add(1, Ordering::Relaxed);
        if meta.holders != 0 || meta.pending() {
            self.insert_placeholder(shard, key, meta.version, meta.holders, meta.flags);
        } else {
            self.note_release(shard, key);
        }
        true
    }

    /// Drops every value whose deadline has passed; returns how many. Run
    /// every second or so, it frees what nobody reads.
    pub fn sweep_expired(&self) -> usize {
        let mut dropped = 0;
        for mut guard in self.each_shard() {
            let shard = &mut *guard;
            let now = Instant::now();
            let due: Vec<Box<str>> = shard
                .expiries
                .at
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(key, _)| key.clone())
                .collect();
            for key in due {
                dropped += usize::from(self.expire_if_due(shard, &key, now));
            }
        }
        dropped
    }
}

fn deadline_cost(key: &str) -> i64 {
    (key.len() as u64 + DEADLINE_OVERHEAD) as i64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::test_support::{cache, far, primary, value};
    use crate::store::{Applied, Begin, Lookup, Mutation};
    use crate::tree::Side;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(40)
    }

    fn fill_until(store: &Store, key: &str, v: &[u8], version: u64, until: Instant) -> bool {
        let Begin::Lead { id, .. } = store.begin_fill(key, true) else {
            panic!("expected to lead");
        };
        store
            .complete_fill(key, id, v, version, Some(until), true)
            .cached
    }

    #[test]
    fn a_value_reads_with_its_deadline_until_it_passes_then_is_gone() {
        let s = primary();
        let until = soon();
        s.apply_now_until("k", Mutation::Put(b"1".to_vec()), 1, Some(until));
        match s.lookup("k", None, |_| ()) {
            Lookup::Hit { expires, .. } => assert_eq!(expires, Some(until)),
            miss => panic!("{miss:?}"),
        }
        assert_eq!(s.version_of("k"), Some(1));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(value(&s, "k"), None);
        assert_eq!(s.version_of("k"), None);
        assert_eq!((s.keys(), s.bytes()), (0, 0), "the memory is free");
        assert_eq!(s.stats.expirations.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_put_without_a_deadline_makes_the_key_permanent() {
        let s = primary();
        s.apply_now_until("k", Mutation::Put(b"1".to_vec()), 1, Some(soon()));
        s.apply_now_until("k", Mutation::Put(b"2".to_vec()), 2, None);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(value(&s, "k").as_deref(), Some(&b"2"[..]));
        assert_eq!(s.sweep_expired(), 0);
        // Its deadline went with the old value, and so did its charge.
        let bytes = s.bytes();
        s.apply_now_until("k", Mutation::Put(b"3".to_vec()), 3, None);
        assert_eq!(s.bytes(), bytes);
    }

    #[test]
    fn the_sweep_frees_keys_nobody_reads() {
        let s = primary();
        for i in 0..100 {
            let until = if i % 2 == 0 { Some(soon()) } else { None };
            s.apply_now_until(&format!("k{i}"), Mutation::Put(b"1".to_vec()), 1, until);
        }
        let before = s.bytes();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(s.sweep_expired(), 50);
        assert_eq!(s.keys(), 50);
        assert!(s.bytes() < before / 2, "{} of {before}", s.bytes());
        assert_eq!(s.sweep_expired(), 0);
    }

    #[test]
    fn an_expired_value_leaves_its_holders_for_the_next_write() {
        let s = primary();
        s.apply_now_until("k", Mutation::Put(b"1".to_vec()), 1, Some(soon()));
        s.lookup("k", Some(Side::Left), |_| ());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(s.sweep_expired(), 1);
        assert_eq!(value(&s, "k"), None);
        assert_eq!(
            s.begin_write("k", far()),
            Some(Side::Left.bit()),
            "the write still invalidates the child that held it"
        );
    }

    #[test]
    fn a_key_that_expires_while_its_write_is_pending_keeps_the_mark() {
        let s = primary();
        s.apply_now_until("k", Mutation::Put(b"1".to_vec()), 1, Some(soon()));
        s.begin_write("k", far()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            s.lookup("k", Some(Side::Right), |_| ()),
            Lookup::Miss { pending: true }
        );
        assert_eq!(s.apply_now("k", Mutation::Delete, 2), Applied::Absent);
        assert_eq!((s.keys(), s.bytes()), (0, 0));
    }

    #[test]
    fn a_cache_drops_an_expired_copy_tells_its_parent_and_refuses_expired_fills() {
        let s = cache(1 << 20);
        assert!(fill_until(&s, "k", b"1", 1, soon()));
        assert!(matches!(s.begin_fill("k", true), Begin::Present));
        std::thread::sleep(Duration::from_millis(50));
        let Begin::Lead { id, .. } = s.begin_fill("k", true) else {
            panic!("an expired copy is no copy");
        };
        s.abandon_fill("k", id);
        assert_eq!(s.take_releases(10, 1, far()), ["k"]);
        s.releases_acknowledged(&["k".to_string()], 1);
        assert!(
            !fill_until(&s, "k", b"1", 1, Instant::now()),
            "a copy already expired is not cached"
        );
        assert!(fill_until(&s, "k", b"1", 1, far()));
    }

    #[test]
    fn an_expired_copy_is_no_holder_to_record() {
        let s = cache(1 << 20);
        assert!(fill_until(&s, "k", b"1", 1, soon()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!s.register_holder("k", 1, Side::Left));
        assert_eq!(s.invalidate("k"), (false, 0));
    }
}
