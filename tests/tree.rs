//! Forming the tree: slots, znodes, restarts, configuration.

use treecache_harness as common;

use std::process::Command;
use std::time::Duration;

use common::{http, Cluster};
use serde_json::json;

fn slots(cluster: &Cluster) -> Vec<(String, u64)> {
    let doc = cluster.tree();
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["slot"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn znodes(cluster: &Cluster) -> Vec<String> {
    let registry = cluster.registry();
    let mut paths = Vec::new();
    common::wait_until(
        Duration::from_secs(10),
        "ZooKeeper answers",
        || match registry.read_subtree(&cluster.prefix) {
            Ok(records) => {
                paths = records.into_iter().map(|r| r.path).collect();
                true
            }
            Err(_) => false,
        },
    );
    paths.sort();
    paths
}

#[test]
fn nodes_started_in_a_shuffled_order_get_slots_in_arrival_order() {
    let cluster = Cluster::builder(3).order(&[5, 3, 7, 2, 6, 4]).start();
    let expected: Vec<(String, u64)> = [(1, 0), (5, 1), (3, 2), (7, 3), (2, 4), (6, 5), (4, 6)]
        .iter()
        .map(|(id, slot)| (format!("NODE-{id}"), *slot))
        .collect();
    assert_eq!(slots(&cluster), expected);
    let doc = cluster.tree();
    assert_eq!(
        (
            doc["depth"].clone(),
            doc["capacity"].clone(),
            doc["root"].clone()
        ),
        (json!(3), json!(7), json!("NODE-1"))
    );
    let n5 = &doc["nodes"][1];
    assert_eq!(
        (
            n5["parent"].clone(),
            n5["left"].clone(),
            n5["right"].clone()
        ),
        (json!("NODE-1"), json!("NODE-7"), json!("NODE-2"))
    );

    // Every non-root node answers /nodes by asking the root.
    let mut asked = http::get(&format!("{}/nodes", cluster.url(4))).1;
    for node in asked["nodes"].as_array_mut().unwrap() {
        node.as_object_mut().unwrap().remove("live");
    }
    assert_eq!(asked, doc);

    // The znodes mirror the tree, and each node keeps a live ephemeral znode.
    let p = &cluster.prefix;
    let expected = [
        format!("{p}/NODE-1"),
        format!("{p}/NODE-1/NODE-5/NODE-7"),
        format!("{p}/NODE-1/NODE-5/NODE-2"),
        format!("{p}/NODE-1/NODE-3/NODE-6"),
        format!("{p}/NODE-1/NODE-3/NODE-4"),
        format!("{p}/live/NODE-4"),
    ];
    common::wait_until(Duration::from_secs(10), "all znodes are registered", || {
        let paths = znodes(&cluster);
        paths
            .iter()
            .filter(|z| z.starts_with(&format!("{p}/NODE-1")))
            .count()
            == 7
            && paths
                .iter()
                .filter(|z| z.starts_with(&format!("{p}/live/")))
                .count()
                == 7
    });
    let paths = znodes(&cluster);
    for path in expected {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    let registry = cluster.registry();
    common::wait_until(Duration::from_secs(10), "a session", || {
        registry.is_connected()
    });
    let data = registry
        .get(&format!("{p}/NODE-1/NODE-5/NODE-2"))
        .unwrap()
        .unwrap();
    let data: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(data["name"], "NODE-2");
    assert_eq!(data["slot"], 4);
    assert_eq!(data["depth"], 3);
    assert_eq!(data["address"], cluster.address(2));
}

#[test]
fn restarted_nodes_keep_their_slots_and_children_follow_a_moved_parent() {
    let mut cluster = Cluster::start(3);
    let before = slots(&cluster);
    let parent = cluster.at_slot(1);
    let leaf = cluster.at_slot(3);

    cluster.restart(leaf);
    assert_eq!(slots(&cluster), before, "a restarted leaf keeps its slot");

    http::put(&format!("{}/store/moved", cluster.url(1)), &json!("v"));
    cluster.restart_elsewhere(parent);
    assert_eq!(
        slots(&cluster),
        before,
        "a parent restarted elsewhere keeps its slot"
    );
    let doc = cluster.tree();
    assert_eq!(doc["nodes"][1]["address"], cluster.address(parent));
    // The leaf below it reads through the parent's new address, without a restart.
    let (status, body) = http::get(&format!("{}/store/moved", cluster.url(leaf)));
    assert_eq!((status, body), (200, json!({"key": "moved", "value": "v"})));
    assert_eq!(
        http::get(&format!("{}/store/moved?local=true", cluster.url(parent))).0,
        200
    );
}

#[test]
fn a_restarted_root_rebuilds_the_same_tree() {
    let mut cluster = Cluster::builder(3).order(&[4, 6, 2, 7, 3, 5]).start();
    let before = cluster.tree();
    cluster.restart(1);
    common::wait_until(Duration::from_secs(20), "the root rebuilt its tree", || {
        http::get(&format!("{}/nodes", cluster.url(1))).1["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 7)
    });
    assert_eq!(cluster.tree(), before);
    // A node that restarts now still gets its old slot from the rebuilt table.
    let slot_of_2 = cluster.slot_of(2);
    cluster.restart(2);
    assert_eq!(cluster.slot_of(2), slot_of_2);
    // Writes through a leaf reach the restarted root.
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(7)), &json!(1)).0,
        200
    );
    assert_eq!(
        http::get(&format!("{}/store/k?local=true", cluster.url(1))).0,
        200
    );
}

#[test]
fn a_root_other_than_node_1_works() {
    // Without a cluster key: the join below is judged on its body.
    let cluster = Cluster::builder(2).root_id(3).no_key().start();
    let doc = cluster.tree();
    assert_eq!(doc["root"], "NODE-3");
    assert_eq!(doc["nodes"][0]["name"], "NODE-3");
    assert_eq!(doc["nodes"][0]["slot"], 0);
    let (_, info) = http::get(&cluster.url(3));
    assert_eq!(
        (info["role"].clone(), info["node"].clone()),
        (json!("root"), json!("NODE-3"))
    );
    assert_eq!(
        http::put(&format!("{}/store/x", cluster.url(1)), &json!([1, 2])).0,
        200
    );
    assert_eq!(
        http::get(&format!("{}/store/x", cluster.url(2))).1["value"],
        json!([1, 2])
    );
    // A join under the root's own name is refused.
    let a = http::request(
        "POST",
        &format!("{}/nodes/join", cluster.url(3)),
        Some(br#"{"name":"NODE-3","address":"h:1"}"#),
        &[],
    );
    assert_eq!(a.status, 409, "{}", a.text());
}

#[test]
fn a_cluster_configured_only_through_environment_variables_works_and_a_flag_wins() {
    let zk = common::shared_zookeeper();
    let prefix = format!("/treecache-env-{}", std::process::id());
    let (root_port, child_port, env_port) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let dir = common::temp_dir("env");
    let mut children = Vec::new();
    for (id, port, extra) in [(1, root_port, None), (2, env_port, Some(child_port))] {
        let mut c = Command::new(common::treecache_bin());
        c.arg("node")
            .env("NODE_ID", id.to_string())
            .env("TREE_DEPTH", "2")
            .env("ROOT_NODE_ID", "1")
            .env("API_PORT", port.to_string())
            .env(
                "ADVERTISE_ADDRESS",
                format!("127.0.0.1:{}", extra.unwrap_or(port)),
            )
            .env("ZOOKEEPER", &zk)
            .env("ZK_PREFIX", &prefix)
            .env("STARTUP_DELAY", "0")
            .env("LOG_LEVEL", "warn")
            .stdout(std::fs::File::create(dir.join(format!("{id}.log"))).unwrap())
            .stderr(std::process::Stdio::inherit());
        if let Some(p) = extra {
            // The flag wins over API_PORT.
            c.args(["--port", &p.to_string()]);
        }
        treecache_local::children::die_with_parent(&mut c);
        children.push(c.spawn().unwrap());
    }
    let child_url = format!("http://127.0.0.1:{child_port}");
    common::wait_until(
        Duration::from_secs(20),
        "the env-configured node joined",
        || http::get(&child_url).1["joined"] == true,
    );
    assert_eq!(
        http::get(&format!("http://127.0.0.1:{env_port}/")).0,
        0,
        "API_PORT was overridden by --port"
    );
    let (_, doc) = http::get(&format!("http://127.0.0.1:{root_port}/nodes"));
    assert_eq!(doc["depth"], 2);
    assert_eq!(doc["nodes"][1]["name"], "NODE-2");
    assert_eq!(
        http::put(&format!("{child_url}/store/e"), &json!("env")).0,
        200
    );
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn bad_configuration_exits_with_2_naming_the_flag() {
    // (flags, environment, the flag the error must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&[], &[], "--id"),
        (&["--id", "8"], &[], "--id"),
        (&["--id", "1", "--depth", "11"], &[], "--depth"),
        (&["--id", "1"], &[("TREE_DEPTH", "0")], "--depth"),
        (&["--id", "1", "--root-id", "99"], &[], "--root-id"),
        (
            &["--id", "1", "--listen", "not-an-address"],
            &[],
            "--listen",
        ),
        (&["--id", "2", "--zookeeper", "nohost"], &[], "--zookeeper"),
        (&["--id", "2", "--advertise", "no-port"], &[], "--advertise"),
        (
            &["--id", "2"],
            &[("UPSTREAM_TIMEOUT", "forever")],
            "--upstream-timeout",
        ),
    ];
    for (args, env, flag) in cases {
        let out = Command::new(common::treecache_bin())
            .arg("node")
            .args(*args)
            .env_remove("NODE_ID")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?}: {stderr} should name {flag}"
        );
    }
}
