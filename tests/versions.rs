//! Versions and conditional requests, on real processes: every GET answer
//! carries the key's version as its ETag; `If-None-Match` gets a 304 while
//! the version is unchanged; `If-Match` and `If-None-Match: *` make a PUT or
//! DELETE conditional (412 when the condition does not hold), checked at the
//! root under the key's write lock, through the root or through any leaf,
//! with every cached copy replaced as by any write; a header that names no
//! version matches nothing.

use treecache_harness as common;

use std::sync::Barrier;

use common::http::{self, enc};
use common::Cluster;
use serde_json::{json, Value};

fn at(cluster: &Cluster, id: u32, key: &str) -> String {
    format!("{}/store/{}", cluster.url(id), enc(key))
}

fn get(url: &str, headers: &[(&str, &str)]) -> http::Answer {
    http::request("GET", url, None, headers)
}

fn put(url: &str, value: Value, headers: &[(&str, &str)]) -> http::Answer {
    let body = serde_json::to_vec(&json!({ "value": value })).unwrap();
    http::request("PUT", url, Some(&body), headers)
}

fn delete(url: &str, headers: &[(&str, &str)]) -> http::Answer {
    http::request("DELETE", url, None, headers)
}

fn etag(answer: &http::Answer) -> String {
    answer
        .header("etag")
        .unwrap_or_else(|| panic!("no ETag: {} {}", answer.status, answer.text()))
        .to_string()
}

fn version(etag: &str) -> u64 {
    etag.trim_matches('"').parse().expect("a quoted version")
}

/// A 412 with its JSON error.
fn assert_precondition_failed(answer: &http::Answer, what: &str) {
    assert_eq!(answer.status, 412, "{what}: {}", answer.text());
    assert!(
        answer.json()["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{what}: {}",
        answer.text()
    );
}

#[test]
fn etags_304s_and_412s_through_the_root_and_through_leaves_keep_every_node_coherent() {
    let cluster = Cluster::start(3);
    let (root, reader, writer) = (1, cluster.at_slot(3), cluster.at_slot(6));
    let written = put(&at(&cluster, root, "k"), json!(1), &[]);
    assert_eq!(written.status, 200);
    let v1 = etag(&written);

    // Every read carries the version: at the root, and cached at a leaf.
    assert_eq!(etag(&get(&at(&cluster, root, "k"), &[])), v1);
    assert_eq!(etag(&get(&at(&cluster, reader, "k"), &[])), v1);
    let cached = get(&format!("{}?local=true", at(&cluster, reader, "k")), &[]);
    assert_eq!((cached.status, etag(&cached)), (200, v1.clone()));

    // Unchanged: 304 without a body, from the leaf's copy and from the root.
    for id in [reader, root] {
        let unchanged = get(&at(&cluster, id, "k"), &[("If-None-Match", &v1)]);
        assert_eq!(unchanged.status, 304, "NODE-{id}: {}", unchanged.text());
        assert!(unchanged.body.is_empty());
        assert_eq!(etag(&unchanged), v1);
        let any = get(&at(&cluster, id, "k"), &[("If-None-Match", "*")]);
        assert_eq!(any.status, 304, "* matches any version");
        let listed = format!("\"1\", {v1}");
        let listed = get(&at(&cluster, id, "k"), &[("If-None-Match", &listed)]);
        assert_eq!(listed.status, 304, "one of a list matches");
        let other = get(&at(&cluster, id, "k"), &[("If-None-Match", "\"1\"")]);
        assert_eq!(other.status, 200);
    }

    // A compare-and-set through the other branch's leaf: applied at the
    // root, and the reader's copy is gone.
    let swapped = put(&at(&cluster, writer, "k"), json!(2), &[("If-Match", &v1)]);
    assert_eq!(swapped.status, 200, "{}", swapped.text());
    assert_eq!(swapped.json(), json!({"key": "k", "value": 2}));
    let v2 = etag(&swapped);
    assert!(version(&v2) > version(&v1));
    let cached = get(&format!("{}?local=true", at(&cluster, reader, "k")), &[]);
    assert_eq!(cached.status, 404, "the old copy survived the write");
    for id in cluster.ids() {
        let read = get(&at(&cluster, id, "k"), &[("If-None-Match", &v1)]);
        assert_eq!(read.status, 200, "NODE-{id}: the old version is no match");
        assert_eq!(read.json()["value"], 2, "NODE-{id}");
        assert_eq!(etag(&read), v2, "NODE-{id}");
    }

    // The old version no longer matches: 412, and nothing changes (the
    // reader's new copy is not even invalidated).
    for (id, method) in [(reader, "PUT"), (writer, "DELETE"), (root, "PUT")] {
        let refused = match method {
            "PUT" => put(&at(&cluster, id, "k"), json!(3), &[("If-Match", &v1)]),
            _ => delete(&at(&cluster, id, "k"), &[("If-Match", &v1)]),
        };
        assert_precondition_failed(&refused, &format!("{method} through NODE-{id}"));
    }
    let cached = get(&format!("{}?local=true", at(&cluster, reader, "k")), &[]);
    assert_eq!((cached.status, etag(&cached)), (200, v2.clone()));

    // If-None-Match: * creates only.
    let exists = put(
        &at(&cluster, reader, "k"),
        json!(4),
        &[("If-None-Match", "*")],
    );
    assert_precondition_failed(&exists, "If-None-Match: * on a key that exists");
    let created = put(
        &at(&cluster, reader, "new"),
        json!(4),
        &[("If-None-Match", "*")],
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let again = put(
        &at(&cluster, writer, "new"),
        json!(5),
        &[("If-None-Match", "*")],
    );
    assert_precondition_failed(&again, "If-None-Match: * a second time");

    // A conditional delete; then the key is gone everywhere, and If-Match
    // on a missing key is a 412 (a plain delete of it is a 404).
    let deleted = delete(&at(&cluster, writer, "k"), &[("If-Match", &v2)]);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    for id in cluster.ids() {
        assert_eq!(get(&at(&cluster, id, "k"), &[]).status, 404, "NODE-{id}");
    }
    let missing = delete(&at(&cluster, reader, "k"), &[("If-Match", &v2)]);
    assert_precondition_failed(&missing, "If-Match on a missing key");
    let missing = put(&at(&cluster, reader, "k"), json!(6), &[("If-Match", "*")]);
    assert_precondition_failed(&missing, "If-Match: * on a missing key");
    assert_eq!(delete(&at(&cluster, reader, "k"), &[]).status, 404);
}

#[test]
fn of_concurrent_compare_and_sets_from_several_clients_exactly_one_wins() {
    let cluster = Cluster::start(2);
    let ids = cluster.ids();
    assert_eq!(put(&at(&cluster, 1, "counter"), json!(0), &[]).status, 200);
    const CLIENTS: usize = 8;
    for round in 0..40 {
        let current = etag(&get(&at(&cluster, 1, "counter"), &[]));
        let start = Barrier::new(CLIENTS);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let url = at(&cluster, ids[c % ids.len()], "counter");
                    let (start, current) = (&start, &current);
                    s.spawn(move || {
                        start.wait();
                        put(&url, json!(round * 100 + c), &[("If-Match", current)]).status
                    })
                })
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let winners = statuses.iter().filter(|&&s| s == 200).count();
        assert_eq!(winners, 1, "round {round}: {statuses:?}");
        assert!(
            statuses.iter().all(|&s| s == 200 || s == 412),
            "{statuses:?}"
        );
    }

    // Read-modify-write with retries: no increment is lost.
    const INCREMENTS: u64 = 10;
    let _ = delete(&at(&cluster, 1, "count"), &[]);
    assert_eq!(put(&at(&cluster, 1, "count"), json!(0), &[]).status, 200);
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let url = at(&cluster, ids[c % ids.len()], "count");
            s.spawn(move || {
                for _ in 0..INCREMENTS {
                    loop {
                        let read = get(&url, &[]);
                        let n = read.json()["value"].as_u64().unwrap();
                        let tag = etag(&read);
                        let written = put(&url, json!(n + 1), &[("If-Match", &tag)]);
                        match written.status {
                            200 => break,
                            412 => continue,
                            other => panic!("{other}: {}", written.text()),
                        }
                    }
                }
            });
        }
    });
    for id in ids {
        assert_eq!(
            get(&at(&cluster, id, "count"), &[]).json()["value"],
            CLIENTS as u64 * INCREMENTS,
            "NODE-{id}"
        );
    }
}

#[test]
fn a_condition_that_names_no_version_matches_nothing() {
    let cluster = Cluster::start(2);
    let written = put(&at(&cluster, 1, "k"), json!(1), &[]);
    let current = etag(&written);
    let bare = current.trim_matches('"').to_string();
    for id in [1, 2] {
        for nonsense in ["seven", "\"abc\"", "\"7", "\"\""] {
            let refused = put(&at(&cluster, id, "k"), json!(2), &[("If-Match", nonsense)]);
            assert_precondition_failed(&refused, &format!("If-Match: {nonsense} at NODE-{id}"));
            let refused = delete(&at(&cluster, id, "k"), &[("If-Match", nonsense)]);
            assert_precondition_failed(&refused, &format!("If-Match: {nonsense} at NODE-{id}"));
            let read = get(&at(&cluster, id, "k"), &[("If-None-Match", nonsense)]);
            assert_eq!(read.status, 200, "If-None-Match: {nonsense} at NODE-{id}");
        }
        // A version without its quotes is still that version.
        let unchanged = get(&at(&cluster, id, "k"), &[("If-None-Match", &bare)]);
        assert_eq!(unchanged.status, 304, "NODE-{id}");
    }
    let swapped = put(&at(&cluster, 2, "k"), json!(3), &[("If-Match", &bare)]);
    assert_eq!(swapped.status, 200, "{}", swapped.text());
    let written_anyway = put(
        &at(&cluster, 2, "k"),
        json!(4),
        &[("If-None-Match", "seven")],
    );
    assert_eq!(
        written_anyway.status, 200,
        "no version is named, so none matches"
    );
    assert_eq!(get(&at(&cluster, 1, "k"), &[]).json()["value"], 4);
}
