//! The coherence races of a tree of caches, played in a fixed order by
//! in-process nodes (`fake`). Slots of the depth-3 tree used here:
//!
//! ```text
//!            0 NODE-1 (root)
//!        1 NODE-2        2 NODE-3
//!     3 NODE-4  4 NODE-5  5 ...  6 ...
//! ```

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::fake::{deadline, Hop, Tree};
use crate::input::Listing;
use crate::precondition::{self, Condition};
use crate::wire::{Join, KeysPage};

const BIG: u64 = 64 << 20;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn hop_fill(child: &str, key: &str) -> Hop {
    Hop::FillAnswer {
        child: child.into(),
        key: key.into(),
    }
}

#[test]
fn a_read_through_a_leaf_caches_on_its_path_and_a_write_replaces_every_copy() {
    let t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    assert_eq!(t.get(3, "k").as_deref(), Some("1"));
    assert_eq!(t.local(1, "k").as_deref(), Some("1"));
    assert_eq!(t.local(3, "k").as_deref(), Some("1"));
    assert_eq!(t.local(2, "k"), None, "only the path caches");
    t.put(4, "k", "2");
    assert_eq!(t.local(1, "k"), None);
    assert_eq!(t.local(3, "k"), None);
    assert_eq!(t.get(3, "k").as_deref(), Some("2"));
}

#[test]
fn a_fill_passed_by_an_invalidation_is_not_cached() {
    let t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    let answer = t.hold(hop_fill("NODE-2", "k"));
    std::thread::scope(|s| {
        // NODE-2's fill: the root answers 1 and records NODE-2 as a holder,
        // but the answer is held on its way back.
        let reader = s.spawn(|| t.get(1, "k"));
        answer.arrived();
        // The write's invalidation reaches NODE-2 before the old answer does.
        t.put(0, "k", "2");
        answer.release();
        // The reader started before the write ended: the old value is a
        // correct answer for it...
        assert_eq!(reader.join().unwrap().as_deref(), Some("1"));
    });
    // ...but it must not stay in NODE-2's cache for later readers.
    assert_eq!(t.local(1, "k"), None, "a fenced fill was cached");
    assert_eq!(t.get(1, "k").as_deref(), Some("2"));
}

#[test]
fn a_reader_that_joined_a_fill_answered_during_a_write_fills_again() {
    let t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    // NODE-3 holds k, so the write below waits on its invalidation.
    assert_eq!(t.get(2, "k").as_deref(), Some("1"));
    let invalidation = t.hold(Hop::Invalidate {
        child: "NODE-3".into(),
        key: "k".into(),
    });
    let answer = t.hold(hop_fill("NODE-2", "k"));
    std::thread::scope(|s| {
        let writer = s.spawn(|| t.put(0, "k", "2"));
        invalidation.arrived();
        // The write is under way at the root: NODE-2's fill is answered with
        // the old value, marked fenced, and held on its way back.
        let first = s.spawn(|| t.get(1, "k"));
        answer.arrived();
        invalidation.release();
        writer.join().unwrap();
        // The write is acknowledged. A reader that starts now joins the fill
        // still under way at NODE-2 (no invalidation passed it there: NODE-2
        // was no holder).
        let joined_before = t.nodes[1].metrics.coalesced_waits.load(Ordering::Relaxed);
        let second = s.spawn(|| t.get(1, "k"));
        wait_for("the second reader to join the fill", || {
            t.nodes[1].metrics.coalesced_waits.load(Ordering::Relaxed) > joined_before
        });
        answer.release();
        assert_eq!(first.join().unwrap().as_deref(), Some("1"));
        assert_eq!(
            second.join().unwrap().as_deref(),
            Some("2"),
            "a reader that started after the write was acknowledged got the old value"
        );
    });
}

#[test]
fn a_held_key_evicted_from_the_middle_is_still_invalidated_below() {
    // Each of the 16 shards of a 16 KiB cache holds about a dozen small entries.
    let t = Tree::new(3, 16 * 1024);
    t.put(0, "k", "1");
    for i in 0..400 {
        t.put(0, &format!("filler-{i}"), "0");
    }
    assert_eq!(t.get(3, "k").as_deref(), Some("1"));
    for i in 0..400 {
        t.get(1, &format!("filler-{i}"));
    }
    assert_eq!(t.local(1, "k"), None, "NODE-2 evicted k");
    assert_eq!(
        t.local(3, "k").as_deref(),
        Some("1"),
        "NODE-4 still holds k"
    );
    t.put(0, "k", "2");
    assert_eq!(
        t.local(3, "k"),
        None,
        "the invalidation passed the evicted entry"
    );
    assert_eq!(t.get(3, "k").as_deref(), Some("2"));
}

#[test]
fn a_parent_that_moved_is_followed_and_reported_where_it_is_now() {
    let t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    let moved = "node-2-moved.test:5000";
    t.net.move_node("node-2.test:5000", moved);
    let rejoined = t.nodes[0]
        .join(&Join {
            name: "NODE-2".into(),
            address: moved.into(),
        })
        .unwrap();
    assert_eq!(rejoined.slot, 1, "it keeps its slot");
    assert_eq!(t.get(3, "k").as_deref(), Some("1"));
    let info = t.nodes[3].info();
    assert_eq!(info.parent.as_deref(), Some("NODE-2"));
    assert_eq!(info.parent_address.as_deref(), Some(moved));
}

#[test]
fn a_write_waits_for_a_silent_holder_until_its_session_ends_then_reaches_its_children() {
    let t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    assert_eq!(
        t.get(3, "k").as_deref(),
        Some("1"),
        "NODE-2 and NODE-4 hold k"
    );
    let _silent = t.net.remove(&super::fake::address(2));
    std::thread::scope(|s| {
        let writer = s.spawn(|| t.put(0, "k", "2"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !writer.is_finished(),
            "the write did not wait for the silent holder"
        );
        t.net.end_session("NODE-2");
        writer.join().unwrap();
    });
    assert_eq!(
        t.local(3, "k"),
        None,
        "the invalidation went around NODE-2 to NODE-4"
    );
    assert_eq!(t.get(3, "k").as_deref(), Some("2"));
}

#[test]
fn a_restarted_holder_passes_an_invalidation_to_children_it_has_not_seen() {
    let mut t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    assert_eq!(
        t.get(3, "k").as_deref(),
        Some("1"),
        "NODE-2 and NODE-4 hold k"
    );
    // A new NODE-2 has joined; NODE-4 still holds what the old one served it.
    t.restart(1);
    t.put(0, "k", "2");
    assert_eq!(
        t.local(3, "k"),
        None,
        "the write was acknowledged while NODE-4 held the old value"
    );
    assert_eq!(t.get(3, "k").as_deref(), Some("2"));
}

#[test]
fn without_a_lease_a_node_answers_nothing_from_its_cache() {
    let t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    assert_eq!(t.get(1, "k").as_deref(), Some("1"));
    t.net.confirm("NODE-2", false);
    match t.nodes[1].read_now("k", true, <[u8]>::to_vec) {
        Err(e) => assert_eq!(e.status(), 503, "{e}"),
        Ok(v) => panic!("answered {v:?} from its cache without a lease"),
    }
    let fetches = || t.nodes[1].metrics.upstream_fetches.load(Ordering::Relaxed);
    let before = fetches();
    assert_eq!(t.get(1, "k").as_deref(), Some("1"));
    assert_eq!(fetches(), before + 1, "the read went upstream");
    t.net.confirm("NODE-2", true);
    assert_eq!(t.local(1, "k").as_deref(), Some("1"));
}

fn if_match(version: u64) -> Option<Condition> {
    Condition::parse(Some(&precondition::etag(version)), None)
}

fn version_at(t: &Tree, slot: usize, key: &str) -> u64 {
    t.get_found(slot, key).expect("the key exists").version
}

#[test]
fn a_copy_counts_its_time_from_when_it_asked_so_it_never_outlives_the_roots() {
    let t = Tree::new(3, BIG);
    let (status, _) = t.put_body(0, "k", r#"{"value": 1, "ttl": 0.6}"#, None);
    assert_eq!(status, 200);
    let at_root = t.local_found(0, "k").unwrap().expires.expect("it expires");
    // NODE-2's fill is answered at once, but the answer takes 200 ms to arrive.
    let answer = t.hold(hop_fill("NODE-2", "k"));
    std::thread::scope(|s| {
        let reader = s.spawn(|| t.get(1, "k"));
        answer.arrived();
        std::thread::sleep(Duration::from_millis(200));
        answer.release();
        assert_eq!(reader.join().unwrap().as_deref(), Some("1"));
    });
    let copy = t.local_found(1, "k").expect("NODE-2 cached it");
    let copy_at = copy.expires.expect("the copy expires too");
    assert!(
        copy_at <= at_root,
        "the copy outlives the root's value by {:?}",
        copy_at - at_root
    );
    // Below it, the same: NODE-4's copy expires no later than NODE-2's.
    assert_eq!(t.get(3, "k").as_deref(), Some("1"));
    assert!(t.local_found(3, "k").unwrap().expires.unwrap() <= copy_at);
    // From the root's deadline on, no node answers the key.
    std::thread::sleep(at_root.saturating_duration_since(Instant::now()));
    for slot in [1, 3] {
        assert_eq!(t.local(slot, "k"), None, "slot {slot} still holds it");
    }
    for slot in [0, 1, 3, 4] {
        assert_eq!(t.get(slot, "k"), None, "slot {slot} still answers it");
    }
}

#[test]
fn a_permanent_put_over_an_expiring_key_replaces_every_copy() {
    let t = Tree::new(3, BIG);
    t.put_body(0, "k", r#"{"value": 1, "ttl": 30}"#, None);
    assert_eq!(t.get(3, "k").as_deref(), Some("1"));
    assert!(t.local_found(3, "k").unwrap().expires.is_some());
    t.put(4, "k", "2");
    assert_eq!(t.local(3, "k"), None, "the copy was invalidated");
    let found = t.get_found(3, "k").unwrap();
    assert_eq!((found.value.as_slice(), found.expires), (&b"2"[..], None));
}

#[test]
fn a_conditional_write_through_a_leaf_is_checked_at_the_root_and_invalidates_as_any_write() {
    let t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    let v1 = version_at(&t, 3, "k");
    assert_eq!(t.local(1, "k").as_deref(), Some("1"));
    // Through NODE-5, which holds nothing: the root checks the condition.
    let (status, etag) = t.put_body(4, "k", r#"{"value": 2}"#, if_match(v1));
    assert_eq!(status, 200);
    let v2 = version_at(&t, 0, "k");
    assert_eq!(etag, Some(precondition::etag(v2)));
    assert!(v2 > v1);
    for slot in [1, 3] {
        assert_eq!(t.local(slot, "k"), None, "slot {slot} kept the old copy");
    }
    assert_eq!(t.get(3, "k").as_deref(), Some("2"));
    // The same condition again no longer holds, and changes nothing.
    assert_eq!(t.put_body(4, "k", r#"{"value": 3}"#, if_match(v1)).0, 412);
    assert_eq!(t.local(3, "k").as_deref(), Some("2"), "nothing invalidated");
    assert_eq!(version_at(&t, 3, "k"), v2);
    // If-None-Match: * creates only.
    let absent = Condition::parse(None, Some("*"));
    assert_eq!(t.put_body(3, "k", r#"{"value": 4}"#, absent.clone()).0, 412);
    assert_eq!(t.put_body(3, "new", r#"{"value": 4}"#, absent).0, 200);
    assert_eq!(t.get(6, "new").as_deref(), Some("4"));
}

#[test]
fn of_concurrent_compare_and_sets_of_one_version_exactly_one_wins() {
    let t = Tree::new(3, BIG);
    t.put(0, "counter", "0");
    for round in 0..10 {
        let v = version_at(&t, 0, "counter");
        // Every node holds it, so each write waits on invalidations.
        for slot in 3..7 {
            t.get(slot, "counter");
        }
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..7)
                .map(|slot| {
                    let t = &t;
                    s.spawn(move || {
                        let body = format!(r#"{{"value": {}}}"#, round * 10 + slot);
                        t.put_body(slot, "counter", &body, if_match(v)).0
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|&&s| s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|&s| s == 200 || s == 412),
            "{statuses:?}"
        );
    }
}

#[test]
fn mget_on_a_leaf_reads_each_key_as_a_get_would_and_caches_on_the_path() {
    let t = Tree::new(3, BIG);
    for key in ["a", "b", "c"] {
        t.put(0, key, &format!("\"{key}\""));
    }
    assert_eq!(t.get(3, "a").as_deref(), Some("\"a\""), "a hit at NODE-4");
    let keys: Vec<String> = ["a", "b", "nope", "c"].map(String::from).into();
    let mut gathered = t.nodes[3].read_many_now(keys, usize::MAX).unwrap();
    assert!(gathered.incomplete(), "b and c must be read upstream");
    t.nodes[3].read_many(&mut gathered, deadline()).unwrap();
    let values: Vec<Option<&[u8]>> = gathered.values.iter().map(|v| v.as_deref()).collect();
    assert_eq!(
        values,
        [Some(&b"\"a\""[..]), Some(b"\"b\""), None, Some(b"\"c\"")]
    );
    for key in ["b", "c"] {
        assert!(t.local(3, key).is_some(), "NODE-4 cached {key}");
        assert!(t.local(1, key).is_some(), "NODE-2 cached {key}");
    }
    // All hits now: answered from NODE-4's copy alone.
    let again = t.nodes[3]
        .read_many_now(vec!["a".into(), "c".into()], usize::MAX)
        .unwrap();
    assert!(!again.incomplete());
}

#[test]
fn keys_are_listed_from_the_root_through_any_node() {
    let t = Tree::new(2, BIG);
    for i in 0..25 {
        t.put(0, &format!("key-{i:02}"), "0");
    }
    t.put(0, "other", "0");
    let listing = Listing {
        prefix: "key-".into(),
        after: "key-09".into(),
        limit: 10,
    };
    assert!(
        t.nodes[1].keys_here(&listing, false).is_none(),
        "a cache asks the root"
    );
    let answer = t.nodes[1].keys(&listing, deadline()).unwrap();
    let page: KeysPage = serde_json::from_slice(&answer.body).unwrap();
    let expected: Vec<String> = (10..20).map(|i| format!("key-{i:02}")).collect();
    assert_eq!(page.keys, expected);
    assert_eq!(page.next.as_deref(), Some("key-19"));
    let last = t.nodes[0]
        .keys_here(
            &Listing {
                after: "key-19".into(),
                ..listing
            },
            false,
        )
        .unwrap()
        .unwrap();
    assert_eq!(last.keys.len(), 5);
    assert_eq!(last.next, None, "nothing follows");
}

#[test]
fn a_write_whose_invalidations_end_after_its_deadline_is_not_applied() {
    let t = Tree::new(3, BIG);
    t.put(0, "k", "1");
    // NODE-3 holds k: the write waits for its invalidation.
    assert_eq!(t.get(2, "k").as_deref(), Some("1"));
    let invalidation = t.hold(Hop::Invalidate {
        child: "NODE-3".into(),
        key: "k".into(),
    });
    std::thread::scope(|s| {
        let budget = crate::deadline::Deadline::after(Duration::from_millis(200));
        let t = &t;
        let writer = s.spawn(move || t.put_within(0, "k", "2", budget));
        invalidation.arrived();
        // The invalidation is done only after the write's deadline: its
        // client has been told it failed by then.
        std::thread::sleep(Duration::from_millis(300));
        invalidation.release();
        assert_eq!(writer.join().unwrap(), 504);
    });
    assert_eq!(
        t.get(0, "k").as_deref(),
        Some("1"),
        "the late write was applied"
    );
}
