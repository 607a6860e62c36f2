//! One upstream fill shared by every request that misses the same key at once.
//!
//! The first request to miss leads: it fetches and then [`Flight::finish`]es.
//! Later requests for the key [`Flight::wait`] for that outcome instead of
//! asking upstream themselves. Waiting is bounded by each waiter's deadline,
//! and a leader that unwinds still finishes the flight (see [`Leader`]), so no
//! waiter can hang on a fill that will never end.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::peer::UpstreamError;

/// What a fill brought from upstream.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The value as compact JSON; `None` when the key exists nowhere (404).
    pub value: Option<Arc<[u8]>>,
    /// The version the root gave the write that produced it.
    pub version: u64,
    /// When it expires, on this node's clock (see `crate::expiry`).
    pub expires: Option<Instant>,
    /// Whether this node kept it in its cache.
    pub cached: bool,
    /// The answer may be older than a write acknowledged before it arrived:
    /// an invalidation passed the fill (here or upstream), or the root
    /// answered while writing the key. The request that led the fill started
    /// before that write ended and may use it; requests that joined the fill
    /// may have started after, and must fill again.
    pub fenced: bool,
}

/// Why a fill brought nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FillError {
    /// The call above failed.
    Upstream(UpstreamError),
    /// The request leading the fill unwound before it ended.
    Abandoned,
}

/// The outcome of a fill, or an error.
pub type FillOutcome = Result<Fetched, FillError>;

/// A fill in progress.
#[derive(Default)]
pub struct Flight {
    outcome: Mutex<Option<FillOutcome>>,
    done: Condvar,
}

impl Flight {
    pub fn new() -> Arc<Flight> {
        Arc::new(Flight::default())
    }

    /// Publishes the outcome to every waiter. Only the first call counts.
    pub fn finish(&self, outcome: FillOutcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(outcome);
            self.done.notify_all();
        }
    }

    /// Waits for the outcome until `deadline`; `None` if it has not come by then.
    pub fn wait(&self, deadline: Instant) -> Option<FillOutcome> {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = slot.as_ref() {
                return Some(outcome.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            slot = self
                .done
                .wait_timeout(slot, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The leader's handle: finishing is guaranteed, with an error if the leader
/// is dropped before it finished (a panic in the fetch, say).
pub struct Leader {
    flight: Arc<Flight>,
}

impl Leader {
    pub fn new(flight: Arc<Flight>) -> Leader {
        Leader { flight }
    }

    pub fn finish(self, outcome: FillOutcome) {
        self.flight.finish(outcome);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.flight.finish(Err(FillError::Abandoned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn waiters_get_the_leaders_outcome() {
        let flight = Flight::new();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let f = flight.clone();
                std::thread::spawn(move || f.wait(Instant::now() + Duration::from_secs(5)))
            })
            .collect();
        let absent = Fetched {
            value: None,
            version: 0,
            expires: None,
            cached: false,
            fenced: false,
        };
        Leader::new(flight.clone()).finish(Ok(absent));
        for w in waiters {
            assert!(matches!(
                w.join().unwrap(),
                Some(Ok(Fetched { value: None, .. }))
            ));
        }
    }

    #[test]
    fn waiting_is_bounded() {
        let flight = Flight::new();
        let start = Instant::now();
        assert!(flight.wait(start + Duration::from_millis(30)).is_none());
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_dropped_leader_still_finishes() {
        let flight = Flight::new();
        drop(Leader::new(flight.clone()));
        let outcome = flight.wait(Instant::now()).expect("finished");
        assert!(matches!(outcome, Err(FillError::Abandoned)));
    }
}
