//! Root shards (section `shards`): what K root groups hold, whether one
//! frozen shard holds up the writes of the others, and what sharding costs
//! a request and a primary's write. Every figure of K = 4 is set against
//! K = 1 measured in the same run.
//!
//! - Data: a depth-2 tree whose root processes all run with
//!   `--max-store-bytes` ([`Sizes::store_bytes`], and `--fsync no`: what
//!   is measured is room, not speed) takes writes of fresh keys with
//!   random 16-byte names and 32-byte values through its two leaves,
//!   [`FILLERS`] connections, until the first 507; the figure is the
//!   writes acknowledged before it. Once for K = 1, once for K = 4, each on
//!   a fresh tree. The first 507 of K = 4 comes when its fullest shard is
//!   full, so the ratio is a little under 4.
//! - Isolation: a depth-2 tree of K = 4 shards, no standbys.
//!   [`OTHER_WRITERS`] clients write fresh keys of the three other shards
//!   through the leaves, and [`FROZEN_WRITERS`] keys of one shard, whose
//!   primary is then frozen (SIGSTOP) for [`Sizes::freeze`] and thawed.
//!   The figure is the latency of the other shards' writes that started
//!   during the freeze, and what became of the frozen shard's. Shard 1 is
//!   frozen, then (in a full run) shard 0, the root itself, which also
//!   keeps the tree's table.
//! - Cost: two depth-3 trees up at once, K = 1 and K = 4, both with the
//!   harness's data directories (`--fsync always`). A GET miss through 2
//!   hops (a leaf at depth 3 reads keys held only at their primaries, never
//!   read before) with one connection to each tree, their requests taken in
//!   turn from one thread ([`interleave`]): p50; the same for a PUT through
//!   the leaf. These are the cost targets. Then the `PUT through a leaf`
//!   scenario ([`WRITERS`] connections, fresh keys) in alternating rounds
//!   ([`alternate`]): throughput, with the log syncs of the primaries
//!   meanwhile (no target: both trees saturate this machine's 2 cores and
//!   its one disk, which K = 4's extra processes and logs share); then the same on two more trees whose logs do not sync
//!   (`--fsync no`), to tell what routing costs from what one disk shared
//!   by K logs costs. And the CPU time (utime + stime from
//!   `/proc/PID/stat`) a primary spends per write: [`Sizes::cpu_writes`]
//!   writes of keys of shard 1 (of 4) through a leaf, [`CPU_WRITERS`]
//!   connections, read before and after at K = 1's root and at K = 4's
//!   shard-1 primary, in alternating rounds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::shards::shard_of;
use crate::common::{Builder, Cluster};
use crate::load::{
    self, alternate, interleave, load, load_keys_fast, median, quantile_ms, small_key, small_value,
    Req, Stats, LOAD_LIMIT,
};
use crate::report::{met, Report};
use crate::requests::{put_through_leaf_as, WRITERS};
use crate::{first_slot_at, metric, metrics, Mode};

/// The shards of the sharded trees.
const K: u32 = 4;
/// K = 4 must hold at least this many times K = 1's keys.
const DATA_TARGET: f64 = 3.8;
/// The p99 of the other shards' writes while one shard's primary is frozen.
const ISOLATION_TARGET_MS: f64 = 50.0;
/// K = 4 against K = 1: miss p50 and PUT throughput within this factor.
const COST_TARGET: f64 = 1.10;
/// A primary's CPU time per write at K = 4 within this fraction of K = 1's.
const CPU_TARGET: f64 = 0.10;
/// Connections that fill the trees.
const FILLERS: usize = 8;
/// Clients writing keys of the shards that are not frozen.
const OTHER_WRITERS: usize = 6;
/// Clients writing keys of the frozen shard.
const FROZEN_WRITERS: usize = 2;
/// Writes before the freeze, and after the thaw.
const SETTLE: Duration = Duration::from_millis(800);
/// The writes of this span before the freeze are the ones it is set against
/// (those before it warm the connections up).
const BEFORE: Duration = Duration::from_millis(500);
/// Connections of the CPU-per-write rounds.
const CPU_WRITERS: usize = 8;
/// The shard whose primary's CPU is read at K = 4.
const CPU_SHARD: u32 = 1;

/// How much of everything, in each mode.
struct Sizes {
    /// `--max-store-bytes` of every root process in the data figure.
    store_bytes: u64,
    /// How long a shard's primary stays frozen.
    freeze: Duration,
    /// The shards frozen, one after the other.
    frozen: &'static [u32],
    /// Keys loaded for the misses, and the slices of their run.
    miss_keys: u64,
    miss_slices: usize,
    put_rounds: usize,
    cpu_writes: u64,
    cpu_rounds: usize,
}

const FULL: Sizes = Sizes {
    store_bytes: 1 << 20,
    freeze: Duration::from_secs(3),
    frozen: &[1, 0],
    miss_keys: 60_000,
    miss_slices: 6,
    put_rounds: 6,
    cpu_writes: 10_000,
    cpu_rounds: 4,
};

const SMOKE: Sizes = Sizes {
    store_bytes: 64 << 10,
    freeze: Duration::from_millis(800),
    frozen: &[1],
    miss_keys: 4_000,
    miss_slices: 2,
    put_rounds: 1,
    cpu_writes: 500,
    cpu_rounds: 2,
};

pub fn run(mode: Mode, report: &mut Report) {
    let sizes = if mode.smoke { &SMOKE } else { &FULL };
    report.section("Root shards (latencies in ms)", "Root shards: figures");
    data(sizes, report);
    isolation(sizes, report);
    cost(mode, sizes, report);
}

fn quiet(builder: Builder) -> Builder {
    builder.arg("--log-level").arg("warn")
}

/// A 16-byte key with a random name: `r` and 15 hex digits.
fn random_key(state: &mut u64) -> String {
    // splitmix64
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("r{:015x}", z >> 4)
}

/// A seed that differs from run to run.
fn seed(i: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (i.wrapping_mul(0xA24B_AED4_963E_E407))
}

/// A fresh key of shard `shard` of [`K`]: the first of `{tag}-0`,
/// `{tag}-1`, ... that belongs to it.
fn key_of_shard(tag: &str, shard: u32) -> String {
    (0u32..)
        .map(|j| format!("{tag}-{j}"))
        .find(|key| shard_of(key, K) == shard)
        .expect("some key of every shard")
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn statuses(counts: &BTreeMap<u16, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(status, n)| format!("{n} x {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------- data

/// What one tree took before its first 507.
struct Filled {
    /// Writes acknowledged before the first 507.
    written: u64,
    seconds: f64,
    /// The shard of the key that got the first 507.
    full_shard: u32,
    /// The keys each shard's primary held then.
    per_shard: Vec<u64>,
    /// Other answers than 200 and 507 (0: none).
    other: BTreeMap<u16, u64>,
}

fn fill(k: u32, store_bytes: u64) -> Filled {
    let cluster = quiet(Cluster::builder(2).root_shards(k))
        .arg("--max-store-bytes")
        .arg(&store_bytes.to_string())
        .arg("--fsync")
        .arg("no")
        .start();
    let leaves = [
        cluster.url(cluster.at_slot(1)),
        cluster.url(cluster.at_slot(2)),
    ];
    let written = AtomicU64::new(0);
    let at_full = AtomicU64::new(u64::MAX);
    let full_key: Mutex<Option<String>> = Mutex::new(None);
    let other: Mutex<BTreeMap<u16, u64>> = Mutex::new(BTreeMap::new());
    let t = Instant::now();
    std::thread::scope(|s| {
        for c in 0..FILLERS {
            let (leaves, written, at_full, full_key, other) =
                (&leaves, &written, &at_full, &full_key, &other);
            s.spawn(move || {
                let agent = load::agent();
                let mut state = seed(c as u64);
                for n in 0u64.. {
                    if at_full.load(Ordering::SeqCst) != u64::MAX || t.elapsed() > LOAD_LIMIT {
                        break;
                    }
                    let key = random_key(&mut state);
                    let leaf = &leaves[c % 2];
                    let req = Req::put(format!("{leaf}/store/{key}"), &small_value(n));
                    match load::status(&agent, &req) {
                        200 => {
                            written.fetch_add(1, Ordering::SeqCst);
                        }
                        507 => {
                            let now = written.load(Ordering::SeqCst);
                            if at_full.fetch_min(now, Ordering::SeqCst) == u64::MAX {
                                *full_key.lock().unwrap() = Some(key);
                            }
                        }
                        status => {
                            let mut other = other.lock().unwrap();
                            *other.entry(status).or_default() += 1;
                            assert!(
                                other.values().sum::<u64>() < 1000,
                                "filling K = {k}: too many failed writes: {other:?}"
                            );
                        }
                    }
                }
            });
        }
    });
    let seconds = t.elapsed().as_secs_f64();
    let per_shard = (0..k)
        .map(|s| {
            metric(
                &metrics(&cluster.url(cluster.member(s, 0))),
                "treecache_store_keys",
            ) as u64
        })
        .collect();
    let key = full_key
        .into_inner()
        .unwrap()
        .unwrap_or_else(|| panic!("K = {k}: no 507 within {} s", LOAD_LIMIT.as_secs()));
    Filled {
        written: at_full.load(Ordering::SeqCst),
        seconds,
        full_shard: shard_of(&key, k),
        per_shard,
        other: other.into_inner().unwrap(),
    }
}

fn data(sizes: &Sizes, report: &mut Report) {
    let one = fill(1, sizes.store_bytes);
    println!(
        "K = 1: {} keys before the first 507 ({:.1} s)",
        one.written, one.seconds
    );
    let four = fill(K, sizes.store_bytes);
    println!(
        "K = {K}: {} keys before the first 507 ({:.1} s)",
        four.written, four.seconds
    );
    let ratio = four.written as f64 / one.written as f64;
    report.figure(format!(
        "data: depth-2 trees, every root process with --max-store-bytes {} KiB, writes of \
         fresh random 16-byte keys (32-byte values) through the leaves ({FILLERS} conns) \
         until the first 507: K = 1 took {} keys ({:.1} s), K = {K} took {} ({:.1} s; the \
         first 507 from shard {}, the primaries then holding {} keys); K = {K}/K = 1 \
         {ratio:.3}x; other failures {} and {}; target at least {DATA_TARGET}x, {}",
        sizes.store_bytes >> 10,
        one.written,
        one.seconds,
        four.written,
        four.seconds,
        four.full_shard,
        list(&four.per_shard),
        statuses(&one.other),
        statuses(&four.other),
        met(ratio >= DATA_TARGET)
    ));
}

// ---------------------------------------------------------------- isolation

/// One write of the isolation run.
struct Write {
    /// Of the frozen shard.
    frozen: bool,
    start_us: u64,
    latency_us: u32,
    status: u16,
}

fn isolation(sizes: &Sizes, report: &mut Report) {
    let cluster = quiet(Cluster::builder(2).root_shards(K)).start();
    let leaves = [
        cluster.url(cluster.at_slot(1)),
        cluster.url(cluster.at_slot(2)),
    ];
    for &frozen in sizes.frozen {
        let others: Vec<u32> = (0..K).filter(|&s| s != frozen).collect();
        let primary = cluster.member(frozen, 0);
        let start = Instant::now();
        let us = |at: Instant| at.duration_since(start).as_micros() as u64;
        let stop = AtomicBool::new(false);
        let (freeze_us, thaw_us, writes) = std::thread::scope(|s| {
            let writers: Vec<_> = (0..OTHER_WRITERS + FROZEN_WRITERS)
                .map(|c| {
                    let (leaves, others, stop) = (&leaves, &others, &stop);
                    s.spawn(move || {
                        let of_frozen = c >= OTHER_WRITERS;
                        let shard = if of_frozen {
                            frozen
                        } else {
                            others[c % others.len()]
                        };
                        let leaf = &leaves[c % 2];
                        let agent = load::agent();
                        let mut done = Vec::new();
                        for n in 0u64.. {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let key = key_of_shard(&format!("i{frozen}-{c}-{n}"), shard);
                            let req = Req::put(format!("{leaf}/store/{key}"), &small_value(n));
                            let t0 = Instant::now();
                            let status = load::status(&agent, &req);
                            done.push(Write {
                                frozen: of_frozen,
                                start_us: us(t0),
                                latency_us: t0.elapsed().as_micros().min(u32::MAX as u128) as u32,
                                status,
                            });
                        }
                        done
                    })
                })
                .collect();
            std::thread::sleep(SETTLE);
            let freeze_us = us(Instant::now());
            cluster.freeze(primary);
            std::thread::sleep(sizes.freeze);
            cluster.thaw(primary);
            let thaw_us = us(Instant::now());
            std::thread::sleep(SETTLE);
            stop.store(true, Ordering::Relaxed);
            let writes: Vec<Write> = writers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect();
            (freeze_us, thaw_us, writes)
        });
        isolation_figure(frozen, &others, freeze_us, thaw_us, &writes, report);
    }
}

fn isolation_figure(
    frozen: u32,
    others: &[u32],
    freeze_us: u64,
    thaw_us: u64,
    writes: &[Write],
    report: &mut Report,
) {
    let during = |w: &&Write| (freeze_us..thaw_us).contains(&w.start_us);
    let stats_of = |of: &[&Write], seconds: f64| {
        let mut latencies: Vec<u32> = of.iter().map(|w| w.latency_us).collect();
        latencies.sort_unstable();
        Stats {
            conns: if of.first().is_some_and(|w| w.frozen) {
                FROZEN_WRITERS
            } else {
                OTHER_WRITERS
            },
            requests: latencies.len() as u64,
            errors: of.iter().filter(|w| w.status != 200).count() as u64,
            seconds,
            latencies,
        }
    };
    let freeze_s = (thaw_us - freeze_us) as f64 / 1e6;
    let other_during: Vec<&Write> = writes.iter().filter(|w| !w.frozen).filter(during).collect();
    let other_before: Vec<&Write> = writes
        .iter()
        .filter(|w| !w.frozen && w.start_us < freeze_us)
        .filter(|w| w.start_us + BEFORE.as_micros() as u64 >= freeze_us)
        .collect();
    // The frozen shard's writes under way at some moment of the freeze
    // (among them those sent just before it).
    let frozen_during: Vec<&Write> = writes
        .iter()
        .filter(|w| w.frozen && w.start_us < thaw_us)
        .filter(|w| w.start_us + w.latency_us as u64 > freeze_us)
        .collect();
    let during_stats = stats_of(&other_during, freeze_s);
    let before_stats = stats_of(&other_before, BEFORE.as_secs_f64());
    let shards = list(others);
    report.row(
        &format!("PUT via leaf, shards {shards}, before"),
        &before_stats,
    );
    report.row(
        &format!("PUT via leaf, shards {shards}, {frozen} frozen"),
        &during_stats,
    );
    // The frozen shard's writes that started during the freeze: how they
    // ended, and how long those that succeeded waited.
    let mut failed: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut waited, mut failed_after) = (Vec::new(), 0u32);
    for w in &frozen_during {
        if w.status == 200 {
            waited.push(w.latency_us);
        } else {
            *failed.entry(w.status).or_default() += 1;
            failed_after = failed_after.max(w.latency_us);
        }
    }
    waited.sort_unstable();
    let waited_text = match waited.last() {
        None => "none succeeded".to_string(),
        Some(&max) => format!(
            "{} succeeded, after p50 {:.0} ms, max {:.0} ms",
            waited.len(),
            quantile_ms(&waited, 0.5),
            max as f64 / 1e3
        ),
    };
    let after = writes
        .iter()
        .filter(|w| w.frozen && w.start_us >= thaw_us && w.status == 200)
        .count();
    let p99 = during_stats.quantile_ms(0.99);
    report.figure(format!(
        "isolation: K = {K}, depth 2, no standbys; shard {frozen}'s primary{} frozen \
         (SIGSTOP) for {freeze_s:.2} s while {OTHER_WRITERS} clients wrote keys of shards \
         {shards} and {FROZEN_WRITERS} keys of shard {frozen} through the leaves: the other \
         shards' writes that started during the freeze: {} ({:.0}/s), p50 {:.3} ms, p99 \
         {p99:.3} ms, max {:.3} ms, {} failed (in the {:.1} s before it: {:.0}/s, p99 {:.3} ms); shard \
         {frozen}'s writes under way during it: {}: failed {} (0: no answer; the longest after \
         {:.0} ms), {waited_text}; \
         {after} of its writes succeeded after the thaw; target other shards' p99 under \
         {ISOLATION_TARGET_MS:.0} ms with none failed, {}",
        if frozen == 0 { " (the root)" } else { "" },
        during_stats.requests,
        during_stats.throughput(),
        during_stats.quantile_ms(0.5),
        during_stats.quantile_ms(1.0),
        during_stats.errors,
        BEFORE.as_secs_f64(),
        before_stats.throughput(),
        before_stats.quantile_ms(0.99),
        frozen_during.len(),
        statuses(&failed),
        failed_after as f64 / 1e3,
        met(p99 < ISOLATION_TARGET_MS && during_stats.errors == 0)
    ));
}

// ---------------------------------------------------------------- cost

/// The keys held and the log syncs made by every shard's primary, summed.
fn logs(cluster: &Cluster) -> [f64; 2] {
    let mut sum = [0.0; 2];
    for s in 0..cluster.root_shards {
        let text = metrics(&cluster.url(cluster.member(s, 0)));
        sum[0] += metric(&text, "treecache_store_keys");
        sum[1] += metric(&text, "treecache_wal_fsync_seconds_count");
    }
    sum
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The fields after the command name (which ends with ')'): state is
    // field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')').expect("a stat line").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields[i - 3].parse::<u64>().expect("a tick count");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(14) + ticks(15)) as f64 / per_second
}

/// The processes of a tree: its nodes and every shard's members.
fn processes(cluster: &Cluster) -> Vec<u32> {
    let mut all = cluster.ids();
    for s in 0..cluster.root_shards {
        for member in cluster.shard_members(s) {
            if !all.contains(&member) {
                all.push(member);
            }
        }
    }
    all.into_iter().map(|key| cluster.pid(key)).collect()
}

/// `n` writes of fresh keys of [`CPU_SHARD`] through `leaf`: the CPU
/// seconds process `pid` spent meanwhile per acknowledged write, those of
/// all the processes `all` (the whole tree), and the writes acknowledged.
fn cpu_per_write(pid: u32, all: &[u32], leaf: &str, n: u64, tag: &str) -> (f64, f64, u64) {
    let next = AtomicU64::new(0);
    let total = || all.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let (before, before_all) = (cpu_seconds(pid), total());
    let stats = load(CPU_WRITERS, Duration::ZERO, LOAD_LIMIT, |_, _| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        (i < n).then(|| {
            let key = key_of_shard(&format!("{tag}{i}"), CPU_SHARD);
            Req::put(format!("{leaf}/store/{key}"), &small_value(i))
        })
    });
    let (spent, spent_all) = (cpu_seconds(pid) - before, total() - before_all);
    let ok = (stats.requests - stats.errors).max(1);
    (spent / ok as f64, spent_all / ok as f64, ok)
}

/// The `PUT through a leaf` scenario on a tree of one shard and one of
/// [`K`] (`trees`, depth 3, their roots with `--fsync fsync`) in `rounds`
/// alternating rounds, with the log syncs of their primaries meanwhile;
/// the target is held to the trees whose logs sync every write.
fn put_cost(mode: Mode, rounds: usize, trees: [&Cluster; 2], fsync: &str, report: &mut Report) {
    let [one, four] = trees;
    // PUT through a leaf, alternating rounds; the keys and log syncs of
    // the primaries around them.
    let leaf = |c: &Cluster| c.url(c.at_slot(first_slot_at(3)));
    let (one_leaf, four_leaf) = (leaf(one), leaf(four));
    let (logs_one, logs_four) = (logs(one), logs(four));
    let (put_four, put_one) = alternate(
        rounds,
        |r| put_through_leaf_as(&four_leaf, mode, &format!("s{fsync}{r}-")),
        |r| put_through_leaf_as(&one_leaf, mode, &format!("o{fsync}{r}-")),
    );
    let gain = |before: [f64; 2], c: &Cluster| {
        let after = logs(c);
        [after[0] - before[0], after[1] - before[1]]
    };
    let ([one_writes, one_syncs], [four_writes, four_syncs]) =
        (gain(logs_one, one), gain(logs_four, four));
    let put_ratios: Vec<f64> = put_one
        .iter()
        .zip(&put_four)
        .map(|(o, f)| o.throughput() / f.throughput())
        .collect();
    let per_round: Vec<String> = put_four
        .iter()
        .zip(&put_one)
        .map(|(f, o)| format!("{:.0}/{:.0}", f.throughput(), o.throughput()))
        .collect();
    let (put_four, put_one) = (Stats::pooled(&put_four), Stats::pooled(&put_one));
    report.row(&format!("PUT via leaf, K = 1, fsync {fsync}"), &put_one);
    report.row(&format!("PUT via leaf, K = {K}, fsync {fsync}"), &put_four);
    let put_ratio = median(&put_ratios);
    report.figure(format!(
        "cost of a write: PUT through a leaf ({WRITERS} conns, fresh keys), depth-3 trees \
         with --fsync {fsync}, {rounds} alternating round(s) of {:.1} s: K = {K} {:.0}/s (p50 \
         {:.3} ms), K = 1 {:.0}/s (p50 {:.3} ms); K = {K}/K = 1 per round {}; K = 1 over \
         K = {K} throughput median {put_ratio:.3}x ({}); log syncs: K = 1 {one_syncs:.0} \
         for {one_writes:.0} writes ({:.2} writes per sync), K = {K} {four_syncs:.0} for \
         {four_writes:.0} over its {K} primaries ({:.2}){}",
        mode.measure.as_secs_f64(),
        put_four.throughput(),
        put_four.quantile_ms(0.5),
        put_one.throughput(),
        put_one.quantile_ms(0.5),
        per_round.join(", "),
        list(
            &put_ratios
                .iter()
                .map(|r| format!("{r:.3}x"))
                .collect::<Vec<_>>()
        ),
        one_writes / one_syncs.max(1.0),
        four_writes / four_syncs.max(1.0),
        if fsync == "always" {
            "; no target: the saturated throughput of both trees on this machine's 2 cores \
             and one disk (the cost of a write is the one-at-a-time p50 above)"
                .to_string()
        } else {
            "; no target (what the routing costs without the logs' syncs)".to_string()
        }
    ));
}

/// The cost of one request at a time at K = 4 against K = 1: `pairs` of
/// the slices of [`interleave`] (K = 4 first), reported as rows and a
/// figure with the median of the slices' p50 ratios against the target.
fn one_at_a_time(
    label: &str,
    what: &str,
    mode: Mode,
    pairs: Vec<(Stats, Stats)>,
    report: &mut Report,
) {
    let slices = pairs.len().max(1);
    let (four, one): (Vec<Stats>, Vec<Stats>) = pairs.into_iter().unzip();
    let slice_ratios: Vec<f64> = four
        .iter()
        .zip(&one)
        .map(|(f, o)| f.quantile_ms(0.5) / o.quantile_ms(0.5))
        .collect();
    let (four, one) = (Stats::pooled(&four), Stats::pooled(&one));
    report.row(&format!("{label}, 1 conn, K = 1"), &one);
    report.row(&format!("{label}, 1 conn, K = {K}"), &four);
    let ratio = median(&slice_ratios);
    let measure = mode.measure * 4;
    report.figure(format!(
        "cost of one request at a time: {what}, one connection to each tree, their \
         requests interleaved for {:.1} s: K = {K} p50 {:.3} ms, p99 {:.3} ms; K = 1 p50 \
         {:.3} ms, p99 {:.3} ms; K = {K}/K = 1 p50 per {:.1} s slice {}, median \
         {ratio:.3}x (pooled {:.3}x); target p50 within {COST_TARGET}x, {}",
        measure.as_secs_f64(),
        four.quantile_ms(0.5),
        four.quantile_ms(0.99),
        one.quantile_ms(0.5),
        one.quantile_ms(0.99),
        measure.as_secs_f64() / slices as f64,
        list(
            &slice_ratios
                .iter()
                .map(|r| format!("{r:.3}x"))
                .collect::<Vec<_>>()
        ),
        four.quantile_ms(0.5) / one.quantile_ms(0.5),
        met(ratio <= COST_TARGET)
    ));
}

fn cost(mode: Mode, sizes: &Sizes, report: &mut Report) {
    let keys = sizes.miss_keys;
    let tree = |k: u32| {
        let cluster = quiet(Cluster::builder(3).root_shards(k)).start();
        let (loaded, _) = load_keys_fast(&cluster.url(cluster.root_id), 0, keys, 8);
        assert_eq!(loaded, keys, "K = {k}: every key of the misses was written");
        let leaf = cluster.url(cluster.at_slot(first_slot_at(3)));
        (cluster, leaf)
    };
    let (one, one_leaf) = tree(1);
    let (four, four_leaf) = tree(K);

    // GET misses through 2 hops, and PUTs through the leaf, one connection
    // to each tree, in turn.
    let miss = |leaf: &str| {
        let leaf = leaf.to_string();
        move |n: u64| (n < keys).then(|| Req::get(format!("{leaf}/store/{}", small_key(n)), 200))
    };
    let put = |leaf: &str| {
        let leaf = leaf.to_string();
        move |n: u64| Some(Req::put(format!("{leaf}/store/one-{n}"), &small_value(n)))
    };
    let slices = sizes.miss_slices;
    let what = "GET miss through 2 hops (depth-3 trees, fresh keys)";
    let pairs = interleave(
        mode.warmup,
        mode.measure * 4,
        slices,
        miss(&four_leaf),
        miss(&one_leaf),
    );
    one_at_a_time("GET miss, 2 hops", what, mode, pairs, report);
    let what = "PUT through a leaf (depth-3 trees, fresh keys, --fsync always)";
    let pairs = interleave(
        mode.warmup,
        mode.measure * 4,
        slices,
        put(&four_leaf),
        put(&one_leaf),
    );
    one_at_a_time("PUT via leaf", what, mode, pairs, report);

    put_cost(mode, sizes.put_rounds, [&one, &four], "always", report);

    // The CPU a primary spends per write.
    let (one_pid, four_pid) = (one.pid(one.root_id), four.pid(four.member(CPU_SHARD, 0)));
    let n = sizes.cpu_writes;
    let (all_one, all_four) = (processes(&one), processes(&four));
    let (mut cpu_four, mut cpu_one) = (Vec::new(), Vec::new());
    let (mut tree_four, mut tree_one) = (Vec::new(), Vec::new());
    let mut written = (0, 0);
    for r in 0..sizes.cpu_rounds {
        // A B, B A, A B, ... as `alternate` takes them.
        for four_now in [r % 2 == 0, r % 2 == 1] {
            let tag = format!("c{r}-");
            if four_now {
                let (cpu, tree, ok) = cpu_per_write(four_pid, &all_four, &four_leaf, n, &tag);
                cpu_four.push(cpu);
                tree_four.push(tree);
                written.0 += ok;
            } else {
                let (cpu, tree, ok) = cpu_per_write(one_pid, &all_one, &one_leaf, n, &tag);
                cpu_one.push(cpu);
                tree_one.push(tree);
                written.1 += ok;
            }
        }
    }
    drop(four);
    drop(one);
    let us = |v: &[f64]| {
        list(
            &v.iter()
                .map(|s| format!("{:.1}", s * 1e6))
                .collect::<Vec<_>>(),
        )
    };
    let (four_us, one_us) = (median(&cpu_four) * 1e6, median(&cpu_one) * 1e6);
    let ratios: Vec<f64> = cpu_four.iter().zip(&cpu_one).map(|(f, o)| f / o).collect();
    let cpu_ratio = median(&ratios);
    report.figure(format!(
        "CPU per write at the primary: {n} writes of keys of shard {CPU_SHARD} (of {K}) \
         through a leaf ({CPU_WRITERS} conns) per round, {} alternating rounds, utime + stime \
         of the primary (K = 1: the root; K = {K}: shard {CPU_SHARD}'s primary) before and \
         after: K = {K} {} us per write, median {four_us:.1} us ({} writes acknowledged); \
         K = 1 {} us, median {one_us:.1} us ({} writes); K = {K}/K = 1 per round {}, median \
         {cpu_ratio:.3}x; target unchanged within {:.0}%, {}; all the processes of the tree \
         together ({} and {}): K = {K} {} us per write, median {:.1} us; K = 1 {} us, median \
         {:.1} us; K = {K}/K = 1 median {:.3}x",
        sizes.cpu_rounds,
        us(&cpu_four),
        written.0,
        us(&cpu_one),
        written.1,
        list(
            &ratios
                .iter()
                .map(|r| format!("{r:.3}x"))
                .collect::<Vec<_>>()
        ),
        CPU_TARGET * 100.0,
        met((cpu_ratio - 1.0).abs() <= CPU_TARGET),
        all_four.len(),
        all_one.len(),
        us(&tree_four),
        median(&tree_four) * 1e6,
        us(&tree_one),
        median(&tree_one) * 1e6,
        median(
            &tree_four
                .iter()
                .zip(&tree_one)
                .map(|(f, o)| f / o)
                .collect::<Vec<_>>()
        )
    ));
    report.figure(format!(
        "what it bounds: at {four_us:.1} us of CPU per write, one shard primary with a core \
         of its own would take about {:.0} writes/s, so {K} primaries on {K} machines about \
         {:.0}/s, before their logs' syncs, the root's children (which see the invalidations \
         of every primary) and the network bound them",
        1e6 / four_us,
        f64::from(K) * 1e6 / four_us
    ));

    // The same writes with logs that do not sync.
    let unsynced = |k: u32| {
        quiet(Cluster::builder(3).root_shards(k))
            .arg("--fsync")
            .arg("no")
            .start()
    };
    let (one, four) = (unsynced(1), unsynced(K));
    put_cost(mode, sizes.put_rounds, [&one, &four], "no", report);
}
