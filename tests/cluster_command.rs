//! `treecache cluster`: comes up with a standby of the root, serves, and
//! leaves nothing running after SIGTERM.

use treecache_harness as common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http;
use serde_json::json;

#[test]
fn the_cluster_command_comes_up_serves_and_stops_everything_on_sigterm() {
    // Four ports in a row that nothing listens on now (three nodes and a standby).
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let base = (0..50)
        .map(|_| common::free_port().saturating_sub(100).max(20000))
        .find(|&b| (1..=4).all(|i| free(b + i)))
        .expect("four free ports in a row");
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
    treecache::local::children::die_with_parent(&mut command);
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

    assert!(treecache::local::children::signal(child.id(), 15));
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
