//! A deep tree on one machine: `treecache cluster --depth 8` (255 nodes)
//! reads through every hop from a leaf to the root and invalidates every
//! holder; SIGTERM while it starts leaves nothing behind; and a tree of
//! depth 6 survives killing and restarting a middle node at depth 5.
//!
//! The tests take turns: on two cores, a tree of 255 nodes beside another
//! tree had a miss through eight hops time out.

use treecache_harness as common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::http;
use serde_json::json;

/// One tree at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A base port B such that B+1..=B+n are free, below the ephemeral range
/// (where the nodes' own connections take theirs) and below the ranges of
/// tests/cluster_command.rs.
fn free_base(n: u16) -> u16 {
    let start = 10_000 + (std::process::id() % 30) as u16 * 300;
    (start..19_700)
        .step_by(n as usize + 1)
        .find(|&base| (1..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .expect("a free range of ports")
}

/// What `treecache cluster` printed: its stdout so far, and the file its
/// stderr (its nodes' logs) goes to.
struct Printed {
    stdout: std::sync::Arc<Mutex<String>>,
    stderr: std::path::PathBuf,
}

impl Printed {
    fn has(&self, text: &str) -> bool {
        self.stdout.lock().unwrap().contains(text)
    }

    /// Its stdout, and the last lines of its stderr.
    fn all(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = err.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "{}\n--- last lines of stderr ---\n{tail}",
            self.stdout.lock().unwrap()
        )
    }
}

/// The flags of a depth-8 cluster on ports `base`+1.. whose ZooKeeper (its
/// own, when none answers there) is at `zk_port`.
fn depth_8(base: u16, zk_port: u16) -> Vec<String> {
    let (base, zk) = (base.to_string(), format!("127.0.0.1:{zk_port}"));
    let args = ["--depth", "8", "--base-port", &base, "--zookeeper", &zk];
    args.iter()
        .chain(&["--log-level", "warn"])
        .map(|s| s.to_string())
        .collect()
}

/// `treecache cluster` with `args`, in a process group of its own (so that
/// its nodes are in it too), its stdout read on a thread.
fn start_cluster(args: &[String]) -> (std::process::Child, Printed) {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let stderr = std::env::temp_dir().join(format!(
        "treecache-deep-tree-{}-{}.log",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut command = Command::new(common::treecache_bin());
    command
        .arg("cluster")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap());
    treecache_local::children::die_with_parent(&mut command);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().unwrap();
    let printed = Printed {
        stdout: Default::default(),
        stderr,
    };
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let into = printed.stdout.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut p = into.lock().unwrap();
            p.push_str(&line);
            p.push('\n');
        }
    });
    (child, printed)
}

/// The processes whose parent is `pid`: (pid, start time in ticks).
fn children_of(pid: u32) -> Vec<(u32, u64)> {
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| (p.pid, p.start))
        .collect()
}

struct Proc {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    start: u64,
}

/// Every process on the machine, from /proc/PID/stat.
fn all_processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command's name in parentheses: state ppid pgrp ... .
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(Proc {
                pid,
                ppid: rest.get(1)?.parse().ok()?,
                pgrp: rest.get(2)?.parse().ok()?,
                start: rest.get(19)?.parse().ok()?,
            })
        })
        .collect()
}

/// Whether the process `pid` that started at `start` still exists (and is
/// not a zombie nobody reaped yet).
fn still_there(pid: u32, start: u64) -> bool {
    all_processes().iter().any(|p| {
        p.pid == pid
            && p.start == start
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_write_at_the_root_is_read_at_a_depth_8_leaf_and_invalidated_along_the_path() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = free_base(256);
    let zk_port = common::free_port();
    let started = Instant::now();
    let mut args = depth_8(base, zk_port);
    args.extend(["--standbys".into(), "0".into()]);
    let (mut child, printed) = start_cluster(&args);
    common::wait_until(
        Duration::from_secs(100),
        "the depth-8 cluster is up",
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "treecache cluster exited: {}",
                printed.all()
            );
            printed.has("Press Ctrl-C")
        },
    );
    let up_in = started.elapsed();
    assert!(printed.has("255 nodes up in "), "{}", printed.all());
    eprintln!("depth 8 up in {up_in:?}");

    let url = |id: u32| format!("http://127.0.0.1:{}", base as u32 + id);
    let store = |id: u32| format!("{}/store/deep-key", url(id));
    let local = |id: u32| format!("{}?local=true", store(id));
    // NODE-255 holds the last slot, at depth 8: seven caches above it, then the root.
    let path = common::path_to_root(255);
    assert_eq!(path, vec![255, 127, 63, 31, 15, 7, 3, 1]);
    // Every node joined at the root; none of them keeps a connection to
    // it for that (a tree of 1,023 nodes would hold all of the root's
    // `--max-connections`, and clients would get 503).
    let at_root = common::procfs::established_at(base + 1);
    assert!(
        at_root < 32,
        "{at_root} connections are open at the root of 255 nodes once they joined"
    );
    let (_, info) = http::get(&url(255));
    assert_eq!(
        (info["slot"].clone(), info["depth"].clone()),
        (json!(254), json!(8))
    );

    assert_eq!(http::put(&store(1), &json!("v1")).0, 200);
    for &id in &path[..path.len() - 1] {
        assert_eq!(
            http::get(&local(id)).0,
            404,
            "NODE-{id} held the key before any read"
        );
    }
    let (status, body) = http::get(&store(255));
    assert_eq!((status, &body["value"]), (200, &json!("v1")), "{body}");
    // The miss went through every cache on the way up: each holds it now.
    for &id in &path {
        let (status, body) = http::get(&local(id));
        assert_eq!(
            (status, &body["value"]),
            (200, &json!("v1")),
            "NODE-{id}: {body}"
        );
    }

    // A write at the root: once it is acknowledged, no holder has the old value.
    assert_eq!(http::put(&store(1), &json!("v2")).0, 200);
    for &id in &path[..path.len() - 1] {
        let (status, body) = http::get(&local(id));
        assert!(
            status == 404 || body["value"] == json!("v2"),
            "NODE-{id} still holds {body} after the write was acknowledged"
        );
    }
    let (status, body) = http::get(&store(255));
    assert_eq!((status, &body["value"]), (200, &json!("v2")), "{body}");

    assert!(treecache_local::children::signal(child.id(), libc::SIGTERM));
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_file(&printed.stderr);
}

#[test]
fn sigterm_while_a_depth_8_cluster_starts_stops_every_process_it_started() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = free_base(256);
    let zk_port = common::free_port();
    let (mut child, printed) = start_cluster(&depth_8(base, zk_port));
    let pid = child.id();
    let dir = std::env::temp_dir().join(format!("treecache-cluster-{pid}"));
    // Part way: ZooKeeper and some of the nodes run, the cluster is not up.
    let mut seen: Vec<(u32, u64)> = Vec::new();
    common::wait_until(Duration::from_secs(60), "100 children started", || {
        assert!(child.try_wait().unwrap().is_none(), "{}", printed.all());
        for c in children_of(pid) {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        seen.len() >= 100
    });
    assert!(
        !printed.has("Press Ctrl-C"),
        "the cluster was up already; this test is about its start-up"
    );
    let signalled = Instant::now();
    assert!(treecache_local::children::signal(pid, libc::SIGTERM));
    // Children started after the last look are in the command's process group.
    for c in children_of(pid) {
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "treecache cluster still runs 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let left: Vec<u32> = seen
        .iter()
        .filter(|(p, start)| still_there(*p, *start))
        .map(|(p, _)| *p)
        .chain(
            all_processes()
                .iter()
                .filter(|p| p.pgrp == pid && p.pid != pid)
                .map(|p| p.pid),
        )
        .collect();
    let took = signalled.elapsed();
    assert!(
        left.is_empty() && took < Duration::from_secs(10),
        "{} processes of the {} it started remain after {took:?}: {left:?}",
        left.len(),
        seen.len()
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_eq!(status.code(), Some(1), "{status}: {}", printed.all());
    let _ = std::fs::remove_file(&printed.stderr);
    eprintln!("{} children, all gone {took:?} after SIGTERM", seen.len());
}

#[test]
fn a_tree_survives_killing_and_restarting_a_middle_node_at_depth_5() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The harness starts the nodes one by one, so slots follow ids: NODE-31
    // holds slot 30 at depth 5, its children NODE-62 and NODE-63 at depth 6.
    let mut cluster = common::Cluster::builder(6)
        .arg("--log-level")
        .arg("warn")
        .start();
    let (_, info) = http::get(&cluster.url(31));
    assert_eq!(
        (info["slot"].clone(), info["depth"].clone()),
        (json!(30), json!(5))
    );
    let store = |c: &common::Cluster, id: u32| format!("{}/store/middle", c.url(id));
    assert_eq!(http::put(&store(&cluster, 1), &json!("before")).0, 200);
    assert_eq!(http::get(&store(&cluster, 63)).1["value"], json!("before"));

    cluster.kill(31);
    // A write waits for a holder that does not answer until its session has
    // ended (then the root no longer counts it live); then writes succeed.
    let root = cluster.url(1);
    common::wait_until(Duration::from_secs(30), "NODE-31 is not live", || {
        http::get(&format!("{root}/nodes")).1["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["name"] == "NODE-31" && n["live"] == false)
    });
    assert_eq!(http::put(&store(&cluster, 1), &json!("while down")).0, 200);
    cluster.spawn(31);
    cluster.wait_joined(&[31]);
    let (_, info) = http::get(&cluster.url(31));
    assert_eq!(
        info["slot"],
        json!(30),
        "the restarted node keeps its slot: {info}"
    );
    // The leaf below it reads the write made while it was gone, through it.
    common::wait_until(
        Duration::from_secs(20),
        "NODE-63 reads the new value",
        || http::get(&store(&cluster, 63)).1["value"] == json!("while down"),
    );
    assert_eq!(http::put(&store(&cluster, 1), &json!("after")).0, 200);
    for id in [63, 31, 15] {
        let (status, body) = http::get(&store(&cluster, id));
        assert_eq!(
            (status, &body["value"]),
            (200, &json!("after")),
            "NODE-{id}: {body}"
        );
    }
}
