//! The nemesis: random reads and writes of a few keys through random nodes,
//! while nodes are frozen (SIGSTOP, sometimes past their session timeout),
//! killed and started again. Every key's history must be linearizable,
//! through the faults and after them.
//!
//! - in a tree of one root group, the victims are the non-root nodes;
//! - in a tree over 3 root shards (each a primary and one standby), they
//!   are the shards' primaries, whichever member leads at the time (shard
//!   0's included), and the root's children. A primary killed while its
//!   standby is not in sync leaves its shard's writes unavailable for a
//!   while: those count as operations of unknown outcome, never as wrong.
//!
//! Seeded and bounded: each test has a fixed seed, printed; `NEMESIS_SEED=<n>`
//! runs another (or replays one), `NEMESIS_SECONDS` sets a run's length (20 s
//! by default).

use treecache_harness as common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::linearizability::{Call, Clock, Operation, Outcome};
use common::shards::{keys_of_shard, shard_of};
use common::traffic::{assert_linearizable, value_text, Rng, Tally, Traffic};
use common::{http, wait_until, Cluster};

const SEED_VAR: &str = "NEMESIS_SEED";
/// The seeds of the runs when `NEMESIS_SEED` is not set.
const SEED: u64 = 13;
const SHARDS_SEED: u64 = 167;

/// One cluster of these tests at a time: two at once on a machine of two
/// cores starve their sessions of 2 s.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn seconds() -> u64 {
    std::env::var("NEMESIS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// What the nemesis did, for the log.
#[derive(Debug, Default)]
struct Faults {
    freezes: usize,
    long_freezes: usize,
    kills: usize,
    /// Faults by victim (in the sharded run: "shard 1's primary", ...).
    on: BTreeMap<String, usize>,
}

fn ms(rng: &mut Rng, from: u64, to: u64) -> Duration {
    Duration::from_millis(from + rng.below(to - from))
}

/// Kills process `victim` and starts it again a moment later (its port and
/// data directory kept), or freezes it for a while, sometimes longer than
/// the 2 s session; it runs again when this returns.
fn strike(cluster: &mut Cluster, rng: &mut Rng, victim: u32, name: &str, faults: &mut Faults) {
    *faults.on.entry(name.to_string()).or_default() += 1;
    if rng.below(3) == 0 {
        eprintln!("nemesis: kill {name}");
        cluster.kill(victim);
        std::thread::sleep(ms(rng, 200, 2000));
        cluster.spawn(victim);
        faults.kills += 1;
    } else {
        let frozen = ms(rng, 300, 3500);
        eprintln!("nemesis: freeze {name} for {frozen:?}");
        cluster.freeze(victim);
        std::thread::sleep(frozen);
        cluster.thaw(victim);
        faults.freezes += 1;
        if frozen > Duration::from_secs(2) {
            faults.long_freezes += 1;
        }
    }
}

/// Freezes, kills and restarts random non-root nodes, one at a time, until
/// `stop_at`; leaves every node running.
fn nemesis(cluster: &mut Cluster, mut rng: Rng, stop_at: Instant) -> Faults {
    let victims: Vec<u32> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != cluster.root_id)
        .collect();
    let mut faults = Faults::default();
    while Instant::now() + Duration::from_secs(4) < stop_at {
        std::thread::sleep(ms(&mut rng, 300, 1200));
        let victim = rng.pick(&victims);
        strike(
            cluster,
            &mut rng,
            victim,
            &format!("NODE-{victim}"),
            &mut faults,
        );
    }
    faults
}

/// Once the faults are over: every key read at each of `processes`, one
/// after the other, into the history (a cache left stale shows here).
fn final_reads(
    cluster: &Cluster,
    processes: &[u32],
    keys: &[String],
    clock: Clock,
) -> Vec<Operation> {
    let mut history = Vec::new();
    for &id in processes {
        for key in keys {
            let invoked = clock.now();
            let (status, body) = http::get(&format!("{}/store/{key}", cluster.url(id)));
            let returned = clock.now();
            let outcome = match status {
                200 => Outcome::Read(Some(value_text(&body["value"]))),
                404 => Outcome::Read(None),
                other => panic!("the final read of {key} at process {id} got {other}: {body}"),
            };
            history.push(Operation {
                key: key.clone(),
                client: usize::MAX,
                node: Some(id),
                call: Call::Get,
                outcome,
                invoked,
                returned,
            });
        }
    }
    history
}

/// The clients of a nemesis run: six, reading and writing `keys`.
fn traffic(keys: Vec<String>) -> Traffic {
    Traffic {
        keys,
        clients: 6,
        ops_per_client: 1_000_000,
        timeout: Duration::from_secs(7),
        pause_after_failure: Duration::from_millis(50),
        verbose: false,
        ..Traffic::default()
    }
}

/// Runs `traffic` against `urls` for `run_for` while `strike` (given when
/// to stop) does its faults: the history, and what `strike` reports.
fn under_faults<F>(
    traffic: &Traffic,
    urls: &[(u32, String)],
    seed: u64,
    clock: Clock,
    run_for: Duration,
    strike: impl FnOnce(Instant) -> F,
) -> (Vec<Operation>, F) {
    let stop_at = Instant::now() + run_for;
    std::thread::scope(|s| {
        let clients = s.spawn(|| traffic.run(urls, seed, clock, stop_at));
        let faults = strike(stop_at);
        (clients.join().unwrap(), faults)
    })
}

#[test]
fn random_traffic_stays_linearizable_while_nodes_freeze_die_and_come_back() {
    let _alone = alone();
    let mut cluster = Cluster::builder(3)
        .arg("--zk-session-timeout")
        .arg("2s")
        .arg("--hop-timeout")
        .arg("500ms")
        .env("UPSTREAM_TIMEOUT", "5")
        .start();
    let urls: Vec<(u32, String)> = cluster
        .ids()
        .iter()
        .map(|&id| (id, cluster.url(id)))
        .collect();
    let seed = Rng::fixed("nemesis", SEED_VAR, SEED).0;
    let traffic = traffic((0..4).map(|i| format!("nemesis-{i}")).collect());
    let (clock, run_for) = (Clock::start(), Duration::from_secs(seconds()));
    let (mut history, faults) = under_faults(&traffic, &urls, seed, clock, run_for, |stop_at| {
        nemesis(&mut cluster, Rng::stream(seed, 99), stop_at)
    });
    let ids = cluster.ids();
    cluster.wait_joined(&ids);
    for &id in &ids {
        wait_until(Duration::from_secs(15), "every node is ready", || {
            http::get(&format!("{}/ready", cluster.url(id))).0 == 200
        });
    }
    history.extend(final_reads(&cluster, &ids, &traffic.keys, clock));
    let tally = Tally::of(&history);
    eprintln!(
        "nemesis over {run_for:?}: {faults:?}; {} operations answered, {} of unknown outcome: {tally:?}",
        tally.answered(),
        tally.unknown
    );
    assert_linearizable(&history, seed, SEED_VAR);
    assert!(
        faults.freezes + faults.kills >= 5,
        "too few faults: {faults:?}"
    );
    assert!(tally.puts >= 100, "too few acknowledged PUTs: {tally:?}");
    assert!(
        tally.reads_of_values >= 100,
        "too few reads of values: {tally:?}"
    );
}

/// The root shards of the sharded run.
const K: u32 = 3;

/// Freezes, kills and restarts, one at a time until `stop_at`, the
/// primary of a random shard (the member that says it leads now) or a
/// child of the root; leaves every process running.
fn shard_nemesis(cluster: &mut Cluster, mut rng: Rng, stop_at: Instant) -> Faults {
    let children = [2, 3];
    let mut faults = Faults::default();
    while Instant::now() + Duration::from_secs(4) < stop_at {
        std::thread::sleep(ms(&mut rng, 300, 1200));
        let target = rng.below(u64::from(K) + 1) as u32;
        if target == K {
            let child = rng.pick(&children);
            let name = format!("NODE-{child}");
            strike(cluster, &mut rng, child, &name, &mut faults);
            continue;
        }
        // Right after a failover the shard may have no primary for a
        // moment (or none at all, while its standby catches up).
        let mut primary = None;
        let until = Instant::now() + Duration::from_secs(3);
        while primary.is_none() && Instant::now() < until {
            primary = cluster.shard_primary(target);
            if primary.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let Some(primary) = primary else {
            eprintln!("nemesis: shard {target} has no primary now; no fault this time");
            *faults.on.entry("none".into()).or_default() += 1;
            continue;
        };
        eprintln!("nemesis: shard {target}'s primary is process {primary}");
        let name = format!("shard {target}'s primary");
        strike(cluster, &mut rng, primary, &name, &mut faults);
    }
    faults
}

#[test]
fn random_traffic_over_root_shards_stays_linearizable_while_primaries_freeze_die_and_come_back() {
    let _alone = alone();
    // A root and its two children; 3 shards of a primary and a standby.
    let mut cluster = Cluster::builder(2)
        .root_shards(K)
        .standbys(1)
        .arg("--zk-session-timeout")
        .arg("2s")
        .arg("--hop-timeout")
        .arg("500ms")
        .env("UPSTREAM_TIMEOUT", "5")
        .start();
    let processes = cluster.everyone();
    let urls: Vec<(u32, String)> = processes
        .iter()
        .map(|&key| (key, cluster.url(key)))
        .collect();
    let seed = Rng::fixed("sharded nemesis", SEED_VAR, SHARDS_SEED).0;
    let keys = (0..K).flat_map(|s| keys_of_shard("nemesis", s, K, 2));
    let traffic = traffic(keys.collect());
    let (clock, run_for) = (Clock::start(), Duration::from_secs(seconds()));
    let (mut history, faults) = under_faults(&traffic, &urls, seed, clock, run_for, |stop_at| {
        shard_nemesis(&mut cluster, Rng::stream(seed, 99), stop_at)
    });
    // The root may be shard 0's standby now, which is never "ready": the
    // root's children are, and every shard has its primary and standby.
    let children: Vec<u32> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != cluster.root_id)
        .collect();
    cluster.wait_joined(&children);
    for s in 0..K {
        cluster.wait_shard_in_sync(s, 1);
    }
    history.extend(final_reads(&cluster, &processes, &traffic.keys, clock));
    let tally = Tally::of(&history);
    eprintln!(
        "sharded nemesis over {run_for:?}: {faults:?}; {} operations answered, {} of unknown outcome: {tally:?}",
        tally.answered(),
        tally.unknown
    );
    // Acknowledged PUTs and reads of values, by shard.
    let mut per_shard = [(0usize, 0usize); K as usize];
    for op in &history {
        let counts = &mut per_shard[shard_of(&op.key, K) as usize];
        match op.outcome {
            Outcome::Written => counts.0 += 1,
            Outcome::Read(Some(_)) => counts.1 += 1,
            _ => {}
        }
    }
    eprintln!("acknowledged PUTs and reads of values by shard: {per_shard:?}");
    assert_linearizable(&history, seed, SEED_VAR);
    let on_primaries: usize = faults
        .on
        .iter()
        .filter(|(name, _)| name.starts_with("shard"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        faults.freezes + faults.kills >= 5 && on_primaries >= 3,
        "too few faults: {faults:?}"
    );
    for (s, &(puts, reads)) in per_shard.iter().enumerate() {
        assert!(
            puts >= 20 && reads >= 20,
            "shard {s}: too few acknowledged PUTs ({puts}) or reads of values ({reads})"
        );
    }
}
