//! What operators see of a node: its metrics (present, and moving with the
//! requests that should move them), its log lines (text and JSON, each
//! with an RFC 3339 UTC timestamp), and the Grafana dashboard of
//! `deploy/prometheus/`, whose every metric name must be one a live node
//! exports (or one listed in `deploy/prometheus/standby-metrics.txt`).

use treecache_harness as common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{http, Cluster};
use serde_json::{json, Value};

/// A node's `/metrics` as (series, value) pairs, series with their labels.
fn scrape(url: &str) -> Vec<(String, f64)> {
    let answer = http::request("GET", &format!("{url}/metrics"), None, &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    answer
        .text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// The value of one series (0 when the node has none).
fn value(url: &str, series: &str) -> f64 {
    scrape(url)
        .into_iter()
        .find(|(s, _)| s == series)
        .map_or(0.0, |(_, v)| v)
}

fn count_of(method: &str, route: &str) -> String {
    format!("treecache_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\"}}")
}

#[test]
fn metrics_are_there_and_move() {
    let cluster = Cluster::builder(2)
        .arg("--cache-max-bytes")
        .arg("2MiB")
        .arg("--max-store-bytes")
        .arg("10MB")
        .start();
    let (root, cache) = (cluster.url(1), cluster.url(2));

    // Build, ZooKeeper and bounds on every node.
    let version = format!(
        "treecache_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    for id in 1..=3 {
        let url = cluster.url(id);
        assert_eq!(value(&url, &version), 1.0, "NODE-{id}");
        assert_eq!(value(&url, "treecache_zookeeper_connected"), 1.0);
    }
    assert_eq!(value(&root, "treecache_cache_max_bytes"), 10e6);
    assert_eq!(value(&cache, "treecache_cache_max_bytes"), 2.0 * 1048576.0);

    // A read raises the count of GET store by one, on the node that took it.
    let reads = count_of("GET", "store");
    let before = value(&cache, &reads);
    assert_eq!(http::put(&format!("{root}/store/k"), &json!(1)).0, 200);
    assert_eq!(http::get(&format!("{cache}/store/k")).0, 200);
    assert_eq!(value(&cache, &reads), before + 1.0);
    // The miss went up as a fill: the root timed it under route fill.
    assert!(value(&root, &count_of("GET", "fill")) >= 1.0);
    // The write through the root: PUT store there; a 404 is route other.
    assert!(value(&root, &count_of("PUT", "store")) >= 1.0);
    let other = count_of("GET", "other");
    let before = value(&cache, &other);
    assert_eq!(http::get(&format!("{cache}/no/such/path")).0, 404);
    assert_eq!(value(&cache, &other), before + 1.0);
    assert!(scrape(&cache)
        .iter()
        .all(|(series, _)| !series.contains("/no/such/path")));
    // A scrape is timed too, once it has been answered.
    let metrics = count_of("GET", "metrics");
    let first = value(&cache, &metrics);
    assert_eq!(value(&cache, &metrics), first + 1.0);

    // The histogram is cumulative and ends with +Inf = count.
    let series = scrape(&cache);
    let bucket = |le: &str| {
        series
            .iter()
            .find(|(s, _)| {
                s == &format!("treecache_request_duration_seconds_bucket{{method=\"GET\",route=\"store\",le=\"{le}\"}}")
            })
            .map(|(_, v)| *v)
            .unwrap()
    };
    let count = series.iter().find(|(s, _)| *s == reads).unwrap().1;
    assert_eq!(bucket("+Inf"), count);
    assert!(bucket("0.0001") <= bucket("0.001") && bucket("0.001") <= bucket("+Inf"));
}

#[test]
fn zookeeper_connected_follows_the_session() {
    let mut cluster = Cluster::builder(1)
        .own_zookeeper()
        .arg("--zk-session-timeout")
        .arg("2s")
        .start();
    let root = cluster.url(1);
    assert_eq!(value(&root, "treecache_zookeeper_connected"), 1.0);
    cluster.zk.as_mut().unwrap().stop();
    common::wait_until(Duration::from_secs(30), "the session is gone", || {
        value(&root, "treecache_zookeeper_connected") == 0.0
    });
    cluster.zk.as_mut().unwrap().restart();
    common::wait_until(Duration::from_secs(30), "a new session", || {
        value(&root, "treecache_zookeeper_connected") == 1.0
    });
}

/// Whether `ts` is RFC 3339 in UTC with milliseconds: `2026-11-30T21:04:05.123Z`.
fn is_rfc3339_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

/// How far `ts` is from now, in seconds (parsed by hand: days from the
/// civil date, as the node formats it).
fn age_seconds(ts: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from 1970-01-01 (the inverse of the node's civil_from_days).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    let at = secs as f64 + n(20..23) as f64 / 1000.0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    now - at
}

#[test]
fn log_lines_start_with_a_timestamp_in_text_and_in_json() {
    let text = Cluster::builder(2).start();
    let json = Cluster::builder(2)
        .env("LOG_FORMAT", "json")
        .arg("--log-level")
        .arg("debug")
        .start();
    for id in 1..=3 {
        let log = text.log(id);
        assert!(log.lines().count() >= 2, "{log}");
        for line in log.lines() {
            let ts = line.get(..24).unwrap_or_default();
            assert!(is_rfc3339_utc(ts), "NODE-{id}: {line}");
            assert!(age_seconds(ts).abs() < 120.0, "{line}");
            let level = line[25..].split_whitespace().next().unwrap();
            assert!(["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level));
            assert!(line[25..].contains(" [treecache"), "{line}");
        }
        assert!(log.contains("listening on"), "{log}");

        let log = json.log(id);
        let mut targets = BTreeSet::new();
        for line in log.lines() {
            let record: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let fields: BTreeSet<&str> = record
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                fields,
                BTreeSet::from(["level", "msg", "target", "ts"]),
                "{line}"
            );
            let ts = record["ts"].as_str().unwrap();
            assert!(is_rfc3339_utc(ts), "{line}");
            assert!(age_seconds(ts).abs() < 120.0, "{line}");
            assert!(record["msg"].is_string() && record["level"].is_string());
            targets.insert(record["target"].as_str().unwrap().to_string());
        }
        // The ZooKeeper client's records are routed to the registry, never printed.
        assert!(
            targets.iter().all(|t| !t.starts_with("zookeeper")),
            "{targets:?}"
        );
        assert!(log.contains("listening on"), "{log}");
    }
    // With the client's records routed as before, sessions are learnt: the
    // caches hold a lease (Cluster::start waited for it).
    assert_eq!(http::get(&json.url(2)).1["lease"], true);
}

/// The metric names in the dashboard's queries.
fn dashboard_metric_names() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/dashboard.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(&doc, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut names = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("treecache_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
        // Any other selector is Prometheus's own `up`.
        for (i, _) in expr.match_indices('{') {
            let before = expr[..i].trim_end();
            let word: String = before
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            assert!(
                word.starts_with("treecache_") || word == "up" || word.is_empty() || word == "by",
                "{word:?} in {expr}"
            );
        }
    }
    names
}

/// Names every node may not export yet (`standby-metrics.txt`).
fn standby_metric_names() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/standby-metrics.txt"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The names a node's `/metrics` declares: every sample's, and for each
/// histogram its `_bucket`, `_sum` and `_count` (declared before any sample).
fn exported_names(url: &str) -> BTreeSet<String> {
    let text = http::request("GET", &format!("{url}/metrics"), None, &[]).text();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            names.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap();
            names.insert(line[..end].to_string());
        }
    }
    names
}

#[test]
fn the_dashboard_uses_only_metrics_the_nodes_export() {
    let dir = common::temp_dir("root-data");
    let cluster = Cluster::builder(2)
        .arg("--data-dir")
        .arg(dir.to_str().unwrap())
        .start();
    // Some traffic, so that every kind of series exists.
    assert_eq!(
        http::put(&format!("{}/store/d", cluster.url(1)), &json!(1)).0,
        200
    );
    assert_eq!(http::get(&format!("{}/store/d", cluster.url(2))).0, 200);
    let exported: BTreeSet<String> = (1..=3)
        .flat_map(|id| exported_names(&cluster.url(id)))
        .collect();
    let standby = standby_metric_names();
    let used = dashboard_metric_names();
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(*n) && !standby.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics no node exports: {unknown:?}\nexported: {exported:?}"
    );
    // The panels the dashboard promises are there.
    for name in [
        "treecache_cache_hits_total",
        "treecache_cache_misses_total",
        "treecache_request_duration_seconds_bucket",
        "treecache_invalidations_sent_total",
        "treecache_cache_bytes",
        "treecache_cache_max_bytes",
        "treecache_replication_in_sync",
    ] {
        assert!(used.contains(name), "{name}");
    }
    // Every standby name is one the dashboard uses.
    assert!(standby.is_subset(&used), "{standby:?}");
    let _ = std::fs::remove_dir_all(dir);
}
