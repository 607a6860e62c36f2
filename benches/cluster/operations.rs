//! What operators and client developers use besides single reads and
//! writes (section `operations`): one `POST /mget` of 100 keys that are
//! cache hits at a leaf, against 100 single GETs of the same keys over the
//! same keep-alive connection, in alternating rounds.

use std::io::Read;
use std::time::Instant;

use crate::common::{http, Cluster};
use crate::load::{agent, median, small_value};
use crate::report::Report;
use crate::{first_slot_at, Mode};

/// Keys of one mget.
const KEYS: usize = 100;

pub fn run(mode: Mode, report: &mut Report) {
    report.section("Operations (latencies in ms)", "Operations: figures");
    let cluster = Cluster::builder(3).arg("--log-level").arg("warn").start();
    let root = cluster.url(cluster.root_id);
    let leaf = cluster.url(cluster.at_slot(first_slot_at(3)));
    let keys: Vec<String> = (0..KEYS).map(|i| format!("mget-{i:03}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let (status, _) = http::put(
            &format!("{root}/store/{key}"),
            &serde_json::json!(small_value(i as u64)),
        );
        assert_eq!(status, 200, "PUT {key}");
    }
    let body = serde_json::to_string(&serde_json::json!({ "keys": keys })).unwrap();
    let client = agent();
    // Warm: the leaf caches every key, and the next mget is all hits.
    let mget = |client: &ureq::Agent| -> serde_json::Value {
        let answer = client
            .post(&format!("{leaf}/mget"))
            .set("Content-Type", "application/json")
            .send_string(&body)
            .expect("mget answers 200");
        let text = answer.into_string().expect("an mget answer is text");
        serde_json::from_str(&text).expect("an mget answer is JSON")
    };
    mget(&client);
    let warm = mget(&client);
    assert_eq!(warm["missing"], serde_json::json!([]), "{warm}");
    assert_eq!(warm["values"].as_object().map(|v| v.len()), Some(KEYS));
    let hits_before = hits(&leaf);

    let rounds = if mode.smoke { 3 } else { 15 };
    let per_round = if mode.smoke { 20 } else { 200 };
    let (mut singles, mut bulks) = (Vec::new(), Vec::new());
    for round in 0..rounds * 2 {
        let t = Instant::now();
        for _ in 0..per_round {
            if round % 2 == 0 {
                for key in &keys {
                    let mut answer = client
                        .get(&format!("{leaf}/store/{key}"))
                        .call()
                        .expect("GET of a cached key answers 200")
                        .into_reader();
                    let mut sink = Vec::with_capacity(64);
                    answer.read_to_end(&mut sink).unwrap();
                }
            } else {
                let answer = mget(&client);
                debug_assert_eq!(answer["missing"], serde_json::json!([]));
            }
        }
        let keys_per_s = (per_round * KEYS) as f64 / t.elapsed().as_secs_f64();
        match round % 2 {
            0 => singles.push(keys_per_s),
            _ => bulks.push(keys_per_s),
        }
    }
    let hits_after = hits(&leaf);
    let expected_hits = (rounds * per_round * KEYS * 2) as u64;
    let (single, bulk) = (median(&singles), median(&bulks));
    let ratio = bulk / single;
    report.figure(format!(
        "mget of {KEYS} cache hits at a leaf, 1 keep-alive connection, {rounds} alternating \
         rounds of {per_round} requests: {bulk:.0} keys/s; 100 single GETs of the same keys on \
         the same connection: {single:.0} keys/s; {ratio:.1}x ({}); the leaf counted {} hits \
         for the {expected_hits} keys read",
        if ratio >= 20.0 {
            "target at least 20x, met"
        } else {
            "target at least 20x, NOT met"
        },
        hits_after.saturating_sub(hits_before),
    ));
}

/// The node's `treecache_cache_hits_total`.
fn hits(base: &str) -> u64 {
    http::request("GET", &format!("{base}/metrics"), None, &[])
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("treecache_cache_hits_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
