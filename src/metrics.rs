//! Per-node counters, rendered in the Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

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
    #[cfg(test)]
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
pub fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    h.render(out, name, "");
}

/// Writes a gauge with its `# HELP` and `# TYPE` lines.
pub fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        if let Some(c) = self.responses.get((status as usize).wrapping_sub(100)) {
            bump(c);
        }
    }

    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metric(
            "treecache_cache_hits_total",
            "counter",
            "Reads answered from this node's own copy.",
            get(&self.hits),
        );
        metric(
            "treecache_cache_misses_total",
            "counter",
            "Reads this node could not answer from its own copy.",
            get(&self.misses),
        );
        metric(
            "treecache_upstream_fetches_total",
            "counter",
            "Fills this node sent to its parent for reads.",
            get(&self.upstream_fetches),
        );
        metric(
            "treecache_coalesced_waits_total",
            "counter",
            "Reads that waited for a fill already under way instead of sending their own.",
            get(&self.coalesced_waits),
        );
        metric(
            "treecache_invalidations_sent_total",
            "counter",
            "Invalidations this node sent to its children.",
            get(&self.invalidations_sent),
        );
        metric(
            "treecache_invalidations_received_total",
            "counter",
            "Invalidations this node received from its parent.",
            get(&self.invalidations_received),
        );
        metric(
            "treecache_releases_sent_total",
            "counter",
            "Notices sent to the parent that keys were dropped.",
            get(&self.releases_sent),
        );
        metric(
            "treecache_evictions_total",
            "counter",
            "Values evicted to keep the cache within its byte bound.",
            g.evictions,
        );
        metric(
            "treecache_cache_bytes",
            "gauge",
            "Bytes held by this node's store (values, keys and per-entry overhead).",
            g.cache_bytes,
        );
        metric(
            "treecache_store_keys",
            "gauge",
            "Keys with a value held by this node.",
            g.store_keys,
        );
        metric(
            "treecache_upstream_connections_total",
            "counter",
            "TCP connections this node opened to other nodes.",
            get(&self.upstream_connections),
        );
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
            value.parse::<u64>().unwrap();
        }
    }
}
