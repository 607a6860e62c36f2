//! The root's writes. A write runs in three steps, the middle one in
//! `node::write`: [`Store::begin_write`] marks the key pending and takes its
//! directory bits; the caller invalidates those children; then
//! [`Store::apply`] changes the data, or [`Store::abort_write`] puts the bits
//! back of children that may still hold the key. While a key is pending, no
//! child is recorded as a holder and every answer about it says `pending`,
//! so that no child caches a value the write is about to replace.
//!
//! `apply` is the only place where the root's values change; a durable root
//! logs each write just before it (see `wal`). `restore` loads what the log
//! kept, at start, and `dump` shows every value to a snapshot, with its time
//! of expiry as a Unix time (the log's form, see `crate::expiry`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::entry::{Blob, Meta, HAS_VALUE, NO_LRU, PENDING};
use super::{Applied, Mode, Mutation, Shard, Store};
use crate::{expiry, wal};

/// What a snapshot of the root's data sees: every key with a value, a shard
/// at a time, each shard copied out under its lock and visited after, so
/// that a slow visit (a snapshot on disk) holds up no request.
impl wal::Source for Store {
    fn live_bytes(&self) -> u64 {
        self.bytes()
    }

    fn dump(
        &self,
        visit: &mut dyn FnMut(wal::Live<'_>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        for shard in self.shards.iter() {
            let copied: Vec<(Blob, u64, Option<Instant>)> = {
                let shard = super::lock(shard);
                let now = Instant::now();
                shard
                    .map
                    .iter()
                    .filter(|(_, m)| m.has_value())
                    .map(|(b, m)| (b, m, Store::deadline(&shard, b.key(), m)))
                    .filter(|(_, _, expires)| expires.is_none_or(|at| at > now))
                    .map(|(b, m, expires)| (Blob::new(b.key(), b.value()), m.version, expires))
                    .collect()
            };
            for (blob, version, expires) in &copied {
                visit(wal::Live {
                    key: blob.key(),
                    value: blob.value(),
                    version: *version,
                    expires_ms: expires.map_or(0, expiry::to_unix_ms),
                })?;
            }
        }
        Ok(())
    }
}

/// Room reserved within the root's bound for one put; given back when the
/// put is applied or dropped.
pub struct Reservation<'a> {
    store: &'a Store,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.store.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Store {
    /// Starts a write of `key` at the root, once any earlier write of the
    /// key has ended: the pending mark is the key's write lock. Marks it
    /// pending (fills answered meanwhile are not cacheable) and takes its
    /// directory bits, which the caller must invalidate before calling
    /// [`Store::apply`] (or give back with [`Store::abort_write`]).
    /// A key with no value gets a placeholder entry for the time of the
    /// write, so that fills answered meanwhile (404s) are marked pending too.
    /// The bits include children recently answered a fill of the key.
    /// `None` when `until` came before the earlier write ended.
    pub fn begin_write(&self, key: &str, until: Instant) -> Option<u8> {
        let i = self.shard_index(key);
        let mut guard = super::lock(&self.shards[i]);
        while guard.map.get(key).is_some_and(Meta::pending) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            guard = self.write_ended[i]
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let shard = &mut *guard;
        let recent = shard.fills.take_recent(key);
        if let Some(meta) = shard.map.get_mut(key) {
            meta.flags |= PENDING;
            return Some(std::mem::take(&mut meta.holders) | recent);
        }
        self.insert_placeholder(shard, key, 0, 0, PENDING);
        Some(recent)
    }

    /// The version of `key`'s value, if it has one that has not expired. A
    /// write holding the key's pending mark reads what its condition
    /// (`If-Match`, `If-None-Match`) is checked against here.
    pub fn version_of(&self, key: &str) -> Option<u64> {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        self.expire_if_due(shard, key, Instant::now());
        shard
            .map
            .get(key)
            .filter(|m| m.has_value())
            .map(|m| m.version)
    }

    /// Reserves room for `len` bytes under `key` (instead of what it holds
    /// now) within the root's bound; `None` when they do not fit. Every put
    /// that may grow the store holds a reservation until it is applied, so
    /// that concurrent puts of different keys cannot together pass the bound.
    pub fn reserve(&self, key: &str, len: usize) -> Option<Reservation<'_>> {
        let Mode::Primary {
            max_bytes: Some(max),
        } = self.mode
        else {
            return Some(Reservation {
                store: self,
                bytes: 0,
            });
        };
        let old = {
            let shard = self.shard(key);
            shard
                .map
                .get_key_value(key)
                .map_or(0, |(b, _)| self.entry_cost(key, b.value().len()))
        };
        let grow = self.entry_cost(key, len).saturating_sub(old);
        let mut reserved = self.reserved.load(Ordering::Relaxed);
        loop {
            if self.bytes() + reserved + grow > max {
                return None;
            }
            match self.reserved.compare_exchange_weak(
                reserved,
                reserved + grow,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        store: self,
                        bytes: grow,
                    })
                }
                Err(now) => reserved = now,
            }
        }
    }

    /// Applies a write at the root with `version`, ending its pending state;
    /// a put's value expires at `expires` if that is set, and lives for good
    /// if not. The room a put needs was reserved with [`Store::reserve`].
    ///
    /// This is the only place where the root's values change. A durable
    /// root logs the write before it calls this (`Root::commit`, through
    /// `wal::Wal::log_then`), outside the shard's lock: writes of one key
    /// are already ordered by the root's lock on that key, and a sync must
    /// not hold up other keys' readers.
    pub fn apply(
        &self,
        key: &str,
        mutation: Mutation,
        version: u64,
        expires: Option<Instant>,
        room: Reservation<'_>,
    ) -> Applied {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        self.expire_if_due(shard, key, Instant::now());
        let applied = match mutation {
            Mutation::Delete => {
                let existed = shard.map.get(key).is_some_and(Meta::has_value);
                match self.remove_entry(shard, key) {
                    // Children that registered while the delete ran did not cache.
                    Some(_) if existed => Applied::Deleted,
                    _ => Applied::Absent,
                }
            }
            Mutation::Put(value) => {
                self.put_value(shard, key, &value, version, expires);
                Applied::Stored
            }
        };
        drop(guard);
        self.write_ended[self.shard_index(key)].notify_all();
        drop(room);
        applied
    }

    /// Loads a write read back from the data directory at start: no
    /// directory bits, no pending state, no bound (what was stored before
    /// fits again).
    pub fn restore(&self, key: &str, value: Option<&[u8]>, version: u64, expires: Option<Instant>) {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        match value {
            Some(v) => self.put_value(shard, key, v, version, expires),
            None => {
                self.remove_entry(shard, key);
            }
        }
    }

    /// A write received from the primary (a standby's store): applied only
    /// if it is newer than what the key holds (`older_than` gives the
    /// version of a delete already applied, during a catch-up). Returns
    /// whether it was applied.
    pub fn apply_if_newer(
        &self,
        key: &str,
        value: Option<&[u8]>,
        version: u64,
        expires: Option<Instant>,
    ) -> bool {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        self.expire_if_due(shard, key, Instant::now());
        if shard
            .map
            .get(key)
            .is_some_and(|m| m.has_value() && m.version >= version)
        {
            return false;
        }
        match value {
            Some(v) => self.put_value(shard, key, v, version, expires),
            None => {
                self.remove_entry(shard, key);
            }
        }
        true
    }

    /// Replaces `key`'s entry by `value`, expiring at `expires` if set,
    /// keeping its directory bits.
    fn put_value(
        &self,
        shard: &mut Shard,
        key: &str,
        value: &[u8],
        version: u64,
        expires: Option<Instant>,
    ) {
        let holders = self.remove_entry(shard, key).map_or(0, |m| m.holders);
        let cost = self.entry_cost(key, value.len());
        shard.map.insert(
            Blob::new(key, value),
            Meta {
                version,
                lru: NO_LRU,
                holders,
                flags: HAS_VALUE,
            },
        );
        self.charge(shard, cost as i64, 1);
        self.set_deadline(shard, key, expires);
    }

    /// [`Store::apply`] with room reserved on the spot, for tests.
    #[cfg(test)]
    pub(crate) fn apply_now(&self, key: &str, mutation: Mutation, version: u64) -> Applied {
        self.apply_now_until(key, mutation, version, None)
    }

    /// [`Store::apply_now`] of a value that expires at `expires`.
    #[cfg(test)]
    pub(crate) fn apply_now_until(
        &self,
        key: &str,
        mutation: Mutation,
        version: u64,
        expires: Option<Instant>,
    ) -> Applied {
        let len = match &mutation {
            Mutation::Put(v) => v.len(),
            Mutation::Delete => 0,
        };
        let room = self.reserve(key, len).expect("the test's value fits");
        self.apply(key, mutation, version, expires, room)
    }

    /// Ends a write that could not be applied, restoring directory bits.
    pub fn abort_write(&self, key: &str, holders: u8) {
        let mut guard = self.shard(key);
        self.end_pending(&mut guard, key, holders);
        drop(guard);
        self.write_ended[self.shard_index(key)].notify_all();
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
    use crate::store::test_support::{far, primary, value};
    use crate::store::Lookup;
    use crate::tree::Side;

    #[test]
    fn the_primary_applies_puts_and_deletes() {
        let s = primary();
        assert_eq!(
            s.apply_now("k", Mutation::Put(b"1".to_vec()), 1),
            Applied::Stored
        );
        assert_eq!(value(&s, "k").unwrap(), b"1");
        assert_eq!(
            s.apply_now("k", Mutation::Put(b"22".to_vec()), 2),
            Applied::Stored
        );
        assert_eq!(value(&s, "k").unwrap(), b"22");
        assert_eq!(s.keys(), 1);
        assert_eq!(s.apply_now("k", Mutation::Delete, 3), Applied::Deleted);
        assert_eq!(s.apply_now("k", Mutation::Delete, 4), Applied::Absent);
        assert_eq!(value(&s, "k"), None);
        assert_eq!((s.keys(), s.bytes()), (0, 0));
    }

    #[test]
    fn the_primary_refuses_growth_past_its_bound() {
        let s = Store::new(Mode::Primary {
            max_bytes: Some(200),
        });
        assert_eq!(
            s.apply_now("a", Mutation::Put(vec![b'1'; 50]), 1),
            Applied::Stored
        );
        assert!(s.reserve("b", 100).is_none());
        // Replacing a value by one of the same size still fits.
        assert_eq!(
            s.apply_now("a", Mutation::Put(vec![b'2'; 50]), 3),
            Applied::Stored
        );
    }

    #[test]
    fn writes_of_one_key_take_turns_and_a_waiting_one_gives_up_at_its_deadline() {
        let s = primary();
        s.begin_write("k", far()).unwrap();
        let soon = Instant::now() + Duration::from_millis(30);
        assert_eq!(s.begin_write("k", soon), None, "the key is being written");
        assert!(Instant::now() >= soon);
        assert!(
            s.begin_write("other", far()).is_some(),
            "other keys are free"
        );
        std::thread::scope(|scope| {
            let second = scope.spawn(|| s.begin_write("k", far()));
            std::thread::sleep(Duration::from_millis(30));
            s.apply_now("k", Mutation::Put(b"1".to_vec()), 1);
            assert_eq!(second.join().unwrap(), Some(0), "its turn came");
        });
    }

    #[test]
    fn concurrent_puts_cannot_together_pass_the_bound() {
        let s = Store::new(Mode::Primary {
            max_bytes: Some(400),
        });
        // Two puts that each fit alone, but not both.
        let first = s.reserve("a", 150).expect("fits alone");
        assert!(s.reserve("b", 150).is_none(), "the room is taken");
        drop(first);
        let again = s.reserve("b", 150).expect("the room is back");
        s.apply("b", Mutation::Put(vec![b'1'; 150]), 1, None, again);
        assert!(s.reserve("c", 150).is_none());
        assert!(s.bytes() <= 400);
    }

    #[test]
    fn a_replicated_write_never_replaces_a_newer_one() {
        let s = primary();
        assert!(s.apply_if_newer("k", Some(b"2"), 20, None));
        assert!(!s.apply_if_newer("k", Some(b"1"), 10, None), "older");
        assert!(!s.apply_if_newer("k", None, 15, None), "an older delete");
        assert_eq!(s.version_of("k"), Some(20));
        assert!(s.apply_if_newer("k", None, 30, None));
        assert_eq!(s.version_of("k"), None);
    }

    #[test]
    fn restored_writes_and_the_dump_agree() {
        let s = primary();
        s.restore("a", Some(b"1"), 5, None);
        s.restore("b", Some(b"2"), 6, None);
        s.restore("a", None, 7, None);
        let in_a_minute = Instant::now() + Duration::from_secs(60);
        s.restore("c", Some(b"3"), 8, Some(in_a_minute));
        s.restore("gone", Some(b"4"), 9, Some(Instant::now()));
        let mut seen = Vec::new();
        wal::Source::dump(&s, &mut |live| {
            seen.push((
                live.key.to_string(),
                live.value.to_vec(),
                live.version,
                live.expires_ms,
            ));
            Ok(())
        })
        .unwrap();
        seen.sort();
        let c_at = expiry::to_unix_ms(in_a_minute);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], ("b".to_string(), b"2".to_vec(), 6, 0));
        let (key, _, version, at) = &seen[1];
        assert_eq!((key.as_str(), *version), ("c", 8));
        assert!(at.abs_diff(c_at) < 20, "expires at {at}, not {c_at}");
        assert_eq!(s.keys(), 3, "the expired key is not swept yet");
    }

    #[test]
    fn a_failed_invalidation_keeps_the_holder() {
        let s = primary();
        s.apply_now("k", Mutation::Put(b"1".to_vec()), 1);
        s.lookup("k", Some(Side::Right), |_| ());
        let bits = s.begin_write("k", far()).unwrap();
        s.abort_write("k", bits);
        assert_eq!(s.begin_write("k", far()).unwrap(), Side::Right.bit());
    }

    #[test]
    fn a_write_of_an_absent_key_marks_fills_pending_and_takes_recent_children() {
        let s = Store::new(Mode::Primary { max_bytes: None });
        s.note_fill("k", Side::Left, Instant::now() + Duration::from_secs(5));
        assert_eq!(s.begin_write("k", far()).unwrap(), Side::Left.bit());
        assert_eq!(
            s.lookup("k", Some(Side::Right), |_| ()),
            Lookup::Miss { pending: true }
        );
        assert_eq!(
            s.apply_now("k", Mutation::Put(b"1".to_vec()), 7),
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
        s.begin_write("other", far()).unwrap();
        s.abort_write("other", 0);
        assert_eq!(
            s.lookup("other", None, |_| ()),
            Lookup::Miss { pending: false }
        );
        assert_eq!(s.keys(), 1);
    }
}
