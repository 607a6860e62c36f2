//! Fills: a cache fetching a key it misses from its parent, and the fences
//! that keep an invalidation from being overtaken by such a fill.
//!
//! A fill under way is fenced when an invalidation of its key passes it; its
//! answer may then predate the write, so it is neither cached nor joined by
//! later requests. Every node also remembers, for a short while, which
//! children it answered a fill of a key (the recent-fills table), so that an
//! invalidation reaches them even when they cached nothing.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::entry::Meta;
use super::{Begin, FillEnd, Store};
use crate::flight::Flight;
use crate::tree::Side;

/// A shard's fills in flight and the children it recently answered a fill.
#[derive(Default)]
pub(super) struct Fills {
    flights: HashMap<Box<str>, InFlight>,
    /// Children recently answered a fill, by key; kept apart from the
    /// directory because they may hold nothing (a 404, an uncacheable value)
    /// and must be forgotten once their fills are over.
    recent: HashMap<Box<str>, Recent>,
    /// `recent` is swept of expired entries when it grows to this size.
    recent_sweep_at: usize,
}

struct InFlight {
    id: u64,
    /// Set when an invalidation passed while the fill was under way.
    fenced: bool,
    flight: Arc<Flight>,
}

/// Children answered a fill of a key, until their fills have surely ended.
struct Recent {
    bits: u8,
    until: Instant,
}

impl Fills {
    /// An invalidation of `key` passes the fill under way, if any.
    pub(super) fn fence(&mut self, key: &str) {
        if let Some(f) = self.flights.get_mut(key) {
            f.fenced = true;
        }
    }

    /// Fences the fills under way of the keys `pick` picks.
    pub(super) fn fence_where(&mut self, pick: &dyn Fn(&str) -> bool) {
        for (key, f) in self.flights.iter_mut() {
            if pick(key) {
                f.fenced = true;
            }
        }
    }

    /// Fences every fill under way: what they bring may belong to a state
    /// the cache was just cleared of.
    pub(super) fn fence_all(&mut self) {
        for f in self.flights.values_mut() {
            f.fenced = true;
        }
    }

    /// Takes the bits of children recently answered a fill of `key`.
    pub(super) fn take_recent(&mut self, key: &str) -> u8 {
        match self.recent.remove(key) {
            Some(r) if r.until > Instant::now() => r.bits,
            _ => 0,
        }
    }

    /// Removes fill `id` from the flights; returns whether it was fenced.
    fn end_flight(&mut self, key: &str, id: u64) -> bool {
        match self.flights.get(key) {
            Some(f) if f.id == id => {
                let fenced = f.fenced;
                self.flights.remove(key);
                fenced
            }
            // Replaced by a newer fill after an invalidation: fenced.
            _ => true,
        }
    }
}

impl Store {
    /// Records that `side` is being answered a fill of `key`: until `until`
    /// (the end of that fill's time budget) invalidations of the key go to it
    /// too, whatever the answer. A child whose fill is still under way may
    /// have other requests waiting on it; the invalidation fences that fill,
    /// so that none of them can be handed a value older than the write.
    pub fn note_fill(&self, key: &str, side: Side, until: Instant) {
        let mut guard = self.shard(key);
        let fills = &mut guard.fills;
        if fills.recent.len() >= fills.recent_sweep_at.max(1024) {
            let now = Instant::now();
            fills.recent.retain(|_, r| r.until > now);
            fills.recent_sweep_at = 2 * fills.recent.len();
        }
        match fills.recent.get_mut(key) {
            Some(r) => {
                r.bits |= side.bit();
                r.until = r.until.max(until);
            }
            None => {
                fills.recent.insert(
                    key.into(),
                    Recent {
                        bits: side.bit(),
                        until,
                    },
                );
            }
        }
    }

    /// Starts a fill of `key`, or joins one under way. A fill that an
    /// invalidation has passed is never joined: a request that starts after a
    /// write was acknowledged must not receive a value fetched before it.
    /// With `use_copy`, a value held here ends the attempt (`Present`);
    /// without, the fill goes upstream whatever this node holds.
    pub fn begin_fill(&self, key: &str, use_copy: bool) -> Begin {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        self.expire_if_due(shard, key, Instant::now());
        if use_copy && shard.map.get(key).is_some_and(Meta::has_value) {
            return Begin::Present;
        }
        if let Some(f) = shard.fills.flights.get(key) {
            if !f.fenced {
                return Begin::Join(f.flight.clone());
            }
        }
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let flight = Flight::new();
        shard.fills.flights.insert(
            key.into(),
            InFlight {
                id,
                fenced: false,
                flight: flight.clone(),
            },
        );
        Begin::Lead { id, flight }
    }

    /// Ends fill `id` that brought `value`, which expires at `expires` if it
    /// does. It is cached only if upstream said it may be, no invalidation
    /// passed the fill meanwhile, and the parent has acknowledged any earlier
    /// release of the key.
    pub fn complete_fill(
        &self,
        key: &str,
        id: u64,
        value: &[u8],
        version: u64,
        expires: Option<Instant>,
        cacheable: bool,
    ) -> FillEnd {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let fenced = shard.fills.end_flight(key, id);
        // Checking the fence and caching under one lock is what keeps an
        // invalidation from slipping in between.
        let cached = cacheable
            && !fenced
            && !shard.releases.blocks_caching(key)
            && self.cache_fill(shard, key, value, version, expires);
        FillEnd { cached, fenced }
    }

    /// Ends fill `id` without a value (absent upstream, or an error).
    /// Returns whether an invalidation passed it.
    pub fn abandon_fill(&self, key: &str, id: u64) -> bool {
        let mut guard = self.shard(key);
        guard.fills.end_flight(key, id)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::test_support::{cache, fill, value};
    use crate::store::Mode;

    #[test]
    fn a_fill_passed_by_an_invalidation_is_not_cached() {
        let s = cache(1 << 20);
        let Begin::Lead { id, .. } = s.begin_fill("k", true) else {
            panic!()
        };
        // The invalidation overtakes the fill's answer.
        assert_eq!(s.invalidate("k"), (false, 0));
        // A new reader does not join the fenced fill.
        let Begin::Lead { id: id2, .. } = s.begin_fill("k", true) else {
            panic!("a fenced fill must not be joined")
        };
        let end = s.complete_fill("k", id, b"old", 1, None, true);
        assert_eq!(
            end,
            FillEnd {
                cached: false,
                fenced: true
            }
        );
        assert_eq!(value(&s, "k"), None);
        assert!(s.complete_fill("k", id2, b"new", 2, None, true).cached);
        assert_eq!(value(&s, "k").unwrap(), b"new");
    }

    #[test]
    fn concurrent_misses_join_one_fill() {
        let s = cache(1 << 20);
        let Begin::Lead { id, .. } = s.begin_fill("k", true) else {
            panic!()
        };
        assert!(matches!(s.begin_fill("k", true), Begin::Join(_)));
        assert!(s.complete_fill("k", id, b"v", 1, None, true).cached);
    }

    #[test]
    fn uncacheable_answers_are_not_cached() {
        let s = cache(1 << 20);
        let Begin::Lead { id, .. } = s.begin_fill("k", true) else {
            panic!()
        };
        assert!(!s.complete_fill("k", id, b"v", 1, None, false).cached);
        assert_eq!(value(&s, "k"), None);
    }

    #[test]
    fn children_answered_recently_are_invalidated_even_without_holding_the_key() {
        let s = Store::new(Mode::Cache { max_bytes: 1 << 20 });
        let soon = Instant::now() + Duration::from_secs(5);
        // A child was answered a fill of a key this node does not hold (a 404).
        s.note_fill("k", Side::Right, soon);
        assert_eq!(s.invalidate("k"), (false, Side::Right.bit()));
        // Taken once: the next invalidation does not go there again.
        assert_eq!(s.invalidate("k"), (false, 0));
        // An expired note is forgotten.
        s.note_fill("k", Side::Left, Instant::now() - Duration::from_millis(1));
        assert_eq!(s.invalidate("k"), (false, 0));
    }

    #[test]
    fn the_recent_table_is_swept_of_expired_entries() {
        let s = Store::new(Mode::Cache { max_bytes: 1 << 20 });
        let past = Instant::now() - Duration::from_millis(1);
        for i in 0..50_000 {
            s.note_fill(&format!("k{i}"), Side::Left, past);
        }
        let held: usize = s
            .shards
            .iter()
            .map(|sh| sh.lock().unwrap().fills.recent.len())
            .sum();
        assert!(held < 20_000, "{held} expired entries kept");
    }

    #[test]
    fn a_fill_ending_after_a_newer_one_began_counts_as_fenced() {
        let s = cache(1 << 20);
        let Begin::Lead { id, .. } = s.begin_fill("k", true) else {
            panic!()
        };
        s.invalidate("k");
        let Begin::Lead { id: newer, .. } = s.begin_fill("k", true) else {
            panic!()
        };
        assert!(!s.abandon_fill("k", newer));
        assert!(s.abandon_fill("k", id), "its flight is gone, fence or not");
        assert!(fill(&s, "k", b"v", 1));
    }
}
