//! Failures: dead and frozen parents, and ZooKeeper going away under a cluster.

use treecache_harness as common;

use std::time::{Duration, Instant};

use common::{http, Cluster};
use serde_json::json;

#[test]
fn a_killed_parent_gives_502_naming_it_quickly() {
    let mut cluster = Cluster::start(3);
    let (parent, leaf) = (cluster.at_slot(1), cluster.at_slot(3));
    http::put(&format!("{}/store/cold", cluster.url(1)), &json!(1));
    cluster.kill(parent);
    let started = Instant::now();
    let (status, body) = http::get(&format!("{}/store/cold", cluster.url(leaf)));
    let took = started.elapsed();
    assert_eq!(status, 502, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("NODE-{parent}")) && error.contains(&cluster.address(parent)),
        "{error}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // Writes from the leaf go straight to the root and still work.
    assert_eq!(
        http::put(&format!("{}/store/w", cluster.url(leaf)), &json!(2)).0,
        200
    );
}

#[test]
fn a_frozen_parent_or_root_gives_504_naming_it_within_the_budget() {
    let cluster = Cluster::builder(3).env("UPSTREAM_TIMEOUT", "1").start();
    let (parent, leaf) = (cluster.at_slot(1), cluster.at_slot(3));
    http::put(&format!("{}/store/a", cluster.url(1)), &json!(1));
    http::put(&format!("{}/store/b", cluster.url(1)), &json!(1));

    cluster.freeze(parent);
    let started = Instant::now();
    let (status, body) = http::get(&format!("{}/store/a", cluster.url(leaf)));
    let took = started.elapsed();
    cluster.thaw(parent);
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&format!("NODE-{parent}")),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "took {took:?}"
    );

    // The root frozen: the parent, nearest to the fault, reports it; the leaf relays.
    cluster.freeze(1);
    let started = Instant::now();
    let (status, body) = http::get(&format!("{}/store/b", cluster.url(leaf)));
    let took = started.elapsed();
    cluster.thaw(1);
    assert_eq!(status, 504, "{body}");
    assert!(body["error"].as_str().unwrap().contains("NODE-1"), "{body}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(
        http::get(&format!("{}/store/b", cluster.url(leaf))).0,
        200,
        "served again once thawed"
    );
}

/// User plus system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn live_nodes(cluster: &Cluster) -> usize {
    let registry = cluster.registry();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(children) = registry.children(&format!("{}/live", cluster.prefix)) {
            return children.len();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    0
}

#[test]
fn zookeeper_restarted_under_a_running_cluster_registrations_come_back_and_logs_stay_quiet() {
    let mut cluster = Cluster::builder(2).own_zookeeper().start();
    common::wait_until(Duration::from_secs(10), "3 live znodes", || {
        live_nodes(&cluster) == 3
    });

    // Down for longer than a session lasts, so the old sessions expire.
    let cpu_before: u64 = cluster
        .ids()
        .iter()
        .map(|&id| cpu_ticks(cluster.pid(id)))
        .sum();
    cluster.zk.as_mut().unwrap().stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(8) {
        // Data is served all along.
        assert_eq!(
            http::put(
                &format!("{}/store/k", cluster.url(2)),
                &json!(down.elapsed().as_millis() as u64)
            )
            .0,
            200
        );
        assert_eq!(http::get(&format!("{}/store/k", cluster.url(3))).0, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu: u64 = cluster
        .ids()
        .iter()
        .map(|&id| cpu_ticks(cluster.pid(id)))
        .sum::<u64>()
        - cpu_before;
    // Three nodes spinning in the client's reconnect loop would use about a
    // core each for a session timeout (6 s): some 1800 ticks. Quiet is far below.
    assert!(
        cpu < 300,
        "3 nodes used {cpu} ticks of CPU (1/100 s each) in 8 s with ZooKeeper down"
    );
    cluster.zk.as_mut().unwrap().restart();
    common::wait_until(
        Duration::from_secs(20),
        "all 3 nodes registered again",
        || live_nodes(&cluster) == 3,
    );
    let tree_paths = {
        let registry = cluster.registry();
        common::wait_until(Duration::from_secs(5), "a session", || {
            registry.is_connected()
        });
        registry
            .read_subtree(&format!("{}/NODE-1", cluster.prefix))
            .unwrap()
            .len()
    };
    assert_eq!(tree_paths, 3, "the tree's znodes are all there");
    for id in cluster.ids() {
        let log = cluster.log(id);
        let lines = log.lines().count();
        assert!(lines < 40, "NODE-{id} logged {lines} lines:\n{log}");
        assert!(
            log.contains("ZooKeeper"),
            "NODE-{id} said nothing about the outage:\n{log}"
        );
    }
}

#[test]
fn a_restarted_parent_makes_the_caches_below_it_drop_what_it_no_longer_tracks() {
    let mut cluster = Cluster::start(3);
    let (parent, leaf) = (cluster.at_slot(1), cluster.at_slot(3));
    let leaf_url = cluster.url(leaf);
    let key = |k: &str| format!("{leaf_url}/store/{k}");
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(1)), &json!("v1")).0,
        200
    );
    assert_eq!(http::get(&key("k")).1["value"], "v1");
    assert_eq!(
        http::get(&format!("{}?local=true", key("k"))).0,
        200,
        "the leaf cached it"
    );

    // The parent's new process has an empty directory: it does not know the
    // leaf holds k, so the next write's invalidation would stop at it.
    cluster.restart(parent);
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(1)), &json!("v2")).0,
        200
    );
    assert_eq!(
        http::get(&key("k")).1["value"],
        "v2",
        "the leaf must not serve the old value"
    );
}

/// Sends `GET /` on a new connection; true on a 200 within one second.
fn answers(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut head = [0u8; 12];
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head == b"HTTP/1.1 200"
}

#[test]
fn a_node_that_ran_out_of_file_descriptors_accepts_connections_again() {
    let cluster = Cluster::builder(1).open_files(64).start();
    let address = cluster.address(1);
    // Hold idle connections until the node can accept no more.
    let mut held = Vec::new();
    let socket_address = address.parse().unwrap();
    for _ in 0..200 {
        // Once the accept backlog is full, a connect only ends by time-out.
        match std::net::TcpStream::connect_timeout(&socket_address, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    common::wait_until(
        Duration::from_secs(10),
        "the node ran out of descriptors",
        || cluster.log(1).contains("Too many open files"),
    );
    drop(held);
    common::wait_until(Duration::from_secs(10), "the node answers again", || {
        answers(&address)
    });
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(1)), &json!(1)).0,
        200
    );
}
