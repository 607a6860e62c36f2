//! Keys with a time to live, on real processes: from the moment a key
//! expires at the root it reads 404 on every node, the ones that cached it
//! included; a put without a ttl makes the key permanent and replaces every
//! copy; a durable root restarted gives each key back the time it had left
//! and drops the keys whose time ran out meanwhile; a standby that takes
//! over does the same.

use treecache_harness as common;

use std::time::{Duration, Instant};

use common::http::{self, enc};
use common::{wait_until, Cluster, STANDBY};
use serde_json::{json, Value};

fn at(cluster: &Cluster, id: u32, key: &str) -> String {
    format!("{}/store/{}", cluster.url(id), enc(key))
}

fn local(cluster: &Cluster, id: u32, key: &str) -> String {
    format!("{}?local=true", at(cluster, id, key))
}

/// A PUT of `{"value": value, "ttl": ttl}`; the answer, and the moments
/// just before it was sent and just after it came back.
fn put_ttl(url: &str, value: Value, ttl: f64) -> (http::Answer, Instant, Instant) {
    let body = serde_json::to_vec(&json!({ "value": value, "ttl": ttl })).unwrap();
    let sent = Instant::now();
    let answer = http::request("PUT", url, Some(&body), &[]);
    let back = Instant::now();
    assert_eq!(answer.status, 200, "{}", answer.text());
    (answer, sent, back)
}

/// A GET answer (which must be 200), the `ttl` it shows, and the moments
/// just before it was asked for and just after it came.
struct Shown {
    answer: http::Answer,
    ttl: f64,
    asked: Instant,
    answered: Instant,
}

fn ttl_of(url: &str) -> Shown {
    let asked = Instant::now();
    let answer = http::request("GET", url, None, &[]);
    let answered = Instant::now();
    assert_eq!(answer.status, 200, "{url}: {}", answer.text());
    let ttl = answer.json()["ttl"]
        .as_f64()
        .unwrap_or_else(|| panic!("{url}: no ttl in {}", answer.text()));
    Shown {
        answer,
        ttl,
        asked,
        answered,
    }
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// Asserts that `shown` gives the time left of a key written with a ttl of
/// `written` seconds by a PUT sent at `sent` and answered at `back`: the
/// key expires between `sent + written` and `back + written` at the root,
/// a copy no later, and a little earlier (the time of a fill) at most.
fn assert_left(shown: &Shown, written: f64, sent: Instant, back: Instant, what: &str) {
    let since = |a: Instant, b: Instant| a.saturating_duration_since(b).as_secs_f64();
    let most = written - since(shown.asked, back) + 0.002;
    let least = written - since(shown.answered, sent) - 0.2;
    let ttl = shown.ttl;
    assert!(
        ttl <= most && ttl >= least,
        "{what}: ttl {ttl}, expected between {least:.3} and {most:.3}"
    );
}

#[test]
fn a_key_expires_on_every_node_at_once_including_those_that_cached_it() {
    let cluster = Cluster::start(3);
    let ids = cluster.ids();
    let leaves: Vec<u32> = (3..7).map(|slot| cluster.at_slot(slot)).collect();
    const TTL: f64 = 3.0;
    let (answer, sent, back) = put_ttl(&at(&cluster, 1, "k"), json!("short-lived"), TTL);
    assert_eq!(
        answer.json(),
        json!({"key": "k", "value": "short-lived", "ttl": TTL})
    );
    assert!(answer.header("etag").is_some(), "a put answers its ETag");
    let expires_at_most = back + Duration::from_secs_f64(TTL);
    let expires_at_least = sent + Duration::from_secs_f64(TTL);

    // A second later, every leaf reads it: every node caches it, each copy
    // with the time the key has left at the root, not the full ttl.
    std::thread::sleep(Duration::from_secs(1));
    for &leaf in &leaves {
        let shown = ttl_of(&at(&cluster, leaf, "k"));
        assert_left(&shown, TTL, sent, back, &format!("NODE-{leaf}"));
    }
    for &id in &ids {
        let shown = ttl_of(&local(&cluster, id, "k"));
        assert_left(&shown, TTL, sent, back, &format!("NODE-{id}'s own copy"));
    }

    // Right before the expiry, every node still answers it from its copy.
    sleep_until(expires_at_least - Duration::from_millis(400));
    for &id in &ids {
        for url in [local(&cluster, id, "k"), at(&cluster, id, "k")] {
            let asked = Instant::now();
            let (status, body) = http::get(&url);
            assert!(
                asked < expires_at_least,
                "too slow to check before the expiry"
            );
            assert_eq!(status, 200, "{url} before the expiry: {body}");
        }
    }

    // Right after it, no node answers it, from its copy or from above.
    sleep_until(expires_at_most + Duration::from_millis(5));
    for &id in &ids {
        for url in [local(&cluster, id, "k"), at(&cluster, id, "k")] {
            let (status, body) = http::get(&url);
            assert_eq!(status, 404, "{url} after the expiry: {body}");
        }
    }
    let (_, page) = http::get(&format!("{}/keys", cluster.url(1)));
    assert_eq!(page["keys"], json!([]), "an expired key is not listed");

    // Written again, it is cached again, by the same nodes.
    assert_eq!(http::put(&at(&cluster, 1, "k"), &json!("again")).0, 200);
    assert_eq!(http::get(&at(&cluster, leaves[0], "k")).0, 200);
    wait_until(Duration::from_secs(5), "the leaf caches it again", || {
        http::get(&at(&cluster, leaves[0], "k")).0 == 200
            && http::get(&local(&cluster, leaves[0], "k")).0 == 200
    });
}

#[test]
fn a_put_without_a_ttl_makes_the_key_permanent_and_replaces_every_copy() {
    let cluster = Cluster::start(3);
    let (reader, writer) = (cluster.at_slot(3), cluster.at_slot(6));
    put_ttl(&at(&cluster, 1, "k"), json!(1), 1.5);
    assert_eq!(http::get(&at(&cluster, reader, "k")).1["value"], 1);
    assert_eq!(http::get(&local(&cluster, reader, "k")).0, 200);

    let (status, body) = http::put(&at(&cluster, writer, "k"), &json!(2));
    assert_eq!((status, body), (200, json!({"key": "k", "value": 2})));
    assert_eq!(
        http::get(&local(&cluster, reader, "k")).0,
        404,
        "the expiring copy was invalidated"
    );
    std::thread::sleep(Duration::from_secs(2));
    for id in cluster.ids() {
        let (status, body) = http::get(&at(&cluster, id, "k"));
        assert_eq!(
            (status, body),
            (200, json!({"key": "k", "value": 2})),
            "NODE-{id}"
        );
    }
}

#[test]
fn a_restarted_durable_root_restores_the_time_left_and_drops_what_expired_meanwhile() {
    // A restarted root serves once its predecessor's session has ended:
    // sessions of 2 s keep that short.
    let mut cluster = Cluster::builder(2)
        .root_data_dir()
        .arg("--zk-session-timeout")
        .arg("2s")
        .start();
    let root = cluster.root_id;
    let leaf = cluster.at_slot(1);
    const LONG: f64 = 10.0;
    put_ttl(&at(&cluster, root, "short"), json!("s"), 1.0);
    let (_, sent, back) = put_ttl(&at(&cluster, root, "long"), json!("l"), LONG);
    assert_eq!(
        http::put(&at(&cluster, root, "forever"), &json!("f")).0,
        200
    );

    cluster.kill(root);
    std::thread::sleep(Duration::from_millis(1200));
    cluster.spawn(root);
    wait_until(Duration::from_secs(20), "the root is ready again", || {
        http::get(&format!("{}/ready", cluster.url(root))).0 == 200
    });

    for id in [root, leaf] {
        assert_eq!(
            http::get(&at(&cluster, id, "short")).0,
            404,
            "NODE-{id}: expired while the root was down"
        );
        let shown = ttl_of(&at(&cluster, id, "long"));
        assert_left(
            &shown,
            LONG,
            sent,
            back,
            &format!("NODE-{id} after the restart"),
        );
        let (status, body) = http::get(&at(&cluster, id, "forever"));
        assert_eq!(
            (status, body),
            (200, json!({"key": "forever", "value": "f"}))
        );
    }
    sleep_until(back + Duration::from_secs_f64(LONG) + Duration::from_millis(5));
    for id in [root, leaf] {
        assert_eq!(
            http::get(&at(&cluster, id, "long")).0,
            404,
            "NODE-{id}: the restored key expires when it would have"
        );
    }
}

#[test]
fn a_standby_relays_the_time_left_and_keeps_it_when_it_takes_over() {
    let mut cluster = Cluster::builder(2)
        .standbys(1)
        .arg("--zk-session-timeout")
        .arg("2s")
        .start();
    let (root, standby, leaf) = (cluster.root_id, STANDBY + 1, cluster.at_slot(1));
    let (answer, sent, back) = put_ttl(&at(&cluster, root, "k"), json!("v"), 8.0);
    put_ttl(&at(&cluster, root, "brief"), json!("b"), 0.5);
    let through_standby = ttl_of(&at(&cluster, standby, "k"));
    assert_eq!(through_standby.answer.header("etag"), answer.header("etag"));
    assert_left(
        &through_standby,
        8.0,
        sent,
        back,
        "read through the standby",
    );

    cluster.kill(root);
    wait_until(Duration::from_secs(15), "the standby takes over", || {
        cluster.primary() == Some(standby)
    });
    wait_until(Duration::from_secs(10), "the leaf reads again", || {
        http::get(&at(&cluster, leaf, "k")).0 == 200
    });
    for id in [standby, leaf] {
        let shown = ttl_of(&at(&cluster, id, "k"));
        assert_left(
            &shown,
            8.0,
            sent,
            back,
            &format!("after the failover, at {id}"),
        );
        assert_eq!(http::get(&at(&cluster, id, "brief")).0, 404);
    }
    sleep_until(back + Duration::from_secs(8) + Duration::from_millis(5));
    for id in [standby, leaf] {
        assert_eq!(http::get(&at(&cluster, id, "k")).0, 404, "at {id}");
    }
}
