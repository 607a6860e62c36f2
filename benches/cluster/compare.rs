//! This checkout's node against release builds of older commits (section
//! `compare`), all measured in the same run.
//!
//! The older builds are those of [`builds::OLD`]: the second version
//! (whose gate relays what it does not answer to tiny_http) and the first;
//! `TREECACHE_BENCH_ALSO=COMMIT[,COMMIT]` adds columns ([`builds::measured`]).
//! A full run makes a build it has not cached ([`builds`]); a smoke run
//! only uses cached ones, and a build that is missing or fails leaves its
//! column empty, with a line saying why.
//!
//! Each build gets a depth-3 tree of its own (`--log-level warn`; the
//! cluster key the harness gives every tree, but for the first version,
//! which has none), all up at once. Then:
//!
//! - an idle node: the threads and resident memory of each node of each
//!   tree, after a few seconds at rest;
//! - at the leaf at depth 3 of each tree, as section `requests` runs them:
//!   GET hits of the 1,000 hot keys (8 connections); GET misses through 2
//!   hops, each a key held only by the root that no node has read before
//!   (8 connections, and 1); GET 404s of keys that exist nowhere (8 and
//!   1); PUTs of fresh keys (16 connections, and 1);
//! - GET hits at the leaf of a depth-2 tree over TLS, for the builds that
//!   have TLS;
//! - for this checkout's build alone: signed misses against unsigned ones
//!   (as section `security` measures them, held to a tighter target).
//!
//! Every scenario runs in rounds, each round every build in turn, in an
//! order that changes from round to round ([`rotate`]); a build's figure
//! is the median of its rounds (req/s, or the p50 of each round), and the
//! ratios are of those medians. Two builds of the same commit measured
//! 0.77 to 1.27 × apart round by round on the 2-core machine of the
//! figures: a single round says little, the median of several more.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::builds;
use crate::common::{self, Builder, Cluster};
use crate::load::{
    hot_key, load, load_keys_fast, median, rotate, small_key, small_value, Req, Stats, HOT_KEYS,
    LOADERS, LOAD_LIMIT, READERS,
};
use crate::report::{Compared, Report};
use crate::requests::{put_through_leaf_as, WRITERS};
use crate::{first_slot_at, rss_mib, threads, Mode};

/// A build measured: its column's name, its binary, and whether it has a
/// cluster key and TLS (the first version has neither).
struct Build {
    name: String,
    binary: PathBuf,
    secure: bool,
}

/// A build's depth-3 tree.
struct Tree {
    cluster: Cluster,
    leaf: String,
    /// The next key of a miss, below `keys`.
    misses: AtomicU64,
    keys: u64,
}

/// Rounds and fresh keys of each mode.
struct Sizes {
    rounds: usize,
    /// Small keys at each root, one per miss.
    keys: u64,
    /// How long the trees rest before their threads and memory are read.
    rest: Duration,
}

const FULL: Sizes = Sizes {
    rounds: 6,
    keys: 300_000,
    rest: Duration::from_secs(3),
};

const SMOKE: Sizes = Sizes {
    rounds: 2,
    keys: 12_000,
    rest: Duration::from_millis(500),
};

pub fn run(mode: Mode, report: &mut Report) {
    let sizes = if mode.smoke { &SMOKE } else { &FULL };
    report.section(
        "This checkout alone: signed against unsigned misses (latencies in ms)",
        "Compared with older builds: figures",
    );
    let mut columns = vec![Some(Build {
        name: "new".into(),
        binary: common::treecache_bin(),
        secure: true,
    })];
    let mut about = vec![format!(
        "new: this checkout ({}), {}",
        builds::this_checkout(),
        common::treecache_bin().display()
    )];
    let olds = builds::measured();
    for old in &olds {
        let (commit, what) = (old.commit, old.what);
        match builds::binary(commit, !mode.smoke) {
            Ok(binary) => {
                columns.push(Some(Build {
                    name: commit.into(),
                    binary,
                    secure: old.secure,
                }));
                about.push(format!("{commit}: {what}"));
            }
            Err(e) => {
                println!("column {commit} left out: {e}");
                columns.push(None);
                about.push(format!("{commit}: {what}; left out: {e}"));
            }
        }
    }
    let names: Vec<String> = std::iter::once("new")
        .chain(olds.iter().map(|old| old.commit))
        .map(String::from)
        .collect();
    report.figure(format!("the builds: {}", about.join("; ")));
    report.builds(
        &format!(
            "Compared with older builds (median of {} rounds; ratios new over old: above 1 \
             is faster in req/s, below 1 is less in p50 ms, threads and MiB; errors of \
             each build)",
            sizes.rounds
        ),
        &names,
    );

    let trees: Vec<Option<Tree>> = columns
        .iter()
        .map(|b| b.as_ref().map(|b| tree(b, sizes.keys)))
        .collect();
    let active: Vec<usize> = (0..columns.len()).filter(|&i| trees[i].is_some()).collect();
    idle(&trees, sizes.rest, report);
    for (tree, build) in trees.iter().zip(&columns) {
        if let (Some(t), Some(b)) = (tree, build) {
            fill(t, &b.name);
        }
    }

    let (w, m, rounds) = (mode.warmup, mode.measure, sizes.rounds);
    let on = |i: usize| trees[i].as_ref().expect("a measured build's tree");
    let scenario = |report: &mut Report,
                    name: &str,
                    conns: usize,
                    p50_too: bool,
                    measure: &dyn Fn(&Tree, usize) -> Stats| {
        let of = rounds_of(columns.len(), &active, rounds, |i, r| measure(on(i), r));
        compared(report, &names, name, conns, "req/s", &of, Stats::throughput);
        if p50_too {
            compared(report, &names, name, conns, "p50 ms", &of, |s| {
                s.quantile_ms(0.5)
            });
        }
    };
    let hits = |t: &Tree, _: usize| {
        load(READERS, w, m, |c, n| {
            let i = (c as u64 * 7919 + n) % HOT_KEYS;
            Some(Req::get(format!("{}/store/{}", t.leaf, hot_key(i)), 200))
        })
    };
    let misses = |conns: usize| {
        move |t: &Tree, _: usize| {
            load(conns, w, m, |_, _| {
                let i = t.misses.fetch_add(1, Ordering::Relaxed);
                (i < t.keys).then(|| Req::get(format!("{}/store/{}", t.leaf, small_key(i)), 200))
            })
        }
    };
    let absent = |conns: usize| {
        move |t: &Tree, r: usize| {
            load(conns, w, m, |c, n| {
                Some(Req::get(
                    format!("{}/store/absent{conns}-{r}-{c}-{n}", t.leaf),
                    404,
                ))
            })
        }
    };
    scenario(report, "GET hit at a leaf", READERS, false, &hits);
    scenario(
        report,
        "GET miss, 2 hops (leaf)",
        READERS,
        false,
        &misses(READERS),
    );
    scenario(
        report,
        "GET miss, 2 hops (leaf), 1 conn",
        1,
        true,
        &misses(1),
    );
    scenario(
        report,
        "GET 404 through a leaf",
        READERS,
        false,
        &absent(READERS),
    );
    scenario(
        report,
        "GET 404 through a leaf, 1 conn",
        1,
        true,
        &absent(1),
    );
    let puts = |t: &Tree, r: usize| put_through_leaf_as(&t.leaf, mode, &format!("c{r}-"));
    scenario(report, "PUT through a leaf", WRITERS, false, &puts);
    let put1 = |t: &Tree, r: usize| {
        load(1, w, m, |_, n| {
            Some(Req::put(
                format!("{}/store/one{r}-{n:012}", t.leaf),
                &small_value(n),
            ))
        })
    };
    scenario(report, "PUT through a leaf, 1 conn", 1, true, &put1);
    for (tree, build) in trees.iter().zip(&columns) {
        if let (Some(t), Some(b)) = (tree, build) {
            let used = t.misses.load(Ordering::Relaxed);
            if used >= t.keys {
                report.figure(format!(
                    "{}: the misses ran out of fresh keys ({} loaded): some rounds were cut short",
                    b.name, t.keys
                ));
            }
        }
    }
    drop(trees);

    tls_hits(&columns, &names, mode, rounds, report);
    crate::security::signed_misses(mode, report);
}

/// Starts the build's depth-3 tree, whose root is to hold `keys` small
/// keys.
fn tree(build: &Build, keys: u64) -> Tree {
    let builder = Cluster::builder(3)
        .binary(&build.binary)
        .arg("--log-level")
        .arg("warn");
    let cluster = if build.secure {
        builder
    } else {
        builder.no_key()
    }
    .start();
    let leaf = cluster.url(cluster.at_slot(first_slot_at(3)));
    println!("{}: a depth-3 tree up", build.name);
    Tree {
        cluster,
        leaf,
        misses: AtomicU64::new(0),
        keys,
    }
}

/// Puts the hot keys (read once through the leaf, which then holds them)
/// and the tree's small keys at its root.
fn fill(tree: &Tree, name: &str) {
    let root = tree.cluster.url(tree.cluster.root_id);
    hot_keys(&root, &tree.leaf);
    let (loaded, rate) = load_keys_fast(&root, 0, tree.keys, LOADERS);
    assert_eq!(loaded, tree.keys, "every key of the misses was written");
    println!("{name}: {loaded} keys at the root ({rate:.0}/s)");
}

/// Puts the hot keys at `root` and reads each once through `leaf`.
fn hot_keys(root: &str, leaf: &str) {
    let hot = AtomicU64::new(0);
    let put = load(LOADERS, Duration::ZERO, LOAD_LIMIT, |_, _| {
        let i = hot.fetch_add(1, Ordering::Relaxed);
        (i < HOT_KEYS).then(|| Req::put(format!("{root}/store/{}", hot_key(i)), &small_value(i)))
    });
    assert_eq!(put.errors, 0, "every hot key was written at {root}");
    for i in 0..HOT_KEYS {
        let (status, _) = common::http::get(&format!("{leaf}/store/{}", hot_key(i)));
        assert_eq!(status, 200, "hot key {i} read through {leaf}");
    }
}

/// The threads and resident memory of every node of each tree after
/// `rest` at rest.
fn idle(trees: &[Option<Tree>], rest: Duration, report: &mut Report) {
    std::thread::sleep(rest);
    let mut threads_row = Vec::new();
    let mut rss_row = Vec::new();
    for tree in trees {
        let Some(t) = tree else {
            threads_row.push(None);
            rss_row.push(None);
            continue;
        };
        let pids: Vec<u32> = t
            .cluster
            .ids()
            .iter()
            .map(|&id| t.cluster.pid(id))
            .collect();
        threads_row.push(Some(
            pids.iter().map(|&p| threads(p) as f64).collect::<Vec<_>>(),
        ));
        rss_row.push(Some(pids.iter().map(|&p| rss_mib(p)).collect::<Vec<_>>()));
    }
    let row = |name: &str, unit: &'static str, of: &[Option<Vec<f64>>], decimals: usize| {
        let span = |v: &Vec<f64>| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            (lo, hi)
        };
        Compared {
            name: name.into(),
            conns: 0,
            unit,
            shown: of
                .iter()
                .map(|v| {
                    v.as_ref().map(|v| {
                        let (lo, hi) = span(v);
                        format!("{lo:.decimals$}..{hi:.decimals$}")
                    })
                })
                .collect(),
            values: of.iter().map(|v| v.as_ref().map(|v| span(v).1)).collect(),
            errors: of.iter().map(|v| v.as_ref().map(|_| 0)).collect(),
        }
    };
    report.compared(&row(
        "idle node (depth-3 tree): threads, min..max",
        "thr",
        &threads_row,
        0,
    ));
    report.compared(&row(
        "idle node (depth-3 tree): RSS, min..max",
        "MiB",
        &rss_row,
        1,
    ));
    report.figure(format!(
        "idle: each tree's 7 nodes read {:.1} s after they had all joined, before any load; \
         the ratios are of the largest node of each",
        rest.as_secs_f64()
    ));
}

/// Runs a scenario on the builds `active` (indices of columns) in
/// [`rotate`]d rounds; the rounds of every column, none for one not
/// measured.
fn rounds_of(
    columns: usize,
    active: &[usize],
    rounds: usize,
    mut measure: impl FnMut(usize, usize) -> Stats,
) -> Vec<Vec<Stats>> {
    let by_setup = rotate(rounds, active.len(), |s, r| measure(active[s], r));
    let mut of: Vec<Vec<Stats>> = (0..columns).map(|_| Vec::new()).collect();
    for (&i, stats) in active.iter().zip(by_setup) {
        of[i] = stats;
    }
    of
}

/// Reports a row of the comparison: the median of `figure` over each
/// column's rounds, and as a figure the range of the first column's ratio
/// to each other column (named `names`) round by round.
fn compared(
    report: &mut Report,
    names: &[String],
    name: &str,
    conns: usize,
    unit: &'static str,
    of: &[Vec<Stats>],
    figure: fn(&Stats) -> f64,
) {
    let values: Vec<Option<f64>> = of
        .iter()
        .map(|rounds| {
            let figures: Vec<f64> = rounds.iter().map(figure).collect();
            (!figures.is_empty()).then(|| median(&figures))
        })
        .collect();
    let decimals = if unit == "req/s" { 0 } else { 3 };
    report.compared(&Compared {
        name: name.into(),
        conns,
        unit,
        shown: values
            .iter()
            .map(|v| v.map(|v| format!("{v:.decimals$}")))
            .collect(),
        values,
        errors: of
            .iter()
            .map(|rounds| (!rounds.is_empty()).then(|| rounds.iter().map(|s| s.errors).sum()))
            .collect(),
    });
    let Some(first) = of.first().filter(|r| !r.is_empty()) else {
        return;
    };
    let spans: Vec<String> = of
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, rounds)| !rounds.is_empty())
        .map(|(i, rounds)| {
            let ratios: Vec<f64> = first
                .iter()
                .zip(rounds)
                .map(|(a, b)| figure(a) / figure(b))
                .collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            format!("new/{} {lo:.3}..{hi:.3}x", names[i])
        })
        .collect();
    if !spans.is_empty() {
        report.figure(format!(
            "{name}, {unit}, round by round: {}",
            spans.join(", ")
        ));
    }
}

/// GET hits at the leaf of a depth-2 tree over TLS, for the builds that
/// have TLS, in rotated rounds.
fn tls_hits(
    columns: &[Option<Build>],
    names: &[String],
    mode: Mode,
    rounds: usize,
    report: &mut Report,
) {
    let quiet = |b: Builder| b.arg("--log-level").arg("warn");
    let trees: Vec<Option<(Cluster, String)>> = columns
        .iter()
        .map(|build| {
            let build = build.as_ref().filter(|b| b.secure)?;
            let cluster = quiet(Cluster::builder(2).binary(&build.binary).tls()).start();
            let leaf = cluster.url(cluster.at_slot(1));
            hot_keys(&cluster.url(cluster.root_id), &leaf);
            Some((cluster, leaf))
        })
        .collect();
    let active: Vec<usize> = (0..columns.len()).filter(|&i| trees[i].is_some()).collect();
    let of = rounds_of(columns.len(), &active, rounds, |i, _| {
        let leaf = &trees[i].as_ref().expect("a tree over TLS").1;
        load(READERS, mode.warmup, mode.measure, |c, n| {
            let i = (c as u64 * 7919 + n) % HOT_KEYS;
            Some(Req::get(format!("{leaf}/store/{}", hot_key(i)), 200))
        })
    });
    compared(
        report,
        names,
        "GET hit at a leaf over TLS (depth 2)",
        READERS,
        "req/s",
        &of,
        Stats::throughput,
    );
}
