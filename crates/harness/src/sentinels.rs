//! Sentinel writes: keys written once each (`sentinel-{n}` = n) during a
//! fault, through every node in turn, and read back after it. An
//! acknowledged one must be there with its value; one of unknown outcome
//! (an error or a time-out) must be there whole or not at all; a refused
//! one must not be there. Together with the final reads of the traffic's
//! keys, they show that no acknowledged write was lost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::http;
use crate::linearizability::{Call, Clock, Operation, Outcome};
use crate::traffic::value_text;

/// A sentinel key and whether its write was acknowledged (`Some(true)`),
/// refused (`Some(false)`), or has an unknown outcome (`None`).
pub type Written = (String, Option<bool>);

/// Writes sentinels through `urls` in turn until `stop_at`.
pub fn write_until(urls: &[(u32, String)], stop_at: Instant) -> Vec<Written> {
    let agent = crate::http::builder()
        .timeout(Duration::from_secs(4))
        .build();
    let mut written = Vec::new();
    for n in 0.. {
        if Instant::now() >= stop_at {
            break;
        }
        let key = format!("sentinel-{n}");
        let (_, base) = &urls[n % urls.len()];
        let answer = crate::traffic::send(
            agent.put(&format!("{base}/store/{key}")),
            Some(json!({ "value": n })),
        );
        let outcome = match answer {
            Some((200, _)) => Some(true),
            Some((400..=499, _)) => Some(false),
            _ => None,
        };
        if outcome.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        written.push((key, outcome));
    }
    written
}

/// Reads every sentinel back at `base` (a node's URL) and fails on one that
/// is not as its write's outcome allows; returns how many were
/// acknowledged, and fails when fewer than `at_least` were.
pub fn check(base: &str, written: &[Written], at_least: usize) -> usize {
    let (mut acked, mut unknown) = (0, 0);
    for (key, outcome) in written {
        let n: u64 = key.trim_start_matches("sentinel-").parse().unwrap();
        let (status, body) = http::get(&format!("{base}/store/{key}"));
        match (outcome, status) {
            (Some(true), 200) if body["value"] == json!(n) => acked += 1,
            (None, 404) => unknown += 1,
            (None, 200) if body["value"] == json!(n) => unknown += 1,
            (Some(false), 404) => {}
            _ => panic!("{key} (acknowledged: {outcome:?}) reads {status} {body} after the fault"),
        }
    }
    eprintln!("sentinels: {acked} acknowledged writes all there, {unknown} of unknown outcome");
    assert!(
        acked >= at_least,
        "too few sentinel writes were acknowledged: {acked}"
    );
    acked
}

/// Reads every key once at `base` (a node's URL, of the node `node`),
/// after the traffic, as operations for the history.
pub fn final_reads(base: &str, node: u32, keys: &[String], clock: Clock) -> Vec<Operation> {
    keys.iter()
        .map(|key| {
            let invoked = clock.now();
            let (status, body) = http::get(&format!("{base}/store/{}", http::enc(key)));
            let returned = clock.now();
            let outcome = match status {
                200 => Outcome::Read(Some(value_text(&body["value"]))),
                404 => Outcome::Read(None),
                other => panic!("the final read of {key} got {other}: {body}"),
            };
            Operation {
                key: key.clone(),
                client: usize::MAX,
                node: Some(node),
                call: Call::Get,
                outcome,
                invoked,
                returned,
            }
        })
        .collect()
}

/// Random traffic and sentinel writes through `urls` for `run_for`, while
/// `fault` runs in the foreground; then every key read once at the primary
/// (the root, or the primary of the root group after a failover), the
/// history checked for linearizability, and the sentinels checked. `what`
/// names the run for its seed (`seed_var` replays one); the traffic's keys
/// are `{keys}-0` .. `{keys}-3`.
pub fn under_fault(
    cluster: &mut crate::Cluster,
    urls: Vec<(u32, String)>,
    (what, seed_var, keys): (&str, &str, &str),
    run_for: Duration,
    fault: impl FnOnce(&mut crate::Cluster),
) -> crate::traffic::Tally {
    use crate::traffic::{assert_linearizable, Rng, Tally, Traffic};
    let seed = Rng::seeded(what, seed_var).0;
    let traffic = Traffic {
        keys: (0..4).map(|i| format!("{keys}-{i}")).collect(),
        clients: 6,
        ops_per_client: 100_000,
        timeout: Duration::from_secs(4),
        verbose: false,
        ..Traffic::default()
    };
    let clock = Clock::start();
    let stop_at = Instant::now() + run_for;
    let (mut history, written) = std::thread::scope(|s| {
        let clients = s.spawn(|| traffic.run(&urls, seed, clock, stop_at));
        let written = s.spawn(|| write_until(&urls, stop_at));
        fault(cluster);
        (clients.join().unwrap(), written.join().unwrap())
    });
    let primary = cluster.primary().unwrap_or(cluster.root_id);
    let at = cluster.url(primary);
    history.extend(final_reads(&at, primary, &traffic.keys, clock));
    assert_linearizable(&history, seed, seed_var);
    check(&at, &written, 20);
    Tally::of(&history)
}
