//! Cache hits the event loop answers itself, on real processes: pipelined
//! on one connection behind a miss that goes to a worker, answers still
//! come in request order, over plain TCP and over TLS; a large answer a
//! worker writes to a client that does not read for a while still comes
//! whole, and in order; the loop's answer to a hit is byte for byte the
//! workers' (but for `Date`), 304 and client tokens included; and
//! `/metrics` counts the loop's answers as the workers'.
//!
//! A plain `GET /store/{key}` is answered in the loop when it is a hit;
//! `?local=true`, or `Connection: close`, sends the same read to the
//! workers, which is how the two are compared here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use treecache_harness::http::{self, enc};
use treecache_harness::tls::TestCa;
use treecache_harness::Cluster;

fn put(cluster: &Cluster, id: u32, key: &str, value: Value) {
    let url = format!("{}/store/{}", cluster.url(id), enc(key));
    let body = serde_json::to_vec(&json!({ "value": value })).unwrap();
    let answer = http::request("PUT", &url, Some(&body), &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
}

/// Puts `keys` at the root, and reads each once at `leaf`, which then
/// holds them: a later plain GET of one at `leaf` is a hit.
fn cached(cluster: &Cluster, leaf: u32, keys: &[&str]) {
    for key in keys {
        put(
            cluster,
            cluster.root_id,
            key,
            json!(format!("value of {key}")),
        );
        let url = format!("{}/store/{}", cluster.url(leaf), enc(key));
        assert_eq!(http::get(&url).0, 200);
        let local = http::get(&format!("{url}?local=true"));
        assert_eq!(local.0, 200, "{key} is not cached at NODE-{leaf}");
    }
}

fn get_head(key: &str, extra: &str) -> String {
    format!(
        "GET /store/{} HTTP/1.1\r\nHost: test\r\n{extra}\r\n",
        enc(key)
    )
}

/// One answer as it came: its head (status line and headers) and body.
#[derive(Debug)]
struct Raw {
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).unwrap().parse().unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Its head without the `Date` line, which differs by the second.
    fn head_but_date(&self) -> String {
        self.head_but(&["date"])
    }

    /// Its head without the lines of these headers (lower case).
    fn head_but(&self, names: &[&str]) -> String {
        self.head
            .split("\r\n")
            .filter(|l| {
                let name = l.split(':').next().unwrap().to_ascii_lowercase();
                !names.contains(&name.as_str())
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    }
}

/// Reads `n` answers (each with a Content-Length, or none for a 304) off
/// `stream`, in the order they come.
fn read_answers(stream: &mut impl Read, n: usize) -> Vec<Raw> {
    let mut buffer = Vec::new();
    let mut answers = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while answers.len() < n {
        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = end {
            let head = String::from_utf8(buffer[..end].to_vec()).unwrap();
            let length: usize = head
                .split("\r\n")
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let body = buffer[end + 4..end + 4 + length].to_vec();
                buffer.drain(..end + 4 + length);
                answers.push(Raw { head, body });
                continue;
            }
        }
        let got = stream.read(&mut chunk).expect("the answers in time");
        assert!(
            got > 0,
            "closed after {} answers: {answers:?}",
            answers.len()
        );
        buffer.extend_from_slice(&chunk[..got]);
    }
    assert!(buffer.is_empty(), "more than {n} answers");
    answers
}

fn connect(cluster: &Cluster, id: u32) -> TcpStream {
    let s = TcpStream::connect(cluster.address(id)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

fn tls_connect(
    cluster: &Cluster,
    id: u32,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let ca: Arc<rustls::ClientConfig> = TestCa::shared().client_config();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let session = rustls::ClientConnection::new(ca, name).unwrap();
    rustls::StreamOwned::new(session, connect(cluster, id))
}

/// Sends, in one write, GETs of `keys` at a leaf holding every key but
/// `missing` (which the leaf must fill from the root, through a worker),
/// and checks the answers come in request order, each with its own key.
fn pipelined_in_order(stream: &mut (impl Read + Write), keys: &[&str]) {
    let requests: String = keys.iter().map(|k| get_head(k, "")).collect();
    stream.write_all(requests.as_bytes()).unwrap();
    stream.flush().unwrap();
    let answers = read_answers(stream, keys.len());
    let got: Vec<Value> = answers.iter().map(|a| a.json()["key"].clone()).collect();
    let wanted: Vec<Value> = keys.iter().map(|k| json!(k)).collect();
    assert_eq!(got, wanted, "answers out of request order");
    for (answer, key) in answers.iter().zip(keys) {
        assert_eq!(answer.status(), 200, "{answer:?}");
        assert_eq!(answer.json()["value"], json!(format!("value of {key}")));
    }
}

/// The pipelined orders tried on one connection: a miss first, then hits;
/// a hit, a miss, hits; then hits alone once every miss was answered.
fn pipelined_behind_misses(cluster: &Cluster, stream: &mut (impl Read + Write), leaf: u32) {
    let hits = ["hit-1", "hit-2", "hit-3", "hit-4", "hit-5"];
    cached(cluster, leaf, &hits);
    for miss in ["miss-1", "miss-2"] {
        put(
            cluster,
            cluster.root_id,
            miss,
            json!(format!("value of {miss}")),
        );
    }
    pipelined_in_order(stream, &["miss-1", "hit-1", "hit-2", "hit-3", "hit-4"]);
    pipelined_in_order(stream, &["hit-5", "miss-2", "hit-1", "hit-2"]);
    pipelined_in_order(stream, &["hit-3", "hit-4", "hit-5", "miss-1", "hit-1"]);
}

#[test]
fn pipelined_hits_behind_a_miss_are_answered_in_request_order() {
    let cluster = Cluster::start(2);
    let leaf = cluster.at_slot(1);
    let mut stream = connect(&cluster, leaf);
    pipelined_behind_misses(&cluster, &mut stream, leaf);
}

#[test]
fn pipelined_hits_behind_a_miss_are_answered_in_request_order_over_tls() {
    let cluster = Cluster::builder(2).tls().start();
    let leaf = cluster.at_slot(1);
    let mut stream = tls_connect(&cluster, leaf);
    pipelined_behind_misses(&cluster, &mut stream, leaf);
}

#[test]
fn a_large_answer_to_a_client_that_does_not_read_comes_whole_and_in_order() {
    let cluster = Cluster::start(2);
    let leaf = cluster.at_slot(1);
    cached(&cluster, leaf, &["small"]);
    // Seven values of 1 MB, at the root only: the leaf's worker fills them
    // and writes a 7 MB answer, more than the socket takes at once.
    let keys: Vec<String> = (0..7).map(|i| format!("large-{i}")).collect();
    let value = |i: usize| format!("{i}").repeat(1_000_000);
    for (i, key) in keys.iter().enumerate() {
        put(&cluster, cluster.root_id, key, json!(value(i)));
    }
    let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    let mget = format!(
        "POST /mget HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = connect(&cluster, leaf);
    let requests = [mget.as_bytes(), &body, get_head("small", "").as_bytes()].concat();
    stream.write_all(&requests).unwrap();
    // Not read for a while: the answer waits, part in the socket, part
    // with the node.
    std::thread::sleep(Duration::from_secs(1));
    let answers = read_answers(&mut stream, 2);
    assert_eq!(answers[0].status(), 200, "{:?}", answers[0].head);
    let values = &answers[0].json()["values"];
    for (i, key) in keys.iter().enumerate() {
        assert!(values[key] == json!(value(i)), "{key} is not whole");
    }
    assert_eq!(answers[1].status(), 200, "{:?}", answers[1]);
    assert_eq!(answers[1].json()["value"], json!("value of small"));
}

/// One request on a connection of its own, and its answer.
fn one(cluster: &Cluster, id: u32, request: &str) -> Raw {
    let mut s = connect(cluster, id);
    s.write_all(request.as_bytes()).unwrap();
    read_answers(&mut s, 1).pop().unwrap()
}

/// The gate's answer (a plain GET) and the receivers' (the same GET with
/// `Connection: close`, then with `?local=true`) to the same hit.
fn both_ways(cluster: &Cluster, id: u32, key: &str, extra: &str) -> (Raw, Raw, Raw) {
    let gate = one(cluster, id, &get_head(key, extra));
    let closing = one(
        cluster,
        id,
        &get_head(key, &format!("{extra}Connection: close\r\n")),
    );
    let local = format!(
        "GET /store/{}?local=true HTTP/1.1\r\nHost: test\r\n{extra}\r\n",
        enc(key)
    );
    (gate, closing, one(cluster, id, &local))
}

#[test]
fn the_gates_answer_to_a_hit_is_the_receivers_answer() {
    let cluster = Cluster::start(2);
    let leaf = cluster.at_slot(1);
    cached(&cluster, leaf, &["same"]);
    for id in [leaf, cluster.root_id] {
        let (gate, closing, local) = both_ways(&cluster, id, "same", "");
        assert_eq!(gate.status(), 200, "{gate:?}");
        assert_eq!(gate.head_but_date(), local.head_but_date(), "NODE-{id}");
        assert_eq!(gate.body, local.body);
        assert_eq!(gate.body, closing.body);
        let etag = gate
            .head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("ETag: "));
        let etag = etag.expect("an ETag").to_string();
        // Conditional: 304, without a body, the same both ways.
        let unless = format!("If-None-Match: {etag}\r\n");
        let (gate, closing, local) = both_ways(&cluster, id, "same", &unless);
        assert_eq!(gate.status(), 304, "{gate:?}");
        assert_eq!(gate.head_but_date(), local.head_but_date());
        assert_eq!(closing.status(), 304);
        assert!(gate.body.is_empty());
        // Another version named: the value.
        let (gate, _, local) = both_ways(&cluster, id, "same", "If-None-Match: \"1\"\r\n");
        assert_eq!(gate.status(), 200);
        assert_eq!(gate.head_but_date(), local.head_but_date());
    }
    // A value that expires shows the time it has left, as the receivers do.
    let url = format!("{}/store/brief", cluster.url(cluster.root_id));
    let body = serde_json::to_vec(&json!({ "value": 1, "ttl": 600 })).unwrap();
    assert_eq!(http::request("PUT", &url, Some(&body), &[]).status, 200);
    let at_leaf = format!("{}/store/brief", cluster.url(leaf));
    assert_eq!(http::get(&at_leaf).0, 200);
    let (gate, _, local) = both_ways(&cluster, leaf, "brief", "");
    // The time left is a number of as many digits as it takes.
    let but = ["date", "content-length"];
    assert_eq!(gate.head_but(&but), local.head_but(&but));
    let (ttl, local_ttl) = (gate.json()["ttl"].as_f64(), local.json()["ttl"].as_f64());
    assert!(ttl.is_some_and(|t| t > 590.0 && t <= 600.0), "{gate:?}");
    assert!((ttl.unwrap() - local_ttl.unwrap()).abs() < 5.0);
}

#[test]
fn with_client_tokens_the_gate_answers_only_what_the_receivers_would() {
    let cluster = Cluster::builder(2)
        .tokens("reader-token read\nwriter-token write\n")
        .start();
    let leaf = cluster.at_slot(1);
    let writer = [("Authorization", "Bearer writer-token")];
    let url = format!("{}/store/guarded", cluster.url(cluster.root_id));
    let body = serde_json::to_vec(&json!({ "value": "secret" })).unwrap();
    assert_eq!(http::request("PUT", &url, Some(&body), &writer).status, 200);
    let at_leaf = format!("{}/store/guarded", cluster.url(leaf));
    assert_eq!(http::request("GET", &at_leaf, None, &writer).status, 200);
    for extra in [
        "Authorization: Bearer reader-token\r\n",
        "",
        "Authorization: Bearer wrong-token\r\n",
    ] {
        let (gate, _, local) = both_ways(&cluster, leaf, "guarded", extra);
        assert_eq!(gate.head_but_date(), local.head_but_date(), "{extra:?}");
        assert_eq!(gate.body, local.body);
        let status = if extra.contains("reader-token") {
            200
        } else {
            401
        };
        assert_eq!(gate.status(), status, "{extra:?}: {gate:?}");
    }
}

/// A sample of the leaf's `/metrics`: the value of the line that starts
/// with `series ` (0 when there is none).
fn sample(metrics: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn metrics_count_the_hits_the_gate_answers() {
    let cluster = Cluster::start(2);
    let leaf = cluster.at_slot(1);
    let keys = ["counted-1", "counted-2", "counted-3"];
    cached(&cluster, leaf, &keys);
    let metrics = || http::request("GET", &format!("{}/metrics", cluster.url(leaf)), None, &[]);
    let series = [
        "treecache_cache_hits_total",
        "treecache_cache_misses_total",
        "treecache_requests_total{status=\"200\"}",
        "treecache_requests_total{status=\"304\"}",
        "treecache_request_duration_seconds_count{method=\"GET\",route=\"store\"}",
    ];
    let before = metrics().text();
    // 30 hits answered by the gate, 10 of them 304, on one connection.
    let mut s = connect(&cluster, leaf);
    let etag = one(&cluster, leaf, &get_head("counted-1", ""))
        .head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("ETag: ").map(str::to_string))
        .unwrap();
    let mut requests = String::new();
    for _ in 0..10 {
        for key in keys {
            let extra = match key {
                "counted-1" => format!("If-None-Match: {etag}\r\n"),
                _ => String::new(),
            };
            requests.push_str(&get_head(key, &extra));
        }
    }
    s.write_all(requests.as_bytes()).unwrap();
    let answers = read_answers(&mut s, 30);
    assert_eq!(answers.iter().filter(|a| a.status() == 304).count(), 10);
    let after = metrics().text();
    let grew: Vec<u64> = series
        .iter()
        .map(|name| sample(&after, name) - sample(&before, name))
        .collect();
    // 31 hits (the one that read the ETag too); the first /metrics is a 200
    // the second counts.
    assert_eq!(grew, [31, 0, 21 + 1, 10, 31], "{series:?}");
    // The latency histogram's buckets and sum move with its count.
    let count =
        "treecache_request_duration_seconds_bucket{method=\"GET\",route=\"store\",le=\"+Inf\"}";
    assert_eq!(sample(&after, count) - sample(&before, count), 31);
}

/// Context switches of the threads of process `pid` but its server's
/// event loop, which runs on the process's main thread.
fn switches_but_the_gates(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        if dir.file_name().is_some_and(|tid| *tid == *pid.to_string()) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

#[test]
fn the_gate_answers_hits_without_waking_the_http_threads() {
    let cluster = Cluster::start(2);
    let leaf = cluster.at_slot(1);
    cached(&cluster, leaf, &["awake"]);
    let pid = cluster.pid(leaf);
    let mut s = connect(&cluster, leaf);
    let batch: String = (0..100).map(|_| get_head("awake", "")).collect();
    let before = switches_but_the_gates(pid);
    for _ in 0..30 {
        s.write_all(batch.as_bytes()).unwrap();
        assert!(read_answers(&mut s, 100).iter().all(|a| a.status() == 200));
    }
    let woken = switches_but_the_gates(pid) - before;
    // Relayed, the 3 000 wake tiny_http's threads a thousand times or more
    // (a woken thread reads the pipelined requests that came meanwhile);
    // their own timers and ZooKeeper wake them some tens of times.
    assert!(woken < 300, "{woken} context switches");
    // Behind a query, the same reads go to tiny_http, and wake it.
    let batch: String = (0..100)
        .map(|_| get_head("awake", "").replacen("awake", "awake?local=true", 1))
        .collect();
    let before = switches_but_the_gates(pid);
    for _ in 0..30 {
        s.write_all(batch.as_bytes()).unwrap();
        assert!(read_answers(&mut s, 100).iter().all(|a| a.status() == 200));
    }
    let woken = switches_but_the_gates(pid) - before;
    assert!(woken >= 300, "only {woken} context switches");
}
