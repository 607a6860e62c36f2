//! The benchmark of a running tree:
//! `cargo bench --bench cluster [-- --smoke] [-- --only SECTION[,SECTION]]`.
//!
//! It starts clusters of release nodes on loopback (with the test harness's
//! ZooKeeper) and drives them with keep-alive clients: each client thread
//! has its own connection, warms up, then records the latency of every
//! request for a fixed time.
//!
//! The run is made of sections, each in a module of its own; all run by
//! default, in the order of [`SECTIONS`], and `--only` picks some:
//!
//! - `requests`: hits, misses, 404s and writes on an in-memory depth-3
//!   tree, the resident memory of the nodes (idle, and the root holding
//!   many small keys), the time to start seven nodes, and the latency of a
//!   miss at depths 2 to 6.
//! - `durable`: a root with `--data-dir`: writes under `--fsync always` and
//!   `everysec` next to an in-memory root, recovery after `kill -9`, and
//!   writes while the log is compacted (see `durable.rs`).
//! - `faults`: a write of a key cached by a frozen leaf and the writes of
//!   other keys meanwhile; misses read around a killed and a frozen middle
//!   node (see `faults.rs`).
//! - `failover`: how long writes through a leaf stop when the primary of
//!   the root group is killed or stopped with SIGTERM, and what a standby
//!   in sync costs a write (see `failover.rs`).
//! - `security`: misses through signed node-to-node calls against a tree
//!   without a cluster key, and GET hits over TLS against plain HTTP (see
//!   `security.rs`).
//! - `operations`: one `POST /mget` of 100 cached keys against 100 single
//!   GETs (see `operations.rs`).
//! - `shards`: K = 4 root shards against K = 1 in the same run: the keys
//!   a tree takes before its first 507 under `--max-store-bytes`, the
//!   writes of the other shards while one shard's primary is frozen, a
//!   miss and a write through a leaf, and a primary's CPU time per write
//!   (see `shards.rs`).
//! - `compare`: this checkout's node against release builds of older
//!   commits (the second version, `f0c43ed`, and the first, `9cb0f20`),
//!   in the same run: an idle node's threads and memory; hits, misses,
//!   404s and writes through a leaf; hits over TLS; and signed misses
//!   against unsigned ones for this checkout alone (see `compare.rs`).
//!   The benchmark makes those builds itself, once, and keeps them
//!   outside the checkout (see `builds.rs`).
//!
//! Where setups are compared on this shared, noisy machine, all are up at
//! once and measured in alternating rounds ([`load::alternate`], and
//! [`load::rotate`] for more than two).
//!
//! `--smoke` runs every scenario briefly and with fewer keys; it checks that
//! the benchmark works, never how fast the node is. It builds no older
//! commit: section `compare` then measures the cached builds only, and
//! leaves out the columns of those it lacks, saying so.

use treecache_harness as common;

mod builds;
mod compare;
mod deep;
mod durable;
mod failover;
mod faults;
mod load;
mod operations;
mod report;
mod requests;
mod security;
mod shards;

use std::time::{Duration, Instant};

use report::Report;

/// How long each scenario runs.
#[derive(Clone, Copy)]
pub struct Mode {
    pub smoke: bool,
    pub warmup: Duration,
    pub measure: Duration,
}

const FULL: Mode = Mode {
    smoke: false,
    warmup: Duration::from_millis(500),
    measure: Duration::from_secs(3),
};

const SMOKE: Mode = Mode {
    smoke: true,
    warmup: Duration::from_millis(100),
    measure: Duration::from_millis(300),
};

/// A section of the run: its name for `--only`, and what runs it.
type Section = (&'static str, fn(Mode, &mut Report));

/// Every section, in the order they run.
const SECTIONS: &[Section] = &[
    ("requests", requests::run),
    ("durable", durable::run),
    ("faults", faults::run),
    ("failover", failover::run),
    ("security", security::run),
    ("operations", operations::run),
    ("shards", shards::run),
    ("compare", compare::run),
    ("deep", deep::run),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = if args.iter().any(|a| a == "--smoke") {
        SMOKE
    } else {
        FULL
    };
    let chosen = match only(&args) {
        Ok(chosen) => chosen,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let began = Instant::now();
    println!(
        "treecache benchmark ({} mode): node binary {}",
        if mode.smoke { "smoke" } else { "full" },
        common::treecache_bin().display()
    );
    let mut report = Report::default();
    for (name, run) in SECTIONS {
        if chosen.contains(name) {
            println!("\n# section {name}");
            run(mode, &mut report);
        }
    }
    report.print();
    println!(
        "\nbenchmark finished in {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

/// The sections that `--only A,B` (or `--only=A,B`) names; every section
/// without it.
fn only(args: &[String]) -> Result<Vec<&'static str>, String> {
    let all: Vec<&'static str> = SECTIONS.iter().map(|(name, _)| *name).collect();
    let mut list = None;
    for (i, a) in args.iter().enumerate() {
        if a == "--only" {
            list = Some(args.get(i + 1).cloned().unwrap_or_default());
        } else if let Some(v) = a.strip_prefix("--only=") {
            list = Some(v.to_string());
        }
    }
    let Some(list) = list else { return Ok(all) };
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match all.iter().find(|&&s| s == name) {
            Some(s) => chosen.push(*s),
            None => {
                return Err(format!(
                    "--only: unknown section {name:?}; the sections are {}",
                    all.join(", ")
                ))
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!(
            "--only needs one or more of {}, separated by commas",
            all.join(", ")
        ));
    }
    Ok(chosen)
}

// ---------------------------------------------------------------- helpers

/// Resident memory of a process in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The threads of a process (0 when it cannot be read).
pub fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The first slot at depth `d` (slots count from 0 at the root, level by level).
pub fn first_slot_at(d: u32) -> u64 {
    (1u64 << (d - 1)) - 1
}

/// A node's `/metrics` text.
pub fn metrics(url: &str) -> String {
    common::http::request("GET", &format!("{url}/metrics"), None, &[]).text()
}

/// The value of an unlabelled sample `name` in a `/metrics` text.
/// The value of the series `name` (with or without labels after it: the
/// root group's series carry their `shard`).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ").map(|(_, v)| v),
                None => rest.strip_prefix(' '),
            }
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is missing from /metrics"))
}
