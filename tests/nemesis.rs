//! The nemesis: random reads and writes of a few keys through random nodes,
//! while random non-root nodes are frozen (SIGSTOP, sometimes past their
//! session timeout), killed and started again. Every key's history must be
//! linearizable, through the faults and after them.
//!
//! Seeded and bounded: `NEMESIS_SEED=<n>` replays a run, `NEMESIS_SECONDS`
//! sets its length (20 s by default).

use treecache_harness as common;

use std::time::{Duration, Instant};

use common::linearizability::{Call, Clock, Operation, Outcome};
use common::traffic::{assert_linearizable, value_text, Rng, Tally, Traffic};
use common::{http, wait_until, Cluster};

const SEED_VAR: &str = "NEMESIS_SEED";

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
    let ms = |rng: &mut Rng, from: u64, to: u64| Duration::from_millis(from + rng.below(to - from));
    while Instant::now() + Duration::from_secs(4) < stop_at {
        std::thread::sleep(ms(&mut rng, 300, 1200));
        let victim = rng.pick(&victims);
        if rng.below(3) == 0 {
            eprintln!("nemesis: kill NODE-{victim}");
            cluster.kill(victim);
            std::thread::sleep(ms(&mut rng, 200, 2000));
            cluster.spawn(victim);
            faults.kills += 1;
        } else {
            // Sometimes longer than the 2 s session: then its session ends.
            let frozen = ms(&mut rng, 300, 3500);
            eprintln!("nemesis: freeze NODE-{victim} for {frozen:?}");
            cluster.freeze(victim);
            std::thread::sleep(frozen);
            cluster.thaw(victim);
            faults.freezes += 1;
            if frozen > Duration::from_secs(2) {
                faults.long_freezes += 1;
            }
        }
    }
    faults
}

/// Once the faults are over: every key read at every node, one after the
/// other, into the history (a cache left stale shows here).
fn final_reads(cluster: &Cluster, keys: &[String], clock: Clock) -> Vec<Operation> {
    let mut history = Vec::new();
    for id in cluster.ids() {
        for key in keys {
            let invoked = clock.now();
            let (status, body) = http::get(&format!("{}/store/{key}", cluster.url(id)));
            let returned = clock.now();
            let outcome = match status {
                200 => Outcome::Read(Some(value_text(&body["value"]))),
                404 => Outcome::Read(None),
                other => panic!("the final read of {key} at NODE-{id} got {other}: {body}"),
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

#[test]
fn random_traffic_stays_linearizable_while_nodes_freeze_die_and_come_back() {
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
    let seed = Rng::seeded("nemesis", SEED_VAR).0;
    let traffic = Traffic {
        keys: (0..4).map(|i| format!("nemesis-{i}")).collect(),
        clients: 6,
        ops_per_client: 1_000_000,
        timeout: Duration::from_secs(7),
        pause_after_failure: Duration::from_millis(50),
        verbose: false,
        ..Traffic::default()
    };
    let clock = Clock::start();
    let run_for = Duration::from_secs(seconds());
    let stop_at = Instant::now() + run_for;
    let (mut history, faults) = std::thread::scope(|s| {
        let clients = s.spawn(|| traffic.run(&urls, seed, clock, stop_at));
        let faults = nemesis(&mut cluster, Rng::stream(seed, 99), stop_at);
        (clients.join().unwrap(), faults)
    });
    let ids = cluster.ids();
    cluster.wait_joined(&ids);
    for &id in &ids {
        wait_until(Duration::from_secs(15), "every node is ready", || {
            http::get(&format!("{}/ready", cluster.url(id))).0 == 200
        });
    }
    history.extend(final_reads(&cluster, &traffic.keys, clock));
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
