//! `treecache cluster`: comes up with a standby of the root, serves, and
//! leaves nothing running after SIGTERM; with `--root-shards`, starts each
//! shard's members and says where they listen, and refuses a bad count
//! naming the flag.

use treecache_harness as common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http;
use serde_json::json;

#[test]
fn the_cluster_command_comes_up_serves_and_stops_everything_on_sigterm() {
    let base = free_base(4);
    let zk_port = common::free_port();
    let mut command = Command::new(common::treecache_bin());
    command
        .args(["cluster", "--depth", "2", "--base-port", &base.to_string()])
        .args([
            "--zookeeper",
            &format!("127.0.0.1:{zk_port}"),
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    treecache_local::children::die_with_parent(&mut command);
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("Press Ctrl-C") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{printed}");
    }
    // Keep reading, so the cluster's later lines have somewhere to go.
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    assert!(printed.contains("3 nodes up"), "{printed}");
    for id in 1..=3 {
        assert!(printed.contains(&format!("NODE-{id} (slot")), "{printed}");
        assert!(
            printed.contains(&format!("http://127.0.0.1:{}", base as u32 + id)),
            "{printed}"
        );
    }
    // The standby of the root: after the 3 nodes, in sync.
    let standby = format!("http://127.0.0.1:{}", base + 4);
    assert!(
        printed.contains(&format!("{standby}  standby, in sync")),
        "{printed}"
    );
    assert_eq!(http::get(&standby).1["role"], "standby");
    let url = |id: u16| format!("http://127.0.0.1:{}", base + id);
    assert_eq!(
        http::put(&format!("{}/store/hello", url(1)), &json!("world")).0,
        200
    );
    assert_eq!(
        http::get(&format!("{standby}/store/hello")).1,
        json!({"key": "hello", "value": "world"})
    );
    assert_eq!(
        http::get(&format!("{}/store/hello", url(3))).1,
        json!({"key": "hello", "value": "world"})
    );

    assert!(treecache_local::children::signal(child.id(), 15));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(rest.join().unwrap().contains("Stopping the cluster"));
    let closed = |port: u16| {
        TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(300),
        )
        .is_err()
    };
    common::wait_until(Duration::from_secs(5), "every port is closed", || {
        (1..=4).all(|id| closed(base + id)) && closed(zk_port)
    });
}

/// A base port B such that B+1..=B+n are free, below the ephemeral range
/// (where the ZooKeeper's and the test's own ports come from); the tests of
/// this binary run at once, so each gets a range of its own.
fn free_base(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 100) as u16 * 100;
    loop {
        let base = start + NEXT.fetch_add(n + 1, Ordering::Relaxed);
        assert!(base < 32_000, "no free range of {n} ports");
        let free = (1..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
}

/// Starts `treecache cluster` with `args` and reads its stdout until the
/// cluster is up; returns the process and what it printed.
fn cluster_up(args: &[&str]) -> (std::process::Child, String) {
    let mut command = Command::new(common::treecache_bin());
    command
        .arg("cluster")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    treecache_local::children::die_with_parent(&mut command);
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Press Ctrl-C") {
                let _ = tx.send(printed.clone());
            }
        }
        let _ = tx.send(printed);
    });
    let printed = rx
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("no cluster within 90 s"));
    assert!(
        printed.contains("Press Ctrl-C"),
        "{printed} (after {:?})",
        started.elapsed()
    );
    (child, printed)
}

#[test]
fn a_depth_5_cluster_takes_its_slots_in_id_order_and_reports_what_it_takes() {
    // 31 nodes and the standby of the root.
    let base = free_base(32);
    let zk_port = common::free_port();
    let (mut child, printed) = cluster_up(&[
        "--depth",
        "5",
        "--base-port",
        &base.to_string(),
        "--zookeeper",
        &format!("127.0.0.1:{zk_port}"),
        "--log-level",
        "warn",
    ]);
    let url = |id: u32| format!("http://127.0.0.1:{}", base as u32 + id);
    let (status, doc) = http::get(&format!("{}/nodes", url(1)));
    assert_eq!(status, 200, "{doc}");
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 31, "{doc}");
    for node in nodes {
        let id: u64 = node["name"].as_str().unwrap()[5..].parse().unwrap();
        assert_eq!(node["slot"], id - 1, "{node}");
        assert_eq!(node["address"], format!("127.0.0.1:{}", base as u64 + id));
    }
    // Every node serves, and its own view agrees with the root's.
    for id in 1..=31 {
        assert_eq!(http::get(&format!("{}/ready", url(id))).0, 200, "NODE-{id}");
        let (_, info) = http::get(&url(id));
        assert_eq!(info["slot"], id - 1, "{info}");
    }
    // From depth 5 on, each node has 2 receiver threads.
    let summary = printed
        .lines()
        .find(|l| l.starts_with("31 nodes up in "))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(
        summary.contains("32 node processes: ") && summary.contains(" MiB resident in all, "),
        "{summary}"
    );
    let threads: u64 = summary
        .split(" MiB resident in all, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!((31..31 * 64).contains(&threads), "{summary}");
    assert!(treecache_local::children::signal(child.id(), 15));
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_depth_3_cluster_takes_its_slots_in_id_order_within_seconds() {
    let base = free_base(8);
    let zk_port = common::free_port();
    let started = Instant::now();
    let (mut child, printed) = cluster_up(&[
        "--depth",
        "3",
        "--base-port",
        &base.to_string(),
        "--zookeeper",
        &format!("127.0.0.1:{zk_port}"),
        "--log-level",
        "warn",
    ]);
    let took = started.elapsed();
    for (id, slot) in (1..=7).zip(0..) {
        assert!(
            printed.contains(&format!("NODE-{id} (slot {slot})")),
            "{printed}"
        );
    }
    // ZooKeeper's start is most of it; the nodes take about a second.
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(treecache_local::children::signal(child.id(), 15));
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_bad_number_of_root_shards_is_refused_naming_the_flag() {
    for bad in ["0", "65", "two"] {
        let out = Command::new(common::treecache_bin())
            .args(["cluster", "--root-shards", bad])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--root-shards {bad}: {stderr}");
        assert!(
            stderr.contains("--root-shards"),
            "--root-shards {bad}: {stderr}"
        );
        // Refused before anything is started.
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let help = Command::new(common::treecache_bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--root-shards K"));
}

#[test]
fn a_cluster_of_two_root_shards_reports_where_each_shards_members_listen() {
    // 3 nodes and the root's standby, then shard 1: its first member and
    // its standby.
    let base = free_base(6);
    let zk_port = common::free_port();
    let (mut child, printed) = cluster_up(&[
        "--depth",
        "2",
        "--root-shards",
        "2",
        "--base-port",
        &base.to_string(),
        "--zookeeper",
        &format!("127.0.0.1:{zk_port}"),
        "--log-level",
        "warn",
    ]);
    let url = |offset: u16| format!("http://127.0.0.1:{}", base + offset);
    for line in [
        "  shard 0, slots 0-8191:".to_string(),
        format!("    {}  primary", url(1)),
        format!("    {}  standby, in sync", url(4)),
        "  shard 1, slots 8192-16383:".to_string(),
        format!("    {}  primary", url(5)),
        format!("    {}  standby, in sync", url(6)),
    ] {
        assert!(printed.lines().any(|l| l == line), "{line:?} in\n{printed}");
    }
    let (status, doc) = http::get(&format!("{}/nodes", url(1)));
    assert_eq!(status, 200, "{doc}");
    let shards = doc["shards"].as_array().unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(shards.len(), 2, "{doc}");
    assert_eq!(shards[1]["primary"], format!("127.0.0.1:{}", base + 5));
    // A key of each shard, written through a leaf, read at every process.
    for shard in 0..2 {
        let key = &common::shards::keys_of_shard("report", shard, 2, 1)[0];
        let at = |offset| format!("{}/store/{key}", url(offset));
        assert_eq!(http::put(&at(3), &json!(shard)).0, 200, "{key}");
        for offset in 1..=6 {
            assert_eq!(
                http::get(&at(offset)).1,
                json!({"key": key, "value": shard}),
                "{key} at port {}",
                base + offset
            );
        }
    }
    assert!(treecache_local::children::signal(child.id(), 15));
    assert!(child.wait().unwrap().success());
    let closed = |port: u16| {
        TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(300),
        )
        .is_err()
    };
    common::wait_until(Duration::from_secs(5), "every port is closed", || {
        (1..=6).all(|offset| closed(base + offset)) && closed(zk_port)
    });
}
