//! A cluster over TLS, with a certificate authority the test makes
//! (`treecache_harness::tls`): the nodes serve HTTPS and call each other
//! over it; clients that speak plain HTTP, or do not trust the CA, get
//! nothing; bad TLS flags stop a node at start; and the gate's limits hold
//! over TLS (431 after the handshake, a handshake that stalls is closed in
//! 10 s and holds no thread meanwhile).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use treecache_harness::tls::TestCa;
use treecache_harness::{http, treecache_bin, Cluster};

/// A TLS client connection to `address` that trusts `ca`.
fn tls_connect(
    address: &str,
    ca: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let session = rustls::ClientConnection::new(ca, name).unwrap();
    rustls::StreamOwned::new(session, tcp)
}

/// Reads until the peer closes (or the read fails): the text read.
fn read_to_end(s: &mut impl Read) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&all).into_owned(),
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn threads_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// The count of answers with `status` in the node's `/metrics`.
fn answered(url: &str, status: u16) -> u64 {
    let text = http::request("GET", &format!("{url}/metrics"), None, &[]).text();
    let prefix = format!("treecache_requests_total{{status=\"{status}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_whole_cluster_serves_and_calls_over_tls() {
    let cluster = Cluster::builder(3).tls().start();
    let root = cluster.root_id;
    let leaves = [cluster.at_slot(3), cluster.at_slot(6)];
    for id in cluster.ids() {
        assert!(cluster.url(id).starts_with("https://"));
        assert_eq!(http::get(&cluster.url(id)).0, 200, "NODE-{id}");
    }
    // Addresses stay host:port; the scheme follows from the cluster's TLS.
    let tree = cluster.tree();
    for node in tree["nodes"].as_array().unwrap() {
        let address = node["address"].as_str().unwrap();
        assert!(address.starts_with("127.0.0.1:"), "{tree}");
    }

    // A write through one leaf (forwarded to the root over HTTPS), read
    // through every node (each miss filled from its parent over HTTPS).
    let key = |leaf: u32| format!("{}/store/greeting", cluster.url(leaf));
    assert_eq!(http::put(&key(leaves[0]), &json!("hello")).0, 200);
    for id in cluster.ids() {
        let (status, body) = http::get(&format!("{}/store/greeting", cluster.url(id)));
        assert_eq!(
            (status, &body["value"]),
            (200, &json!("hello")),
            "NODE-{id}"
        );
    }
    // Overwritten through the other leaf: the caches were invalidated over
    // HTTPS, so no node answers the old value.
    assert_eq!(http::put(&key(leaves[1]), &json!("again")).0, 200);
    for id in cluster.ids() {
        let (_, body) = http::get(&format!("{}/store/greeting", cluster.url(id)));
        assert_eq!(body["value"], json!("again"), "NODE-{id}");
    }
    assert_eq!(http::delete(&key(leaves[0])).0, 200);
    for id in cluster.ids() {
        let (status, _) = http::get(&format!("{}/store/greeting", cluster.url(id)));
        assert_eq!(status, 404, "NODE-{id}");
    }
    // Many keys through both leaves, read back through the root.
    for i in 0..50 {
        let leaf = leaves[i % 2];
        let url = format!("{}/store/k{i}", cluster.url(leaf));
        assert_eq!(http::put(&url, &json!(i)).0, 200);
    }
    for i in 0..50 {
        let (status, body) = http::get(&format!("{}/store/k{i}", cluster.url(root)));
        assert_eq!((status, body["value"].as_u64()), (200, Some(i as u64)));
    }
}

#[test]
fn clients_that_speak_plain_http_or_do_not_trust_the_ca_get_nothing() {
    let cluster = Cluster::builder(1).tls().start();
    let https = cluster.url(1);
    assert_eq!(http::get(&https).0, 200);

    // Plain HTTP to the TLS port: no HTTP answer, and the connection ends.
    let plain = https.replacen("https://", "http://", 1);
    assert_eq!(http::get(&plain).0, 0);
    let mut s = TcpStream::connect(cluster.address(1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = Instant::now();
    let text = read_to_end(&mut s);
    assert!(!text.contains("HTTP/1.1"), "{text:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "left open");

    // A client with another CA, and one with the public roots: refused by
    // the client's own check of the node's certificate.
    let stranger = TestCa::new("stranger");
    let theirs = ureq::AgentBuilder::new()
        .tls_config(stranger.client_config())
        .timeout(Duration::from_secs(5))
        .build();
    let public = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    for agent in [theirs, public] {
        match agent.get(&https).call() {
            Err(ureq::Error::Transport(t)) => {
                let text = t.to_string();
                assert!(text.contains("certificate"), "{text}");
            }
            other => panic!("an untrusted certificate was accepted: {other:?}"),
        }
    }
    // The node serves on.
    assert_eq!(http::get(&https).0, 200);
}

#[test]
fn bad_tls_flags_stop_a_node_at_start_naming_the_flag() {
    let ca = TestCa::shared();
    let stranger = TestCa::new("mismatch");
    let dir = treecache_harness::temp_dir("bad-tls");
    let garbled = dir.join("garbled.pem");
    std::fs::write(&garbled, "-----BEGIN CERTIFICATE-----\n!!\n").unwrap();
    let p = |path: &std::path::Path| path.display().to_string();
    let (cert, key, root) = (p(&ca.cert), p(&ca.key), p(&ca.ca));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--tls-cert".into(), cert.clone()], "--tls-key"),
        (vec!["--tls-key".into(), key.clone()], "--tls-cert"),
        (vec!["--tls-ca".into(), root.clone()], "--tls-ca"),
        (
            vec![
                "--tls-cert".into(),
                cert.clone(),
                "--tls-key".into(),
                key.clone(),
            ],
            "--tls-ca",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&garbled),
                "--tls-key".into(),
                key.clone(),
                "--tls-ca".into(),
                root.clone(),
            ],
            "--tls-cert",
        ),
        (
            vec![
                "--tls-cert".into(),
                cert.clone(),
                "--tls-key".into(),
                p(&stranger.key),
                "--tls-ca".into(),
                root.clone(),
            ],
            "--tls-key",
        ),
        (
            vec![
                "--tls-cert".into(),
                cert,
                "--tls-key".into(),
                key,
                "--tls-ca".into(),
                p(&dir.join("missing.pem")),
            ],
            "--tls-ca",
        ),
    ];
    for (flags, named) in cases {
        let out = Command::new(treecache_bin())
            .args(["node", "--id", "1", "--zookeeper", "127.0.0.1:1"])
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{flags:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("treecache node: {named}: ")),
            "{flags:?}: {stderr}"
        );
    }
    // The environment gives the same flags.
    let out = Command::new(treecache_bin())
        .args(["node", "--id", "1", "--zookeeper", "127.0.0.1:1"])
        .env("TLS_CERT", &ca.cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

#[test]
fn the_gate_limits_hold_over_tls() {
    let cluster = Cluster::builder(1).tls().start();
    let url = cluster.url(1);
    let address = cluster.address(1);
    let ca = TestCa::shared().client_config();
    let pid = cluster.pid(1);
    let threads_before = threads_of(pid);
    let timeouts_before = answered(&url, 408);

    // Handshakes that stall: no bytes at all, or half a ClientHello. They
    // hold no thread, and each is closed within the request timeout.
    let started = Instant::now();
    let mut stalled = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(&address).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        if i % 2 == 0 {
            // A handshake record header announcing 512 bytes, then nothing.
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
        }
        stalled.push(s);
    }
    // After the handshake, half a request: 408, readable over TLS.
    let mut half = tls_connect(&address, ca.clone());
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();

    // Meanwhile a head over 16 KiB after the handshake gets 431.
    let mut big = tls_connect(&address, ca.clone());
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    big.write_all(head.as_bytes()).unwrap();
    let text = read_to_end(&mut big);
    assert_eq!(status_of(&text), 431, "{text}");
    // And just under the limit is served.
    let mut fits = tls_connect(&address, ca);
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(15 * 1024)
    );
    fits.write_all(head.as_bytes()).unwrap();
    assert_eq!(status_of(&read_to_end(&mut fits)), 200);

    std::thread::sleep(Duration::from_millis(300));
    let threads = threads_of(pid);
    assert!(
        threads <= threads_before + 4,
        "100 stalled handshakes: threads {threads_before} -> {threads}"
    );
    assert_eq!(http::get(&url).0, 200, "others are served meanwhile");

    for (i, s) in stalled.iter_mut().enumerate() {
        let text = read_to_end(s);
        assert!(!text.contains("HTTP/"), "stalled {i}: {text:?}");
    }
    let text = read_to_end(&mut half);
    assert_eq!(status_of(&text), 408, "{text}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(13),
        "closed after {took:?}"
    );
    // Each stalled handshake counts as a 408 the gate gave.
    let timeouts = answered(&url, 408) - timeouts_before;
    assert!(timeouts >= 101, "{timeouts} timeouts counted");
}
