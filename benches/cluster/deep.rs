//! `deep`: the deepest tree on this machine, `treecache cluster --depth D`
//! (D = 10, 1,023 nodes, unless the machine's thread ids cannot hold it:
//! then the deepest that fits, and the figure says why), once with the
//! ZooKeeper the command starts itself and once with one already running.
//! Figures: the time to all ready and live (and each step of the start-up),
//! the memory of all nodes (resident and proportional), the threads a node
//! has (and those of an idle cache by name), the CPU the idle tree takes, a
//! root write read at the deepest leaf and invalidated along its path, the
//! latency of a miss through every hop from that leaf, and how long the
//! command takes to stop everything.
//!
//! `--smoke` runs depth 5 (31 nodes) once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use crate::load::{self, Stats};
use crate::report::Report;
use crate::Mode;

/// The depth asked for.
const DEEPEST: u32 = 10;
/// Thread ids kept free for everything else on the machine.
const SPARE_THREADS: u64 = 4000;

pub fn run(mode: Mode, report: &mut Report) {
    report.section("Deep tree", "Deep tree: figures");
    // A small tree first: its threads a node tell how deep a tree fits.
    let small = if mode.smoke { 5 } else { 6 };
    let Some(first) = one_tree(small, Zk::Own, mode, report) else {
        return;
    };
    if mode.smoke {
        return;
    }
    let depth = deepest_that_fits(first.threads_per_node, report);
    if depth <= small {
        return;
    }
    one_tree(depth, Zk::Own, mode, report);
    one_tree(depth, Zk::Running, mode, report);
}

/// Which ZooKeeper a run uses.
#[derive(Clone, Copy, PartialEq)]
enum Zk {
    /// The one `treecache cluster` starts (none answers at its address).
    Own,
    /// One started before, as a user's would be.
    Running,
}

/// What a run learned that the next one needs.
struct Tree {
    threads_per_node: f64,
}

/// The deepest depth up to [`DEEPEST`] whose nodes fit in the thread ids
/// left (`kernel.pid_max` less the threads running now and a spare).
fn deepest_that_fits(threads_per_node: f64, report: &mut Report) -> u32 {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let pid_max = read("/proc/sys/kernel/pid_max").unwrap_or(32_768);
    let threads_max = read("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX);
    let running = threads_now();
    let room = pid_max
        .min(threads_max)
        .saturating_sub(running + SPARE_THREADS);
    let fits = |d: u32| ((1u64 << d) as f64 + 1.0) * threads_per_node <= room as f64;
    let depth = (1..=DEEPEST).rev().find(|&d| fits(d)).unwrap_or(1);
    if depth < DEEPEST {
        report.figure(format!(
            "depth {DEEPEST} does not fit: {} nodes at {threads_per_node:.1} threads each need \
             {:.0} thread ids; kernel.pid_max {pid_max}, {running} threads running, \
             {SPARE_THREADS} kept spare. Measuring depth {depth} instead.",
            (1u32 << DEEPEST) - 1,
            ((1u64 << DEEPEST) as f64) * threads_per_node,
        ));
    }
    depth
}

/// Threads on the machine now.
fn threads_now() -> u64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let total = s.split_whitespace().nth(3)?.split('/').nth(1)?.to_string();
            total.parse().ok()
        })
        .unwrap_or(0)
}

/// One cluster of `depth`: up, measured, stopped. `None` when it did not
/// come up (the figure says why).
fn one_tree(depth: u32, zk: Zk, mode: Mode, report: &mut Report) -> Option<Tree> {
    let nodes = (1u32 << depth) - 1;
    let base = free_base(nodes as u16 + 1);
    let running = match zk {
        Zk::Running => Some(common::ZooKeeper::start()),
        Zk::Own => None,
    };
    let zk_addr = running.as_ref().map_or_else(
        || format!("127.0.0.1:{}", common::free_port()),
        |z| z.addr(),
    );
    let what = format!(
        "treecache cluster --depth {depth} ({nodes} nodes, {})",
        match zk {
            Zk::Own => "its own ZooKeeper",
            Zk::Running => "a ZooKeeper already running",
        }
    );
    let mut command = Command::new(common::treecache_bin());
    command
        .args(["cluster", "--depth", &depth.to_string()])
        .args(["--base-port", &base.to_string()])
        .args(["--zookeeper", &zk_addr, "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    treecache_local::children::die_with_parent(&mut command);
    let started = Instant::now();
    let mut child = command.spawn().expect("start treecache cluster");
    let printed = read_stdout(&mut child);
    let up = loop {
        if printed.lock().unwrap().contains("Press Ctrl-C") {
            break true;
        }
        if child.try_wait().ok().flatten().is_some() || started.elapsed() > Duration::from_secs(180)
        {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = printed.lock().unwrap().clone();
    if !up {
        report.figure(format!(
            "{what}: did not come up within {:.0} s: {}",
            started.elapsed().as_secs_f64(),
            text.lines().last().unwrap_or("no output")
        ));
        stop(&mut child);
        return None;
    }
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or("")
            .trim_end_matches(" Try:")
            .to_string()
    };
    report.figure(format!(
        "{what}: {}",
        line(&format!("{nodes} nodes up in "))
    ));
    report.figure(format!(
        "{what}: {}",
        line("start-up, from the command's start")
    ));
    let pids = children_of(child.id());
    let per_node = node_usage(&pids);
    report.figure(format!("{what}: {per_node}"));
    let threads_per_node = per_node.threads as f64 / per_node.processes.max(1) as f64;
    let url = |id: u32| format!("http://127.0.0.1:{}", base as u32 + id);
    let port = |id: u32| base as u32 + id;
    if let Some(pid) = pid_listening(&pids, port(2)) {
        report.figure(format!(
            "{what}: threads of an idle cache (NODE-2), by name: {}",
            threads_by_name(pid)
        ));
    }
    report.figure(format!(
        "{what}: {}",
        idle_cpu(&pids, Duration::from_secs(5))
    ));
    deepest_leaf(&what, depth, &url, mode, report);
    let stopped = Instant::now();
    let gone = stop(&mut child);
    let left = pids.iter().filter(|(p, s)| alive(*p, *s)).count();
    report.figure(format!(
        "{what}: SIGTERM to all {} processes gone in {:.2} s ({left} left){}",
        pids.len(),
        stopped.elapsed().as_secs_f64(),
        if gone {
            ""
        } else {
            "; the command did not exit"
        }
    ));
    drop(running);
    Some(Tree { threads_per_node })
}

/// A write at the root read at the deepest leaf, every cache on its path
/// holding it, a second write invalidating them; then misses through every
/// hop from that leaf, one connection.
fn deepest_leaf(
    what: &str,
    depth: u32,
    url: &dyn Fn(u32) -> String,
    mode: Mode,
    report: &mut Report,
) {
    let leaf = (1u32 << depth) - 1;
    let path = common::path_to_root(leaf);
    let key = "deep-bench-key";
    let store = |id: u32| format!("{}/store/{key}", url(id));
    let agent = load::agent();
    let get = |u: &str| {
        agent
            .get(u)
            .call()
            .ok()
            .and_then(|r| serde_json::from_reader::<_, serde_json::Value>(r.into_reader()).ok())
            .map(|v| v["value"].clone())
    };
    let put = |id: u32, v: &str| {
        agent
            .put(&store(id))
            .set("Content-Type", "application/json")
            .send_string(&serde_json::json!({ "value": v }).to_string())
            .is_ok()
    };
    let first = put(1, "v1") && get(&store(leaf)) == Some("v1".into());
    let held = path[1..path.len() - 1]
        .iter()
        .filter(|&&id| get(&format!("{}?local=true", store(id))) == Some("v1".into()))
        .count();
    let second = put(1, "v2");
    let stale = path[..path.len() - 1]
        .iter()
        .filter(|&&id| get(&format!("{}?local=true", store(id))) == Some("v1".into()))
        .count();
    let after = get(&store(leaf)) == Some("v2".into());
    report.figure(format!(
        "{what}: a root write read at NODE-{leaf} (depth {depth}): {}; {held} of {} caches on \
         its path hold it; after a second write {stale} hold the old value and the leaf reads \
         the new one: {}",
        if first { "yes" } else { "NO" },
        path.len() - 2,
        if second && after { "yes" } else { "NO" },
    ));
    // Misses through every hop: keys written at the root, each read once at the leaf.
    let n: u64 = if mode.smoke { 200 } else { 2_000 };
    let (written, _) = load::load_keys(&url(1), 0, n);
    let mut latencies = Vec::with_capacity(n as usize);
    let mut errors = 0;
    let mut first_error = None;
    let began = Instant::now();
    for i in 0..n {
        let u = format!("{}/store/{}", url(leaf), load::small_key(i));
        let t = Instant::now();
        match agent.get(&u).call() {
            Ok(r) => {
                let _ = r.into_string();
                latencies.push(t.elapsed().as_micros() as u32);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    latencies.sort_unstable();
    let stats = Stats {
        conns: 1,
        requests: latencies.len() as u64,
        errors,
        seconds: began.elapsed().as_secs_f64(),
        latencies,
    };
    report.figure(format!(
        "{what}: a miss at NODE-{leaf} through {} hops: p50 {:.2} ms, p99 {:.2} ms ({} misses, {} errors)",
        path.len() - 1,
        stats.quantile_ms(0.5),
        stats.quantile_ms(0.99),
        stats.requests,
        stats.errors
    ));
    if written < n || first_error.is_some() {
        report.figure(format!(
            "{what}: {written} of {n} keys written at the root; first error at the leaf: {}",
            first_error.as_deref().unwrap_or("none")
        ));
    }
}

/// The command's stdout, read on a thread: what it printed so far.
fn read_stdout(child: &mut Child) -> Arc<Mutex<String>> {
    let printed = Arc::new(Mutex::new(String::new()));
    let into = printed.clone();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut p = into.lock().unwrap();
            p.push_str(&line);
            p.push('\n');
        }
    });
    printed
}

/// SIGTERM, and up to 15 s for the command to exit; whether it did.
fn stop(child: &mut Child) -> bool {
    treecache_local::children::signal(child.id(), libc::SIGTERM);
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// A base port B such that B+1..=B+n are free, below the ephemeral range.
fn free_base(n: u16) -> u16 {
    (10_000..32_000 - n)
        .step_by(n as usize + 1)
        .find(|&b| (1..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok()))
        .expect("a free range of ports")
}

/// `(pid, start time)` of each child of `parent`, from /proc.
fn children_of(parent: u32) -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (ppid, start) = stat_of(pid)?;
            (ppid == parent).then_some((pid, start))
        })
        .collect()
}

/// The parent and start time of `pid`.
fn stat_of(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if rest.first() == Some(&"Z") {
        return None;
    }
    Some((rest.get(1)?.parse().ok()?, rest.get(19)?.parse().ok()?))
}

fn alive(pid: u32, start: u64) -> bool {
    stat_of(pid).is_some_and(|(_, s)| s == start)
}

/// The node among `pids` that listens on `port` (its `--listen`).
fn pid_listening(pids: &[(u32, u64)], port: u32) -> Option<u32> {
    let listen = format!("127.0.0.1:{port}");
    pids.iter().map(|(p, _)| *p).find(|p| {
        std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
            args.windows(2)
                .any(|w| w[0] == b"--listen" && w[1] == listen.as_bytes())
        })
    })
}

/// What the node processes among `pids` take.
struct NodeUsage {
    processes: usize,
    threads: u64,
    rss_kib: u64,
    pss_kib: u64,
}

impl std::fmt::Display for NodeUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.processes.max(1) as f64;
        write!(
            f,
            "{} node processes: {} threads ({:.1} a node), {:.0} MiB resident in all \
             ({:.1} MiB a node), {:.0} MiB proportional set ({:.2} MiB a node: the binary's \
             pages are shared)",
            self.processes,
            self.threads,
            self.threads as f64 / n,
            self.rss_kib as f64 / 1024.0,
            self.rss_kib as f64 / 1024.0 / n,
            self.pss_kib as f64 / 1024.0,
            self.pss_kib as f64 / 1024.0 / n,
        )
    }
}

/// A `/proc` file's field in kB (or a count).
fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn is_node(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).nth(1) == Some(b"node"))
}

fn node_usage(pids: &[(u32, u64)]) -> NodeUsage {
    let mut u = NodeUsage {
        processes: 0,
        threads: 0,
        rss_kib: 0,
        pss_kib: 0,
    };
    for &(pid, _) in pids.iter().filter(|(p, _)| is_node(*p)) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        u.processes += 1;
        u.threads += field(&status, "Threads:");
        u.rss_kib += field(&status, "VmRSS:");
        u.pss_kib += field(&rollup, "Pss:");
    }
    u
}

/// `name ×count` of each thread name of `pid` (numbers at the end folded).
fn threads_by_name(pid: u32) -> String {
    let mut names: std::collections::BTreeMap<String, u32> = Default::default();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit());
            *names.entry(name.to_string()).or_default() += 1;
        }
    }
    let total: u32 = names.values().sum();
    let list: Vec<String> = names.iter().map(|(n, c)| format!("{n} x{c}")).collect();
    format!("{total}: {}", list.join(", "))
}

/// The CPU the processes among `pids` take over `over`, idle.
fn idle_cpu(pids: &[(u32, u64)], over: Duration) -> String {
    let ticks = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest: Vec<u64> = s
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                Some(rest.iter().sum())
            })
            .unwrap_or(0)
    };
    let split = |f: &dyn Fn(u32) -> u64| -> (u64, u64) {
        pids.iter()
            .fold((0, 0), |(n, o), &(p, _)| match is_node(p) {
                true => (n + f(p), o),
                false => (n, o + f(p)),
            })
    };
    let before = split(&ticks);
    std::thread::sleep(over);
    let after = split(&ticks);
    let hz = 100.0 * over.as_secs_f64();
    format!(
        "idle, the nodes take {:.2} cores and ZooKeeper {:.2} (over {} s)",
        (after.0 - before.0) as f64 / hz,
        (after.1 - before.1) as f64 / hz,
        over.as_secs()
    )
}
