//! When keys written with a time to live expire, in the forms that time takes:
//! - a **deadline** on this process's monotonic clock: what the store keeps,
//!   on the root and on every cache;
//! - the **time left**, in whole milliseconds: what a fill answer carries
//!   down the tree, so that no two nodes need clocks that agree (only clocks
//!   that run at about the same rate);
//! - a **Unix time** in milliseconds: what the root's log and its standbys
//!   keep, since it must mean the same moment after a restart, when the
//!   monotonic clock has started over.
//!
//! A copy never outlives the value it was copied from: the time left is
//! rounded down, and a node counts it from the moment it *sent* its fill,
//! which is before the node above measured it ([`copied_deadline`]). So
//! every cached copy expires at the root's deadline or a little before; a
//! read that misses an expired copy goes up and finds the value still at the
//! root, or finds it gone.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds left until `deadline` at `now`, rounded down (0 once passed).
pub fn left_ms(deadline: Instant, now: Instant) -> u64 {
    deadline.saturating_duration_since(now).as_millis() as u64
}

/// The deadline of a copy received in answer to a request sent at `asked`,
/// whose sender had `left_ms` left when it answered. Counting from the
/// moment the request left, not from when the answer arrived, makes the
/// copy expire no later than the value it copies.
pub fn copied_deadline(asked: Instant, left_ms: u64) -> Instant {
    asked + Duration::from_millis(left_ms)
}

/// Seconds left until `deadline`, as answers show them: to the millisecond,
/// rounded up, so that a key still there never shows 0.
pub fn seconds_left(deadline: Instant, now: Instant) -> f64 {
    let left = deadline.saturating_duration_since(now);
    let ms = left.as_millis() as u64 + u64::from(!left.subsec_nanos().is_multiple_of(1_000_000));
    ms as f64 / 1000.0
}

/// The Unix time now, in milliseconds.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The Unix time in milliseconds of `deadline` (never 0, which the log
/// reads as "never expires").
pub fn to_unix_ms(deadline: Instant) -> u64 {
    (unix_now_ms() + left_ms(deadline, Instant::now())).max(1)
}

/// What a Unix time of expiry read back from the log means now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// 0: the key never expires.
    Forever,
    /// It expires at this deadline.
    Until(Instant),
    /// It has expired already.
    Expired,
}

/// The deadline of the Unix time `unix_ms` (0: none), measured against
/// `now_ms` and `now`.
pub fn from_unix_ms(unix_ms: u64, now_ms: u64, now: Instant) -> Kept {
    match unix_ms {
        0 => Kept::Forever,
        t if t <= now_ms => Kept::Expired,
        t => Kept::Until(now + Duration::from_millis(t - now_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_rounded_down_and_shown_rounded_up() {
        let now = Instant::now();
        let d = now + Duration::from_micros(2_500_400);
        assert_eq!(left_ms(d, now), 2500);
        assert_eq!(seconds_left(d, now), 2.501);
        assert_eq!(seconds_left(now + Duration::from_millis(7000), now), 7.0);
        assert_eq!(left_ms(now, d), 0, "passed");
        assert_eq!(seconds_left(now, d), 0.0);
    }

    #[test]
    fn a_copy_counts_from_when_it_was_asked_for_and_never_outlives_its_source() {
        let asked = Instant::now();
        // The parent measured its time left 30 ms after the child asked.
        let source = asked + Duration::from_millis(5_000);
        let answered = asked + Duration::from_micros(30_700);
        let copy = copied_deadline(asked, left_ms(source, answered));
        assert!(copy <= source);
        assert!(source - copy <= Duration::from_millis(31));
    }

    #[test]
    fn unix_times_round_trip_and_passed_ones_are_refused() {
        let now = Instant::now();
        let now_ms = 1_800_000_000_000;
        assert_eq!(from_unix_ms(0, now_ms, now), Kept::Forever);
        assert_eq!(from_unix_ms(now_ms, now_ms, now), Kept::Expired);
        assert_eq!(from_unix_ms(now_ms - 5, now_ms, now), Kept::Expired);
        assert_eq!(
            from_unix_ms(now_ms + 1500, now_ms, now),
            Kept::Until(now + Duration::from_millis(1500))
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let unix = to_unix_ms(deadline);
        let Kept::Until(back) = from_unix_ms(unix, unix_now_ms(), Instant::now()) else {
            panic!("a deadline a minute away has not passed");
        };
        let apart = if back > deadline {
            back - deadline
        } else {
            deadline - back
        };
        assert!(apart < Duration::from_millis(20), "{apart:?}");
    }
}
