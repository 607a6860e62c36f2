//! Coherent caches, refereed on real node processes.
//!
//! - A write through any node is seen at once by every node, and the caches
//!   that held the old value were invalidated, not left stale.
//! - Random concurrent GET/PUT/DELETE traffic at random nodes gives a
//!   linearizable history for every key (checked by `common::linearizability`).
//! - A node's cache stays within `CACHE_MAX_BYTES`, evicts, and what it
//!   evicted is fetched again right, also after a write.
//! - Concurrent misses of one key on one node cost one upstream fetch.
//!
//! Random choices print their seed; `COHERENCE_SEED=<n>` replays one.

use treecache_harness as common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::linearizability::Clock;
use common::traffic::{assert_linearizable, send, Rng, Tally, Traffic};
use common::{http, Cluster};
use serde_json::{json, Value};

/// Replays the random choices of a run: `COHERENCE_SEED=<n>`.
const SEED_VAR: &str = "COHERENCE_SEED";

// ---------------------------------------------------------------------------
// Scripted: warm every cache, write through one node, look everywhere.

#[test]
fn a_put_through_any_node_replaces_the_value_in_every_warm_cache_at_once() {
    let cluster = Cluster::start(3);
    let mut rng = Rng::seeded("put scenario", SEED_VAR);
    let key = "scripted-put";
    assert_eq!(put(&cluster, cluster.root_id, key, "v0").0, 200);

    for round in 1..=3 {
        let old = format!("v{}", round - 1);
        warm_every_cache(&cluster, key, &old);

        let writer = rng.pick(&non_root(&cluster));
        let new = format!("v{round}");
        let (status, body) = put(&cluster, writer, key, &new);
        assert_eq!(status, 200, "PUT through NODE-{writer}: {body}");

        // Before anything refills them: every cache dropped the old value.
        for id in cluster.ids() {
            let (status, body) = http::get(&local_url(&cluster, id, key));
            let held = (status == 200).then(|| body["value"].clone());
            assert!(
                status == 404 || held == Some(json!(new)),
                "round {round}: after the PUT of {new:?} through NODE-{writer} was \
                 acknowledged, NODE-{id} still holds {held:?} (status {status}): its cache \
                 was not invalidated"
            );
        }
        for id in cluster.ids() {
            let (status, body) = http::get(&store_url(&cluster, id, key));
            assert_eq!(
                (status, &body["value"]),
                (200, &json!(new)),
                "round {round}: GET on NODE-{id} after the PUT through NODE-{writer}: {body}"
            );
        }
    }
}

#[test]
fn a_delete_through_any_node_removes_the_key_from_every_warm_cache_at_once() {
    let cluster = Cluster::start(3);
    let mut rng = Rng::seeded("delete scenario", SEED_VAR);
    let key = "scripted-delete";

    for round in 1..=2 {
        let value = format!("before-delete-{round}");
        assert_eq!(put(&cluster, cluster.root_id, key, &value).0, 200);
        warm_every_cache(&cluster, key, &value);

        let deleter = rng.pick(&non_root(&cluster));
        let (status, body) = http::delete(&store_url(&cluster, deleter, key));
        assert_eq!(status, 200, "DELETE through NODE-{deleter}: {body}");

        for id in cluster.ids() {
            let (status, body) = http::get(&local_url(&cluster, id, key));
            assert_eq!(
                status, 404,
                "round {round}: after the DELETE through NODE-{deleter} was acknowledged, \
                 NODE-{id} still holds the key: {body}"
            );
        }
        for id in cluster.ids() {
            let (status, body) = http::get(&store_url(&cluster, id, key));
            assert_eq!(
                status, 404,
                "round {round}: GET on NODE-{id} after the DELETE through NODE-{deleter}: {body}"
            );
        }
        let again = rng.pick(&cluster.ids());
        let (status, body) = http::delete(&store_url(&cluster, again, key));
        assert_eq!(status, 404, "a second DELETE through NODE-{again}: {body}");
    }
}

/// GETs `key` on every node (leaves first, so the whole path fills) and
/// checks that each now holds `value` in its own cache.
fn warm_every_cache(cluster: &Cluster, key: &str, value: &str) {
    let mut ids = cluster.ids();
    ids.reverse();
    for &id in &ids {
        let (status, body) = http::get(&store_url(cluster, id, key));
        assert_eq!(
            (status, &body["value"]),
            (200, &json!(value)),
            "GET on NODE-{id} while warming: {body}"
        );
    }
    for &id in &ids {
        let (status, body) = http::get(&local_url(cluster, id, key));
        assert_eq!(
            (status, &body["value"]),
            (200, &json!(value)),
            "NODE-{id} should hold {key:?} after reading it: {body}"
        );
    }
}

// ---------------------------------------------------------------------------
// Randomized: concurrent clients, then the linearizability checker.

const CLIENTS: usize = 6;
const OPS_PER_CLIENT: usize = 300;
const KEYS: [&str; 3] = ["lin-a", "lin-b", "lin-c"];
/// Bound on the traffic phase, whatever the speed of the machine.
const TRAFFIC_LIMIT: Duration = Duration::from_secs(20);

#[test]
fn random_concurrent_traffic_at_random_nodes_is_linearizable_per_key() {
    let cluster = Cluster::start(3);
    let ids = cluster.ids();
    let urls: Vec<(u32, String)> = ids.iter().map(|&id| (id, cluster.url(id))).collect();
    let before: Vec<Metrics> = ids
        .iter()
        .map(|&id| Metrics::scrape(&cluster, id))
        .collect();

    let seed = Rng::seeded("traffic", SEED_VAR).0;
    let traffic = Traffic {
        keys: KEYS.iter().map(|k| k.to_string()).collect(),
        clients: CLIENTS,
        ops_per_client: OPS_PER_CLIENT,
        ..Traffic::default()
    };
    let history = traffic.run(&urls, seed, Clock::start(), Instant::now() + TRAFFIC_LIMIT);
    assert_linearizable(&history, seed, SEED_VAR);
    let tally = Tally::of(&history);

    // The traffic must have been worth checking.
    assert_eq!(
        tally.unknown, 0,
        "with no faults every request must get a definite answer (the failed ones are \
         printed above): {tally:?}"
    );
    assert!(
        tally.reads_of_values >= 150,
        "too few GETs found a value: {tally:?}"
    );
    assert!(
        tally.reads_of_absent >= 10,
        "too few GETs found no value: {tally:?}"
    );
    assert!(tally.puts >= 150, "too few PUTs: {tally:?}");
    assert!(
        tally.deletes_found >= 30,
        "too few DELETEs found the key: {tally:?}"
    );
    assert!(
        tally.deletes_missed >= 5,
        "too few DELETEs found no key: {tally:?}"
    );
    assert!(
        tally.overlapping_writes >= 10,
        "too few writes overlapped another operation on their key: {tally:?}"
    );
    let after: Vec<Metrics> = ids
        .iter()
        .map(|&id| Metrics::scrape(&cluster, id))
        .collect();
    let rise = |name: &str, nodes: &mut dyn Iterator<Item = usize>| -> f64 {
        nodes
            .map(|i| after[i].get(name) - before[i].get(name))
            .sum()
    };
    let caches = || (0..ids.len()).filter(|&i| ids[i] != cluster.root_id);
    let hits = rise("treecache_cache_hits_total", &mut caches());
    let invalidations = rise("treecache_invalidations_received_total", &mut caches());
    assert!(
        hits >= 50.0,
        "the caches answered only {hits} reads themselves: the traffic did not exercise them"
    );
    assert!(
        invalidations >= 10.0,
        "the caches received only {invalidations} invalidations during the traffic"
    );
}

// ---------------------------------------------------------------------------
// LRU: a small cache stays within its bound and still answers right.

const CACHE_CAP: u64 = 64 * 1024;
const LRU_KEYS: usize = 400;
/// Size of each value: 400 of them are three times the bound.
const VALUE_BYTES: usize = 512;

#[test]
fn a_small_cache_stays_within_its_bound_evicts_and_refetches_correctly() {
    let cluster = Cluster::builder(3)
        .env("CACHE_MAX_BYTES", &CACHE_CAP.to_string())
        .start();
    let leaf = cluster.at_slot(3);
    let sibling = cluster.at_slot(4);
    let middle = cluster.at_slot(1);
    let root = cluster.root_id;
    let key = |i: usize| format!("lru-{i:03}");
    let value =
        |i: usize, generation: u32| format!("g{generation}-{i:03}-{}", "x".repeat(VALUE_BYTES));

    for i in 0..LRU_KEYS {
        assert_eq!(put(&cluster, root, &key(i), &value(i, 1)).0, 200);
    }
    let read_through_leaf = |order: &mut dyn Iterator<Item = usize>, generation: u32| {
        for i in order {
            let (status, body) = http::get(&store_url(&cluster, leaf, &key(i)));
            assert_eq!(
                (status, &body["value"]),
                (200, &json!(value(i, generation))),
                "GET {} through the leaf NODE-{leaf} (generation {generation})",
                key(i)
            );
        }
    };
    let within_bound = |when: &str| {
        for id in [leaf, sibling, middle] {
            let bytes = Metrics::scrape(&cluster, id).get("treecache_cache_bytes");
            assert!(
                bytes <= CACHE_CAP as f64,
                "{when}: NODE-{id} caches {bytes} bytes, over its bound of {CACHE_CAP}"
            );
        }
    };

    let start = Metrics::scrape(&cluster, leaf);
    read_through_leaf(&mut (0..LRU_KEYS), 1);
    within_bound("after the first pass");
    let first = Metrics::scrape(&cluster, leaf);
    let evictions = first.get("treecache_evictions_total") - start.get("treecache_evictions_total");
    assert!(
        evictions > 0.0,
        "NODE-{leaf} read {LRU_KEYS} values of {VALUE_BYTES} bytes into a {CACHE_CAP}-byte \
         cache without evicting"
    );
    assert!(
        Metrics::scrape(&cluster, middle).get("treecache_evictions_total") > 0.0,
        "the middle NODE-{middle} saw every value too and should have evicted"
    );

    // Most keys were evicted again by the end of the pass: a second pass
    // fetches them again, and must get them right.
    read_through_leaf(&mut (0..LRU_KEYS), 1);
    within_bound("after the second pass");
    let second = Metrics::scrape(&cluster, leaf);
    let refetched = second.get("treecache_upstream_fetches_total")
        - first.get("treecache_upstream_fetches_total");
    let fit = (CACHE_CAP / VALUE_BYTES as u64) as f64;
    assert!(
        refetched >= LRU_KEYS as f64 - fit,
        "the second pass over {LRU_KEYS} keys fetched only {refetched} upstream, \
         but at most {fit} of them fit in the leaf"
    );

    // Other keys read through the sibling leaf push the leaf's keys out of
    // the middle node, while the leaf itself still holds its latest ones.
    for i in 0..LRU_KEYS / 2 {
        let other = format!("lru-other-{i:03}");
        assert_eq!(put(&cluster, root, &other, &value(i, 0)).0, 200);
        assert_eq!(http::get(&store_url(&cluster, sibling, &other)).0, 200);
    }
    within_bound("after the sibling's reads");
    let orphaned = (0..LRU_KEYS)
        .filter(|&i| {
            http::get(&local_url(&cluster, leaf, &key(i))).0 == 200
                && http::get(&local_url(&cluster, middle, &key(i))).0 == 404
        })
        .count();
    assert!(
        orphaned > 0,
        "no key is held by the leaf NODE-{leaf} but evicted from the middle NODE-{middle}: \
         the rest of this test would prove nothing"
    );

    // Evicting a value must not forget who holds it: new values written at
    // the root reach the leaf's copies, most recently cached first.
    for i in 0..LRU_KEYS {
        assert_eq!(put(&cluster, root, &key(i), &value(i, 2)).0, 200);
    }
    read_through_leaf(&mut (0..LRU_KEYS).rev(), 2);
    within_bound("after the rewrite");
}

// ---------------------------------------------------------------------------
// Coalescing: simultaneous misses of one key share one upstream fetch.

const READERS: usize = 32;

#[test]
fn simultaneous_misses_of_a_cold_key_make_one_upstream_fetch() {
    // The parent is frozen on purpose below: a hop timeout longer than that
    // keeps the leaf waiting for it rather than giving up.
    let cluster = Cluster::builder(2).env("HOP_TIMEOUT", "8").start();
    let leaf = cluster.at_slot(1);
    let parent = cluster.root_id;

    for round in 0..3 {
        let key = format!("cold-{round}");
        let value = format!("coalesced-{round}");
        assert_eq!(put(&cluster, parent, &key, &value).0, 200);
        let before = Metrics::scrape(&cluster, leaf);

        // The parent is stopped while the readers arrive, so the first fill
        // cannot finish before the others have missed too.
        let frozen = Frozen::new(&cluster, parent);
        let barrier = Arc::new(Barrier::new(READERS));
        let url = store_url(&cluster, leaf, &key);
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (barrier, url) = (barrier.clone(), url.clone());
                thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(10))
                        .build();
                    barrier.wait();
                    send(agent.get(&url), None)
                })
            })
            .collect();
        let waiting = wait_for_waiters(&cluster, leaf, &before);
        drop(frozen);
        for (n, reader) in readers.into_iter().enumerate() {
            let answer = reader.join().expect("a reader panicked");
            let got = answer
                .as_ref()
                .map(|(status, body)| (*status, &body["value"]));
            assert_eq!(
                got,
                Some((200, &json!(value))),
                "round {round}: reader {n} of {key:?} on NODE-{leaf}"
            );
        }

        let after = Metrics::scrape(&cluster, leaf);
        let fetches = after.get("treecache_upstream_fetches_total")
            - before.get("treecache_upstream_fetches_total");
        assert_eq!(
            fetches, 1.0,
            "round {round}: {READERS} simultaneous GETs of the cold key {key:?} on NODE-{leaf} \
             made {fetches} upstream fetches ({waiting} requests were seen waiting on a fill)"
        );
        assert!(
            waiting >= 1.0,
            "round {round}: no request waited on another's fill, so this round tested nothing"
        );
    }
}

/// Waits while node `id`'s count of requests waiting on another's fill
/// grows, and returns how much it grew (since `before`).
fn wait_for_waiters(cluster: &Cluster, id: u32, before: &Metrics) -> f64 {
    let waits = || {
        Metrics::scrape(cluster, id).get("treecache_coalesced_waits_total")
            - before.get("treecache_coalesced_waits_total")
    };
    let give_up = Instant::now() + Duration::from_secs(2);
    let (mut seen, mut steady_since) = (waits(), Instant::now());
    while Instant::now() < give_up {
        thread::sleep(Duration::from_millis(50));
        let now = waits();
        if now != seen {
            (seen, steady_since) = (now, Instant::now());
        } else if seen >= (READERS - 1) as f64
            || (seen > 0.0 && steady_since.elapsed() > Duration::from_millis(300))
        {
            break;
        }
    }
    seen
}

/// A node stopped with SIGSTOP until this is dropped (also when a test fails).
struct Frozen<'a> {
    cluster: &'a Cluster,
    id: u32,
}

impl<'a> Frozen<'a> {
    fn new(cluster: &'a Cluster, id: u32) -> Self {
        cluster.freeze(id);
        Frozen { cluster, id }
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.cluster.thaw(self.id);
    }
}

// ---------------------------------------------------------------------------
// Small tools.

fn store_url(cluster: &Cluster, id: u32, key: &str) -> String {
    format!("{}/store/{}", cluster.url(id), http::enc(key))
}

fn local_url(cluster: &Cluster, id: u32, key: &str) -> String {
    format!("{}?local=true", store_url(cluster, id, key))
}

fn put(cluster: &Cluster, id: u32, key: &str, value: &str) -> (u16, Value) {
    http::put(&store_url(cluster, id, key), &json!(value))
}

fn non_root(cluster: &Cluster) -> Vec<u32> {
    cluster
        .ids()
        .into_iter()
        .filter(|&id| id != cluster.root_id)
        .collect()
}

/// A node's `/metrics`, Prometheus text format.
struct Metrics(String);

impl Metrics {
    fn scrape(cluster: &Cluster, id: u32) -> Metrics {
        let answer = http::request("GET", &format!("{}/metrics", cluster.url(id)), None, &[]);
        assert_eq!(
            answer.status,
            200,
            "GET /metrics on NODE-{id}: {}",
            answer.text()
        );
        Metrics(answer.text())
    }

    /// The value of a metric, summed over its label sets; fails the test
    /// when the node does not export it.
    fn get(&self, name: &str) -> f64 {
        let samples: Vec<f64> = self
            .0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let metric = series.split('{').next()?.trim();
                (metric == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .collect();
        assert!(!samples.is_empty(), "no metric {name} in:\n{}", self.0);
        samples.iter().sum()
    }
}

#[test]
fn the_metrics_parser_reads_plain_and_labelled_series() {
    let text = "# HELP treecache_x x\n# TYPE treecache_x counter\ntreecache_x 3\n\
                treecache_requests_total{status=\"200\"} 5\n\
                treecache_requests_total{status=\"404\"} 2\ntreecache_x_more 9\n";
    let metrics = Metrics(text.to_string());
    assert_eq!(metrics.get("treecache_x"), 3.0);
    assert_eq!(metrics.get("treecache_requests_total"), 7.0);
}
