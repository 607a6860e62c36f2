//! The request scenarios of an in-memory tree (section `requests`): hits,
//! misses, 404s and writes on a depth-3 cluster; the resident memory of the
//! nodes (idle, and the root holding many small keys); the time to start
//! seven nodes; the latency of a miss at depths 2 to 6; and what
//! `treecache cluster --depth 8` (255 nodes) takes to come up: time,
//! resident memory and threads of all its nodes (depth 4 in smoke mode).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, Cluster};
use crate::load::{
    hot_key, load, load_keys, small_key, small_value, Req, Stats, HOT_KEYS, LOADERS, LOAD_LIMIT,
    READERS,
};
use crate::report::Report;
use crate::{first_slot_at, rss_mib, Mode};

/// Client connections of the write scenario.
pub const WRITERS: usize = 16;

/// How many keys, and which depths, in each mode.
struct Sizes {
    /// Small keys at the root for the first memory figure (and the misses).
    keys_first: u64,
    /// Small keys at the root for the second memory figure.
    keys_second: u64,
    depths: &'static [u32],
    /// Depth of the `treecache cluster` started for its start-up figures.
    cluster_depth: u32,
}

const FULL: Sizes = Sizes {
    keys_first: 100_000,
    keys_second: 1_000_000,
    depths: &[2, 3, 4, 5, 6],
    cluster_depth: 8,
};

const SMOKE: Sizes = Sizes {
    keys_first: 5_000,
    keys_second: 20_000,
    depths: &[2, 3],
    cluster_depth: 4,
};

/// PUT through a leaf with [`WRITERS`] connections, fresh keys: the
/// scenario of that name (the durable and failover sections run it too).
pub fn put_through_leaf(leaf: &str, mode: Mode) -> Stats {
    put_through_leaf_as(leaf, mode, "w")
}

/// [`put_through_leaf`] with keys that begin with `tag`: loads with
/// different tags on one tree write fresh keys each.
pub fn put_through_leaf_as(leaf: &str, mode: Mode, tag: &str) -> Stats {
    let put = |c: usize, n: u64| {
        Some(Req::put(
            format!("{leaf}/store/{tag}{c:02}-{n:012}"),
            &small_value(n),
        ))
    };
    load(WRITERS, mode.warmup, mode.measure, put)
}

pub fn run(mode: Mode, report: &mut Report) {
    let sizes = if mode.smoke { &SMOKE } else { &FULL };
    let (w, m) = (mode.warmup, mode.measure);
    report.section("Requests (latencies in ms)", "Other figures");

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

    println!("\nrunning scenarios ...");

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
    let (loaded, put_rate) = load_keys(&root, 0, sizes.keys_first);
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
    report.row("PUT through a leaf", &put_through_leaf(&leaf, mode));
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
    if sizes.depths.iter().all(|&d| d <= 3) {
        for &d in sizes.depths {
            let url = cluster.url(cluster.at_slot(first_slot_at(d)));
            by_depth.push((d, miss_at(&url, 1)));
        }
    }

    // The second memory figure.
    let t = Instant::now();
    let (more, _) = load_keys(&root, sizes.keys_first, sizes.keys_second);
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
    if sizes.depths.iter().any(|&d| d > 3) {
        by_depth = miss_by_depth(mode, sizes);
    }
    report.figure(cluster_command(sizes.cluster_depth));
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
}

/// Starts `treecache cluster --depth D` on the harness's ZooKeeper, waits
/// until it says it is up, and returns its summary: how long its nodes took
/// to start and become ready in id order, their resident memory and their
/// threads, as it measured them.
fn cluster_command(depth: u32) -> String {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    // The nodes and the standby of the root.
    let n = (1u16 << depth) - 1 + 1;
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
    treecache_local::children::die_with_parent(&mut command);
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
    treecache_local::children::signal(child.id(), 15);
    let _ = child.wait();
    format!(
        "treecache cluster --depth {depth}: {}",
        summary.unwrap_or_else(|| "did not come up".to_string())
    )
}

/// Miss latency at each depth of `sizes.depths`, in a tree just deep enough:
/// nodes fill slots in order of arrival, so 2^(d-1) nodes reach a node at
/// every depth up to d.
fn miss_by_depth(mode: Mode, sizes: &Sizes) -> Vec<(u32, Stats)> {
    let deepest = *sizes.depths.iter().max().unwrap();
    let last_slot = 1u32 << (deepest - 1);
    let order: Vec<u32> = (2..=last_slot).collect();
    let cluster = Cluster::builder(deepest)
        .arg("--log-level")
        .arg("warn")
        .order(&order)
        .start();
    let root = cluster.url(cluster.root_id);
    // Enough fresh keys for one connection at a few thousand misses a second.
    let keys = 20_000 * sizes.depths.len() as u64;
    load_keys(&root, 0, keys);
    let fresh = AtomicU64::new(0);
    sizes
        .depths
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
