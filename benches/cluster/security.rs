//! What security costs (section `security`).
//!
//! - Signed calls: the `GET miss, 2 hops` scenario with one connection (a
//!   leaf of a depth-3 tree reads keys held only by the root, never read
//!   before: two node-to-node calls, each signed and checked when the
//!   nodes share a cluster key) on four trees up at once, two with the
//!   cluster key (as the harness starts every tree) and two without
//!   (`no_key`), started in the order signed, unsigned, unsigned, signed:
//!   two trees of the same build, measured side by side, differ by a few
//!   per cent by where their processes landed, and the tree started first
//!   was the slower more often. One thread sends their requests in turn
//!   (signed, unsigned, the other signed, the other unsigned, ...) over a
//!   connection to each, so that all are measured under the same load of
//!   the machine; the ratio is also given for each slice of the run, to
//!   show how much it moves.
//! - TLS: GET hits at a leaf over TLS and over plain HTTP (see [`tls_hit`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{self, Builder, Cluster};
use crate::load::{
    alternate, hot_key, interleave, load, load_keys_fast, small_key, small_value, Req, Stats,
    HOT_KEYS, LOADERS, LOAD_LIMIT, READERS,
};
use crate::report::{met, Report};
use crate::{first_slot_at, Mode};

/// How much slower a signed miss may be than an unsigned one (p50).
pub const SIGNED_TARGET: f64 = 1.05;
/// The interleaved misses run this many times the mode's measuring time.
const SLICES_PER_MEASURE: u32 = 4;

pub fn run(mode: Mode, report: &mut Report) {
    report.section("Security (latencies in ms)", "Security: figures");
    signed_misses(mode, report);
    tls_hit(mode, report);
}

/// A depth-3 tree whose root holds `keys` small keys, and the URL of a
/// leaf.
fn tree_with_keys(signed: bool, keys: u64) -> (Cluster, String) {
    let builder = Cluster::builder(3).arg("--log-level").arg("warn");
    let cluster = if signed { builder } else { builder.no_key() }.start();
    assert_eq!(cluster.key.is_some(), signed, "the cluster key as asked");
    let (loaded, _) = load_keys_fast(&cluster.url(cluster.root_id), 0, keys, 8);
    assert_eq!(loaded, keys, "every key of the misses was written");
    let leaf = cluster.url(cluster.at_slot(first_slot_at(3)));
    (cluster, leaf)
}

/// GET misses through two hops, signed and unsigned, held to
/// [`SIGNED_TARGET`].
pub fn signed_misses(mode: Mode, report: &mut Report) {
    let (keys, slices) = if mode.smoke { (4_000, 2) } else { (60_000, 6) };
    // Started in the order signed, unsigned, unsigned, signed (in smoke
    // mode, which checks that this runs, one tree of each kind).
    let kinds: &[bool] = if mode.smoke {
        &[true, false]
    } else {
        &[true, false, false, true]
    };
    let trees: Vec<(bool, (Cluster, String))> = kinds
        .iter()
        .map(|&signed| (signed, tree_with_keys(signed, keys)))
        .collect();
    // The n-th miss of a kind goes to its trees in turn: a fresh key at
    // each.
    let miss = |signed: bool| {
        let leaves: Vec<String> = trees
            .iter()
            .filter(|(s, _)| *s == signed)
            .map(|(_, (_, leaf))| leaf.clone())
            .collect();
        move |n: u64| {
            let leaf = &leaves[(n % leaves.len() as u64) as usize];
            (n < keys).then(|| Req::get(format!("{leaf}/store/{}", small_key(n)), 200))
        }
    };
    let measure = mode.measure * SLICES_PER_MEASURE;
    let pairs = interleave(mode.warmup, measure, slices, miss(true), miss(false));
    drop(trees);

    let (with_key, without_key): (Vec<Stats>, Vec<Stats>) = pairs.into_iter().unzip();
    let (with_all, without_all) = (Stats::pooled(&with_key), Stats::pooled(&without_key));
    report.row("GET miss, 2 hops, 1 conn, signed", &with_all);
    report.row("GET miss, 2 hops, 1 conn, no key", &without_all);
    let p50_ratio = with_all.quantile_ms(0.5) / without_all.quantile_ms(0.5);
    let per_slice: Vec<String> = with_key
        .iter()
        .zip(&without_key)
        .map(|(s, u)| format!("{:.3}x", s.quantile_ms(0.5) / u.quantile_ms(0.5)))
        .collect();
    report.figure(format!(
        "signed calls: GET miss through 2 hops (depth-3 trees, fresh keys, two trees with the \
         cluster key and two without, started in the order signed, unsigned, unsigned, \
         signed; one of each in smoke mode), one connection to each tree, their requests \
         interleaved (signed, unsigned, ...) for {:.1} s: signed p50 {:.3} ms, p99 {:.3} ms, {:.0}/s; without a key p50 {:.3} ms, p99 {:.3} \
         ms, {:.0}/s (each rate is one over the mean latency: one connection to a tree of that \
         kind alone); signed/unsigned p50 {p50_ratio:.3}x, throughput {:.3}x; p50 ratio in each \
         {:.1} s slice: {}; target signed p50 within {:.0}% of unsigned, {}",
        measure.as_secs_f64(),
        with_all.quantile_ms(0.5),
        with_all.quantile_ms(0.99),
        with_all.throughput(),
        without_all.quantile_ms(0.5),
        without_all.quantile_ms(0.99),
        without_all.throughput(),
        with_all.throughput() / without_all.throughput(),
        measure.as_secs_f64() / slices as f64,
        per_slice.join(", "),
        (SIGNED_TARGET - 1.0) * 100.0,
        met(p50_ratio <= SIGNED_TARGET)
    ));
}

/// GET hits at a leaf over TLS against plain HTTP: the hot keys (as in
/// section `requests`) at the leaf of two depth-2 trees up at once, one
/// serving TLS (certificates of the harness's test CA) and one plain, each
/// loaded by [`READERS`] keep-alive connections in alternating rounds
/// ([`alternate`]), with a row for each and their ratio as a figure.
fn tls_hit(mode: Mode, report: &mut Report) {
    let rounds = if mode.smoke { 2 } else { 6 };
    let quiet = |b: Builder| b.arg("--log-level").arg("warn");
    let plain = quiet(Cluster::builder(2)).start();
    let tls = quiet(Cluster::builder(2).tls()).start();
    let leaves = [&plain, &tls].map(|c| c.url(c.at_slot(1)));
    for (cluster, leaf) in [&plain, &tls].into_iter().zip(&leaves) {
        let root = cluster.url(cluster.root_id);
        let hot = AtomicU64::new(0);
        load(LOADERS, Duration::ZERO, LOAD_LIMIT, |_, _| {
            let i = hot.fetch_add(1, Ordering::Relaxed);
            (i < HOT_KEYS)
                .then(|| Req::put(format!("{root}/store/{}", hot_key(i)), &small_value(i)))
        });
        for i in 0..HOT_KEYS {
            common::http::get(&format!("{leaf}/store/{}", hot_key(i)));
        }
    }
    let hits = |leaf: &str| {
        let leaf = leaf.to_string();
        move |_: usize| {
            load(READERS, mode.warmup, mode.measure, |c, n| {
                let i = (c as u64 * 7919 + n) % HOT_KEYS;
                Some(Req::get(format!("{leaf}/store/{}", hot_key(i)), 200))
            })
        }
    };
    let (over_tls, over_plain) = alternate(rounds, hits(&leaves[1]), hits(&leaves[0]));
    let (over_tls, over_plain) = (Stats::pooled(&over_tls), Stats::pooled(&over_plain));
    report.row("GET hit at a leaf, plain HTTP (depth 2)", &over_plain);
    report.row("GET hit at a leaf over TLS (depth 2)", &over_tls);
    report.figure(format!(
        "TLS: GET hit at a leaf, {READERS} connections, {rounds} alternating rounds: \
         {:.0}/s over TLS, {:.0}/s plain, {:.3}x; p50 {:.3} ms against {:.3} ms",
        over_tls.throughput(),
        over_plain.throughput(),
        over_tls.throughput() / over_plain.throughput(),
        over_tls.quantile_ms(0.5),
        over_plain.quantile_ms(0.5),
    ));
}
