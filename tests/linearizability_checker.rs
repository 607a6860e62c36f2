//! Tests of the linearizability checker itself: it must accept every history
//! an atomic register can produce and reject the ones it cannot, or the
//! coherence tests that rely on it prove nothing.

use std::time::{Duration, Instant};
use treecache_harness::linearizability::{check, check_key, Call, Nanos, Operation, Outcome};

fn op(client: usize, call: Call, outcome: Outcome, invoked: Nanos, returned: Nanos) -> Operation {
    Operation {
        key: "k".to_string(),
        client,
        node: None,
        call,
        outcome,
        invoked,
        returned,
    }
}

fn put(client: usize, value: &str, invoked: Nanos, returned: Nanos) -> Operation {
    op(
        client,
        Call::Put(value.into()),
        Outcome::Written,
        invoked,
        returned,
    )
}

fn put_unknown(client: usize, value: &str, invoked: Nanos) -> Operation {
    op(
        client,
        Call::Put(value.into()),
        Outcome::Unknown,
        invoked,
        invoked,
    )
}

fn get(client: usize, seen: Option<&str>, invoked: Nanos, returned: Nanos) -> Operation {
    let seen = seen.map(str::to_string);
    op(client, Call::Get, Outcome::Read(seen), invoked, returned)
}

fn delete(client: usize, existed: bool, invoked: Nanos, returned: Nanos) -> Operation {
    op(
        client,
        Call::Delete,
        Outcome::Deleted(existed),
        invoked,
        returned,
    )
}

fn assert_linearizable(history: &[Operation]) {
    if let Err(violation) = check_key(history) {
        panic!("expected a linearizable history, the checker said:\n{violation}");
    }
}

/// Asserts the checker rejects `history` and returns its explanation.
fn assert_rejected(history: &[Operation]) -> String {
    match check_key(history) {
        Ok(()) => panic!("the checker accepted a history that is not linearizable: {history:#?}"),
        Err(violation) => violation.to_string(),
    }
}

#[test]
fn a_sequential_history_is_linearizable() {
    assert_linearizable(&[
        get(1, None, 0, 10),
        put(1, "a", 20, 30),
        get(2, Some("a"), 40, 50),
        put(2, "b", 60, 70),
        get(1, Some("b"), 80, 90),
        delete(1, true, 100, 110),
        get(2, None, 120, 130),
    ]);
}

#[test]
fn the_empty_history_is_linearizable() {
    assert_linearizable(&[]);
    assert!(check(&[]).is_empty());
}

#[test]
fn a_stale_read_after_an_acknowledged_write_is_rejected() {
    let stale = get(3, Some("a"), 50, 60);
    let history = [
        put(1, "a", 0, 10),
        put(2, "b", 20, 30),
        get(1, Some("b"), 35, 40),
        stale.clone(),
    ];
    let explanation = assert_rejected(&history);
    assert!(
        explanation.contains(&stale.to_string()),
        "the explanation should name the stale read:\n{explanation}"
    );
    assert!(
        explanation.contains(&history[0].to_string()),
        "{explanation}"
    );
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    for seen in ["a", "b"] {
        assert_linearizable(&[
            put(1, "a", 0, 10),
            put(2, "b", 20, 40),
            get(3, Some(seen), 25, 30),
        ]);
    }
}

#[test]
fn once_a_read_saw_the_new_value_a_later_read_may_not_see_the_old_one() {
    // Both reads overlap the write of "b", but the second starts after the
    // first returned "b": the write has taken effect by then.
    let explanation = assert_rejected(&[
        put(1, "a", 0, 10),
        put(2, "b", 20, 100),
        get(3, Some("b"), 30, 40),
        get(4, Some("a"), 50, 60),
    ]);
    assert!(explanation.contains("[client 4]"), "{explanation}");
}

#[test]
fn concurrent_overlapping_writes_may_take_effect_in_either_order() {
    for (last, first) in [("a", "b"), ("b", "a")] {
        assert_linearizable(&[
            put(1, "a", 0, 50),
            put(2, "b", 10, 60),
            get(3, Some(last), 70, 80),
            get(1, Some(last), 90, 100),
        ]);
        // Seeing the other value later still is not allowed.
        assert_rejected(&[
            put(1, "a", 0, 50),
            put(2, "b", 10, 60),
            get(3, Some(last), 70, 80),
            get(1, Some(first), 90, 100),
        ]);
    }
}

#[test]
fn delete_answers_must_match_whether_the_key_existed() {
    assert_linearizable(&[
        delete(1, false, 0, 10),
        put(1, "a", 20, 30),
        delete(2, true, 40, 50),
        get(1, None, 60, 70),
        delete(2, false, 80, 90),
    ]);
    // 200 for a key that never existed.
    assert_rejected(&[delete(1, true, 0, 10)]);
    // 404 for a key that was written and not deleted.
    assert_rejected(&[put(1, "a", 0, 10), delete(2, false, 20, 30)]);
    // The value is still visible after an acknowledged delete.
    assert_rejected(&[
        put(1, "a", 0, 10),
        delete(2, true, 20, 30),
        get(1, Some("a"), 40, 50),
    ]);
    // Two deletes racing: only one of them can have found the key.
    assert_linearizable(&[
        put(1, "a", 0, 10),
        delete(2, true, 20, 40),
        delete(3, false, 25, 35),
    ]);
    assert_rejected(&[
        put(1, "a", 0, 10),
        delete(2, true, 20, 40),
        delete(3, true, 25, 35),
    ]);
}

#[test]
fn a_write_of_unknown_outcome_may_or_may_not_have_happened() {
    // Seen later, or never seen: both are fine.
    assert_linearizable(&[
        put(1, "a", 0, 10),
        put_unknown(2, "b", 20),
        get(3, Some("a"), 30, 40),
        get(3, Some("b"), 1_000, 1_010),
    ]);
    assert_linearizable(&[put_unknown(2, "b", 20), get(3, None, 30, 40)]);
    // It may even take effect long after every other operation ended.
    assert_linearizable(&[
        put_unknown(2, "b", 0),
        put(1, "a", 100, 110),
        get(3, Some("b"), 200, 210),
    ]);
    // But it takes effect at most once, and never before it was sent.
    assert_rejected(&[
        put_unknown(2, "b", 0),
        get(3, Some("b"), 10, 20),
        get(3, None, 30, 40),
    ]);
    assert_rejected(&[put_unknown(2, "b", 50), get(3, Some("b"), 10, 20)]);
}

#[test]
fn a_delete_of_unknown_outcome_may_or_may_not_have_happened() {
    let lost_delete = op(2, Call::Delete, Outcome::Unknown, 20, 20);
    assert_linearizable(&[
        put(1, "a", 0, 10),
        lost_delete.clone(),
        get(3, Some("a"), 30, 40),
        get(3, None, 50, 60),
    ]);
    assert_rejected(&[
        put(1, "a", 0, 10),
        lost_delete,
        get(3, None, 30, 40),
        get(3, Some("a"), 50, 60),
    ]);
}

#[test]
fn a_failed_read_constrains_nothing() {
    assert_linearizable(&[
        put(1, "a", 0, 10),
        op(2, Call::Get, Outcome::Unknown, 20, 30),
        get(3, Some("a"), 40, 50),
    ]);
}

#[test]
fn a_read_of_a_value_never_written_is_rejected() {
    let explanation = assert_rejected(&[put(1, "a", 0, 10), get(2, Some("zzz"), 20, 30)]);
    assert!(explanation.contains("no PUT"), "{explanation}");
}

#[test]
fn keys_are_checked_independently() {
    let mut history = vec![put(1, "a", 0, 10), get(2, Some("a"), 20, 30)];
    let mut other = vec![
        put(1, "x", 0, 10),
        put(1, "y", 20, 30),
        get(2, Some("x"), 40, 50),
    ];
    for op in &mut other {
        op.key = "other".to_string();
    }
    history.append(&mut other);
    let violations = check(&history);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].key, "other");
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Simulates `clients` clients each running `per_client` operations against
/// one atomic register: every operation takes effect at a random instant
/// inside its interval. A few writes lose their answer (Unknown).
fn atomic_register_history(seed: u64, clients: usize, per_client: usize) -> Vec<Operation> {
    let mut rng = Rng(seed);
    // (effect instant, operation index) of the operations that took effect.
    let mut history = Vec::new();
    let mut effects = Vec::new();
    let mut lost_answers = Vec::new();
    for client in 0..clients {
        let mut now = rng.below(1_000);
        for n in 0..per_client {
            let invoked = now;
            let returned = invoked + 1 + rng.below(2_000);
            let at = invoked + rng.below(returned - invoked + 1);
            let call = match rng.below(10) {
                0..=4 => Call::Get,
                5..=8 => Call::Put(format!("c{client}-{n}")),
                _ => Call::Delete,
            };
            // A write whose answer is lost took effect half of the time.
            let lost = call != Call::Get && rng.below(100) < 3;
            if !lost || rng.below(2) == 0 {
                effects.push((at, history.len()));
            }
            lost_answers.push(lost);
            history.push(op(client, call, Outcome::Unknown, invoked, returned));
            now = returned + rng.below(1_000);
        }
    }
    // Replay the effects in order to learn each operation's answer.
    effects.sort();
    let mut register: Option<String> = None;
    for (_, index) in effects {
        let entry = &mut history[index];
        entry.outcome = match &entry.call {
            Call::Get => Outcome::Read(register.clone()),
            Call::Put(value) => {
                register = Some(value.clone());
                Outcome::Written
            }
            Call::Delete => Outcome::Deleted(register.take().is_some()),
        };
    }
    for (entry, lost) in history.iter_mut().zip(lost_answers) {
        if lost {
            entry.outcome = Outcome::Unknown;
        }
    }
    history
}

/// Picks a read that returned a value and gives it a value that was
/// overwritten by an acknowledged write before the read was invoked.
fn corrupt_one_read(history: &mut [Operation]) -> Operation {
    let acknowledged = |op: &Operation| op.call != Call::Get && op.outcome != Outcome::Unknown;
    let mut reads: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].outcome, Outcome::Read(Some(_))))
        .collect();
    reads.sort_by_key(|&i| history[i].invoked);
    for &r in reads.iter().skip(reads.len() / 2) {
        let read = history[r].clone();
        let stale = history.iter().find_map(|old| {
            let Call::Put(value) = &old.call else {
                return None;
            };
            let overwritten = history.iter().any(|later| {
                acknowledged(later)
                    && acknowledged(old)
                    && old.returned < later.invoked
                    && later.returned < read.invoked
            });
            (overwritten && read.outcome != Outcome::Read(Some(value.clone())))
                .then(|| value.clone())
        });
        if let Some(value) = stale {
            history[r].outcome = Outcome::Read(Some(value));
            return history[r].clone();
        }
    }
    panic!("the generated history has no read to corrupt");
}

#[test]
fn a_large_random_valid_history_passes_quickly_and_one_stale_read_breaks_it() {
    for seed in [1, 2, 3] {
        let mut history = atomic_register_history(0x9E37_79B9_7F4A_7C15 ^ seed, 6, 250);
        let started = Instant::now();
        assert_linearizable(&history);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "checking 1500 operations took {took:?}"
        );

        let corrupted = corrupt_one_read(&mut history);
        let explanation = assert_rejected(&history);
        assert!(
            explanation.contains(&corrupted.to_string()),
            "the explanation should end at the corrupted read {corrupted}:\n{explanation}"
        );
    }
}
