//! Root shards on real processes: a tree of depth 2 (NODE-1 the root,
//! NODE-2 and NODE-3 its leaves) whose keys are split over 3 root groups,
//! each a primary and one standby.
//!
//! - keys of every shard, written through a leaf, are read back at every
//!   process: the tree's nodes and every member of every shard; each is in
//!   its own shard primary's copy;
//! - the root's `GET /nodes` lists the 3 shards, each with its range of
//!   slots, its primary and its group;
//! - a node started with another `--root-shards` than the cluster's exits
//!   with status 2 naming the flag (and joins once given the cluster's);
//! - `GET /keys?limit=N` pages through the keys of every shard in byte
//!   order, from any process, `next` leading from one page to the next;
//! - `POST /mget` of keys of every shard answers each as a GET would;
//! - when a shard's primary is killed its standby takes over, the caches
//!   keep what they hold of the other shards, and the old primary comes
//!   back as a standby of its shard.
//!
//! Which shard a key belongs to is computed by the harness
//! ([`treecache_harness::shards`]), not asked of the nodes.

use treecache_harness as common;

use std::time::Duration;

use common::http::{self, enc};
use common::shards::{self, keys_of_shard, shard_of};
use common::{shard_member, Cluster};
use serde_json::{json, Value};

/// The shards of these tests' clusters.
const K: u32 = 3;

/// One cluster of these tests at a time: each is 9 processes, and a few
/// at once on a machine of two cores starve their ZooKeeper sessions.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tree of depth 2 over [`K`] shards, each with one standby in sync.
fn sharded() -> Cluster {
    let cluster = Cluster::builder(2).root_shards(K).standbys(1).start();
    for s in 0..K {
        assert_eq!(
            cluster.shard_members(s).len(),
            2,
            "shard {s}: a primary and a standby"
        );
    }
    cluster
}

fn at(cluster: &Cluster, key: u32, name: &str) -> String {
    format!("{}/store/{}", cluster.url(key), enc(name))
}

/// How process `key` is named in an assertion: its key and address.
fn who(cluster: &Cluster, key: u32) -> String {
    match cluster.shard_of_member(key) {
        Some(s) => format!("process {key} of shard {s} at {}", cluster.address(key)),
        None => format!("NODE-{key} at {}", cluster.address(key)),
    }
}

fn put(cluster: &Cluster, key: u32, name: &str, value: Value) {
    let (status, body) = http::put(&at(cluster, key, name), &value);
    assert_eq!(
        status,
        200,
        "PUT {name} (shard {}) through {}: {body}",
        shard_of(name, K),
        who(cluster, key)
    );
}

/// The primary of shard `s`, which must have one.
fn primary_of(cluster: &Cluster, s: u32) -> u32 {
    cluster
        .shard_primary(s)
        .unwrap_or_else(|| panic!("no member of shard {s} says it is the primary"))
}

#[test]
fn keys_of_every_shard_written_through_a_leaf_are_read_back_at_every_process() {
    let _alone = alone();
    let cluster = sharded();
    let leaf = cluster.at_slot(1);
    let keys: Vec<(u32, String)> = (0..K)
        .flat_map(|s| {
            keys_of_shard("everywhere", s, K, 3)
                .into_iter()
                .map(move |k| (s, k))
        })
        .collect();
    for (s, key) in &keys {
        put(&cluster, leaf, key, json!({"shard": s, "key": key}));
    }
    for process in cluster.everyone() {
        for (s, key) in &keys {
            let (status, body) = http::get(&at(&cluster, process, key));
            assert_eq!(
                (status, &body),
                (200, &json!({"key": key, "value": {"shard": s, "key": key}})),
                "GET {key} (shard {s}) at {}",
                who(&cluster, process)
            );
        }
    }
    // Each key is in the primary copy of its own shard.
    for (s, key) in &keys {
        let primary = primary_of(&cluster, *s);
        let url = format!("{}?local=true", at(&cluster, primary, key));
        let (status, body) = http::get(&url);
        assert_eq!(
            status,
            200,
            "{key} is not in the copy of shard {s}'s primary ({}): {body}",
            who(&cluster, primary)
        );
        assert_eq!(body["value"]["key"], key.as_str(), "{body}");
    }
    // And the metrics say so: each shard's primary counts its own keys,
    // under its shard's label.
    for s in 0..K {
        let primary = primary_of(&cluster, s);
        let text = metrics_text(&cluster, primary);
        let line = format!("treecache_shard_keys{{shard=\"{s}\"}} 3");
        assert!(
            text.lines().any(|l| l == line),
            "{} exports no `{line}`",
            who(&cluster, primary)
        );
    }
    // A write of a key of shard 2 through a shard 1 standby, read at the
    // other leaf and at shard 0's standby.
    let key = &keys_of_shard("across", 2, K, 1)[0];
    put(&cluster, shard_member(1, 1), key, json!("across"));
    let other_leaf = cluster.at_slot(2);
    for process in [other_leaf, cluster.member(0, 1)] {
        assert_eq!(
            http::get(&at(&cluster, process, key)).1,
            json!({"key": key, "value": "across"}),
            "at {}",
            who(&cluster, process)
        );
    }
}

#[test]
fn nodes_lists_the_shards_with_their_slots_primaries_and_groups() {
    let _alone = alone();
    let cluster = sharded();
    let doc = cluster.nodes_document();
    let entries = doc["shards"]
        .as_array()
        .unwrap_or_else(|| panic!("no `shards` in /nodes: {doc}"));
    assert_eq!(entries.len(), K as usize, "{doc}");
    let expected = [[0, 5460], [5461, 10921], [10922, 16383]];
    for s in 0..K {
        assert_eq!(shards::range(s, K), expected[s as usize]);
        let entry = entries
            .iter()
            .find(|e| e["shard"] == s)
            .unwrap_or_else(|| panic!("shard {s} is not in {doc}"));
        assert_eq!(entry["ranges"], json!([expected[s as usize]]), "{entry}");
        let primary = primary_of(&cluster, s);
        assert_eq!(
            entry["primary"],
            cluster.address(primary),
            "shard {s}'s primary is {}: {entry}",
            who(&cluster, primary)
        );
        // Its group: each member once, by address, the primary and an
        // in-sync standby.
        let group = entry["root_group"]
            .as_array()
            .unwrap_or_else(|| panic!("no root_group for shard {s}: {entry}"));
        let mut listed: Vec<&str> = group.iter().filter_map(|m| m["address"].as_str()).collect();
        listed.sort();
        let mut members: Vec<String> = cluster
            .shard_members(s)
            .into_iter()
            .map(|k| cluster.address(k))
            .collect();
        members.sort();
        assert_eq!(listed, members, "shard {s}: {entry}");
        let standby = group
            .iter()
            .find(|m| m["address"] != cluster.address(primary).as_str())
            .unwrap();
        assert_eq!(
            (&standby["role"], &standby["in_sync"]),
            (&json!("standby"), &json!(true)),
            "shard {s}: {entry}"
        );
    }
    // Shard 0's group is the root group the document lists as before.
    let mut before: Vec<&str> = doc["root_group"]
        .as_array()
        .unwrap_or_else(|| panic!("no root_group in {doc}"))
        .iter()
        .filter_map(|m| m["address"].as_str())
        .collect();
    before.sort();
    let shard_0 = entries.iter().find(|e| e["shard"] == 0).unwrap();
    let mut listed: Vec<&str> = shard_0["root_group"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["address"].as_str())
        .collect();
    listed.sort();
    assert_eq!(listed, before, "{doc}");
    // The tree is the tree: the shards' members hold no slot of it.
    assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(3), "{doc}");
}

#[test]
fn a_node_started_with_another_count_of_shards_exits_2_naming_the_flag() {
    let _alone = alone();
    // NODE-3 left out; no standbys, which this test does not need.
    let mut cluster = Cluster::builder(2).root_shards(K).order(&[2]).start();
    cluster.set_flag(3, "--root-shards", "2");
    cluster.spawn(3);
    let status = cluster
        .wait_exit(3, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("NODE-3 with --root-shards 2 still runs: {}", cluster.log(3)));
    let log = cluster.log(3);
    assert_eq!(status.code(), Some(2), "{status}: {log}");
    assert!(log.contains("--root-shards"), "{log}");
    // With the cluster's own count it joins.
    cluster.set_flag(3, "--root-shards", &K.to_string());
    cluster.spawn(3);
    cluster.wait_joined(&[3]);
}

/// Every key at process `key` with `prefix`, page after page of `limit`;
/// each page but the last is full, and `next` is its last key.
fn all_pages(cluster: &Cluster, key: u32, prefix: &str, limit: usize) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!(
            "{}/keys?prefix={}&limit={limit}",
            cluster.url(key),
            enc(prefix)
        );
        if let Some(after) = &after {
            url.push_str(&format!("&after={}", enc(after)));
        }
        let (status, page) = http::get(&url);
        assert_eq!(status, 200, "{url} at {}: {page}", who(cluster, key));
        let listed: Vec<String> = serde_json::from_value(page["keys"].clone())
            .unwrap_or_else(|e| panic!("{url}: {e}: {page}"));
        keys.extend(listed.iter().cloned());
        match &page["next"] {
            Value::Null => return keys,
            Value::String(next) => {
                assert_eq!(
                    listed.len(),
                    limit,
                    "a page before the last is full: {url}: {page}"
                );
                assert_eq!(
                    Some(next),
                    listed.last(),
                    "next is the last key listed: {page}"
                );
                after = Some(next.clone());
            }
            other => panic!("next is {other}: {page}"),
        }
        assert!(keys.len() < 10_000, "paging does not end: {url}");
    }
}

#[test]
fn keys_pages_through_every_shards_keys_in_byte_order() {
    let _alone = alone();
    let cluster = sharded();
    let leaf = cluster.at_slot(1);
    let mut written: Vec<String> = (0..30).map(|i| format!("page:{i:02}")).collect();
    for s in 0..K {
        let of_s = written.iter().filter(|k| shard_of(k, K) == s).count();
        assert!(of_s >= 4, "only {of_s} keys of shard {s}: {written:?}");
    }
    for (i, key) in written.iter().enumerate() {
        put(&cluster, leaf, key, json!(i));
    }
    // Keys outside the prefix, before and after it in byte order.
    let others = ["other", "page", "pagez", "zzz"];
    for key in others {
        put(&cluster, leaf, key, json!(key));
    }
    written.sort();
    let processes = [
        leaf,
        cluster.root_id,
        cluster.member(0, 1),
        primary_of(&cluster, 1),
        shard_member(2, 1),
    ];
    for process in processes {
        // 30 keys in pages of 7: four full pages, then 2 keys.
        let keys = all_pages(&cluster, process, "page:", 7);
        assert_eq!(keys, written, "at {}", who(&cluster, process));
        let keys = all_pages(&cluster, process, "page:", 1000);
        assert_eq!(keys, written, "at {}", who(&cluster, process));
    }
    // From the middle: after a key of one shard, the next ones of all.
    let after = &written[11];
    let (status, page) = http::get(&format!(
        "{}/keys?prefix=page%3A&limit=5&after={}",
        cluster.url(cluster.at_slot(2)),
        enc(after)
    ));
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["keys"], json!(written[12..17]), "{page}");
    assert_eq!(page["next"], written[16].as_str(), "{page}");
    // No prefix: everything, in byte order.
    let mut everything = written.clone();
    everything.extend(others.iter().map(|k| k.to_string()));
    everything.sort();
    assert_eq!(all_pages(&cluster, leaf, "", 9), everything);
}

fn mget(cluster: &Cluster, key: u32, names: &[&str]) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({ "keys": names })).unwrap();
    let answer = http::request(
        "POST",
        &format!("{}/mget", cluster.url(key)),
        Some(&body),
        &[("Content-Type", "application/json")],
    );
    (answer.status, answer.json())
}

#[test]
fn mget_reads_keys_of_every_shard_as_gets_would() {
    let _alone = alone();
    let cluster = sharded();
    let leaf = cluster.at_slot(1);
    let mut present: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for s in 0..K {
        let keys = keys_of_shard(&format!("mget-{s}"), s, K, 3);
        present.extend(keys[..2].iter().cloned());
        missing.push(keys[2].clone());
    }
    for key in &present {
        put(
            &cluster,
            cluster.at_slot(2),
            key,
            json!(format!("value of {key}")),
        );
    }
    let values: serde_json::Map<String, Value> = present
        .iter()
        .map(|k| (k.clone(), json!(format!("value of {k}"))))
        .collect();
    let mut asked: Vec<&str> = present.iter().chain(&missing).map(String::as_str).collect();
    asked.sort();
    for process in [
        leaf,
        cluster.root_id,
        primary_of(&cluster, 2),
        shard_member(1, 1),
    ] {
        let (status, body) = mget(&cluster, process, &asked);
        assert_eq!(status, 200, "at {}: {body}", who(&cluster, process));
        assert_eq!(
            body["values"],
            Value::Object(values.clone()),
            "at {}",
            who(&cluster, process)
        );
        let mut absent: Vec<String> = serde_json::from_value(body["missing"].clone())
            .unwrap_or_else(|e| panic!("{e}: {body}"));
        absent.sort();
        let mut expected = missing.clone();
        expected.sort();
        assert_eq!(absent, expected, "at {}: {body}", who(&cluster, process));
    }
    // The leaf cached what it read, as a GET would have.
    for key in &present {
        let url = format!("{}?local=true", at(&cluster, leaf, key));
        assert_eq!(http::get(&url).0, 200, "{key} is not cached at the leaf");
    }
    // A later write of one key of each shard is what mget reads next.
    for s in 0..K {
        let key = present
            .iter()
            .find(|k| shard_of(k, K) == s)
            .unwrap()
            .clone();
        put(&cluster, cluster.at_slot(2), &key, json!("new"));
        let (status, body) = mget(&cluster, leaf, &[&key]);
        assert_eq!(
            (status, body),
            (200, json!({"values": {key.as_str(): "new"}, "missing": []}))
        );
    }
}

#[test]
fn a_shard_fails_over_alone_and_its_old_primary_comes_back_as_a_standby() {
    let _alone = alone();
    // Sessions of 2 s: the killed primary's ends soon.
    let mut cluster = Cluster::builder(2)
        .root_shards(K)
        .standbys(1)
        .arg("--zk-session-timeout")
        .arg("2s")
        .start();
    let leaf = cluster.at_slot(1);
    let keys: Vec<String> = (0..K)
        .map(|s| keys_of_shard("failover", s, K, 1).remove(0))
        .collect();
    for key in &keys {
        put(&cluster, leaf, key, json!("before"));
        assert_eq!(http::get(&at(&cluster, leaf, key)).0, 200, "{key}");
    }
    let cached = |cluster: &Cluster, key: &str| {
        http::get(&format!("{}?local=true", at(cluster, leaf, key))).0 == 200
    };
    for key in &keys {
        assert!(cached(&cluster, key), "the leaf holds {key}");
    }
    let (old, standby) = (shard_member(1, 0), shard_member(1, 1));
    assert_eq!(cluster.shard_primary(1), Some(old));
    cluster.kill(old);
    common::wait_until(
        Duration::from_secs(15),
        "a write of shard 1's key through the leaf succeeds again",
        || http::put(&at(&cluster, leaf, &keys[1]), &json!("after")).0 == 200,
    );
    assert_eq!(cluster.shard_primary(1), Some(standby));
    // The other shards kept their primaries, and the leaf what it held of
    // them.
    assert_eq!(cluster.shard_primary(0), Some(cluster.root_id));
    assert_eq!(cluster.shard_primary(2), Some(shard_member(2, 0)));
    for key in [&keys[0], &keys[2]] {
        assert!(
            cached(&cluster, key),
            "the leaf dropped {key} of shard {} at shard 1's failover",
            shard_of(key, K)
        );
    }
    for process in cluster.everyone().into_iter().filter(|&p| p != old) {
        for (s, key) in keys.iter().enumerate() {
            let value = if s == 1 { "after" } else { "before" };
            assert_eq!(
                http::get(&at(&cluster, process, key)).1,
                json!({"key": key, "value": value}),
                "at {}",
                who(&cluster, process)
            );
        }
    }
    // The old primary, restarted on its data, is a standby of shard 1 and
    // catches up.
    cluster.restart_member(old);
    common::wait_until(
        Duration::from_secs(20),
        "the old primary is a standby",
        || http::get(&cluster.url(old)).1["role"] == "standby",
    );
    cluster.wait_shard_in_sync(1, 1);
    let entry = cluster.shards_document()[1].clone();
    assert_eq!(entry["primary"], cluster.address(standby), "{entry}");
    assert_eq!(
        http::get(&at(&cluster, old, &keys[1])).1,
        json!({"key": keys[1], "value": "after"})
    );
    // A standby stopped as an operator would, and started again.
    let other = shard_member(2, 1);
    cluster.stop(other);
    cluster.restart_member(other);
    cluster.wait_shard_in_sync(2, 1);
}

/// The `/metrics` text of process `key`.
fn metrics_text(cluster: &Cluster, key: u32) -> String {
    let answer = http::request("GET", &format!("{}/metrics", cluster.url(key)), None, &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.text()
}

#[test]
fn a_call_meant_for_another_shard_gets_421_naming_the_owner_and_a_clients_is_passed_on() {
    let _alone = alone();
    let cluster = sharded();
    let key = &keys_of_shard("misdirected", 2, K, 1)[0];
    let (one, two) = (primary_of(&cluster, 1), primary_of(&cluster, 2));
    let body = serde_json::to_vec(&json!({"value": "here"})).unwrap();
    // As another node sends it: taken to be of shard 1, which does not own it.
    let answer = http::request(
        "PUT",
        &at(&cluster, one, key),
        Some(&body),
        &[
            ("Content-Type", "application/json"),
            ("X-Treecache-Shard", "1"),
        ],
    );
    assert_eq!(answer.status, 421, "{}", answer.text());
    let said = answer.json();
    assert_eq!(said["shard"], 2, "{said}");
    assert_eq!(said["primary"], cluster.address(two).as_str(), "{said}");
    assert!(
        said["error"]
            .as_str()
            .is_some_and(|e| e.contains("shard 2")),
        "{said}"
    );
    // Nothing was written, at the owner or anywhere.
    assert_eq!(http::get(&at(&cluster, two, key)).0, 404);
    // A client's request to the same process goes on to the owner.
    put(&cluster, one, key, json!("passed on"));
    let local = format!("{}?local=true", at(&cluster, two, key));
    assert_eq!(http::get(&local).1["value"], "passed on");
}
