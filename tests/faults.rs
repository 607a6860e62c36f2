//! Failures: dead and frozen parents, and ZooKeeper going away under a cluster.

use treecache_harness as common;

use std::time::{Duration, Instant};

use common::{http, Cluster};
use serde_json::json;

#[test]
fn a_killed_parent_is_read_around_at_once_and_what_comes_that_way_is_not_cached() {
    let mut cluster = Cluster::start(3);
    let (parent, leaf) = (cluster.at_slot(1), cluster.at_slot(3));
    http::put(&format!("{}/store/cold", cluster.url(1)), &json!(1));
    cluster.kill(parent);
    let started = Instant::now();
    let (status, body) = http::get(&format!("{}/store/cold", cluster.url(leaf)));
    let took = started.elapsed();
    assert_eq!((status, &body["value"]), (200, &json!(1)), "{body}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
    // The root does not track the leaf as a holder: the leaf keeps nothing.
    let (status, _) = http::get(&format!("{}/store/cold?local=true", cluster.url(leaf)));
    assert_eq!(status, 404, "a value read around the parent was cached");
    // Writes from the leaf go straight to the root and still work, and the
    // next read sees them.
    assert_eq!(
        http::put(&format!("{}/store/cold", cluster.url(leaf)), &json!(2)).0,
        200
    );
    let (_, body) = http::get(&format!("{}/store/cold", cluster.url(leaf)));
    assert_eq!(body["value"], json!(2));
}

#[test]
fn a_frozen_parent_is_read_around_after_one_hop_timeout_then_skipped_a_frozen_root_gives_504() {
    let cluster = Cluster::builder(3)
        .env("UPSTREAM_TIMEOUT", "2")
        .env("HOP_TIMEOUT", "500ms")
        .start();
    let (parent, leaf) = (cluster.at_slot(1), cluster.at_slot(3));
    for key in ["a", "b", "c"] {
        http::put(&format!("{}/store/{key}", cluster.url(1)), &json!(key));
    }

    cluster.freeze(parent);
    let started = Instant::now();
    let (status, body) = http::get(&format!("{}/store/a", cluster.url(leaf)));
    let first = started.elapsed();
    let started = Instant::now();
    let (status_b, _) = http::get(&format!("{}/store/b", cluster.url(leaf)));
    let second = started.elapsed();
    cluster.thaw(parent);
    assert_eq!((status, &body["value"]), (200, &json!("a")), "{body}");
    assert!(
        first >= Duration::from_millis(450) && first < Duration::from_millis(1200),
        "the first read around the frozen parent took {first:?}"
    );
    assert_eq!(status_b, 200);
    assert!(
        second < Duration::from_millis(300),
        "the frozen parent was not skipped: the second read took {second:?}"
    );
    // Thawed, the parent answers probes again and is read through again.
    common::wait_until(
        Duration::from_secs(5),
        "the leaf reads through its parent again",
        || {
            http::get(&format!("{}/store/c", cluster.url(leaf)));
            http::get(&format!("{}/store/c?local=true", cluster.url(parent))).0 == 200
        },
    );

    // The root frozen: nothing is above it; the parent, nearest to the
    // fault, reports it and the leaf relays that.
    cluster.freeze(1);
    let started = Instant::now();
    let (status, body) = http::get(&format!("{}/store/missing", cluster.url(leaf)));
    let took = started.elapsed();
    cluster.thaw(1);
    assert_eq!(status, 504, "{body}");
    assert!(body["error"].as_str().unwrap().contains("NODE-1"), "{body}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
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
