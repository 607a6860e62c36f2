//! The durable root (section `durable`): what `--data-dir` costs, and what
//! it gives back after a crash. Every figure is compared with one measured
//! in the same run.
//!
//! - Group commit: the `PUT through a leaf` scenario (16 connections) on a
//!   fresh depth-3 tree whose root logs with `--fsync always`, next to the
//!   same scenario on an in-memory tree and with `--fsync everysec`; and PUT
//!   one at a time at the root. The root's `/metrics` tell how many syncs
//!   the writes shared.
//! - Recovery: small keys loaded into a durable root, `kill -9`, started
//!   again; the time from the kill to the first GET of a known key answered
//!   at the root, and to `/ready` 200, with the recovery time the root logs.
//! - Compaction: writers overwrite a bounded set of keys of a few KiB, so the
//!   log outgrows the live data and compaction runs; the latency of the
//!   writes that overlapped a compaction, and the disk use after one next to
//!   the live data.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, http, Builder, Cluster};
use crate::load::{
    load, load_keys_fast, quantile_ms, small_key, small_value, timeline, Req, Stats, Timed,
};
use crate::report::{met, Report};
use crate::requests::{put_through_leaf, WRITERS};
use crate::{first_slot_at, metric, metrics, Mode};

/// How big the section is in each mode.
struct Sizes {
    /// Small keys loaded before the root is killed.
    recovery_keys: u64,
    /// Keys the compaction writers overwrite, and the length of their values.
    rewritten_keys: u64,
    value_len: usize,
    /// Compactions to see before the writers stop, and how long to wait for them.
    compactions: usize,
    compaction_limit: Duration,
}

const FULL: Sizes = Sizes {
    recovery_keys: 1_000_000,
    rewritten_keys: 2_048,
    value_len: 4_096,
    compactions: 3,
    compaction_limit: Duration::from_secs(30),
};

const SMOKE: Sizes = Sizes {
    recovery_keys: 20_000,
    rewritten_keys: 256,
    value_len: 4_096,
    compactions: 1,
    compaction_limit: Duration::from_secs(30),
};

/// Connections that load the keys of the recovery.
const LOADERS: usize = 32;
/// The mode of the root that is killed: recovery reads the same files
/// whichever mode wrote them, and `everysec` loads the keys about twice
/// as fast as `always` on this machine, which keeps the section short.
const RECOVERY_FSYNC: &str = "everysec";
/// Connections that overwrite keys while compaction runs.
const REWRITERS: usize = 4;
/// How often the compaction's monitor reads the root's `/metrics` and the disk.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Upper bound on the time a killed root takes to serve again.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

pub fn run(mode: Mode, report: &mut Report) {
    let sizes = if mode.smoke { &SMOKE } else { &FULL };
    report.section("Durable root (latencies in ms)", "Durable root: figures");
    common::shared_zookeeper();
    group_commit(mode, report);
    recovery(sizes, report);
    compaction(sizes, report);
}

// ---------------------------------------------------------------- helpers

/// A fresh data directory, removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new(what: &str) -> DataDir {
        DataDir(common::temp_dir(what))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A tree of `depth` at log level info (the root logs its recovery and
/// compactions there, and nothing per request); its root logs to `data`
/// with `--fsync MODE` when given.
fn tree(depth: u32, data: Option<(&DataDir, &str)>) -> Builder {
    let builder = Cluster::builder(depth).arg("--log-level").arg("info");
    match data {
        Some((dir, fsync)) => builder
            .arg("--data-dir")
            .arg(dir.arg())
            .arg("--fsync")
            .arg(fsync),
        None => builder,
    }
}

/// Seven nodes, joined.
fn start_tree(data: Option<(&DataDir, &str)>) -> Cluster {
    let cluster = tree(3, data).no_wait().start();
    cluster.wait_joined(&cluster.ids());
    cluster
}

/// The root of a depth-3 tree alone, ready for writes.
fn start_root(data: &DataDir, fsync: &str) -> Cluster {
    let cluster = tree(3, Some((data, fsync))).start_root_only();
    wait_ready(&cluster.url(cluster.root_id), Duration::from_secs(30));
    cluster
}

fn wait_ready(url: &str, limit: Duration) {
    let ready = format!("{url}/ready");
    common::wait_until(limit, "the root is ready", || http::get(&ready).0 == 200);
}

/// What a data directory holds on disk.
#[derive(Default, Clone, Copy)]
struct Disk {
    log_bytes: u64,
    logs: usize,
    snapshot_bytes: u64,
    snapshots: usize,
    /// Every file, these and the others.
    total: u64,
}

impl Disk {
    fn of(dir: &Path) -> Disk {
        let mut disk = Disk::default();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            disk.total += meta.len();
            if name.starts_with("wal-") && name.ends_with(".log") {
                disk.log_bytes += meta.len();
                disk.logs += 1;
            } else if name.starts_with("snapshot-") && name.ends_with(".snap") {
                disk.snapshot_bytes += meta.len();
                disk.snapshots += 1;
            }
        }
        disk
    }

    fn describe(&self) -> String {
        format!(
            "{} in all: logs {} in {} file(s), snapshots {} in {} file(s)",
            mib(self.total),
            mib(self.log_bytes),
            self.logs,
            mib(self.snapshot_bytes),
            self.snapshots
        )
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------- group commit

/// PUT one at a time at the root, fresh keys.
fn put_one_at_a_time(root: &str, mode: Mode) -> Stats {
    let put = |_: usize, n: u64| {
        Some(Req::put(
            format!("{root}/store/one-{n:012}"),
            &small_value(n),
        ))
    };
    load(1, mode.warmup, mode.measure, put)
}

/// What the root's log did during a load.
struct Syncs {
    /// Keys the root gained (every write of the load is of a fresh key).
    writes: f64,
    syncs: f64,
    /// Syncs that took at most 0.5 ms.
    quick_syncs: f64,
    sync_seconds: f64,
    seconds: f64,
}

impl Syncs {
    fn describe(&self) -> String {
        format!(
            "{:.0} writes in {:.0} syncs over {:.1} s: {:.0} syncs/s, {:.2} writes per sync, \
             {:.3} ms per sync on average ({:.0}% within 0.5 ms), syncing {:.0}% of the time",
            self.writes,
            self.syncs,
            self.seconds,
            self.syncs / self.seconds,
            self.writes / self.syncs.max(1.0),
            1000.0 * self.sync_seconds / self.syncs.max(1.0),
            100.0 * self.quick_syncs / self.syncs.max(1.0),
            100.0 * self.sync_seconds / self.seconds
        )
    }
}

/// Runs `work` and reads from the root's `/metrics` what its log did meanwhile.
fn with_syncs<T>(root: &str, work: impl FnOnce() -> T) -> (T, Syncs) {
    let before = metrics(root);
    let t = Instant::now();
    let out = work();
    let seconds = t.elapsed().as_secs_f64();
    let after = metrics(root);
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    let syncs = Syncs {
        writes: delta("treecache_store_keys"),
        syncs: delta("treecache_wal_fsync_seconds_count"),
        quick_syncs: delta("treecache_wal_fsync_seconds_bucket{shard=\"0\",le=\"0.0005\"}"),
        sync_seconds: delta("treecache_wal_fsync_seconds_sum"),
        seconds,
    };
    (out, syncs)
}

/// The throughput of PUT through a leaf with and without a durable root,
/// and the latency of one write at a time at a root that syncs each.
fn group_commit(mode: Mode, report: &mut Report) {
    let (memory, memory_one) = {
        let cluster = start_tree(None);
        let leaf = cluster.url(cluster.at_slot(first_slot_at(3)));
        let root = cluster.url(cluster.root_id);
        let leaf_stats = put_through_leaf(&leaf, mode);
        report.row("PUT through a leaf, in memory", &leaf_stats);
        let one = put_one_at_a_time(&root, mode);
        report.row("PUT at root, 1 conn, in memory", &one);
        (leaf_stats, one)
    };

    let data = DataDir::new("always");
    let (always, always_syncs, always_one, one_syncs) = {
        let cluster = start_tree(Some((&data, "always")));
        let leaf = cluster.url(cluster.at_slot(first_slot_at(3)));
        let root = cluster.url(cluster.root_id);
        let (leaf_stats, syncs) = with_syncs(&root, || put_through_leaf(&leaf, mode));
        report.row("PUT through a leaf, --fsync always", &leaf_stats);
        let (one, one_syncs) = with_syncs(&root, || put_one_at_a_time(&root, mode));
        report.row("PUT at root, 1 conn, --fsync always", &one);
        (leaf_stats, syncs, one, one_syncs)
    };
    drop(data);

    let data = DataDir::new("everysec");
    let everysec = {
        let cluster = start_tree(Some((&data, "everysec")));
        let leaf = cluster.url(cluster.at_slot(first_slot_at(3)));
        let stats = put_through_leaf(&leaf, mode);
        report.row("PUT through a leaf, --fsync everysec", &stats);
        stats
    };
    drop(data);

    let ratio = |s: &Stats| s.throughput() / memory.throughput();
    report.figure(format!(
        "PUT through a leaf ({WRITERS} conns), each on a fresh 7-node tree: in memory {:.0}/s; \
         --fsync always {:.0}/s = {:.2}x of in memory; --fsync everysec {:.0}/s = {:.2}x \
         (target for always: at least 0.7x, {})",
        memory.throughput(),
        always.throughput(),
        ratio(&always),
        everysec.throughput(),
        ratio(&everysec),
        met(ratio(&always) >= 0.7)
    ));
    report.figure(format!(
        "group commit under --fsync always, PUT through a leaf: {}",
        always_syncs.describe()
    ));
    report.figure(format!(
        "PUT at the root one at a time, --fsync always: p50 {:.3} ms, p99 {:.3} ms \
         (in memory: p50 {:.3} ms, p99 {:.3} ms); target p50 at most 1 ms, {}; {}",
        always_one.quantile_ms(0.5),
        always_one.quantile_ms(0.99),
        memory_one.quantile_ms(0.5),
        memory_one.quantile_ms(0.99),
        met(always_one.quantile_ms(0.5) <= 1.0),
        one_syncs.describe()
    ));
}

// ---------------------------------------------------------------- recovery

/// Loads small keys into a durable root, kills it with SIGKILL, starts it
/// again, and times its return.
fn recovery(sizes: &Sizes, report: &mut Report) {
    let n = sizes.recovery_keys;
    let data = DataDir::new("recovery");
    let mut cluster = start_root(&data, RECOVERY_FSYNC);
    let id = cluster.root_id;
    let root = cluster.url(id);

    let t = Instant::now();
    let (loaded, rate) = load_keys_fast(&root, 0, n, LOADERS);
    let load_seconds = t.elapsed().as_secs_f64();
    assert_eq!(loaded, n, "every key of the recovery was written");
    println!("loaded {loaded} keys into the durable root in {load_seconds:.1} s");
    let on_disk = Disk::of(data.path());

    // A key in the middle of the load, and how the root answers it.
    let known = n / 2 + 7;
    let known_url = format!("{root}/store/{}", small_key(known));
    let known_value = small_value(known);
    let ready_url = format!("{root}/ready");

    let killed = Instant::now();
    cluster.kill(id);
    cluster.spawn(id);
    let (mut served, mut ready) = (None, None);
    while killed.elapsed() < RECOVERY_LIMIT && (served.is_none() || ready.is_none()) {
        if served.is_none() {
            let (status, body) = http::get(&known_url);
            if status == 200 && body["value"] == known_value.as_str() {
                served = Some(killed.elapsed());
            }
        }
        if ready.is_none() && http::get(&ready_url).0 == 200 {
            ready = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let served = served.unwrap_or_else(|| {
        panic!("the restarted root did not serve {known_url} within {RECOVERY_LIMIT:?}")
    });
    let ready = ready
        .unwrap_or_else(|| panic!("the restarted root was not ready within {RECOVERY_LIMIT:?}"));

    // Everything is back: the count, and a sample of keys read back.
    let keys = metric(&metrics(&root), "treecache_store_keys") as u64;
    assert_eq!(
        keys, n,
        "the restarted root holds every key it acknowledged"
    );
    let step = (n / 1000).max(1);
    for i in (0..n).step_by(step as usize) {
        let (status, body) = http::get(&format!("{root}/store/{}", small_key(i)));
        assert!(
            status == 200 && body["value"] == small_value(i).as_str(),
            "key {i} after the restart: {status} {body}"
        );
    }
    let logged = cluster
        .log(id)
        .lines()
        .rfind(|l| l.contains("recovered "))
        .map(|l| l[l.find("recovered ").unwrap()..].to_string())
        .unwrap_or_else(|| "(no recovery line in the root's log)".into());
    drop(cluster);

    report.figure(format!(
        "recovery: {n} keys (16 B keys, 32 B values) loaded into the root \
         (--fsync {RECOVERY_FSYNC}) by {LOADERS} conns in {load_seconds:.1} s ({rate:.0}/s); \
         on disk before the kill {}",
        on_disk.describe()
    ));
    report.figure(format!(
        "recovery: kill -9 of the root to the first GET of a known key answered at the root \
         {:.2} s, to /ready 200 {:.2} s (the root started again at once); the root logged \
         \"{logged}\"; all {n} keys back, {} read back right (target for 1M keys: serving \
         within 3 s{})",
        served.as_secs_f64(),
        ready.as_secs_f64(),
        n.div_ceil(step),
        if n >= 1_000_000 {
            format!(", {}", met(served.as_secs_f64() <= 3.0))
        } else {
            String::from(", not judged with fewer keys")
        }
    ));
}

// ---------------------------------------------------------------- compaction

/// One reading of the compaction's monitor.
struct Sample {
    at_us: u64,
    wal_bytes: u64,
    disk: u64,
}

/// A 16-byte key of the compaction's bounded set.
fn rewritten_key(j: u64) -> String {
    format!("c{j:015}")
}

/// A value of exactly `len` characters, different at every write.
fn long_value(c: usize, n: u64, len: usize) -> String {
    let head = format!("w{c:02}-{n:012}-");
    format!("{head}{}", "x".repeat(len.saturating_sub(head.len())))
}

/// Overwrites a bounded set of keys until compaction has run (or fails
/// loudly), and reports the write latency during the compactions and the
/// disk use after them.
fn compaction(sizes: &Sizes, report: &mut Report) {
    let (keys, value_len) = (sizes.rewritten_keys, sizes.value_len);
    let data = DataDir::new("compaction");
    let cluster = start_root(&data, "always");
    let id = cluster.root_id;
    let root = cluster.url(id);

    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let key_of = |c: usize, n: u64| (n * REWRITERS as u64 + c as u64) % keys;
    let (writes, samples, drops) = std::thread::scope(|s| {
        let monitor = s.spawn(|| {
            let mut samples: Vec<Sample> = Vec::new();
            let mut drops = Vec::new();
            loop {
                let text = metrics(&root);
                let sample = Sample {
                    at_us: start.elapsed().as_micros() as u64,
                    wal_bytes: metric(&text, "treecache_wal_bytes") as u64,
                    disk: Disk::of(data.path()).total,
                };
                if samples
                    .last()
                    .is_some_and(|p| sample.wal_bytes < p.wal_bytes)
                {
                    drops.push(samples.len());
                }
                samples.push(sample);
                if drops.len() >= sizes.compactions || start.elapsed() >= sizes.compaction_limit {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            (samples, drops)
        });
        let writes = timeline(REWRITERS, start, &stop, |c, n| {
            Some(Req::put(
                format!("{root}/store/{}", rewritten_key(key_of(c, n))),
                &long_value(c, n, value_len),
            ))
        });
        let (samples, drops) = monitor.join().unwrap();
        (writes, samples, drops)
    });
    let ran_us = start.elapsed().as_micros() as u64;

    let peak_wal = samples.iter().map(|s| s.wal_bytes).max().unwrap_or(0);
    if drops.is_empty() {
        panic!(
            "no compaction within {:?}: {} writes of {value_len}-byte values over {keys} keys; \
             treecache_wal_bytes peaked at {peak_wal}",
            sizes.compaction_limit,
            writes.len()
        );
    }
    // After the last compaction: what the directory holds, next to what is live.
    std::thread::sleep(Duration::from_millis(100));
    let after = Disk::of(data.path());
    let text = metrics(&root);
    let cache_bytes = metric(&text, "treecache_cache_bytes") as u64;
    let store_keys = metric(&text, "treecache_store_keys") as u64;
    let mut live_keys = vec![false; keys as usize];
    for w in writes.iter().filter(|w| w.ok) {
        live_keys[key_of(w.client, w.n) as usize] = true;
    }
    let live_count = live_keys.iter().filter(|&&l| l).count() as u64;
    // A string value is stored as its compact JSON: quoted.
    let live_bytes = live_count * (16 + value_len as u64 + 2);
    assert_eq!(store_keys, live_count, "the root holds the keys written");

    // The compactions the root logged, in order: how long each took.
    let log = cluster.log(id);
    let logged: Vec<(u64, f64)> = log
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("compacted the log: snapshot of ")?..];
            let bytes = rest
                .strip_prefix("compacted the log: snapshot of ")?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            let ms = rest
                .rsplit("in ")
                .next()?
                .trim_end_matches(" ms")
                .parse()
                .ok()?;
            Some((bytes, ms))
        })
        .collect();
    drop(cluster);

    // Each compaction ended between two samples; it began its logged
    // duration before the later one (or before the earlier, to be safe).
    let windows: Vec<(u64, u64)> = drops
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let took_us = logged.get(k).map_or(0, |(_, ms)| (ms * 1000.0) as u64);
            let from = samples[i - 1].at_us.saturating_sub(took_us);
            (from, samples[i].at_us)
        })
        .collect();
    let during: Vec<&Timed> = writes
        .iter()
        .filter(|w| {
            windows
                .iter()
                .any(|&(from, to)| w.start_us < to && w.end_us() > from)
        })
        .collect();
    let window_seconds: f64 = windows
        .iter()
        .map(|&(from, to)| (to - from) as f64 / 1e6)
        .sum();
    let all = Stats::of_timed(REWRITERS, ran_us as f64 / 1e6, writes.iter());
    let overlapping = Stats::of_timed(REWRITERS, window_seconds, during.iter().copied());
    report.row(
        &format!("PUT {} KiB at the root, --fsync always", value_len / 1024),
        &all,
    );
    report.row(
        &format!("PUT {} KiB at root, during compaction", value_len / 1024),
        &overlapping,
    );

    let max_ms = |s: &Stats| {
        s.latencies
            .last()
            .map_or(f64::NAN, |&us| us as f64 / 1000.0)
    };
    let peak_disk = samples.iter().map(|s| s.disk).max().unwrap_or(0);
    let took: Vec<String> = logged
        .iter()
        .take(drops.len())
        .map(|(bytes, ms)| format!("{ms:.0} ms ({})", mib(*bytes)))
        .collect();
    report.figure(format!(
        "compaction: {REWRITERS} conns overwrote {keys} keys with {value_len}-byte values at the \
         root (--fsync always) for {:.1} s, {} writes; {} compaction(s) seen \
         (treecache_wal_bytes dropping from a peak of {}), taking {}",
        ran_us as f64 / 1e6,
        writes.len(),
        drops.len(),
        mib(peak_wal),
        took.join(", ")
    ));
    report.figure(format!(
        "compaction: write latency during compaction ({} writes overlapping {:.0} ms of \
         compaction): p99 {:.3} ms, max {:.3} ms; all writes: p99 {:.3} ms, max {:.3} ms \
         (target p99 during compaction at most 100 ms, {})",
        overlapping.requests,
        window_seconds * 1000.0,
        overlapping.quantile_ms(0.99),
        max_ms(&overlapping),
        all.quantile_ms(0.99),
        max_ms(&all),
        met(quantile_ms(&overlapping.latencies, 0.99) <= 100.0)
    ));
    report.figure(format!(
        "compaction: disk after the last compaction {} ({}); live data {} ({live_count} keys: \
         key bytes plus value bytes as stored JSON); ratio {:.2}x (target at most 2x, {}); \
         the root's treecache_cache_bytes {}; the directory peaked at {} ({:.2}x) during the run",
        after.total,
        after.describe(),
        live_bytes,
        after.total as f64 / live_bytes as f64,
        met(after.total as f64 <= 2.0 * live_bytes as f64),
        cache_bytes,
        mib(peak_disk),
        peak_disk as f64 / live_bytes as f64
    ));
}
