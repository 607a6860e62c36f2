//! The benchmark of a running tree: `cargo bench --bench cluster [-- --smoke]`.
//!
//! It starts a depth-3 cluster of release nodes on loopback (with the test
//! harness's ZooKeeper) and drives it with keep-alive clients: each client
//! thread has its own connection, warms up, then records the latency of every
//! request for a fixed time. A bare tiny_http server answering the same bytes
//! from a static map (this binary, re-executed with `--baseline-server PORT`)
//! is measured in the same run, and every throughput is also printed as a
//! ratio to its GET throughput.
//!
//! Besides the request scenarios it reports the resident memory of the nodes
//! (idle, and the root holding many small keys), the time to start seven
//! nodes, the latency of a miss at depths 2 to 6, and what `treecache
//! cluster --depth 8` (255 nodes) takes to come up: time, resident memory
//! and threads of all its nodes (depth 4 in smoke mode).
//!
//! `--smoke` runs every scenario briefly and with fewer keys; it checks that
//! the benchmark works, never how fast the node is.

use treecache_harness as common;

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Cluster;

/// How long and how big the run is.
#[derive(Clone, Copy)]
struct Mode {
    smoke: bool,
    warmup: Duration,
    measure: Duration,
    /// Small keys at the root for the first memory figure (and the misses).
    keys_first: u64,
    /// Small keys at the root for the second memory figure.
    keys_second: u64,
    depths: &'static [u32],
    /// Depth of the `treecache cluster` started for its start-up figures.
    cluster_depth: u32,
}

const FULL: Mode = Mode {
    smoke: false,
    warmup: Duration::from_millis(500),
    measure: Duration::from_secs(3),
    keys_first: 100_000,
    keys_second: 1_000_000,
    depths: &[2, 3, 4, 5, 6],
    cluster_depth: 8,
};

const SMOKE: Mode = Mode {
    smoke: true,
    warmup: Duration::from_millis(100),
    measure: Duration::from_millis(300),
    keys_first: 5_000,
    keys_second: 20_000,
    depths: &[2, 3],
    cluster_depth: 4,
};

/// Keys read by the hit scenarios (and the baseline).
const HOT_KEYS: u64 = 1_000;
/// Client connections of the read scenarios.
const READERS: usize = 8;
/// Client connections of the write scenario.
const WRITERS: usize = 16;
/// Client connections that load keys into the root.
const LOADERS: usize = 8;
/// Upper bound on the time spent loading keys for a memory figure.
const LOAD_LIMIT: Duration = Duration::from_secs(300);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-server") {
        let port = args[i + 1].parse().expect("a port after --baseline-server");
        baseline_server(port);
        return;
    }
    let mode = if args.iter().any(|a| a == "--smoke") {
        SMOKE
    } else {
        FULL
    };
    let began = Instant::now();
    run(mode);
    println!(
        "\nbenchmark finished in {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- keys

/// A 16-byte key.
fn small_key(i: u64) -> String {
    format!("k{i:015}")
}

/// A 32-byte value, as the JSON body of a PUT.
fn small_value(i: u64) -> String {
    format!("v{i:031}")
}

fn put_body(value: &str) -> Vec<u8> {
    format!("{{\"value\":\"{value}\"}}").into_bytes()
}

/// The body a node answers for a stored string value.
fn get_body(key: &str, value: &str) -> String {
    format!("{{\"key\":\"{key}\",\"value\":\"{value}\"}}")
}

fn hot_key(i: u64) -> String {
    format!("hot{i:013}")
}

// ---------------------------------------------------------------- load

/// One request of a load.
struct Req {
    method: &'static str,
    url: String,
    body: Option<Vec<u8>>,
    expect: u16,
}

impl Req {
    fn get(url: String, expect: u16) -> Req {
        Req {
            method: "GET",
            url,
            body: None,
            expect,
        }
    }

    fn put(url: String, value: &str) -> Req {
        Req {
            method: "PUT",
            url,
            body: Some(put_body(value)),
            expect: 200,
        }
    }
}

/// What one load measured.
struct Stats {
    conns: usize,
    requests: u64,
    errors: u64,
    seconds: f64,
    /// Microseconds, sorted.
    latencies: Vec<u32>,
}

impl Stats {
    fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The latency at quantile `q`, in milliseconds.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).max(1);
        self.latencies[rank.min(self.latencies.len()) - 1] as f64 / 1000.0
    }
}

/// Sends one request on the agent's connection; true when the status is the expected one.
fn send(agent: &ureq::Agent, req: &Req) -> bool {
    let request = agent.request(req.method, &req.url);
    let result = match &req.body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_bytes(body),
        None => request.call(),
    };
    match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => {
            let status = response.status();
            // Reading the body to its end returns the connection for reuse.
            let mut sink = Vec::with_capacity(256);
            let _ = response.into_reader().take(1 << 20).read_to_end(&mut sink);
            status == req.expect
        }
        Err(_) => false,
    }
}

/// Runs `conns` keep-alive clients; `next(client, n)` gives a client's n-th
/// request, or None when it has no more. Requests that start after the
/// warm-up and before its end are measured.
fn load<F>(conns: usize, warmup: Duration, measure: Duration, next: F) -> Stats
where
    F: Fn(usize, u64) -> Option<Req> + Sync,
{
    let start = Instant::now();
    let measured_from = start + warmup;
    let until = measured_from + measure;
    let next = &next;
    let per_client: Vec<(Vec<u32>, u64, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(10))
                        .max_idle_connections_per_host(1)
                        .build();
                    let mut latencies = Vec::with_capacity(1 << 16);
                    let mut errors = 0;
                    let mut n = 0;
                    let mut last = measured_from;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= until {
                            break;
                        }
                        let Some(req) = next(c, n) else { break };
                        n += 1;
                        let ok = send(&agent, &req);
                        let t1 = Instant::now();
                        if t0 >= measured_from {
                            latencies.push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                            if !ok {
                                errors += 1;
                            }
                            last = t1;
                        }
                    }
                    (latencies, errors, last)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ended = per_client
        .iter()
        .map(|(_, _, last)| *last)
        .max()
        .unwrap_or(measured_from);
    let mut latencies: Vec<u32> = per_client
        .iter()
        .flat_map(|(l, _, _)| l.iter().copied())
        .collect();
    latencies.sort_unstable();
    Stats {
        conns,
        requests: latencies.len() as u64,
        errors: per_client.iter().map(|(_, e, _)| e).sum(),
        seconds: ended.saturating_duration_since(measured_from).as_secs_f64(),
        latencies,
    }
}

/// Puts keys `from..to` (16-byte keys, 32-byte values) into the node at
/// `url`; returns how many were written and the rate.
fn load_keys(url: &str, from: u64, to: u64) -> (u64, f64) {
    let counter = AtomicU64::new(from);
    let stats = load(LOADERS, Duration::ZERO, LOAD_LIMIT, |_, _| {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        (i < to).then(|| Req::put(format!("{url}/store/{}", small_key(i)), &small_value(i)))
    });
    (stats.requests - stats.errors, stats.throughput())
}

// ---------------------------------------------------------------- baseline

/// A bare tiny_http server with a node's number of workers, answering
/// `/store/{key}` from a static map with the bytes a node would send.
fn baseline_server(port: u16) {
    let map: HashMap<String, Vec<u8>> = (0..HOT_KEYS)
        .map(|i| {
            let key = hot_key(i);
            let body = get_body(&key, &small_value(i)).into_bytes();
            (format!("/store/{key}"), body)
        })
        .collect();
    let map = std::sync::Arc::new(map);
    let server = std::sync::Arc::new(
        tiny_http::Server::http(("127.0.0.1", port)).expect("bind the baseline port"),
    );
    let content_type =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap();
    let workers: Vec<_> = (0..treecache::default_threads())
        .map(|_| {
            let server = server.clone();
            let map = map.clone();
            let content_type = content_type.clone();
            std::thread::spawn(move || loop {
                let Ok(request) = server.recv() else { continue };
                let response = match map.get(request.url()) {
                    Some(body) => tiny_http::Response::from_data(body.clone())
                        .with_header(content_type.clone()),
                    None => tiny_http::Response::from_data(&b"{\"error\":\"not found\"}"[..])
                        .with_status_code(404)
                        .with_header(content_type.clone()),
                };
                let _ = request.respond(response);
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

/// The baseline server process, killed on drop.
struct Baseline {
    child: Child,
    url: String,
}

impl Baseline {
    fn start() -> Baseline {
        let port = common::free_port();
        let mut command = Command::new(std::env::current_exe().expect("this benchmark's path"));
        command
            .args(["--baseline-server", &port.to_string()])
            .stdin(Stdio::null());
        treecache::local::children::die_with_parent(&mut command);
        let child = command.spawn().expect("start the baseline server");
        let url = format!("http://127.0.0.1:{port}");
        common::wait_until(Duration::from_secs(10), "the baseline answers", || {
            common::http::get(&format!("{url}/store/{}", hot_key(0))).0 == 200
        });
        Baseline { child, url }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- figures

/// Resident memory of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The printed results.
struct Report {
    baseline: f64,
    rows: Vec<String>,
    figures: Vec<String>,
}

impl Report {
    fn row(&mut self, name: &str, stats: &Stats) {
        let ratio = if self.baseline > 0.0 {
            stats.throughput() / self.baseline
        } else {
            f64::NAN
        };
        let line = format!(
            "| {name:<38} | {:>5} | {:>9.0} | {:>6.2}x | {:>7.3} | {:>7.3} | {:>7.3} | {:>6} |",
            stats.conns,
            stats.throughput(),
            ratio,
            stats.quantile_ms(0.5),
            stats.quantile_ms(0.99),
            stats.quantile_ms(0.999),
            stats.errors,
        );
        println!("{line}");
        self.rows.push(line);
    }

    fn figure(&mut self, line: String) {
        println!("{line}");
        self.figures.push(line);
    }

    fn print(&self) {
        println!("\n## Requests (latencies in ms; ratio to the baseline's GET throughput)\n");
        println!(
            "| {:<38} | {:>5} | {:>9} | {:>7} | {:>7} | {:>7} | {:>7} | {:>6} |",
            "scenario", "conns", "req/s", "ratio", "p50", "p99", "p99.9", "errors"
        );
        println!(
            "|{}|{}|{}|{}|{}|{}|{}|{}|",
            "-".repeat(40),
            "-".repeat(7),
            "-".repeat(11),
            "-".repeat(9),
            "-".repeat(9),
            "-".repeat(9),
            "-".repeat(9),
            "-".repeat(8)
        );
        for r in &self.rows {
            println!("{r}");
        }
        println!("\n## Other figures\n");
        for f in &self.figures {
            println!("- {f}");
        }
    }
}

// ---------------------------------------------------------------- run

fn run(mode: Mode) {
    let (w, m) = (mode.warmup, mode.measure);
    println!(
        "treecache benchmark ({} mode): node binary {}",
        if mode.smoke { "smoke" } else { "full" },
        common::treecache_bin().display()
    );

    let t = Instant::now();
    common::shared_zookeeper();
    let zk_seconds = t.elapsed().as_secs_f64();

    // Seven nodes: the root first, then six at once.
    let t = Instant::now();
    let cluster = Cluster::builder(3)
        .arg("--log-level")
        .arg("warn")
        .no_wait()
        .start();
    cluster.wait_joined(&cluster.ids());
    let start_seconds = t.elapsed().as_secs_f64();

    let idle: Vec<f64> = cluster
        .ids()
        .iter()
        .map(|&id| rss_mib(cluster.pid(id)))
        .collect();

    let root = cluster.url(cluster.root_id);
    let leaf = cluster.url(cluster.at_slot(first_slot_at(3)));
    let all: Vec<String> = cluster.ids().iter().map(|&id| cluster.url(id)).collect();

    let baseline = Baseline::start();
    let base = load(READERS, w, m, |c, n| {
        let i = (c as u64 * 7919 + n) % HOT_KEYS;
        Some(Req::get(
            format!("{}/store/{}", baseline.url, hot_key(i)),
            200,
        ))
    });
    drop(baseline);
    let mut report = Report {
        baseline: base.throughput(),
        rows: Vec::new(),
        figures: Vec::new(),
    };
    println!("\nrunning scenarios ...");
    report.row("baseline GET (bare tiny_http)", &base);

    // The hot keys: at the root, and read once through the leaf.
    let hot = AtomicU64::new(0);
    load(LOADERS, Duration::ZERO, LOAD_LIMIT, |_, _| {
        let i = hot.fetch_add(1, Ordering::Relaxed);
        (i < HOT_KEYS).then(|| Req::put(format!("{root}/store/{}", hot_key(i)), &small_value(i)))
    });
    for i in 0..HOT_KEYS {
        common::http::get(&format!("{leaf}/store/{}", hot_key(i)));
    }

    // Small keys at the root: the first memory figure, and the misses.
    let t = Instant::now();
    let (loaded, put_rate) = load_keys(&root, 0, mode.keys_first);
    let first_rss = rss_mib(cluster.pid(cluster.root_id));
    println!(
        "loaded {loaded} keys at the root in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let hot_get = |url: &str| {
        let url = url.to_string();
        move |c: usize, n: u64| {
            let i = (c as u64 * 7919 + n) % HOT_KEYS;
            Some(Req::get(format!("{url}/store/{}", hot_key(i)), 200))
        }
    };
    report.row("GET hit at a leaf", &load(READERS, w, m, hot_get(&leaf)));
    report.row("GET hit at the root", &load(READERS, w, m, hot_get(&root)));

    // Every miss reads a key held only by the root, never read before.
    let fresh = AtomicU64::new(0);
    let miss_at = |url: &str, conns: usize| {
        let fresh = &fresh;
        load(conns, w, m, move |_, _| {
            let i = fresh.fetch_add(1, Ordering::Relaxed);
            (i < loaded).then(|| Req::get(format!("{url}/store/{}", small_key(i)), 200))
        })
    };
    report.row("GET miss, 2 hops (leaf)", &miss_at(&leaf, READERS));
    report.row("GET miss, 2 hops (leaf), 1 conn", &miss_at(&leaf, 1));
    let absent = |c: usize, n: u64| Some(Req::get(format!("{leaf}/store/absent-{c}-{n}"), 404));
    report.row("GET 404 through a leaf", &load(READERS, w, m, absent));
    let absent1 = |c: usize, n: u64| Some(Req::get(format!("{leaf}/store/absent1-{c}-{n}"), 404));
    report.row("GET 404 through a leaf, 1 conn", &load(1, w, m, absent1));
    let put = |c: usize, n: u64| {
        Some(Req::put(
            format!("{leaf}/store/w{c:02}-{n:012}"),
            &small_value(n),
        ))
    };
    report.row("PUT through a leaf", &load(WRITERS, w, m, put));
    let put1 = |_: usize, n: u64| {
        Some(Req::put(
            format!("{leaf}/store/one-{n:012}"),
            &small_value(n),
        ))
    };
    report.row("PUT through a leaf, 1 conn", &load(1, w, m, put1));
    let put_root = |c: usize, n: u64| {
        Some(Req::put(
            format!("{root}/store/r{c:02}-{n:012}"),
            &small_value(n),
        ))
    };
    report.row(
        "PUT at the root (for comparison)",
        &load(WRITERS, w, m, put_root),
    );
    report.row("GET hit at a leaf, 1 conn", &load(1, w, m, hot_get(&leaf)));
    let mix = |c: usize, n: u64| {
        let node = &all[(c + n as usize) % all.len()];
        let i = (c as u64 * 7919 + n * 31) % HOT_KEYS;
        let url = format!("{node}/store/{}", hot_key(i));
        Some(if n % 10 == 9 {
            Req::put(url, &small_value(n))
        } else {
            Req::get(url, 200)
        })
    };
    report.row("90/10 GET/PUT on all nodes", &load(READERS, w, m, mix));

    // Miss latency by depth (one connection, fresh keys each time).
    let mut by_depth = Vec::new();
    if mode.depths.iter().all(|&d| d <= 3) {
        for &d in mode.depths {
            let url = cluster.url(cluster.at_slot(first_slot_at(d)));
            by_depth.push((d, miss_at(&url, 1)));
        }
    }

    // The second memory figure.
    let t = Instant::now();
    let (more, _) = load_keys(&root, mode.keys_first, mode.keys_second);
    let second_rss = rss_mib(cluster.pid(cluster.root_id));
    println!(
        "loaded {more} more keys at the root in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(cluster);

    report.figure(format!(
        "idle RSS of the 7 nodes: {:.1} to {:.1} MiB",
        idle.iter().copied().fold(f64::INFINITY, f64::min),
        idle.iter().copied().fold(0.0, f64::max)
    ));
    report.figure(format!(
        "root RSS holding {} keys (16 B keys, 32 B values): {first_rss:.1} MiB",
        loaded + HOT_KEYS
    ));
    report.figure(format!(
        "root RSS holding {} keys (after all scenarios): {second_rss:.1} MiB",
        loaded + more + HOT_KEYS
    ));
    report.figure(format!(
        "PUT rate at the root while loading ({LOADERS} conns): {put_rate:.0}/s"
    ));
    report.figure(format!(
        "7 nodes started and joined in {start_seconds:.2} s (ZooKeeper already up; it took {zk_seconds:.1} s)"
    ));
    if mode.depths.iter().any(|&d| d > 3) {
        by_depth = miss_by_depth(mode);
    }
    report.figure(cluster_command(mode.cluster_depth));
    for (d, stats) in &by_depth {
        report.row(
            &format!("GET miss at depth {d} ({} hops), 1 conn", d - 1),
            stats,
        );
    }

    if by_depth.len() >= 2 {
        let (d0, s0) = &by_depth[0];
        let (d1, s1) = &by_depth[by_depth.len() - 1];
        let per_hop = (s1.quantile_ms(0.5) - s0.quantile_ms(0.5)) / (d1 - d0) as f64;
        report.figure(format!(
            "miss latency per extra hop (p50, depth {d0} to {d1}): {per_hop:.3} ms"
        ));
    }
    report.print();
}

/// Starts `treecache cluster --depth D` on the harness's ZooKeeper, waits
/// until it says it is up, and returns its summary: how long its nodes took
/// to start and become ready in id order, their resident memory and their
/// threads, as it measured them.
fn cluster_command(depth: u32) -> String {
    use std::io::BufRead;
    let n = (1u16 << depth) - 1;
    let base = (20_000..60_000)
        .step_by(1000)
        .find(|&b| (1..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok()))
        .expect("a free range of ports");
    let mut command = Command::new(common::treecache_bin());
    command
        .arg("cluster")
        .args([
            "--depth",
            &depth.to_string(),
            "--base-port",
            &base.to_string(),
        ])
        .args(["--zookeeper", &common::shared_zookeeper()])
        .args(["--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    treecache::local::children::die_with_parent(&mut command);
    let mut child = command.spawn().expect("start treecache cluster");
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut summary = None;
    for line in lines.map_while(Result::ok) {
        if line.contains(" nodes up in ") {
            summary = Some(line.trim_end_matches(" Try:").to_string());
        }
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    treecache::local::children::signal(child.id(), 15);
    let _ = child.wait();
    format!(
        "treecache cluster --depth {depth}: {}",
        summary.unwrap_or_else(|| "did not come up".to_string())
    )
}

/// The first slot at depth `d` (slots count from 0 at the root, level by level).
fn first_slot_at(d: u32) -> u64 {
    (1u64 << (d - 1)) - 1
}

/// Miss latency at each depth of `mode.depths`, in a tree just deep enough:
/// nodes fill slots in order of arrival, so 2^(d-1) nodes reach a node at
/// every depth up to d.
fn miss_by_depth(mode: Mode) -> Vec<(u32, Stats)> {
    let deepest = *mode.depths.iter().max().unwrap();
    let last_slot = 1u32 << (deepest - 1);
    let order: Vec<u32> = (2..=last_slot).collect();
    let cluster = Cluster::builder(deepest)
        .arg("--log-level")
        .arg("warn")
        .order(&order)
        .start();
    let root = cluster.url(cluster.root_id);
    // Enough fresh keys for one connection at a few thousand misses a second.
    let keys = 20_000 * mode.depths.len() as u64;
    load_keys(&root, 0, keys);
    let fresh = AtomicU64::new(0);
    mode.depths
        .iter()
        .map(|&d| {
            let url = cluster.url(cluster.at_slot(first_slot_at(d)));
            let fresh = &fresh;
            let stats = load(1, mode.warmup, mode.measure, move |_, _| {
                let i = fresh.fetch_add(1, Ordering::Relaxed);
                (i < keys).then(|| Req::get(format!("{url}/store/{}", small_key(i)), 200))
            });
            (d, stats)
        })
        .collect()
}
