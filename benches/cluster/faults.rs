//! Faults inside the tree (section `faults`): what a frozen or dead cache
//! node costs the rest of the tree. Every cluster here is a depth-3 tree
//! with the settings of `tests/holders.rs`: ZooKeeper sessions of 2 s
//! (`--zk-session-timeout 2s`), a hop timeout of 500 ms (`--hop-timeout
//! 500ms`, against 1 s by default) and a request budget of 8 s
//! (`--upstream-timeout 8s`), so that a write held up by a frozen node
//! waits for its session to end rather than for its client's budget.
//!
//! - A frozen holder: a key read through a leaf (so that the leaf and its
//!   parent cache it), the leaf stopped with SIGSTOP, then a write of that
//!   key at the root. It completes once the leaf's session has ended;
//!   meanwhile writers of other keys at the root go on, and their latency
//!   is compared with the same writers' just before the freeze.
//! - Reads around a middle node: GET misses (keys held only by the root,
//!   never read before) through the two children of a middle node, before
//!   and after it is killed (SIGKILL), then the same through the children
//!   of the other middle node before and after it is frozen (SIGSTOP). The
//!   first read through each child after the fault is timed on its own: a
//!   frozen parent costs it one hop timeout, after which the child skips
//!   the parent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{http, Builder, Cluster};
use crate::load::{load, load_keys_fast, small_key, small_value, timeline, Req, Stats};
use crate::report::{met, Report};
use crate::Mode;

/// The ZooKeeper session timeout of every node here.
const SESSION: Duration = Duration::from_secs(2);
/// Connections that write other keys at the root around the frozen holder.
const OTHER_WRITERS: usize = 4;
/// Connections that read through the two children of a middle node (half
/// through each).
const READERS: usize = 4;
/// Upper bound on one request of this section (a read or a write held up
/// by a fault answers well within the 8 s budget).
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// Keys at the root for the reads around a middle node (each read takes a
/// fresh one).
fn keys(mode: Mode) -> u64 {
    if mode.smoke {
        8_000
    } else {
        80_000
    }
}

pub fn run(mode: Mode, report: &mut Report) {
    report.section(
        "Faults inside the tree (latencies in ms)",
        "Faults inside the tree: figures",
    );
    frozen_holder(mode, report);
    read_around(mode, report);
}

/// A depth-3 tree with the timeouts of this section.
fn tree() -> Builder {
    Cluster::builder(3)
        .arg("--log-level")
        .arg("info")
        .arg("--zk-session-timeout")
        .arg("2s")
        .arg("--hop-timeout")
        .arg("500ms")
        .arg("--upstream-timeout")
        .arg("8s")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------- frozen holder

/// A write of a key that a frozen leaf caches, and writes of other keys
/// meanwhile.
fn frozen_holder(mode: Mode, report: &mut Report) {
    let cluster = tree().start();
    let root = cluster.url(cluster.root_id);
    let leaf_id = cluster.at_slot(3);
    let leaf = cluster.url(leaf_id);

    // The leaf and its parent cache the key.
    let held = format!("{root}/store/held");
    let (status, body) = http::put(&held, &json!(1));
    assert_eq!(status, 200, "the first write of the held key: {body}");
    let (status, body) = http::get(&format!("{leaf}/store/held"));
    assert_eq!((status, &body["value"]), (200, &json!(1)), "{body}");
    let (status, _) = http::get(&format!("{leaf}/store/held?local=true"));
    assert_eq!(status, 200, "the leaf caches the held key");

    let other = |tag: &'static str| {
        let root = root.clone();
        move |c: usize, n: u64| {
            Some(Req::put(
                format!("{root}/store/{tag}{c:02}-{n:012}"),
                &small_value(n),
            ))
        }
    };
    let before = load(OTHER_WRITERS, mode.warmup, mode.measure, other("before"));
    report.row("PUT other keys at root, no fault", &before);

    // Freeze the leaf; write the held key and, meanwhile, other keys, for
    // as long as the held write waits and at least `mode.measure`.
    cluster.freeze(leaf_id);
    let frozen = Instant::now();
    let stop = AtomicBool::new(false);
    let (held_status, held_took, during) = std::thread::scope(|s| {
        let writers = s.spawn(|| timeline(OTHER_WRITERS, frozen, &stop, other("frozen")));
        let (status, _) = http::put(&held, &json!(2));
        let took = frozen.elapsed();
        std::thread::sleep(mode.measure.saturating_sub(took));
        stop.store(true, Ordering::Relaxed);
        (status, took, writers.join().unwrap())
    });
    let window = during.iter().map(|t| t.end_us()).max().unwrap_or(0) as f64 / 1e6;
    let during = Stats::of_timed(OTHER_WRITERS, window, during.iter());
    report.row("PUT other keys at root, a leaf frozen", &during);
    drop(cluster);

    let limit = SESSION + Duration::from_secs(2);
    let max_ms = |s: &Stats| s.latencies.last().map_or(f64::NAN, |&us| us as f64 / 1e3);
    report.figure(format!(
        "frozen holder: a write at the root of a key cached by a leaf stopped with SIGSTOP \
         (and by its parent) answered {held_status} after {:.2} s (target: within the session \
         timeout + 2 s = {:.0} s, {})",
        held_took.as_secs_f64(),
        limit.as_secs_f64(),
        met(held_status == 200 && held_took <= limit)
    ));
    report.figure(format!(
        "frozen holder: meanwhile {} writes of other keys at the root by {OTHER_WRITERS} conns \
         over {window:.1} s: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} errors (just before \
         the freeze: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms); target p99 below 50 ms, {}",
        during.requests,
        during.quantile_ms(0.5),
        during.quantile_ms(0.99),
        max_ms(&during),
        during.errors,
        before.quantile_ms(0.5),
        before.quantile_ms(0.99),
        max_ms(&before),
        met(during.errors == 0 && during.quantile_ms(0.99) < 50.0)
    ));
}

// ---------------------------------------------------------------- read around

/// How a middle node is taken away.
#[derive(Clone, Copy)]
enum Fault {
    Killed,
    Frozen,
}

/// GET misses through the children of a dead and of a frozen middle node.
fn read_around(mode: Mode, report: &mut Report) {
    let mut cluster = tree().start();
    let root = cluster.url(cluster.root_id);
    let (loaded, _) = load_keys_fast(&root, 0, keys(mode), 8);
    assert_eq!(loaded, keys(mode), "every key of the reads was written");
    let fresh = AtomicU64::new(0);

    for (fault, middle_slot) in [(Fault::Killed, 1), (Fault::Frozen, 2)] {
        let middle = cluster.at_slot(middle_slot);
        let children: Vec<String> = [2 * middle_slot + 1, 2 * middle_slot + 2]
            .iter()
            .map(|&slot| cluster.url(cluster.at_slot(slot)))
            .collect();
        let misses = || {
            let (fresh, children) = (&fresh, &children);
            load(READERS, mode.warmup, mode.measure, move |c, _| {
                let i = fresh.fetch_add(1, Ordering::Relaxed);
                (i < loaded).then(|| {
                    Req::get(
                        format!("{}/store/{}", children[c % children.len()], small_key(i)),
                        200,
                    )
                })
            })
        };
        let (before, what) = match fault {
            Fault::Killed => ("the kill", "killed"),
            Fault::Frozen => ("the freeze", "frozen"),
        };

        let live = misses();
        report.row(&format!("GET miss, 2 hops, before {before}"), &live);
        match fault {
            Fault::Killed => cluster.kill(middle),
            Fault::Frozen => cluster.freeze(middle),
        }
        // The first read through each child after the fault.
        let firsts: Vec<(u16, Duration)> = children
            .iter()
            .map(|child| {
                let i = fresh.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let (status, body) =
                    http::get_within(&format!("{child}/store/{}", small_key(i)), REQUEST_LIMIT);
                let took = started.elapsed();
                let right = status == 200 && body["value"] == small_value(i).as_str();
                (if right { status } else { 0 }, took)
            })
            .collect();
        let around = misses();
        report.row(&format!("GET miss around a {what} middle node"), &around);

        let firsts_text: Vec<String> = firsts
            .iter()
            .map(|(status, took)| {
                if *status == 200 {
                    format!("{:.1} ms", ms(*took))
                } else {
                    format!("failed after {:.1} ms", ms(*took))
                }
            })
            .collect();
        let how = match fault {
            Fault::Killed => "killed (SIGKILL)",
            Fault::Frozen => "frozen (SIGSTOP)",
        };
        report.figure(format!(
            "reads around a middle node {how}: the first GET miss through each of its two \
             children took {}{}; then {READERS} conns: {:.0}/s, p50 {:.3} ms, p99 {:.3} ms, \
             {} errors, against {:.0}/s, p50 {:.3} ms, p99 {:.3} ms through the live node just \
             before ({:.2}x the throughput)",
            firsts_text.join(" and "),
            match fault {
                Fault::Killed => String::new(),
                Fault::Frozen => " (one hop timeout is 500 ms)".to_string(),
            },
            around.throughput(),
            around.quantile_ms(0.5),
            around.quantile_ms(0.99),
            around.errors,
            live.throughput(),
            live.quantile_ms(0.5),
            live.quantile_ms(0.99),
            around.throughput() / live.throughput()
        ));
    }
}
