//! Requests about many keys, on real processes: `POST /mget` reads each key
//! as a GET on that node would (hits from its copy, misses through the
//! parent, cached on the way, coherent with later writes); `GET /keys`
//! pages through the root's keys in byte order from any node.

use treecache_harness as common;

use std::time::Duration;

use common::http::{self, enc};
use common::{Cluster, STANDBY};
use serde_json::{json, Value};

fn at(cluster: &Cluster, id: u32, key: &str) -> String {
    format!("{}/store/{}", cluster.url(id), enc(key))
}

fn cached(cluster: &Cluster, id: u32, key: &str) -> bool {
    http::get(&format!("{}?local=true", at(cluster, id, key))).0 == 200
}

fn mget(cluster: &Cluster, id: u32, keys: &[&str]) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    let answer = http::request(
        "POST",
        &format!("{}/mget", cluster.url(id)),
        Some(&body),
        &[],
    );
    (answer.status, answer.json())
}

/// Every key through node `id`, page after page of `limit`.
fn all_pages(cluster: &Cluster, id: u32, prefix: &str, limit: usize) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!(
            "{}/keys?prefix={}&limit={limit}",
            cluster.url(id),
            enc(prefix)
        );
        if let Some(after) = &after {
            url.push_str(&format!("&after={}", enc(after)));
        }
        let (status, page) = http::get(&url);
        assert_eq!(status, 200, "{url}: {page}");
        pages += 1;
        let listed: Vec<String> = serde_json::from_value(page["keys"].clone()).unwrap();
        assert!(listed.len() <= limit, "{page}");
        keys.extend(listed.iter().cloned());
        match &page["next"] {
            Value::Null => return (keys, pages),
            Value::String(next) => {
                assert_eq!(Some(next), listed.last(), "next is the last key listed");
                after = Some(next.clone());
            }
            other => panic!("next is {other}"),
        }
        assert!(pages < 1000, "paging does not end");
    }
}

#[test]
fn mget_answers_hits_and_misses_and_caches_what_it_read_as_gets_would() {
    let cluster = Cluster::start(3);
    let (leaf, parent, other_leaf) = (cluster.at_slot(3), cluster.at_slot(1), cluster.at_slot(6));
    for (key, value) in [
        ("a", json!(1)),
        ("b", json!({"x": [1, 2]})),
        ("c", json!(null)),
    ] {
        assert_eq!(http::put(&at(&cluster, 1, key), &value).0, 200);
    }
    assert_eq!(http::get(&at(&cluster, leaf, "a")).0, 200, "a: a hit below");

    let (status, body) = mget(&cluster, leaf, &["a", "b", "nope", "c", "b"]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"values": {"a": 1, "b": {"x": [1, 2]}, "c": null}, "missing": ["nope"]})
    );
    for key in ["a", "b", "c"] {
        assert!(cached(&cluster, leaf, key), "the leaf cached {key}");
        assert!(cached(&cluster, parent, key), "its parent cached {key}");
        assert!(!cached(&cluster, other_leaf, key), "off the path: {key}");
    }
    assert!(!cached(&cluster, leaf, "nope"));

    // Coherent with later writes: a write elsewhere replaces the copies mget made.
    assert_eq!(
        http::put(&at(&cluster, other_leaf, "b"), &json!("new")).0,
        200
    );
    assert!(!cached(&cluster, leaf, "b"), "the copy was invalidated");
    assert_eq!(http::delete(&at(&cluster, other_leaf, "a")).0, 200);
    let (status, body) = mget(&cluster, leaf, &["a", "b", "c"]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"values": {"b": "new", "c": null}, "missing": ["a"]})
    );

    // At the root, from the primary copy; an expired key is missing.
    let expiring = json!({"value": "t", "ttl": 0.3});
    let body = serde_json::to_vec(&expiring).unwrap();
    assert_eq!(
        http::request("PUT", &at(&cluster, 1, "t"), Some(&body), &[]).status,
        200
    );
    assert_eq!(mget(&cluster, leaf, &["t"]).1["values"]["t"], "t");
    std::thread::sleep(Duration::from_millis(400));
    for id in [1, leaf] {
        let (status, body) = mget(&cluster, id, &["t", "c"]);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"values": {"c": null}, "missing": ["t"]}),
            "NODE-{id}"
        );
    }
}

#[test]
fn a_thousand_keys_in_one_mget_with_every_miss_read_upstream() {
    let cluster = Cluster::start(2);
    let keys: Vec<String> = (0..1000).map(|i| format!("many-{i:04}")).collect();
    for key in keys.iter().step_by(2) {
        assert_eq!(http::put(&at(&cluster, 1, key), &json!(key)).0, 200);
    }
    let asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (status, body) = mget(&cluster, 2, &asked);
    assert_eq!(status, 200);
    let values = body["values"].as_object().unwrap();
    assert_eq!(values.len(), 500);
    assert!(keys.iter().step_by(2).all(|k| values[k] == json!(k)));
    let missing: Vec<&str> = body["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = keys.iter().skip(1).step_by(2).map(String::as_str).collect();
    assert_eq!(missing, expected, "missing keys come in the order asked");
    assert!(cached(&cluster, 2, "many-0998"));
}

#[test]
fn keys_pages_to_the_end_in_byte_order_with_prefix_after_and_limit_through_any_node() {
    let cluster = Cluster::start(3);
    let mut users: Vec<String> = (0..24).map(|i| format!("user:{i:02}")).collect();
    users.push("user: space".into());
    users.push("user:žluť".into());
    for key in users
        .iter()
        .chain(["other", "usex", "use"].map(String::from).iter())
    {
        assert_eq!(http::put(&at(&cluster, 1, key), &json!(1)).0, 200);
    }
    assert_eq!(http::delete(&at(&cluster, 1, "user:13")).0, 200);
    users.retain(|k| k != "user:13");
    users.sort();

    for id in [1, cluster.at_slot(1), cluster.at_slot(5)] {
        // 25 keys in pages of 5: the fifth page is full, and says nothing follows.
        let (keys, pages) = all_pages(&cluster, id, "user:", 5);
        assert_eq!(keys, users, "NODE-{id}");
        assert_eq!(pages, 5, "NODE-{id}");
        let (keys, pages) = all_pages(&cluster, id, "user:", 7);
        assert_eq!((keys, pages), (users.clone(), 4), "NODE-{id}");
    }

    let (status, page) = http::get(&format!(
        "{}/keys?prefix=user%3A&after=user%3A20",
        cluster.url(cluster.at_slot(4))
    ));
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({"keys": ["user:21", "user:22", "user:23", "user:žluť"], "next": null})
    );
    let (_, everything) = http::get(&format!("{}/keys", cluster.url(2)));
    assert_eq!(
        everything["keys"].as_array().unwrap().len(),
        users.len() + 3
    );
    assert_eq!(everything["keys"][0], "other", "byte order");
    assert_eq!(everything["next"], Value::Null);
}

#[test]
fn bad_mget_and_keys_requests_get_400_and_wrong_methods_405() {
    let cluster = Cluster::start(2);
    let too_many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let too_many = serde_json::to_string(&json!({ "keys": too_many })).unwrap();
    let long = format!("{{\"keys\": [\"{}\"]}}", "k".repeat(251));
    for id in [1, 2] {
        let url = format!("{}/mget", cluster.url(id));
        for body in [
            "",
            "{not json",
            "[\"a\"]",
            "{}",
            "{\"keys\": []}",
            "{\"keys\": \"a\"}",
            "{\"keys\": [1]}",
            "{\"keys\": [\"a/b\"]}",
            "{\"keys\": [\"\"]}",
            &long,
            &too_many,
        ] {
            let answer = http::request("POST", &url, Some(body.as_bytes()), &[]);
            assert_eq!(
                answer.status,
                400,
                "NODE-{id} {body:.40}: {}",
                answer.text()
            );
            assert!(answer.json()["error"].is_string());
        }
        for query in [
            "limit=0",
            "limit=10001",
            "limit=many",
            "limit=",
            "prefix=%zz",
            "after=%FF",
        ] {
            let (status, body) = http::get(&format!("{}/keys?{query}", cluster.url(id)));
            assert_eq!(status, 400, "NODE-{id} {query}: {body}");
            assert!(body["error"].is_string());
        }
        let wrong = http::request("GET", &url, None, &[]);
        assert_eq!((wrong.status, wrong.header("allow")), (405, Some("POST")));
        let wrong = http::request("POST", &format!("{}/keys", cluster.url(id)), None, &[]);
        assert_eq!((wrong.status, wrong.header("allow")), (405, Some("GET")));
    }
}

#[test]
fn a_standby_answers_mget_and_keys_through_the_primary() {
    let cluster = Cluster::builder(1).standbys(1).start();
    let standby = STANDBY + 1;
    assert_eq!(http::put(&at(&cluster, 1, "x"), &json!("x")).0, 200);
    let (status, body) = mget(&cluster, standby, &["x", "y"]);
    assert_eq!(
        (status, body),
        (200, json!({"values": {"x": "x"}, "missing": ["y"]}))
    );
    let (status, page) = http::get(&format!("{}/keys", cluster.url(standby)));
    assert_eq!((status, page), (200, json!({"keys": ["x"], "next": null})));
}
