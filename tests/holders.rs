//! Dead and frozen nodes inside the tree cost seconds, never correctness:
//! ZooKeeper sessions as leases, invalidations that go around a dead node,
//! writes that are never applied after their clients were told they failed,
//! forwarded writes applied at most once, flushes retried, and a root that
//! waits for ZooKeeper rather than start with an empty tree.
//!
//! Every cluster here uses 2 s ZooKeeper sessions and a 500 ms hop timeout.

use treecache_harness as common;

use std::time::{Duration, Instant};

use common::{http, wait_until, Cluster};
use serde_json::{json, Value};

fn cluster() -> common::Builder {
    Cluster::builder(3)
        .arg("--zk-session-timeout")
        .arg("2s")
        .arg("--hop-timeout")
        .arg("500ms")
        .env("UPSTREAM_TIMEOUT", "8")
}

fn json_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn store(cluster: &Cluster, id: u32, key: &str) -> String {
    format!("{}/store/{key}", cluster.url(id))
}

fn local(cluster: &Cluster, id: u32, key: &str) -> (u16, Value) {
    http::get(&format!("{}?local=true", store(cluster, id, key)))
}

/// Waits until ZooKeeper has ended node `id`'s session.
fn wait_session_ended(cluster: &Cluster, id: u32, limit: Duration) {
    let registry = cluster.registry();
    wait_until(limit, &format!("NODE-{id}'s session ended"), || {
        treecache::registry::Sessions::ended(&registry, &format!("NODE-{id}")) == Ok(true)
    });
}

/// Reads `key` through the leaf so that the leaf and its parent cache it.
fn cache_along(cluster: &Cluster, leaf: u32, key: &str, value: Value) {
    assert_eq!(http::put(&store(cluster, 1, key), &value).0, 200);
    assert_eq!(http::get(&store(cluster, leaf, key)).1["value"], value);
    assert_eq!(local(cluster, leaf, key).1["value"], value);
}

#[test]
fn a_write_of_a_key_held_by_a_frozen_leaf_completes_once_its_session_ends_and_other_keys_stay_fast()
{
    let cluster = cluster().start();
    let leaf = cluster.at_slot(3);
    cache_along(&cluster, leaf, "held", json!(1));

    cluster.freeze(leaf);
    let (status, took, slowest) = std::thread::scope(|s| {
        let others = s.spawn(|| {
            let mut slowest = Duration::ZERO;
            for i in 0..40 {
                let started = Instant::now();
                let (status, body) =
                    http::put(&store(&cluster, 1, &format!("other-{i}")), &json!(i));
                assert_eq!(status, 200, "{body}");
                slowest = slowest.max(started.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            slowest
        });
        let started = Instant::now();
        let (status, body) = http::put(&store(&cluster, 1, "held"), &json!(2));
        assert_eq!(status, 200, "{body}");
        (status, started.elapsed(), others.join().unwrap())
    });
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(4),
        "the write waited {took:?} for a frozen holder with a 2 s session"
    );
    assert!(
        slowest < Duration::from_millis(300),
        "writes of other keys slowed down to {slowest:?} while a holder was frozen"
    );
    // Thawed, the leaf's session has ended: it must not answer 1 from its cache.
    cluster.thaw(leaf);
    let (status, body) = http::get(&store(&cluster, leaf, "held"));
    assert_eq!((status, &body["value"]), (200, &json!(2)), "{body}");
    wait_until(Duration::from_secs(10), "the leaf is ready again", || {
        http::get(&format!("{}/ready", cluster.url(leaf))).0 == 200
    });
    assert_ne!(local(&cluster, leaf, "held").1["value"], json!(1));
    assert_eq!(
        http::get(&store(&cluster, leaf, "held")).1["value"],
        json!(2)
    );
}

#[test]
fn a_dead_middle_node_costs_its_session_timeout_and_its_children_are_invalidated_around_it() {
    let mut cluster = cluster().start();
    let (middle, leaf) = (cluster.at_slot(1), cluster.at_slot(3));
    cache_along(&cluster, leaf, "below", json!("old"));
    cluster.kill(middle);

    // Reads through the dead node's children keep answering.
    let (status, body) = http::get(&store(&cluster, leaf, "below"));
    assert_eq!((status, &body["value"]), (200, &json!("old")), "{body}");

    let started = Instant::now();
    let (status, body) = http::put(&store(&cluster, 1, "below"), &json!("new"));
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(
        local(&cluster, leaf, "below").0,
        404,
        "the leaf still holds the old value"
    );
    assert_eq!(
        http::get(&store(&cluster, leaf, "below")).1["value"],
        json!("new")
    );
}

#[test]
fn a_frozen_middle_node_is_read_around_and_drops_its_cache_when_thawed_after_its_session() {
    let cluster = cluster().start();
    let (middle, leaf) = (cluster.at_slot(1), cluster.at_slot(3));
    cache_along(&cluster, leaf, "k", json!(1));
    cluster.freeze(middle);
    let started = Instant::now();
    let (status, body) = http::get(&store(&cluster, leaf, "fresh"));
    assert_eq!(status, 404, "{body}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(http::put(&store(&cluster, 1, "k"), &json!(2)).0, 200);
    assert_eq!(local(&cluster, leaf, "k").0, 404);
    wait_session_ended(&cluster, middle, Duration::from_secs(10));
    cluster.thaw(middle);
    // Its session ended while it was frozen: it may not answer 1 any more.
    let (status, body) = http::get(&store(&cluster, middle, "k"));
    assert_eq!((status, &body["value"]), (200, &json!(2)), "{body}");
    wait_until(
        Duration::from_secs(10),
        "the middle node is ready again",
        || http::get(&format!("{}/ready", cluster.url(middle))).0 == 200,
    );
    assert_eq!(
        http::get(&store(&cluster, middle, "k")).1["value"],
        json!(2)
    );
    assert_eq!(http::get(&store(&cluster, leaf, "k")).1["value"], json!(2));
}

#[test]
fn a_write_whose_client_got_504_is_never_applied_later() {
    let cluster = cluster().start();
    let leaf = cluster.at_slot(3);
    cache_along(&cluster, leaf, "late", json!("before"));
    cluster.freeze(leaf);
    let answer = http::request(
        "PUT",
        &store(&cluster, 1, "late"),
        Some(&json_bytes(json!({"value": "too late"}))),
        &[("X-Treecache-Budget-Ms", "600")],
    );
    assert_eq!(answer.status, 504, "{}", answer.text());
    // The frozen holder's session ends; the write must not come back to
    // life, then or in the seconds after.
    wait_session_ended(&cluster, leaf, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    cluster.thaw(leaf);
    assert_eq!(
        http::get(&store(&cluster, 1, "late")).1["value"],
        json!("before")
    );
    assert_eq!(
        http::get(&store(&cluster, leaf, "late")).1["value"],
        json!("before")
    );
}

#[test]
fn a_write_sent_twice_under_one_request_id_is_applied_once() {
    let cluster = cluster().start();
    let leaf = cluster.at_slot(4);
    assert_eq!(http::put(&store(&cluster, 1, "once"), &json!(1)).0, 200);
    let id = [("X-Treecache-Request-Id", "test-delete-once")];
    for node in [leaf, 1, leaf] {
        let answer = http::request("DELETE", &store(&cluster, node, "once"), None, &id);
        assert_eq!(
            (answer.status, answer.json()),
            (200, json!({"key": "once"})),
            "the delete was applied again through NODE-{node}"
        );
    }
    let put_id = [("X-Treecache-Request-Id", "test-put-once")];
    let first = http::request(
        "PUT",
        &store(&cluster, leaf, "once"),
        Some(&json_bytes(json!({"value": 5}))),
        &put_id,
    );
    assert_eq!(first.status, 200);
    assert_eq!(http::put(&store(&cluster, 1, "once"), &json!(6)).0, 200);
    // A late retry of the first PUT answers as the first did, without undoing the second.
    let retry = http::request(
        "PUT",
        &store(&cluster, leaf, "once"),
        Some(&json_bytes(json!({"value": 5}))),
        &put_id,
    );
    assert_eq!(
        (retry.status, retry.json()["value"].clone()),
        (200, json!(5))
    );
    assert_eq!(
        retry.header("etag"),
        first.header("etag"),
        "the retry's answer names the version the first attempt gave"
    );
    assert_eq!(http::get(&store(&cluster, 1, "once")).1["value"], json!(6));
    // The same id on another write is another request: it is done.
    let reused = http::request("DELETE", &store(&cluster, leaf, "once"), None, &put_id);
    assert_eq!(
        (reused.status, reused.json()),
        (200, json!({"key": "once"}))
    );
    assert_eq!(http::get(&store(&cluster, 1, "once")).0, 404);
    // An id that is too long, or not visible ASCII, is refused.
    let long = "x".repeat(201);
    for bad in [long.as_str(), "two words"] {
        let answer = http::request(
            "DELETE",
            &store(&cluster, leaf, "once"),
            None,
            &[("X-Treecache-Request-Id", bad)],
        );
        assert_eq!(answer.status, 400, "{}", answer.text());
    }
}

#[test]
fn a_restarted_node_keeps_flushing_a_frozen_child_until_it_answers() {
    let mut cluster = cluster().start();
    let (middle, leaf) = (cluster.at_slot(1), cluster.at_slot(3));
    cache_along(&cluster, leaf, "stale", json!("kept"));
    // A restarted node joins once its predecessor's session has ended (one
    // process per id): let it end first, so that the new one joins at once.
    cluster.kill(middle);
    wait_session_ended(&cluster, middle, Duration::from_secs(10));
    cluster.freeze(leaf);
    cluster.spawn(middle);
    // Thawed once the first flush has failed (not after a fixed time, which
    // a loaded machine can outrun), and well before the leaf's session ends.
    wait_until(
        Duration::from_secs(10),
        "the middle node's first flush of the frozen leaf failed",
        || {
            cluster
                .log(middle)
                .contains(&format!("flushing NODE-{leaf} failed"))
        },
    );
    cluster.thaw(leaf);
    // A 503 (the leaf's lease lapsed while it was frozen) is not the state
    // waited for: the retried flush acknowledged, and the key gone.
    wait_until(
        Duration::from_secs(5),
        "the middle node's retried flush was acknowledged",
        || {
            cluster
                .log(middle)
                .contains("have dropped what they cached")
        },
    );
    wait_until(Duration::from_secs(5), "the leaf dropped its cache", || {
        local(&cluster, leaf, "stale").0 == 404
    });
    assert!(
        cluster.log(middle).contains("trying again"),
        "the first flush should have failed and been retried:\n{}",
        cluster.log(middle)
    );
}

#[test]
fn a_root_restarted_without_zookeeper_takes_no_joins_or_writes_until_it_has_the_tree() {
    // Without a cluster key: the join below is judged on the root's state.
    let mut cluster = cluster().own_zookeeper().no_key().start();
    let before = cluster.tree()["nodes"].as_array().unwrap().len();
    cluster.zk.as_mut().unwrap().stop();
    cluster.kill(1);
    cluster.spawn(1);
    wait_until(Duration::from_secs(10), "the root answers", || {
        http::get(&cluster.url(1)).0 == 200
    });
    let (status, body) = http::put(&store(&cluster, 1, "k"), &json!(1));
    assert_eq!(status, 503, "{body}");
    let join = http::request(
        "POST",
        &format!("{}/nodes/join", cluster.url(1)),
        Some(&json_bytes(
            json!({"name": "NODE-2", "address": "127.0.0.1:1"}),
        )),
        &[],
    );
    assert_eq!(join.status, 503, "{}", join.text());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        http::put(&store(&cluster, 1, "k"), &json!(1)).0,
        503,
        "still no ZooKeeper"
    );
    cluster.zk.as_mut().unwrap().restart();
    wait_until(Duration::from_secs(15), "the root opens", || {
        http::get(&format!("{}/ready", cluster.url(1))).0 == 200
    });
    assert_eq!(
        cluster.tree()["nodes"].as_array().unwrap().len(),
        before,
        "slots were lost"
    );
    assert_eq!(http::put(&store(&cluster, 1, "k"), &json!(1)).0, 200);
}

#[test]
fn the_tree_marks_a_node_live_until_its_session_ends() {
    let mut cluster = cluster().start();
    let leaf = cluster.at_slot(5);
    wait_until(Duration::from_secs(5), "every node is marked live", || {
        cluster
            .ids()
            .iter()
            .all(|&id| cluster.live(id) == Some(true))
    });
    cluster.kill(leaf);
    wait_until(
        Duration::from_secs(6),
        "the killed node is marked not live",
        || cluster.live(leaf) == Some(false),
    );
    assert_eq!(cluster.live(1), Some(true));
    cluster.spawn(leaf);
    cluster.wait_joined(&[leaf]);
    wait_until(
        Duration::from_secs(6),
        "the restarted node is live again",
        || cluster.live(leaf) == Some(true),
    );
}

#[test]
fn a_node_cut_off_from_zookeeper_and_its_parent_never_answers_a_value_older_than_an_acknowledged_write(
) {
    // A depth-2 tree whose leaf NODE-2 reaches ZooKeeper, and is reached by
    // the root, through proxies; clients reach it directly.
    let mut cluster = Cluster::builder(2)
        .arg("--zk-session-timeout")
        .arg("2s")
        .arg("--hop-timeout")
        .arg("500ms")
        .env("UPSTREAM_TIMEOUT", "8")
        .order(&[3])
        .start();
    let leaf = 2;
    let port = common::free_port();
    let to_zookeeper = common::proxy::Proxy::start(&cluster.zk_addr);
    let to_leaf = common::proxy::Proxy::start(&format!("127.0.0.1:{port}"));
    cluster.set_flag(leaf, "--zookeeper", &to_zookeeper.addr());
    cluster.set_flag(leaf, "--advertise", &to_leaf.addr());
    cluster.spawn_at(leaf, port);
    cluster.wait_joined(&[leaf]);
    cache_along(&cluster, leaf, "k", json!("old"));

    // Silently cut off: the leaf hears nothing from ZooKeeper, and the root
    // nothing from the leaf, but clients still reach it.
    to_zookeeper.pause();
    to_leaf.pause();
    let started = Instant::now();
    let (status, body) = http::put(&store(&cluster, 1, "k"), &json!("new"));
    assert_eq!(status, 200, "{body}");
    eprintln!(
        "the write completed {:?} after the cut, once the leaf's session ended",
        started.elapsed()
    );

    // The leaf's lease ended with its session: it may not answer from its
    // copy. Going up, it finds the new value; it never gives the old one.
    for _ in 0..5 {
        let (status, body) = http::get(&store(&cluster, leaf, "k"));
        assert!(
            status != 200 || body["value"] == json!("new"),
            "a cut-off node answered {status} {body} after the write was acknowledged"
        );
        let (status, body) = local(&cluster, leaf, "k");
        assert!(
            status != 200 || body["value"] == json!("new"),
            "a cut-off node answered {status} {body} from its copy after the write"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    to_zookeeper.resume();
    to_leaf.resume();
}
