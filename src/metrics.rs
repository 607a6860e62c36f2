//! Per-node counters, rendered in the Prometheus text exposition format.
//!
//! Besides the counters of reads, fills and invalidations: the time each
//! request took, by method and route ([`RequestDurations`], one histogram
//! per pair, built at start so that timing a request allocates nothing),
//! the build, whether the node's ZooKeeper session is up, and the byte
//! bound of its store.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The version in `treecache_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Counters a node keeps. Gauges (bytes, keys) are read from the store when rendered.
pub struct Metrics {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub upstream_fetches: AtomicU64,
    pub coalesced_waits: AtomicU64,
    pub invalidations_sent: AtomicU64,
    pub invalidations_received: AtomicU64,
    pub releases_sent: AtomicU64,
    /// New TCP connections opened to other nodes.
    pub upstream_connections: AtomicU64,
    /// Responses by status code, 100 to 599.
    responses: Box<[AtomicU64]>,
    /// How long requests took, by method and route.
    pub requests: RequestDurations,
    /// `treecache_cache_max_bytes`: the byte bound of this node's store
    /// (a cache's bound; the root's, or 0 when it has none).
    cache_max_bytes: AtomicU64,
    /// Whether this node has a ZooKeeper session; unset: it has none.
    zookeeper: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            upstream_fetches: AtomicU64::new(0),
            coalesced_waits: AtomicU64::new(0),
            invalidations_sent: AtomicU64::new(0),
            invalidations_received: AtomicU64::new(0),
            releases_sent: AtomicU64::new(0),
            upstream_connections: AtomicU64::new(0),
            responses: (100..600).map(|_| AtomicU64::new(0)).collect(),
            requests: RequestDurations::new(),
            cache_max_bytes: AtomicU64::new(0),
            zookeeper: OnceLock::new(),
        }
    }
}

/// The methods of `treecache_request_duration_seconds`; any other is `other`.
pub const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "other"];

/// The routes of `treecache_request_duration_seconds`: a fixed set of names,
/// never a request's path, so that the number of series stays bounded.
/// `other` is every path that matches no route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteName {
    Store,
    Mget,
    Keys,
    Nodes,
    Join,
    Fill,
    Invalidate,
    Flush,
    Evicted,
    /// The root group's replication to its standbys.
    Replicate,
    Metrics,
    Ready,
    Info,
    Docs,
    OpenApi,
    Other,
}

impl RouteName {
    pub const ALL: [RouteName; 16] = [
        RouteName::Store,
        RouteName::Mget,
        RouteName::Keys,
        RouteName::Nodes,
        RouteName::Join,
        RouteName::Fill,
        RouteName::Invalidate,
        RouteName::Flush,
        RouteName::Evicted,
        RouteName::Replicate,
        RouteName::Metrics,
        RouteName::Ready,
        RouteName::Info,
        RouteName::Docs,
        RouteName::OpenApi,
        RouteName::Other,
    ];

    /// The value of the `route` label.
    pub fn label(self) -> &'static str {
        match self {
            RouteName::Store => "store",
            RouteName::Mget => "mget",
            RouteName::Keys => "keys",
            RouteName::Nodes => "nodes",
            RouteName::Join => "join",
            RouteName::Fill => "fill",
            RouteName::Invalidate => "invalidate",
            RouteName::Flush => "flush",
            RouteName::Evicted => "evicted",
            RouteName::Replicate => "replicate",
            RouteName::Metrics => "metrics",
            RouteName::Ready => "ready",
            RouteName::Info => "info",
            RouteName::Docs => "docs",
            RouteName::OpenApi => "openapi",
            RouteName::Other => "other",
        }
    }
}

/// One series of `treecache_request_duration_seconds`: which method and
/// route a request had. Copy it when the request arrives; observe with it
/// when the answer has been written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestSeries(usize);

impl RequestSeries {
    /// The series of a request: its method (`GET`, ...; another is `other`)
    /// and route.
    pub fn of(method: &str, route: RouteName) -> RequestSeries {
        let m = METHODS[..METHODS.len() - 1]
            .iter()
            .position(|&x| x == method)
            .unwrap_or(METHODS.len() - 1);
        let r = route as usize;
        RequestSeries(m * RouteName::ALL.len() + r)
    }
}

/// `treecache_request_duration_seconds`: a histogram per method and route,
/// each with its label text made once.
pub struct RequestDurations {
    series: Box<[(String, Histogram)]>,
}

impl RequestDurations {
    fn new() -> RequestDurations {
        let series = METHODS
            .iter()
            .flat_map(|method| {
                RouteName::ALL.iter().map(move |route| {
                    (
                        format!("method=\"{method}\",route=\"{}\"", route.label()),
                        Histogram::new(LATENCY_BUCKETS),
                    )
                })
            })
            .collect();
        RequestDurations { series }
    }

    /// Records that a request of `series` took `took`.
    pub fn observe(&self, series: RequestSeries, took: Duration) {
        self.series[series.0].1.observe(took);
    }

    /// How many requests of `series` were recorded.
    #[cfg(test)]
    pub fn count(&self, series: RequestSeries) -> u64 {
        self.series[series.0].1.count()
    }

    /// The metric with the series that have had a request (an unused
    /// method and route pair has none).
    fn render(&self, out: &mut String) {
        let name = "treecache_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from receiving a request to having written its answer, by method and route.\n# TYPE {name} histogram"
        );
        for (labels, h) in self.series.iter() {
            if h.count() > 0 {
                h.render(out, name, labels);
            }
        }
    }
}

/// Values read at render time from other parts of the node.
pub struct Gauges {
    pub evictions: u64,
    pub cache_bytes: u64,
    pub store_keys: u64,
}

/// Bucket bounds, in seconds, of the latency histograms.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A Prometheus histogram of durations: cumulative buckets, sum and count.
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|&b| b < secs);
        bump(&self.counts[i]);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes the series of the histogram `name` with `labels` (`a="b",...`
    /// or empty); the `# HELP`/`# TYPE` lines are the caller's.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => b.to_string(),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {total}");
        }
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {total}", braces(labels));
    }
}

/// Writes a histogram with its `# HELP` and `# TYPE` lines.
pub fn histogram(out: &mut String, name: &str, help: &str, labels: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    h.render(out, name, labels);
}

/// Writes a gauge with its `# HELP` and `# TYPE` lines.
pub fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    labelled_gauge(out, name, help, "", value)
}

/// Writes a gauge of one series with `labels` (`shard="2"`; empty: none).
pub fn labelled_gauge(out: &mut String, name: &str, help: &str, labels: &str, value: u64) {
    let series = match labels {
        "" => name.to_string(),
        labels => format!("{name}{{{labels}}}"),
    };
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{series} {value}"
    );
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Sets `treecache_cache_max_bytes`.
    pub fn set_cache_max_bytes(&self, bytes: u64) {
        self.cache_max_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Tells the metrics how to learn whether the node has a ZooKeeper
    /// session (`treecache_zookeeper_connected`); asked at each scrape.
    pub fn set_zookeeper_probe(&self, connected: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.zookeeper.set(Box::new(connected));
    }

    pub fn count_response(&self, status: u16) {
        if let Some(c) = self.responses.get((status as usize).wrapping_sub(100)) {
            bump(c);
        }
    }

    /// The counters and gauges of one value each, in the order of the
    /// exposition text: name, type, help and value.
    fn plain(&self, g: &Gauges) -> [(&'static str, &'static str, &'static str, u64); 11] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "treecache_cache_hits_total",
                "counter",
                "Reads answered from this node's own copy.",
                get(&self.hits),
            ),
            (
                "treecache_cache_misses_total",
                "counter",
                "Reads this node could not answer from its own copy.",
                get(&self.misses),
            ),
            (
                "treecache_upstream_fetches_total",
                "counter",
                "Fills this node sent to its parent for reads.",
                get(&self.upstream_fetches),
            ),
            (
                "treecache_coalesced_waits_total",
                "counter",
                "Reads that waited for a fill already under way instead of sending their own.",
                get(&self.coalesced_waits),
            ),
            (
                "treecache_invalidations_sent_total",
                "counter",
                "Invalidations this node sent to its children.",
                get(&self.invalidations_sent),
            ),
            (
                "treecache_invalidations_received_total",
                "counter",
                "Invalidations this node received from its parent.",
                get(&self.invalidations_received),
            ),
            (
                "treecache_releases_sent_total",
                "counter",
                "Notices sent to the parent that keys were dropped.",
                get(&self.releases_sent),
            ),
            (
                "treecache_evictions_total",
                "counter",
                "Values evicted to keep the cache within its byte bound.",
                g.evictions,
            ),
            (
                "treecache_cache_bytes",
                "gauge",
                "Bytes held by this node's store (values, keys and per-entry overhead).",
                g.cache_bytes,
            ),
            (
                "treecache_store_keys",
                "gauge",
                "Keys with a value held by this node.",
                g.store_keys,
            ),
            (
                "treecache_upstream_connections_total",
                "counter",
                "TCP connections this node opened to other nodes.",
                get(&self.upstream_connections),
            ),
        ]
    }

    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        for (name, kind, help, value) in self.plain(g) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP treecache_requests_total Responses sent, by HTTP status.\n# TYPE treecache_requests_total counter");
        for (i, c) in self.responses.iter().enumerate() {
            let n = get(c);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "treecache_requests_total{{status=\"{}\"}} {n}",
                    i + 100
                );
            }
        }
        self.requests.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP treecache_build_info The version of this node; always 1.\n# TYPE treecache_build_info gauge\ntreecache_build_info{{version=\"{VERSION}\"}} 1"
        );
        let connected = self.zookeeper.get().is_some_and(|probe| probe());
        gauge(
            &mut out,
            "treecache_zookeeper_connected",
            "1 while this node has a ZooKeeper session, else 0.",
            u64::from(connected),
        );
        gauge(
            &mut out,
            "treecache_cache_max_bytes",
            "Byte bound of this node's store: --cache-max-bytes on a cache, --max-store-bytes on the root (0: none).",
            get(&self.cache_max_bytes),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(std::time::Duration::from_micros(500));
        h.observe(std::time::Duration::from_millis(5));
        h.observe(std::time::Duration::from_secs(1));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "");
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
        let mut labelled = String::new();
        h.render(&mut labelled, "x_seconds", "method=\"GET\"");
        assert!(labelled.contains("x_seconds_bucket{method=\"GET\",le=\"0.01\"} 2\n"));
        assert!(
            labelled.contains("x_seconds_sum{method=\"GET\"} 1.0055"),
            "{labelled}"
        );
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn renders_counters_and_statuses() {
        let m = Metrics::default();
        bump(&m.hits);
        bump(&m.hits);
        m.count_response(200);
        m.count_response(404);
        m.count_response(404);
        m.count_response(999);
        let text = m.render(&Gauges {
            evictions: 3,
            cache_bytes: 10,
            store_keys: 1,
        });
        assert!(text.contains("\ntreecache_cache_hits_total 2\n"));
        assert!(text.contains("\ntreecache_evictions_total 3\n"));
        assert!(text.contains("treecache_requests_total{status=\"404\"} 2\n"));
        assert!(!text.contains("status=\"999\""));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("treecache_"), "{line}");
            value.parse::<f64>().unwrap();
        }
    }

    fn gauges() -> Gauges {
        Gauges {
            evictions: 0,
            cache_bytes: 0,
            store_keys: 0,
        }
    }

    #[test]
    fn request_durations_count_by_method_and_route() {
        let m = Metrics::default();
        let get_store = RequestSeries::of("GET", RouteName::Store);
        let put_store = RequestSeries::of("PUT", RouteName::Store);
        let patch = RequestSeries::of("PATCH", RouteName::Other);
        assert_ne!(get_store, put_store);
        assert_eq!(patch, RequestSeries::of("OPTIONS", RouteName::Other));
        m.requests.observe(get_store, Duration::from_micros(80));
        m.requests.observe(get_store, Duration::from_millis(3));
        m.requests.observe(patch, Duration::from_millis(1));
        assert_eq!(m.requests.count(get_store), 2);
        assert_eq!(m.requests.count(put_store), 0);
        let text = m.render(&gauges());
        assert!(text.contains("# TYPE treecache_request_duration_seconds histogram\n"));
        assert!(
            text.contains(
                "treecache_request_duration_seconds_count{method=\"GET\",route=\"store\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "treecache_request_duration_seconds_bucket{method=\"GET\",route=\"store\",le=\"0.0001\"} 1\n"
        ));
        assert!(text.contains(
            "treecache_request_duration_seconds_count{method=\"other\",route=\"other\"} 1\n"
        ));
        // A pair without requests has no series.
        assert!(!text.contains("method=\"PUT\",route=\"store\""));
    }

    #[test]
    fn every_route_and_method_has_its_own_series() {
        let mut seen = std::collections::BTreeSet::new();
        for method in METHODS {
            for route in RouteName::ALL {
                assert!(seen.insert(RequestSeries::of(method, route)));
            }
        }
        // A series' index is its route's discriminant: ALL is in that order.
        for (i, route) in RouteName::ALL.iter().enumerate() {
            assert_eq!(*route as usize, i, "{route:?}");
        }
        let labels: std::collections::BTreeSet<&str> =
            RouteName::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), RouteName::ALL.len());
    }

    #[test]
    fn build_info_zookeeper_and_the_store_bound() {
        let m = Metrics::default();
        let text = m.render(&gauges());
        assert!(text.contains(&format!(
            "\ntreecache_build_info{{version=\"{VERSION}\"}} 1\n"
        )));
        assert!(
            text.contains("\ntreecache_zookeeper_connected 0\n"),
            "{text}"
        );
        assert!(text.contains("\ntreecache_cache_max_bytes 0\n"));
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let probe = up.clone();
        m.set_zookeeper_probe(move || probe.load(Ordering::Relaxed));
        m.set_cache_max_bytes(64 << 20);
        let text = m.render(&gauges());
        assert!(text.contains("\ntreecache_zookeeper_connected 1\n"));
        assert!(text.contains(&format!("\ntreecache_cache_max_bytes {}\n", 64 << 20)));
        up.store(false, Ordering::Relaxed);
        assert!(m
            .render(&gauges())
            .contains("\ntreecache_zookeeper_connected 0\n"));
    }
}
