//! A shard's primary killed under load: a tree of depth 2 (NODE-1 the root,
//! NODE-2 and NODE-3 its leaves) over 3 root shards, each a primary and one
//! standby. Writers keep writing keys of every shard through the leaves for
//! about 10 s; shard 1's primary is killed (SIGKILL) at about 3 s.
//!
//! - shard 1's standby takes over: writes of shard 1 are acknowledged again
//!   within [`FAILOVER_BOUND`] of the kill;
//! - the other shards never notice: no write of shards 0 and 2 fails, and
//!   none waits long, since no more than [`LONGEST_GAP`] passes between two
//!   acknowledgements of each of them, from the first write to the last;
//! - every key then reads, at both leaves, as its writer's last
//!   acknowledged value or a later one it sent.
//!
//! The figures are printed: writes by shard, the longest gaps, the time to
//! fail over.

use treecache_harness as common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::http::{self, enc};
use common::shards::keys_of_shard;
use common::traffic::send;
use common::{shard_member, Cluster};
use serde_json::json;

/// The shards of the cluster.
const K: u32 = 3;
/// The shard whose primary is killed.
const VICTIM: u32 = 1;
/// How long the writers write (longer when the failover takes longer).
const RUN: Duration = Duration::from_secs(10);
/// When the victim's primary is killed, from the first write.
const KILL_AT: Duration = Duration::from_secs(3);
/// By when, from the kill, a write of the victim's shard must succeed again.
const FAILOVER_BOUND: Duration = Duration::from_secs(15);
/// The longest the other shards may go without an acknowledged write.
const LONGEST_GAP: Duration = Duration::from_secs(1);
/// Bound on one write: those of the victim's shard hang while it has no
/// primary.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// One write: by which writer, its number (the value written), and how it
/// ended (`status` 0: no answer).
#[derive(Clone, Debug)]
struct Write {
    shard: u32,
    writer: usize,
    n: u64,
    sent: Instant,
    answered: Instant,
    status: u16,
}

/// Writes `key` through the node at `base` again and again, values 0, 1,
/// 2, ..., until `stop`; the first acknowledgement of the victim's shard
/// sent after the kill goes into `recovered`.
fn writer(
    writer: usize,
    shard: u32,
    base: &str,
    key: &str,
    stop: &AtomicBool,
    killed: &OnceLock<Instant>,
    recovered: &OnceLock<Instant>,
) -> Vec<Write> {
    let agent = http::builder().timeout(WRITE_TIMEOUT).build();
    let url = format!("{base}/store/{}", enc(key));
    let mut writes = Vec::new();
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let sent = Instant::now();
        let answer = send(agent.put(&url), Some(json!({ "value": n })));
        let answered = Instant::now();
        let status = answer.map_or(0, |(status, _)| status);
        if status == 200 && shard == VICTIM && killed.get().is_some_and(|&k| sent >= k) {
            let _ = recovered.set(answered);
        }
        writes.push(Write {
            shard,
            writer,
            n,
            sent,
            answered,
            status,
        });
        // Under load, but leaving the two cores some air.
        let pause = if status == 200 { 2 } else { 50 };
        std::thread::sleep(Duration::from_millis(pause));
    }
    writes
}

/// The longest time between `from`, the acknowledgements of `shard`'s
/// writes, and `to`; and when it began.
fn longest_gap(writes: &[Write], shard: u32, from: Instant, to: Instant) -> (Duration, Duration) {
    let mut acks: Vec<Instant> = writes
        .iter()
        .filter(|w| w.shard == shard && w.status == 200)
        .map(|w| w.answered)
        .collect();
    acks.sort();
    let mut points = vec![from];
    points.extend(acks);
    points.push(to);
    points
        .windows(2)
        .map(|w| (w[1].saturating_duration_since(w[0]), w[0] - from))
        .max()
        .unwrap_or_default()
}

#[test]
fn a_shard_primary_killed_under_load_fails_over_while_the_other_shards_keep_acknowledging() {
    // Sessions of 2 s: the killed primary's ends soon.
    let mut cluster = Cluster::builder(2)
        .root_shards(K)
        .standbys(1)
        .arg("--zk-session-timeout")
        .arg("2s")
        .start();
    let (old, standby) = (shard_member(VICTIM, 0), shard_member(VICTIM, 1));
    assert_eq!(cluster.shard_primary(VICTIM), Some(old));
    let leaves = [cluster.at_slot(1), cluster.at_slot(2)];
    // Two writers per shard, one through each leaf, each of a key of its own.
    let writers: Vec<(u32, String, String)> = (0..K)
        .flat_map(|s| {
            let keys = keys_of_shard("under-load", s, K, leaves.len());
            leaves
                .iter()
                .zip(keys)
                .map(|(&leaf, key)| (s, cluster.url(leaf), key))
                .collect::<Vec<_>>()
        })
        .collect();
    let stop = AtomicBool::new(false);
    let killed: OnceLock<Instant> = OnceLock::new();
    let recovered: OnceLock<Instant> = OnceLock::new();
    let writes: Mutex<Vec<Write>> = Mutex::new(Vec::new());
    let begin = Instant::now();
    let end = std::thread::scope(|s| {
        for (i, (shard, base, key)) in writers.iter().enumerate() {
            let (stop, killed, recovered, writes) = (&stop, &killed, &recovered, &writes);
            s.spawn(move || {
                let mine = writer(i, *shard, base, key, stop, killed, recovered);
                writes.lock().unwrap().extend(mine);
            });
        }
        std::thread::sleep(KILL_AT);
        eprintln!("killing shard {VICTIM}'s primary (process {old})");
        cluster.kill(old);
        let kill = Instant::now();
        killed.set(kill).unwrap();
        // Until the run is over, and the shard has failed over (or
        // could not in time), and the others have been written a while
        // after that.
        loop {
            let now = Instant::now();
            let settled = match recovered.get() {
                Some(&at) => now >= at + Duration::from_secs(2),
                None => now >= kill + FAILOVER_BOUND,
            };
            if now >= begin + RUN && settled {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        Instant::now()
    });
    let kill = *killed.get().unwrap();
    let writes = writes.into_inner().unwrap();

    // The figures.
    for s in 0..K {
        let of_s: Vec<&Write> = writes.iter().filter(|w| w.shard == s).collect();
        let acked = of_s.iter().filter(|w| w.status == 200).count();
        let (gap, at) = longest_gap(&writes, s, begin, end);
        eprintln!(
            "shard {s}: {} writes, {acked} acknowledged, {} failed; longest gap between acknowledgements {gap:?} (from {at:?} into the run)",
            of_s.len(),
            of_s.len() - acked,
        );
    }
    let failover = recovered.get().map(|&at| at - kill);
    eprintln!(
        "shard {VICTIM}'s primary killed {:?} into the run; a write of shard {VICTIM} acknowledged again {failover:?} later; run of {:?}",
        kill - begin,
        end - begin
    );

    // Shard 1 failed over to its standby in time.
    let failover = failover.unwrap_or_else(|| {
        panic!("no write of shard {VICTIM} was acknowledged within {FAILOVER_BOUND:?} of the kill")
    });
    assert!(failover <= FAILOVER_BOUND, "{failover:?}");
    assert_eq!(
        cluster.shard_primary(VICTIM),
        Some(standby),
        "shard {VICTIM}'s standby took over"
    );
    assert!(
        writes
            .iter()
            .any(|w| w.shard == VICTIM && w.status == 200 && w.answered < kill),
        "no write of shard {VICTIM} was acknowledged before the kill"
    );
    // The other shards kept their primaries, and acknowledged every write,
    // without a long wait.
    assert_eq!(cluster.shard_primary(0), Some(cluster.root_id));
    assert_eq!(cluster.shard_primary(2), Some(shard_member(2, 0)));
    for s in (0..K).filter(|&s| s != VICTIM) {
        let failed: Vec<&Write> = writes
            .iter()
            .filter(|w| w.shard == s && w.status != 200)
            .collect();
        assert!(
            failed.is_empty(),
            "{} writes of shard {s} failed while shard {VICTIM} failed over; the first: {:?} ({:?} into the run)",
            failed.len(),
            failed[0],
            failed[0].sent - begin
        );
        let (gap, at) = longest_gap(&writes, s, begin, end);
        assert!(
            gap <= LONGEST_GAP,
            "shard {s} went {gap:?} without an acknowledged write, from {at:?} into the run (shard {VICTIM}'s primary was killed at {:?})",
            kill - begin
        );
        let acked_after = writes
            .iter()
            .filter(|w| w.shard == s && w.status == 200 && w.sent > kill + failover)
            .count();
        assert!(acked_after > 0, "no write of shard {s} after the failover");
    }
    // No acknowledged write lost: each key reads as its writer's last
    // acknowledged value, or a later one it sent (whose answer was lost).
    for (i, (s, _, key)) in writers.iter().enumerate() {
        let mine: Vec<&Write> = writes.iter().filter(|w| w.writer == i).collect();
        let acked = mine.iter().filter(|w| w.status == 200).map(|w| w.n).max();
        let sent = mine.iter().map(|w| w.n).max();
        for leaf in leaves {
            let url = format!("{}/store/{}", cluster.url(leaf), enc(key));
            let (status, body) = http::get(&url);
            assert_eq!(status, 200, "GET {key} (shard {s}) at NODE-{leaf}: {body}");
            let value = body["value"].as_u64();
            assert!(
                value >= acked && value <= sent,
                "{key} (shard {s}) reads {value:?} at NODE-{leaf}: its last acknowledged write was {acked:?}, its last {sent:?}"
            );
        }
    }
}
