//! Writes applied at most once: a write forwarded to the root carries a
//! request id, and a retry of it (after a connection broke, say) reuses the
//! id. The root remembers, for a while, the version of every write it
//! applied under an id, and answers a retry with that write's answer
//! (rendered again from the retry, which asks for the same thing, and the
//! version) instead of applying it again; a retry that arrives while the
//! first attempt is still under way waits for its outcome. A write that
//! failed (and so was not applied) is forgotten: a retry of it runs anew.
//!
//! What is kept per write is small and of fixed size (a 128-bit
//! fingerprint, a version, a time), whatever the size of the value: about
//! 150 bytes, so at most some 15 MB for the [`MOST`] writes kept.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::awaited::Awaited;

/// What a write is remembered under: a digest of its request id and of what
/// it asks for (a client that reuses an id for another write gets that
/// write done, not the first one's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(u128);

impl Fingerprint {
    /// Reads a fingerprint as `Display` writes it: 32 hex digits.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        (text.len() == 32)
            .then(|| u128::from_str_radix(text, 16).ok())
            .flatten()
            .map(Fingerprint)
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

pub fn fingerprint(id: &str, method: &str, key: &str, body: &[u8]) -> Fingerprint {
    let mut digest = Sha256::new();
    // Each field after its length: no two requests read as the same text.
    for field in [id.as_bytes(), method.as_bytes(), key.as_bytes(), body] {
        digest.update((field.len() as u64).to_le_bytes());
        digest.update(field);
    }
    let bytes: [u8; 16] = digest.finalize()[..16].try_into().expect("16 of 32 bytes");
    Fingerprint(u128::from_le_bytes(bytes))
}

/// How long the answer of a write is kept for retries: far longer than any
/// request's time budget.
const RETAIN: Duration = Duration::from_secs(120);
/// Most writes kept, whatever their age.
pub const MOST: usize = 100_000;

/// The first attempt's outcome, once it ended: the version it gave the key
/// when the write was applied, `None` when it was not.
type Slot = Awaited<Option<u64>>;

#[derive(Default)]
struct State {
    slots: HashMap<Fingerprint, Arc<Slot>>,
    /// Writes in the order they were claimed, for forgetting old ones.
    order: VecDeque<(Instant, Fingerprint)>,
}

/// The request ids the root has seen. See the module documentation.
#[derive(Default)]
pub struct Dedup {
    state: Mutex<State>,
}

/// What to do with a write that carries an id.
pub enum Claim<'a> {
    /// The first attempt: run it, and `finish` the ticket.
    First(Ticket<'a>),
    /// An attempt under this id was applied, and gave the key this version.
    Answered(u64),
}

/// The right to run the first attempt of a write.
pub struct Ticket<'a> {
    dedup: &'a Dedup,
    id: Fingerprint,
    slot: Arc<Slot>,
    finished: bool,
}

impl Dedup {
    /// Claims `id`, waiting until `until` for an attempt under way; `None`
    /// when that attempt is still running at `until`.
    pub fn claim(&self, id: Fingerprint, until: Instant) -> Option<Claim<'_>> {
        loop {
            let slot = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.forget_old();
                match state.slots.get(&id) {
                    Some(slot) => slot.clone(),
                    None => {
                        let slot = Arc::new(Slot::default());
                        state.slots.insert(id, slot.clone());
                        state.order.push_back((Instant::now(), id));
                        return Some(Claim::First(Ticket {
                            dedup: self,
                            id,
                            slot,
                            finished: false,
                        }));
                    }
                }
            };
            match slot.wait_until(until)? {
                Some(version) => return Some(Claim::Answered(version)),
                // That attempt failed and was forgotten: try to be first now.
                None => continue,
            }
        }
    }
}

impl Dedup {
    /// A standby: the primary applied the write `id` with `version` (and
    /// sent it here with its fingerprint), so that a retry of it that
    /// reaches this process once it is the primary gets that write's answer.
    pub fn remember(&self, id: Fingerprint, version: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.forget_old();
        if let Entry::Vacant(place) = state.slots.entry(id) {
            let slot = Arc::new(Slot::default());
            slot.set(Some(version));
            place.insert(slot);
            state.order.push_back((Instant::now(), id));
        }
    }
}

impl State {
    fn forget_old(&mut self) {
        while let Some((at, _)) = self.order.front() {
            if at.elapsed() < RETAIN && self.order.len() <= MOST {
                break;
            }
            let (_, id) = self.order.pop_front().expect("not empty");
            let running = self.slots.get(&id).is_some_and(|s| !s.is_set());
            if !running {
                self.slots.remove(&id);
            }
        }
    }
}

impl Ticket<'_> {
    /// Records how the first attempt ended: `Some(version)` when the write
    /// was applied, `None` when it was not (a retry then runs anew).
    pub fn finish(mut self, applied: Option<u64>) {
        self.end(applied);
    }

    fn end(&mut self, applied: Option<u64>) {
        self.finished = true;
        if applied.is_none() {
            let mut state = self.dedup.state.lock().unwrap_or_else(|e| e.into_inner());
            if state
                .slots
                .get(&self.id)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
            {
                state.slots.remove(&self.id);
            }
        }
        self.slot.set(applied);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.end(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn a_fingerprint_tells_requests_apart_by_what_they_ask() {
        let put = fingerprint("id-1", "PUT", "k", b"{\"value\":1}");
        assert_eq!(put, fingerprint("id-1", "PUT", "k", b"{\"value\":1}"));
        assert_ne!(put, fingerprint("id-1", "DELETE", "k", b""));
        assert_ne!(put, fingerprint("id-1", "PUT", "k2", b"{\"value\":1}"));
        assert_ne!(put, fingerprint("id-1", "PUT", "k", b"{\"value\":2}"));
        assert_ne!(put, fingerprint("id-2", "PUT", "k", b"{\"value\":1}"));
    }

    #[test]
    fn a_retry_of_an_applied_write_gets_its_answer() {
        let d = Dedup::default();
        let Some(Claim::First(ticket)) = d.claim(fingerprint("a", "PUT", "k", b""), later()) else {
            panic!("first")
        };
        ticket.finish(Some(7));
        let retried = d.claim(fingerprint("a", "PUT", "k", b""), later());
        assert!(
            matches!(&retried, Some(Claim::Answered(7))),
            "the retry ran again"
        );
    }

    #[test]
    fn a_write_remembered_from_the_primary_answers_its_retry() {
        let d = Dedup::default();
        let id = fingerprint("a", "PUT", "k", b"1");
        assert_eq!(Fingerprint::parse(&id.to_string()), Some(id));
        assert_eq!(Fingerprint::parse("not hex"), None);
        d.remember(id, 9);
        assert!(matches!(d.claim(id, later()), Some(Claim::Answered(9))));
    }

    #[test]
    fn a_retry_of_a_failed_write_runs_anew() {
        let d = Dedup::default();
        let Some(Claim::First(ticket)) = d.claim(fingerprint("a", "PUT", "k", b""), later()) else {
            panic!()
        };
        ticket.finish(None);
        assert!(matches!(
            d.claim(fingerprint("a", "PUT", "k", b""), later()),
            Some(Claim::First(_))
        ));
    }

    #[test]
    fn a_retry_during_the_first_attempt_waits_for_it() {
        let d = Dedup::default();
        let d = &d;
        let Some(Claim::First(ticket)) = d.claim(fingerprint("a", "PUT", "k", b""), later()) else {
            panic!()
        };
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(
            d.claim(fingerprint("a", "PUT", "k", b""), soon).is_none(),
            "still running at its deadline"
        );
        std::thread::scope(|s| {
            let retry = s.spawn(|| {
                matches!(
                    d.claim(fingerprint("a", "PUT", "k", b""), later()),
                    Some(Claim::Answered(_))
                )
            });
            std::thread::sleep(Duration::from_millis(20));
            ticket.finish(Some(1));
            assert!(retry.join().unwrap());
        });
    }
}
