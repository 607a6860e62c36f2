//! The root group (section `failover`): how long writes stop when the
//! primary ends, and what a standby costs a write.
//!
//! - Failover time: a fresh depth-2 tree for every run, its root with one
//!   standby in sync, ZooKeeper sessions of 2 s. [`TRICKLE_WRITERS`]
//!   clients write fresh keys through a leaf, each pausing
//!   [`TRICKLE_PAUSE`] between writes; the primary is killed with SIGKILL
//!   (or stopped with SIGTERM, which ends its session as it exits). The
//!   run's figure is the time from the signal to the end of the first
//!   write through the leaf that succeeded and started once the old
//!   primary was gone (killed and reaped, or exited), so that it cannot
//!   have been the old primary's. Also timed: when the standby first says
//!   it is the primary, and (SIGTERM) when the old primary exited. A run
//!   gives up [`GIVE_UP`] after the signal.
//! - Replication cost: the `PUT through a leaf` scenario (16 connections)
//!   on two depth-3 trees up at once, both roots with `--data-dir` and
//!   `--fsync always`: one with a standby in sync (the write is acknowledged
//!   once it is in the standby's log too), one without. The two are
//!   measured in alternating rounds (A B, B A, ...), each round on fresh
//!   keys, and compared round by round.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{http, Cluster, STANDBY};
use crate::load::{self, alternate, median, quantile_ms, small_value, Req, Stats};
use crate::report::{met, Report};
use crate::requests::{put_through_leaf_as, WRITERS};
use crate::{first_slot_at, metric, metrics, Mode};

/// Clients writing through the leaf during a failover.
const TRICKLE_WRITERS: usize = 4;
/// The pause of each of them between two writes.
const TRICKLE_PAUSE: Duration = Duration::from_millis(20);
/// How long the trickle runs before the fault.
const SETTLE: Duration = Duration::from_millis(500);
/// A run in which no write succeeds this long after the fault fails.
const GIVE_UP: Duration = Duration::from_secs(15);
/// Writes must succeed again this soon after a SIGKILL of the primary.
const KILL_TARGET: Duration = Duration::from_secs(5);
/// And this soon after a SIGTERM.
const TERM_TARGET: Duration = Duration::from_secs(1);

pub fn run(mode: Mode, report: &mut Report) {
    report.section("Root group (latencies in ms)", "Root group: figures");
    let runs = if mode.smoke { 2 } else { 10 };
    for ending in [Ending::Kill, Ending::Term] {
        failover_time(ending, runs, report);
    }
    replication_cost(mode, report);
}

// ---------------------------------------------------------------- failover time

/// How the primary ends.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// SIGKILL: its session ends a session timeout later.
    Kill,
    /// SIGTERM: it closes its session as it exits.
    Term,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Ending::Kill => "kill -9",
            Ending::Term => "SIGTERM",
        }
    }
}

/// What one failover run saw, in time since the fault.
struct Handover {
    /// The end of the first write through the leaf that started after the
    /// old primary was gone and succeeded.
    resumed: Option<Duration>,
    /// The standby first answered that it is the primary.
    promoted: Option<Duration>,
    /// The old primary exited (SIGTERM only).
    exited: Option<Duration>,
    /// The statuses of the writes that ended after the fault and failed (0:
    /// no answer), and how many of each.
    failed: BTreeMap<u16, u64>,
    /// Writes that started before the old primary was gone and succeeded
    /// after the fault (the old primary answering as it shut down, or the
    /// leaf holding a write until the new primary took it).
    across: u64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One run: a fresh tree, the trickle, the fault, and the wait for writes.
fn handover(ending: Ending) -> Handover {
    let mut cluster = Cluster::builder(2)
        .standbys(1)
        .arg("--zk-session-timeout")
        .arg("2s")
        .arg("--log-level")
        .arg("info")
        .start();
    let root = cluster.root_id;
    let leaf = cluster.url(cluster.at_slot(1));
    let standby = cluster.url(STANDBY + 1);

    let start = Instant::now();
    let us = |at: Instant| at.duration_since(start).as_micros() as u64;
    // The fault, and the moment the old primary was gone (killed and
    // reaped, or exited): only writes that start after that count as
    // writes that came back.
    let fault_us = AtomicU64::new(u64::MAX);
    let gone_us = AtomicU64::new(u64::MAX);
    let resumed_us = AtomicU64::new(u64::MAX);
    let stop = AtomicBool::new(false);
    let (leaf, fault_us, gone_us, resumed_us, stop) =
        (&leaf, &fault_us, &gone_us, &resumed_us, &stop);
    let (promoted, exited, failed, across) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..TRICKLE_WRITERS)
            .map(|c| {
                s.spawn(move || {
                    let agent = load::agent();
                    let mut failed: BTreeMap<u16, u64> = BTreeMap::new();
                    let mut across = 0;
                    for n in 0u64.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let req = Req::put(format!("{leaf}/store/t{c}-{n:08}"), &small_value(n));
                        let t0 = us(Instant::now());
                        let status = load::status(&agent, &req);
                        let t1 = us(Instant::now());
                        let (fault, gone) = (
                            fault_us.load(Ordering::SeqCst),
                            gone_us.load(Ordering::SeqCst),
                        );
                        if status != 200 {
                            if t1 >= fault {
                                *failed.entry(status).or_default() += 1;
                            }
                        } else if t0 >= gone {
                            resumed_us.fetch_min(t1, Ordering::SeqCst);
                        } else if t1 >= fault {
                            across += 1;
                        }
                        std::thread::sleep(TRICKLE_PAUSE);
                    }
                    (failed, across)
                })
            })
            .collect();

        std::thread::sleep(SETTLE);
        let fault = Instant::now();
        fault_us.store(us(fault), Ordering::SeqCst);
        match ending {
            Ending::Kill => {
                cluster.kill(root);
                gone_us.store(us(Instant::now()), Ordering::SeqCst);
            }
            Ending::Term => cluster.signal(root, 15),
        }
        let (mut promoted, mut exited) = (None, None);
        for poll in 0u64.. {
            if fault.elapsed() >= GIVE_UP {
                break;
            }
            if ending == Ending::Term
                && exited.is_none()
                && cluster.wait_exit(root, Duration::ZERO).is_some()
            {
                let now = Instant::now();
                gone_us.store(us(now), Ordering::SeqCst);
                exited = Some(now - fault);
            }
            if promoted.is_none()
                && poll % 5 == 0
                && http::get_within(&standby, Duration::from_secs(1)).1["role"] == "root"
            {
                promoted = Some(fault.elapsed());
            }
            let resumed = resumed_us.load(Ordering::SeqCst) != u64::MAX;
            if resumed && promoted.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        let mut failed: BTreeMap<u16, u64> = BTreeMap::new();
        let mut across = 0;
        for w in writers {
            let (f, a) = w.join().unwrap();
            for (status, count) in f {
                *failed.entry(status).or_default() += count;
            }
            across += a;
        }
        (promoted, exited, failed, across)
    });
    drop(cluster);

    let fault = fault_us.load(Ordering::SeqCst);
    let resumed = match resumed_us.load(Ordering::SeqCst) {
        u64::MAX => None,
        at => Some(Duration::from_micros(at - fault)),
    };
    Handover {
        // Past the bound is a failure, even if a write got through while
        // the trickle stopped.
        resumed: resumed.filter(|&d| d <= GIVE_UP),
        promoted,
        exited,
        failed,
        across,
    }
}

/// `runs` failovers of one kind, each printed; their summary as figures.
fn failover_time(ending: Ending, runs: usize, report: &mut Report) {
    let mut all = Vec::new();
    for i in 1..=runs {
        let h = handover(ending);
        let when =
            |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{:.3} s", secs(d)));
        let failed: Vec<String> = h
            .failed
            .iter()
            .map(|(status, count)| format!("{count} x {status}"))
            .collect();
        println!(
            "{} of the primary, run {i}/{runs}: a write through the leaf succeeded after {}, \
             the standby said it was the primary after {}{}; writes that failed meanwhile: {}; \
             acknowledged across the fault: {}",
            ending.name(),
            when(h.resumed),
            when(h.promoted),
            match ending {
                Ending::Kill => String::new(),
                Ending::Term => format!(", the old primary exited after {}", when(h.exited)),
            },
            if failed.is_empty() {
                "none".to_string()
            } else {
                failed.join(", ")
            },
            h.across
        );
        all.push(h);
    }

    let sorted_ms = |of: &dyn Fn(&Handover) -> Option<Duration>| -> Vec<u32> {
        let mut v: Vec<u32> = all
            .iter()
            .filter_map(of)
            .map(|d| d.as_micros() as u32)
            .collect();
        v.sort_unstable();
        v
    };
    let describe = |v: &[u32]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            format!(
                "p50 {:.3} s, max {:.3} s",
                quantile_ms(v, 0.5) / 1e3,
                *v.last().unwrap() as f64 / 1e6
            )
        }
    };
    let resumed = sorted_ms(&|h| h.resumed);
    let promoted = sorted_ms(&|h| h.promoted);
    let exited = sorted_ms(&|h| h.exited);
    let gave_up = runs - resumed.len();
    let target = match ending {
        Ending::Kill => KILL_TARGET,
        Ending::Term => TERM_TARGET,
    };
    let within = resumed
        .iter()
        .filter(|&&us| us as u128 <= target.as_micros())
        .count();
    let mut failed: BTreeMap<u16, u64> = BTreeMap::new();
    for h in &all {
        for (status, count) in &h.failed {
            *failed.entry(*status).or_default() += count;
        }
    }
    let failed: Vec<String> = failed
        .iter()
        .map(|(status, count)| format!("{count} x {status}"))
        .collect();
    let across: u64 = all.iter().map(|h| h.across).sum();
    report.figure(format!(
        "failover after {} of the primary (depth-2 tree, 1 standby, 2 s sessions, \
         {TRICKLE_WRITERS} clients writing through a leaf every {} ms), {runs} runs: writes \
         through the leaf again after {}; the standby primary after {}{}; {gave_up} run(s) \
         without a write within {} s; writes that failed in all runs: {} (0: no answer), \
         acknowledged across the fault (started before the old primary was gone): {across}; \
         target: writes again within {:.0} s in every run, {} ({within} of {runs} runs)",
        ending.name(),
        TRICKLE_PAUSE.as_millis(),
        describe(&resumed),
        describe(&promoted),
        match ending {
            Ending::Kill => String::new(),
            Ending::Term => format!("; the old primary exited after {}", describe(&exited)),
        },
        GIVE_UP.as_secs(),
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join(", ")
        },
        secs(target),
        met(within == runs)
    ));
}

// ---------------------------------------------------------------- replication cost

/// PUT through a leaf of a durable root with and without a standby.
fn replication_cost(mode: Mode, report: &mut Report) {
    let tree = || {
        Cluster::builder(3)
            .arg("--fsync")
            .arg("always")
            .arg("--log-level")
            .arg("info")
    };
    let alone = tree().root_data_dir().start();
    let paired = tree().standbys(1).start();
    let leaf_of = |c: &Cluster| c.url(c.at_slot(first_slot_at(3)));
    let (alone_leaf, paired_leaf) = (leaf_of(&alone), leaf_of(&paired));
    let rounds = if mode.smoke { 1 } else { 4 };
    // How many syncs the two logs of the paired tree made for its writes.
    let logs = |c: &Cluster| -> Vec<f64> {
        let (primary, standby) = (metrics(&c.url(c.root_id)), metrics(&c.url(STANDBY + 1)));
        vec![
            metric(&primary, "treecache_store_keys"),
            metric(&primary, "treecache_wal_fsync_seconds_count"),
            metric(&standby, "treecache_wal_fsync_seconds_count"),
        ]
    };
    let logs_before = logs(&paired);
    let (without, with) = alternate(
        rounds,
        |r| put_through_leaf_as(&alone_leaf, mode, &format!("a{r}-")),
        |r| put_through_leaf_as(&paired_leaf, mode, &format!("p{r}-")),
    );
    let logs_after = logs(&paired);
    let gain = |i: usize| logs_after[i] - logs_before[i];
    let (writes, primary_syncs, standby_syncs) = (gain(0), gain(1), gain(2));
    // The standby stayed in sync through the loads (else the writes went
    // on without it).
    let doc = paired.nodes_document();
    let in_sync = doc["root_group"].as_array().is_some_and(|g| {
        g.iter()
            .any(|m| m["role"] == "standby" && m["in_sync"] == true)
    });
    drop(paired);
    drop(alone);

    let (without_all, with_all) = (Stats::pooled(&without), Stats::pooled(&with));
    report.row("PUT via leaf, durable root alone", &without_all);
    report.row("PUT via leaf, root + in-sync standby", &with_all);
    let ratios: Vec<f64> = with
        .iter()
        .zip(&without)
        .map(|(w, a)| w.throughput() / a.throughput())
        .collect();
    let per_round: Vec<String> = with
        .iter()
        .zip(&without)
        .map(|(w, a)| format!("{:.0}/{:.0}", w.throughput(), a.throughput()))
        .collect();
    let ratio = median(&ratios);
    report.figure(format!(
        "replication: PUT through a leaf ({WRITERS} conns), depth-3 trees, roots with \
         --data-dir and --fsync always, {rounds} alternating round(s) of {:.1} s each: with \
         a standby in sync {:.0}/s (p50 {:.3} ms, p99 {:.3} ms), without {:.0}/s (p50 {:.3} \
         ms, p99 {:.3} ms); with/without per round {} = {}, median {ratio:.2}x; the standby \
         {} in sync after the loads; with the standby, {writes:.0} writes took {primary_syncs:.0} \
         syncs at the primary ({:.2} writes per sync) and {standby_syncs:.0} at the standby \
         ({:.2}); target at least 0.5x, {}",
        secs(mode.measure),
        with_all.throughput(),
        with_all.quantile_ms(0.5),
        with_all.quantile_ms(0.99),
        without_all.throughput(),
        without_all.quantile_ms(0.5),
        without_all.quantile_ms(0.99),
        per_round.join(", "),
        ratios
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(", "),
        if in_sync { "was still" } else { "was NOT" },
        writes / primary_syncs.max(1.0),
        writes / standby_syncs.max(1.0),
        met(in_sync && ratio >= 0.5)
    ));
}
