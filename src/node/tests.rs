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

use super::fake::{Hop, Tree};
use crate::wire::Join;

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
