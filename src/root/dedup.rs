//! Writes applied at most once: a write forwarded to the root carries a
//! request id, and a retry of it (after a connection broke, say) reuses the
//! id. The root remembers, for a while, the answer of every write it applied
//! under an id, and answers a retry with it instead of applying it again; a
//! retry that arrives while the first attempt is still under way waits for
//! its outcome. A write that failed (and so was not applied) is forgotten:
//! a retry of it runs anew.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::awaited::Awaited;
use crate::wire::Answer;

/// What a write is remembered under: its request id, and what it asks for
/// (a client that reuses an id for another write gets that write done, not
/// the first one's answer).
pub fn fingerprint(id: &str, method: &str, key: &str, body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    // A fixed-key hash: the same for every retry this process sees.
    let mut hasher = std::hash::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("{id}\n{method} {key}\n{:016x}", hasher.finish())
}

/// How long the answer of a write is kept for retries: far longer than any
/// request's time budget.
const RETAIN: Duration = Duration::from_secs(120);
/// Most answers kept, whatever their age.
const MOST: usize = 100_000;

/// The first attempt's outcome, once it ended: its answer when the write
/// was applied, `None` when it was not.
type Slot = Awaited<Option<Answer>>;

#[derive(Default)]
struct State {
    slots: HashMap<String, Arc<Slot>>,
    /// Ids in the order they were claimed, for forgetting old ones.
    order: VecDeque<(Instant, String)>,
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
    /// An attempt under this id was applied: its answer.
    Answered(Answer),
}

/// The right to run the first attempt of a write.
pub struct Ticket<'a> {
    dedup: &'a Dedup,
    id: String,
    slot: Arc<Slot>,
    finished: bool,
}

impl Dedup {
    /// Claims `id`, waiting until `until` for an attempt under way; `None`
    /// when that attempt is still running at `until`.
    pub fn claim(&self, id: &str, until: Instant) -> Option<Claim<'_>> {
        loop {
            let slot = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.forget_old();
                match state.slots.get(id) {
                    Some(slot) => slot.clone(),
                    None => {
                        let slot = Arc::new(Slot::default());
                        state.slots.insert(id.to_string(), slot.clone());
                        state.order.push_back((Instant::now(), id.to_string()));
                        return Some(Claim::First(Ticket {
                            dedup: self,
                            id: id.to_string(),
                            slot,
                            finished: false,
                        }));
                    }
                }
            };
            match slot.wait_until(until)? {
                Some(answer) => return Some(Claim::Answered(answer)),
                // That attempt failed and was forgotten: try to be first now.
                None => continue,
            }
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
    /// Records how the first attempt ended: `Some(answer)` when the write was
    /// applied, `None` when it was not (a retry then runs anew).
    pub fn finish(mut self, applied: Option<Answer>) {
        self.end(applied);
    }

    fn end(&mut self, applied: Option<Answer>) {
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
        let Some(Claim::First(ticket)) = d.claim("a", later()) else {
            panic!("first")
        };
        ticket.finish(Some(Answer::new(200, b"{\"key\":\"k\"}".to_vec())));
        let retried = d.claim("a", later());
        assert!(
            matches!(&retried, Some(Claim::Answered(a)) if a.status == 200),
            "the retry ran again"
        );
    }

    #[test]
    fn a_retry_of_a_failed_write_runs_anew() {
        let d = Dedup::default();
        let Some(Claim::First(ticket)) = d.claim("a", later()) else {
            panic!()
        };
        ticket.finish(None);
        assert!(matches!(d.claim("a", later()), Some(Claim::First(_))));
    }

    #[test]
    fn a_retry_during_the_first_attempt_waits_for_it() {
        let d = Dedup::default();
        let d = &d;
        let Some(Claim::First(ticket)) = d.claim("a", later()) else {
            panic!()
        };
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(
            d.claim("a", soon).is_none(),
            "still running at its deadline"
        );
        std::thread::scope(|s| {
            let retry = s.spawn(|| matches!(d.claim("a", later()), Some(Claim::Answered(_))));
            std::thread::sleep(Duration::from_millis(20));
            ticket.finish(Some(Answer::new(200, Vec::new())));
            assert!(retry.join().unwrap());
        });
    }
}
