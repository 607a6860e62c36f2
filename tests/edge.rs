//! The HTTP edge against real node processes, spoken to by hand over TCP:
//! what a request whose head or framing is wrong gets (413 before any
//! body, 505, 501, 411, 400, each closing the connection), that nothing
//! is smuggled past the framing, that no request holds a connection slot,
//! a thread or memory past its budget, that the node listens on its API
//! port only, that `POST /mget` answers are bounded, that keys `.` and
//! `..` are refused, and that pipelined requests are answered in order.
//! Last, a bounded fuzz run: thousands of mutated requests, after which
//! the node lives, every answer it gave was well-formed HTTP/1.1, and its
//! threads, descriptors and memory are back near where they were.
//!
//! Answers are read with the harness's strict reader (`raw`), the
//! process's resources from /proc (`procfs`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use treecache_harness::procfs::{self, Usage};
use treecache_harness::raw::{self, Ended, Received, Response};
use treecache_harness::{http, Cluster};

/// The largest body of every route but replication's.
const MAX_BODY: usize = 1_049_600;
/// The largest body of `POST /internal/replicate`.
const MAX_REPLICATION: usize = 4 << 20;

/// The tests that load the machine most (many large answers, the fuzz
/// run) take turns, so that neither starves the other's node on two cores.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request: `extra` header lines (each ending in CRLF) after `Host`, and
/// a `Content-Length` when there is a body.
fn request(method: &str, path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let length = match body.is_empty() {
        true => String::new(),
        false => format!("Content-Length: {}\r\n", body.len()),
    };
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}{length}\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

fn put_body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "value": value })).unwrap()
}

/// What `bytes` got on a fresh connection, read until the node closes it
/// or says nothing for `silence`.
fn exchange(addr: &str, bytes: &[u8], silence: Duration) -> Received {
    raw::exchange(addr, bytes, silence, silence * 3)
}

/// A description of what came, for messages.
fn shown(r: &Received) -> String {
    let text = String::from_utf8_lossy(&r.bytes[..r.bytes.len().min(600)]).into_owned();
    format!("{:?} after {:?}", text, r.ended)
}

/// Checks that `r` is exactly one JSON error answer of `status` that
/// closes the connection, and that the node did close it; what is wrong
/// otherwise.
fn one_refusal(r: &Received, status: u16) -> Result<Response, String> {
    let answers = r
        .responses()
        .map_err(|e| format!("{e}; got {}", shown(r)))?;
    let [answer] = answers.as_slice() else {
        return Err(format!(
            "{} answers, not one {status}: {}",
            answers.len(),
            shown(r)
        ));
    };
    if answer.status != status {
        return Err(format!(
            "{} instead of {status}: {}",
            answer.status,
            shown(r)
        ));
    }
    if !answer.is_json_error() {
        return Err(format!("{status} without a JSON error body: {}", shown(r)));
    }
    if !answer.closes() {
        return Err(format!("{status} without Connection: close: {}", shown(r)));
    }
    if r.ended == Ended::Silent {
        return Err(format!("{status}, but the connection stayed open"));
    }
    Ok(answer.clone())
}

/// `GET /` on a fresh connection gets 200 within `limit`.
fn served(addr: &str, limit: Duration) -> Result<(), String> {
    let r = raw::exchange(
        addr,
        &request("GET", "/", "Connection: close\r\n", b""),
        limit,
        limit,
    );
    match r.responses() {
        Ok(a) if a.len() == 1 && a[0].status == 200 => Ok(()),
        _ => Err(format!("GET / on a new connection: {}", shown(&r))),
    }
}

/// The node lives: its process exists and a new connection is served.
fn assert_lives(cluster: &Cluster, id: u32) {
    let pid = cluster.pid(id);
    assert!(procfs::alive(pid), "NODE-{id} (pid {pid}) is gone");
    if let Err(e) = served(&cluster.address(id), Duration::from_secs(3)) {
        panic!("NODE-{id} is not served: {e}");
    }
}

fn check(wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn a_huge_content_length_gets_413_before_any_body_and_the_node_lives() {
    let cluster = Cluster::start(2);
    let mut wrong = Vec::new();
    let routes = [
        ("GET", "/"),
        ("PUT", "/store/k"),
        ("POST", "/mget"),
        ("POST", "/internal/replicate"),
        ("GET", "/no/such/path"),
    ];
    for id in [1, 2] {
        let addr = cluster.address(id);
        for (method, path) in routes {
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000000000000\r\n\r\n"
            );
            let t = Instant::now();
            let r = exchange(&addr, head.as_bytes(), Duration::from_secs(3));
            if let Err(e) = one_refusal(&r, 413) {
                wrong.push(format!("NODE-{id} {method} {path}: {e}"));
            } else if t.elapsed() > Duration::from_secs(2) {
                wrong.push(format!(
                    "NODE-{id} {method} {path}: 413 after {:?}",
                    t.elapsed()
                ));
            }
            if !procfs::alive(cluster.pid(id)) {
                wrong.push(format!("NODE-{id} died after {method} {path}"));
                break;
            }
            if let Err(e) = served(&addr, Duration::from_secs(3)) {
                wrong.push(format!("NODE-{id} after {method} {path}: {e}"));
            }
        }
        // Just over each route's limit: refused at once, no body sent.
        for (path, limit) in [
            ("/store/k", MAX_BODY),
            ("/internal/replicate", MAX_REPLICATION),
        ] {
            let method = if path == "/store/k" { "PUT" } else { "POST" };
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                limit + 1
            );
            let r = exchange(&addr, head.as_bytes(), Duration::from_secs(3));
            if let Err(e) = one_refusal(&r, 413) {
                wrong.push(format!(
                    "NODE-{id} {method} {path} of {} bytes: {e}",
                    limit + 1
                ));
            }
        }
    }
    // At the limit, a body is awaited, not refused.
    let head = format!("PUT /store/k HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY}\r\n\r\n");
    let r = exchange(&cluster.address(1), head.as_bytes(), Duration::from_secs(1));
    if !(r.bytes.is_empty() && r.ended == Ended::Silent) {
        wrong.push(format!("a PUT of exactly {MAX_BODY} bytes: {}", shown(&r)));
    }
    for id in [1, 2] {
        if !procfs::alive(cluster.pid(id)) {
            wrong.push(format!("NODE-{id} (pid {}) is gone", cluster.pid(id)));
        }
    }
    check(&wrong);
}

#[test]
fn http_2_request_lines_get_505_and_lock_nobody_out() {
    let cluster = Cluster::builder(1)
        .arg("--max-connections")
        .arg("16")
        .start();
    let (addr, pid) = (cluster.address(1), cluster.pid(1));
    served(&addr, Duration::from_secs(2)).unwrap();
    let before = procfs::usage(pid);
    // Fewer at once than the limit (the harness's agent may hold a place).
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                raw::exchange(
                    &addr,
                    b"GET / HTTP/2.0\r\n\r\n",
                    Duration::from_secs(3),
                    Duration::from_secs(4),
                )
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for (i, t) in threads.into_iter().enumerate() {
        if let Err(e) = one_refusal(&t.join().unwrap(), 505) {
            wrong.push(format!("connection {i}: {e}"));
        }
    }
    // 32 more that send the same and go without reading.
    for _ in 0..32 {
        let mut s = TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(b"GET / HTTP/2.0\r\n\r\n");
    }
    let t = Instant::now();
    let mut seen = Vec::new();
    let mut ok = false;
    while t.elapsed() < Duration::from_secs(2) {
        match served(&addr, Duration::from_secs(2)) {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) => seen.push(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !ok {
        wrong.push(format!(
            "no 200 within 2 s of 32 HTTP/2.0 clients: {} tries, last {:?}",
            seen.len(),
            seen.last()
        ));
    }
    let (after, back) = procfs::wait_for_usage(pid, Duration::from_secs(5), |u| {
        u.fds <= before.fds + 2 && u.threads <= before.threads + 2
    });
    eprintln!("before: {before}; after: {after}");
    if !back {
        wrong.push(format!(
            "sockets or threads not back within 5 s: {before} -> {after}"
        ));
    }
    assert!(procfs::alive(pid), "the node is gone");
    check(&wrong);
}

#[test]
fn transfer_codings_are_refused_and_nothing_is_smuggled() {
    let cluster = Cluster::start(1);
    let (addr, pid) = (cluster.address(1), cluster.pid(1));
    assert_eq!(
        http::put(
            &format!("{}/store/secret", cluster.url(1)),
            &json!("hidden")
        )
        .0,
        200
    );
    // The slow client runs meanwhile: 10 s of it.
    let slow = {
        let addr = addr.clone();
        std::thread::spawn(move || slow_put_is_cut_at_the_request_timeout(&addr, pid))
    };
    let value = br#"{"value":"smuggled"}"#;
    let smuggled = b"GET /store/secret HTTP/1.1\r\nHost: x\r\n\r\n";
    let with = |extra: &str, body: &[u8]| {
        let mut r = format!(
            "PUT /store/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\r\n"
        )
        .into_bytes();
        r.extend_from_slice(body);
        r.extend_from_slice(smuggled);
        r
    };
    let chunk = [
        format!("{:x}\r\n", value.len()).as_bytes(),
        value,
        b"\r\n0\r\n\r\n",
    ]
    .concat();
    let cl = format!("Content-Length: {}\r\n", value.len());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "identity",
            with("Transfer-Encoding: identity\r\n", value),
            501,
        ),
        (
            "identity with Content-Length",
            with(&format!("Transfer-Encoding: identity\r\n{cl}"), value),
            400,
        ),
        ("gzip", with("Transfer-Encoding: gzip\r\n", value), 501),
        (
            "chunked",
            with("Transfer-Encoding: chunked\r\n", &chunk),
            411,
        ),
        (
            "chunked with Content-Length",
            with(&format!("Transfer-Encoding: chunked\r\n{cl}"), &chunk),
            400,
        ),
        (
            "Content-Length then chunked",
            with(&format!("{cl}Transfer-Encoding: chunked\r\n"), value),
            400,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, bytes, status) in &cases {
        let r = exchange(&addr, bytes, Duration::from_secs(3));
        if let Err(e) = one_refusal(&r, *status) {
            wrong.push(format!("{what}: {e}"));
        }
        if String::from_utf8_lossy(&r.bytes).contains("hidden") {
            wrong.push(format!(
                "{what}: the smuggled GET was answered: {}",
                shown(&r)
            ));
        }
    }
    let (status, body) = http::get(&format!("{}/store/a", cluster.url(1)));
    if status != 404 {
        wrong.push(format!("a refused PUT was applied: {status} {body}"));
    }
    if let Err(e) = slow.join().unwrap() {
        wrong.push(e);
    }
    assert_lives(&cluster, 1);
    check(&wrong);
}

/// A PUT that says 1 MiB, sends a quarter of it, and stalls: 408 and closed
/// at the request time-out, and the node's memory hardly grows.
fn slow_put_is_cut_at_the_request_timeout(addr: &str, pid: u32) -> Result<(), String> {
    let before = procfs::usage(pid);
    let mut s = raw::connect(addr, Duration::from_secs(15));
    let started = Instant::now();
    let head =
        "PUT /store/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n{\"value\":\"";
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let piece = vec![b'a'; 16 * 1024];
    for _ in 0..16 {
        s.write_all(&piece).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut peak = before.rss_kib;
    let r = loop {
        peak = peak.max(procfs::usage(pid).rss_kib);
        let r = raw::read_until_end(
            &mut s,
            Duration::from_millis(500),
            Duration::from_millis(500),
        );
        if !r.bytes.is_empty() || r.ended != Ended::Silent || started.elapsed().as_secs() > 14 {
            let mut rest =
                raw::read_until_end(&mut s, Duration::from_secs(2), Duration::from_secs(2));
            let mut bytes = r.bytes;
            bytes.append(&mut rest.bytes);
            break Received {
                bytes,
                ended: if rest.bytes.is_empty() && r.ended != Ended::Silent {
                    r.ended
                } else {
                    rest.ended
                },
            };
        }
    };
    let took = started.elapsed();
    eprintln!(
        "slow PUT: answered after {took:?}; RSS {} -> peak {} KiB",
        before.rss_kib, peak
    );
    one_refusal(&r, 408).map_err(|e| format!("slow PUT: {e}"))?;
    if !(Duration::from_secs(10)..Duration::from_secs(13)).contains(&took) {
        return Err(format!("slow PUT: 408 after {took:?}, not 10 to 13 s"));
    }
    if peak > before.rss_kib + 6 * 1024 {
        return Err(format!(
            "slow PUT: RSS grew from {} to {peak} KiB",
            before.rss_kib
        ));
    }
    Ok(())
}

#[test]
fn upgrade_headers_do_not_change_how_a_body_is_read() {
    let cluster = Cluster::start(2);
    let mut wrong = Vec::new();
    for id in [1, 2] {
        let addr = cluster.address(id);
        for (n, upgrade) in [
            "Connection: upgrade\r\nUpgrade: websocket\r\n",
            "Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        ]
        .iter()
        .enumerate()
        {
            let key = format!("up-{id}-{n}");
            let mut bytes = request(
                "PUT",
                &format!("/store/{key}"),
                &format!("Content-Type: application/json\r\n{upgrade}"),
                &put_body(&json!(key)),
            );
            let mget = serde_json::to_vec(&json!({ "keys": [key] })).unwrap();
            bytes.extend(request("POST", "/mget", upgrade, &mget));
            bytes.extend(request("GET", &format!("/store/{key}"), "", b""));
            let mut s = raw::connect(&addr, Duration::from_secs(5));
            s.write_all(&bytes).unwrap();
            let got = raw::read_responses(&mut s, 3, Duration::from_secs(5));
            let what = format!("NODE-{id} with {upgrade:?}");
            match got {
                Err(e) => wrong.push(format!("{what}: {e}")),
                Ok((answers, ended)) => {
                    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
                    if statuses != [200, 200, 200] {
                        let texts: Vec<String> = answers.iter().map(Response::text).collect();
                        wrong.push(format!("{what}: {statuses:?} {texts:?}, then {ended:?}"));
                        continue;
                    }
                    if answers[0].json() != json!({ "key": key, "value": key }) {
                        wrong.push(format!("{what}: PUT answered {}", answers[0].text()));
                    }
                    if answers[1].json()["values"][&key] != json!(key) {
                        wrong.push(format!("{what}: mget answered {}", answers[1].text()));
                    }
                    if answers[2].json()["value"] != json!(key) {
                        wrong.push(format!("{what}: GET answered {}", answers[2].text()));
                    }
                }
            }
        }
    }
    check(&wrong);
}

#[test]
fn the_node_listens_on_its_api_port_only() {
    let cluster = Cluster::start(2);
    let mut wrong = Vec::new();
    for id in [1, 2, 3] {
        let (pid, port) = (cluster.pid(id), cluster.port(id));
        assert_eq!(http::get(&cluster.url(id)).0, 200);
        let relay = format!("@treecache-{pid}-{port}");
        let all = procfs::unix_sockets();
        if let Some(s) = all.iter().find(|s| s.path == relay) {
            wrong.push(format!(
                "NODE-{id}: an abstract Unix socket {relay} (inode {})",
                s.inode
            ));
        }
        let listening: Vec<_> = procfs::unix_sockets_of(pid)
            .into_iter()
            .filter(|s| s.listening)
            .collect();
        if !listening.is_empty() {
            wrong.push(format!("NODE-{id}: listening Unix sockets {listening:?}"));
        }
        let tcp = procfs::listening_tcp(pid);
        if tcp.len() != 1 || tcp[0].port != port {
            wrong.push(format!(
                "NODE-{id}: listening TCP sockets {tcp:?}, not one on port {port}"
            ));
        }
    }
    check(&wrong);
}

#[test]
fn a_leaf_whose_parent_is_frozen_answers_within_its_budget_and_never_hangs() {
    let cluster = Cluster::builder(2)
        .arg("--upstream-timeout")
        .arg("2s")
        .start();
    let addr = cluster.address(2);
    assert_eq!(http::get(&cluster.url(2)).0, 200);
    cluster.freeze(1);
    // More at once than the leaf has workers by default.
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || frozen_parent_miss(&addr, &format!("miss-{i}")))
        })
        .collect();
    let mut wrong = Vec::new();
    for c in clients {
        if let Err(e) = c.join().unwrap() {
            wrong.push(e);
        }
    }
    cluster.thaw(1);
    assert!(procfs::alive(cluster.pid(2)));
    check(&wrong);
}

/// A miss through a leaf whose parent is frozen: an error answer within
/// `--upstream-timeout` (2 s) + 1 s + slack, and the connection then
/// usable or closed.
fn frozen_parent_miss(addr: &str, key: &str) -> Result<(), String> {
    let budget = Duration::from_secs(3) + Duration::from_millis(1500);
    let mut s = raw::connect(addr, Duration::from_secs(10));
    let t = Instant::now();
    s.write_all(&request("GET", &format!("/store/{key}"), "", b""))
        .unwrap();
    let (answers, ended) = raw::read_responses(&mut s, 1, Duration::from_secs(10))
        .map_err(|e| format!("{key}: {e}"))?;
    let took = t.elapsed();
    let Some(answer) = answers.first() else {
        return Err(format!("{key}: no answer, {ended:?} after {took:?}"));
    };
    if ![502, 503, 504].contains(&answer.status) || !answer.is_json_error() {
        return Err(format!("{key}: {} {}", answer.status, answer.text()));
    }
    eprintln!("{key}: {} after {took:?}", answer.status);
    if took > budget {
        return Err(format!(
            "{key}: {} after {took:?}, over {budget:?}",
            answer.status
        ));
    }
    // Then: usable, or closed; not stuck.
    if answer.closes() {
        let r = raw::read_until_end(&mut s, Duration::from_secs(2), Duration::from_secs(2));
        if r.ended == Ended::Silent {
            return Err(format!("{key}: Connection: close, but it stayed open"));
        }
        return Ok(());
    }
    let _ = s.write_all(&request("GET", "/", "", b""));
    match raw::read_responses(&mut s, 1, Duration::from_secs(2)) {
        Ok((a, _)) if a.first().is_some_and(|a| a.status == 200) => Ok(()),
        Ok((a, Ended::Closed | Ended::Reset)) if a.is_empty() => Ok(()),
        other => Err(format!("{key}: the connection after the answer: {other:?}")),
    }
}

/// A connection whose receive buffer is small, so that what the node sends
/// stays with the node.
fn narrow(addr: &str) -> TcpStream {
    let s = raw::connect(addr, Duration::from_secs(5));
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on a socket we own, with a valid int option.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    s
}

#[test]
fn mget_answers_are_bounded_in_size_and_in_total() {
    let _turn = heavy();
    let cluster = Cluster::start(1);
    let (addr, pid, url) = (cluster.address(1), cluster.pid(1), cluster.url(1));
    let big = |i: usize| format!("big-{i:02}");
    for i in 0..16 {
        let value = json!(char::from(b'a' + i as u8).to_string().repeat(1_000_000));
        let body = put_body(&value);
        let a = http::request("PUT", &format!("{url}/store/{}", big(i)), Some(&body), &[]);
        assert_eq!(a.status, 200, "{}", a.text());
    }
    assert_eq!(http::put(&format!("{url}/store/small"), &json!(1)).0, 200);
    let mget = |keys: &[String]| -> Vec<u8> {
        request(
            "POST",
            "/mget",
            "Content-Type: application/json\r\n",
            &serde_json::to_vec(&json!({ "keys": keys })).unwrap(),
        )
    };
    let all: Vec<String> = (0..16).map(big).collect();
    let mut wrong = Vec::new();
    // 16 MiB of answer: refused.
    let mut s = raw::connect(&addr, Duration::from_secs(20));
    s.write_all(&mget(&all)).unwrap();
    match raw::read_responses(&mut s, 1, Duration::from_secs(20)) {
        Ok((a, _)) if a.len() == 1 && a[0].status == 413 && a[0].is_json_error() => {}
        Ok((a, ended)) => wrong.push(format!(
            "mget of 16 MiB: {:?} ({} bytes), then {ended:?}",
            a.first().map(|a| a.status),
            a.first().map_or(0, |a| a.body.len())
        )),
        Err(e) => wrong.push(format!("mget of 16 MiB: {e}")),
    }
    drop(s);
    assert_lives(&cluster, 1);
    // 4 MiB: answered.
    let four: Vec<String> = all[..4].to_vec();
    let mut s = raw::connect(&addr, Duration::from_secs(20));
    s.write_all(&mget(&four)).unwrap();
    match raw::read_responses(&mut s, 1, Duration::from_secs(20)) {
        Ok((a, _)) if a.len() == 1 && a[0].status == 200 => {
            let values = &a[0].json()["values"];
            for k in &four {
                if values[k].as_str().map(str::len) != Some(1_000_000) {
                    wrong.push(format!("mget of 4 MiB: {k} missing"));
                }
            }
        }
        other => wrong.push(format!(
            "mget of 4 MiB: {:?}",
            other.map(|(a, e)| (a.iter().map(|a| a.status).collect::<Vec<_>>(), e))
        )),
    }
    drop(s);
    // In total: 40 clients that each ask for 7 MiB and read none of it.
    std::thread::sleep(Duration::from_millis(500));
    let before = procfs::usage(pid);
    let seven: Vec<String> = all[..7].to_vec();
    let mut hogs = Vec::new();
    for _ in 0..40 {
        let mut s = narrow(&addr);
        let _ = s.write_all(&mget(&seven));
        hogs.push(s);
    }
    let t = Instant::now();
    let mut peak = before;
    let mut small = BTreeMap::new();
    while t.elapsed() < Duration::from_secs(5) {
        let now = procfs::usage(pid);
        if now.rss_kib > peak.rss_kib {
            peak = now;
        }
        // A small read meanwhile: answered, 200 or 503, not left hanging.
        let r = raw::exchange(
            &addr,
            &request("GET", "/store/small", "Connection: close\r\n", b""),
            Duration::from_secs(3),
            Duration::from_secs(3),
        );
        let status = r.responses().ok().and_then(|a| a.first().map(|a| a.status));
        *small.entry(status).or_insert(0) += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "40 unread mgets of 7 MiB: before {before}; peak {peak}; small reads meanwhile {small:?}"
    );
    // The node's budget for answers waiting for their clients (32 MiB),
    // the mget answers being built meanwhile (2 at once, 8 MiB of values
    // and their body each), and room for allocator slack.
    let limit = (200 * 1024).max(before.rss_kib + 128 * 1024 + 48 * 1024);
    if peak.rss_kib > limit {
        wrong.push(format!(
            "RSS rose from {} to {} KiB (over {limit}) with 40 unread mgets",
            before.rss_kib, peak.rss_kib
        ));
    }
    if small.keys().any(|s| !matches!(s, Some(200 | 503))) {
        wrong.push(format!("small reads meanwhile: {small:?}"));
    }
    drop(hogs);
    let (after, back) = procfs::wait_for_usage(pid, Duration::from_secs(12), |u| {
        u.rss_kib <= before.rss_kib + 48 * 1024 && u.fds <= before.fds + 4
    });
    eprintln!("after the clients went: {after}");
    if !back {
        wrong.push(format!(
            "RSS or descriptors not back near {before} within 12 s: {after}"
        ));
    }
    assert_lives(&cluster, 1);
    check(&wrong);
}

#[test]
fn keys_dot_and_dot_dot_are_refused_at_every_node() {
    let cluster = Cluster::start(2);
    let mut wrong = Vec::new();
    let one = |addr: &str, bytes: Vec<u8>| -> Option<Response> {
        let r = exchange(addr, &bytes, Duration::from_secs(5));
        r.responses().ok().and_then(|a| a.into_iter().next())
    };
    let close = "Connection: close\r\nContent-Type: application/json\r\n";
    for id in [1, 2] {
        let addr = cluster.address(id);
        for key in [".", "..", "%2E", "%2e", "%2E%2E", "%2e%2E", ".%2E", "%2E."] {
            for method in ["GET", "PUT", "DELETE"] {
                let body = if method == "PUT" {
                    put_body(&json!(1))
                } else {
                    Vec::new()
                };
                let got = one(
                    &addr,
                    request(method, &format!("/store/{key}"), close, &body),
                );
                match got {
                    Some(a) if a.status == 400 && a.is_json_error() => {}
                    other => wrong.push(format!(
                        "NODE-{id} {method} /store/{key}: {:?}",
                        other.map(|a| (a.status, a.text()))
                    )),
                }
            }
            let body = format!(
                r#"{{"keys": ["{}"]}}"#,
                key.replace("%2E", ".").replace("%2e", ".")
            );
            match one(&addr, request("POST", "/mget", close, body.as_bytes())) {
                Some(a) if a.status == 400 && a.is_json_error() => {}
                other => wrong.push(format!(
                    "NODE-{id} mget {body}: {:?}",
                    other.map(|a| (a.status, a.text()))
                )),
            }
        }
        // Other keys that start with dots are keys like any.
        for key in [".a", "...", "..b", "a..", ".%2E."] {
            let decoded = key.replace("%2E", ".");
            let path = format!("/store/{key}");
            let steps = [
                ("PUT", put_body(&json!(id)), 200),
                ("GET", Vec::new(), 200),
                ("DELETE", Vec::new(), 200),
                ("GET", Vec::new(), 404),
            ];
            for (method, body, status) in steps {
                match one(&addr, request(method, &path, close, &body)) {
                    Some(a)
                        if a.status == status
                            && (status != 200 || a.json()["key"] == decoded.as_str()) => {}
                    other => wrong.push(format!(
                        "NODE-{id} {method} {path}: {:?}, not {status}",
                        other.map(|a| (a.status, a.text()))
                    )),
                }
            }
        }
    }
    check(&wrong);
}

#[test]
fn fifty_pipelined_requests_are_answered_in_request_order() {
    let cluster = Cluster::start(2);
    let mut wrong = Vec::new();
    for (round, (id, split)) in [(2, false), (1, false), (2, true)].into_iter().enumerate() {
        let p = |i: usize| format!("r{round}-p{i}");
        for i in 0..20 {
            let (status, _) = http::put(
                &format!("{}/store/{}", cluster.url(1), p(i)),
                &json!(format!("v{i}")),
            );
            assert_eq!(status, 200);
        }
        // The first ten are hits at the leaf, the next ten misses.
        for i in 0..10 {
            assert_eq!(
                http::get(&format!("{}/store/{}", cluster.url(id), p(i))).0,
                200
            );
        }
        // (key, expected answer) in request order.
        let mut expected: Vec<(String, u16, Value)> = Vec::new();
        let mut bytes = Vec::new();
        let mut seed = 7u64 + round as u64;
        for n in 0..50 {
            if n == 25 {
                let key = format!("r{round}-new");
                bytes.extend(request(
                    "PUT",
                    &format!("/store/{key}"),
                    "Content-Type: application/json\r\n",
                    &put_body(&json!("put")),
                ));
                expected.push((key.clone(), 200, json!("put")));
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % 30;
            let (key, status, value) = match i {
                0..=19 => (p(i), 200, json!(format!("v{i}"))),
                _ => (format!("r{round}-none-{i}"), 404, Value::Null),
            };
            bytes.extend(request("GET", &format!("/store/{key}"), "", b""));
            expected.push((key, status, value));
        }
        let mut s = raw::connect(&cluster.address(id), Duration::from_secs(10));
        if split {
            // In pieces of 1 to 97 bytes, each written on its own.
            let mut at = 0;
            let mut k = 0;
            while at < bytes.len() {
                let n = (1 + (k * 37) % 97).min(bytes.len() - at);
                s.write_all(&bytes[at..at + n]).unwrap();
                at += n;
                k += 1;
                if k % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        } else {
            s.write_all(&bytes).unwrap();
        }
        let what = format!("NODE-{id}{}", if split { " in pieces" } else { "" });
        match raw::read_responses(&mut s, 51, Duration::from_secs(15)) {
            Err(e) => wrong.push(format!("{what}: {e}")),
            Ok((answers, _)) => {
                if answers.len() != 51 {
                    wrong.push(format!("{what}: {} answers", answers.len()));
                }
                for (n, (a, (key, status, value))) in answers.iter().zip(&expected).enumerate() {
                    let good = a.status == *status
                        && match status {
                            200 => a.json()["key"] == key.as_str() && a.json()["value"] == *value,
                            _ => a.is_json_error(),
                        };
                    if !good {
                        wrong.push(format!(
                            "{what}: answer {n} for {key} (expected {status} {value}): {} {}",
                            a.status,
                            a.text()
                        ));
                    }
                }
            }
        }
    }
    check(&wrong);
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// A request the node would take, one of several kinds.
fn template(rng: &mut Rng) -> Vec<u8> {
    let key = format!("f{}", rng.below(20));
    let json = "Content-Type: application/json\r\n";
    match rng.below(14) {
        0 => request("GET", "/", "", b""),
        1 | 2 => request("GET", &format!("/store/{key}"), "", b""),
        3 | 4 => request(
            "PUT",
            &format!("/store/{key}"),
            json,
            &put_body(&json!(rng.next() % 1000)),
        ),
        5 => request("DELETE", &format!("/store/{key}"), "", b""),
        6 => request("POST", "/mget", json, br#"{"keys":["f1","f2","f3"]}"#),
        7 => request("GET", "/keys?prefix=f&limit=5", "", b""),
        8 => request(
            "GET",
            rng.pick(&["/nodes", "/metrics", "/ready", "/docs"]),
            "",
            b"",
        ),
        9 => request("POST", "/internal/invalidate", json, br#"{"key":"f1"}"#),
        10 => request("GET", &format!("/store/{key}?local=true"), "", b""),
        11 => format!("GET /store/{key} HTTP/1.0\r\n\r\n").into_bytes(),
        12 => request(
            "PUT",
            &format!("/store/{key}"),
            "If-Match: \"1\"\r\nContent-Type: application/json\r\n",
            &put_body(&json!("m")),
        ),
        _ => request(
            "GET",
            &format!("/store/{key}"),
            "If-None-Match: \"1\"\r\n",
            b"",
        ),
    }
}

/// Replaces the first `from` in `bytes` with `to`.
fn replace_first(bytes: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    if let Some(at) = bytes.windows(from.len()).position(|w| w == from) {
        bytes.splice(at..at + from.len(), to.iter().copied());
    }
}

/// Where a new header line may go: just after the request line.
fn after_request_line(bytes: &[u8]) -> usize {
    bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(bytes.len(), |at| at + 2)
}

fn insert_header(bytes: &mut Vec<u8>, line: &[u8]) {
    let at = after_request_line(bytes);
    bytes.splice(at..at, line.iter().copied());
}

/// One mutation of a request.
fn mutate(rng: &mut Rng, r: &mut Vec<u8>) {
    let len = r.len().max(1);
    match rng.below(20) {
        0 | 1 => {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(len).min(r.len().saturating_sub(1));
                if let Some(b) = r.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
        2 => r.truncate(rng.below(len)),
        3 => {
            let v = rng.pick(&[
                "HTTP/1.0",
                "HTTP/1.2",
                "HTTP/2.0",
                "HTTP/2",
                "HTTP/0.9",
                "HTTP/1.1.1",
                "http/1.1",
                "HTTP/11",
                "",
                "HTTP/9.9",
                "HTTPS/1.1",
                "HTTP/1.1 x",
                "HTTP/1.01",
            ]);
            replace_first(r, b"HTTP/1.1", v.as_bytes());
        }
        4 => {
            // A header line twice.
            let line = b"Host: x\r\n".to_vec();
            insert_header(r, &line);
        }
        5 => {
            let n = rng.pick(&[
                "0",
                "-1",
                "+5",
                "99999999999999999999999",
                "1000000000000",
                "0x10",
                "1,1",
                " 5",
                "5 5",
                "",
                "18446744073709551616",
                "4294967296",
                "3",
                "1049601",
                "4194305",
            ]);
            insert_header(r, format!("Content-Length: {n}\r\n").as_bytes());
        }
        6 => {
            let te = rng.pick(&[
                "chunked",
                "identity",
                "gzip",
                "chunked, chunked",
                " chunked",
                "xchunked",
                "gzip, chunked",
                "CHUNKED",
            ]);
            insert_header(r, format!("Transfer-Encoding: {te}\r\n").as_bytes());
        }
        7 => {
            // Bare LF: everywhere, or once.
            if rng.chance(50) {
                let text: Vec<u8> = r.clone();
                r.clear();
                let mut i = 0;
                while i < text.len() {
                    if text[i..].starts_with(b"\r\n") {
                        r.push(b'\n');
                        i += 2;
                    } else {
                        r.push(text[i]);
                        i += 1;
                    }
                }
            } else {
                replace_first(r, b"\r\nHost", b"\nHost");
            }
        }
        8 => {
            let at = rng.below(len).min(r.len());
            r.splice(at..at, std::iter::repeat_n(0u8, 1 + rng.below(3)));
        }
        9 => replace_first(r, b"Host: x\r\n", b"Host: x\r\n folded\r\n"),
        10 => replace_first(
            r,
            b"Host: x",
            rng.pick(&[
                &b"Host : x"[..],
                b"Host\t: x",
                b" Host: x",
                b"Host x",
                b": x",
                b"Ho st: x",
            ]),
        ),
        11 => {
            let long = "a".repeat(1 + rng.below(20_000));
            replace_first(r, b" /", format!(" /store/{long}?q=").as_bytes());
        }
        12 => {
            let bad = rng.pick(&[&b"\xff\xfe"[..], b"\xc3\x28", b"\x80", b"\xed\xa0\x80"]);
            if rng.chance(50) {
                replace_first(r, b"/store/", &[b"/store/", bad].concat());
            } else {
                replace_first(r, b"Host: x", &[b"Host: x", bad].concat());
            }
        }
        13 => {
            let many: Vec<u8> = (0..50 + rng.below(400))
                .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
                .collect();
            insert_header(r, &many);
        }
        14 => {
            let method = rng.pick(&[
                "PUT", "POST", "DELETE", "PATCH", "get", "G E T", "", "CONNECT", "TRACE",
                "OPTIONS", "GETT", "\x01",
            ]);
            let at = r.iter().position(|&b| b == b' ').unwrap_or(0);
            r.splice(..at, method.bytes());
        }
        15 => insert_header(
            r,
            rng.pick(&[
                &b"Expect: 100-continue\r\n"[..],
                b"Connection: upgrade\r\nUpgrade: websocket\r\n",
                b"Connection: close\r\n",
                b"Connection: keep-alive\r\n",
            ]),
        ),
        16 => {
            let junk = rng.pick(&[&b"\r\n"[..], b"\r\n\r\n", b"\r", b" ", b"\n"]);
            r.splice(0..0, junk.iter().copied());
        }
        17 => replace_first(
            r,
            b" /",
            rng.pick(&[
                &b" http://x/"[..],
                b" *",
                b" //",
                b" /store/%",
                b" /store/%zz",
                b" /store/%00",
                b" ",
                b"  /",
            ]),
        ),
        18 => insert_header(
            r,
            format!("X-Big: {}\r\n", "b".repeat(15_000 + rng.below(3_000))).as_bytes(),
        ),
        _ => {
            // A stray CR inside a line.
            replace_first(r, b"Host: x", b"Host: \rx");
        }
    }
}

/// What one fuzzed connection sends: one to four requests, most mutated.
fn fuzzed(rng: &mut Rng) -> (Vec<u8>, usize) {
    loop {
        let count = 1 + rng.below(4);
        let mut out = Vec::new();
        for _ in 0..count {
            let mut r = template(rng);
            if rng.chance(85) {
                for _ in 0..1 + rng.below(3) {
                    mutate(rng, &mut r);
                }
            }
            out.extend(r);
        }
        // An answer to HEAD has no body: the reader could not tell where
        // it ends. None is sent.
        if !out.windows(4).any(|w| w.eq_ignore_ascii_case(b"HEAD")) {
            return (out, count);
        }
    }
}

/// What is wrong with the answers one fuzzed connection got.
fn judge(r: &Received, statuses: &mut BTreeMap<u16, usize>) -> Result<(), String> {
    let answers = match raw::parse_all(&r.bytes) {
        Ok((answers, [])) => answers,
        // A reset may cut an answer short; the whole ones before it count.
        Ok((answers, _)) if r.ended == Ended::Reset => answers,
        Ok((_, rest)) => {
            return Err(format!(
                "{} bytes left after the whole answers ({:?}): {:?}",
                rest.len(),
                r.ended,
                String::from_utf8_lossy(&rest[..rest.len().min(300)])
            ))
        }
        Err(e) => return Err(e),
    };
    for (i, a) in answers.iter().enumerate() {
        *statuses.entry(a.status).or_insert(0) += 1;
        if a.status >= 400 && !a.is_json_error() {
            return Err(format!(
                "answer {i}: {} without a JSON error: {:?}",
                a.status,
                a.text()
            ));
        }
        if a.closes() && i + 1 < answers.len() {
            return Err(format!(
                "answer {i} said Connection: close, and more followed"
            ));
        }
    }
    Ok(())
}

fn escaped(bytes: &[u8]) -> String {
    let show = |part: &[u8]| -> String {
        part.iter()
            .flat_map(|&b| std::ascii::escape_default(b))
            .map(char::from)
            .collect()
    };
    match bytes.len() {
        0..=500 => show(bytes),
        n => format!(
            "{} …({} bytes)… {}",
            show(&bytes[..300]),
            n - 400,
            show(&bytes[n - 100..])
        ),
    }
}

/// Fuzzes one node for at most `limit`: how many requests were sent, the
/// statuses seen, how connections ended, and what was wrong.
fn fuzz(
    addr: &str,
    pid: u32,
    seed: u64,
    limit: Duration,
    requests: usize,
) -> (
    usize,
    BTreeMap<u16, usize>,
    BTreeMap<String, usize>,
    Vec<String>,
) {
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut sent = 0;
    let mut statuses = BTreeMap::new();
    let mut ends = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut connection = 0;
    let mut recent = std::collections::VecDeque::new();
    while sent < requests && started.elapsed() < limit {
        let (bytes, count) = fuzzed(&mut rng);
        recent.push_back(bytes.clone());
        if recent.len() > 3 {
            recent.pop_front();
        }
        sent += count;
        connection += 1;
        let r = raw::exchange_and_end(addr, &bytes, Duration::from_secs(2), Duration::from_secs(4));
        let ended = match (r.ended, r.bytes.is_empty()) {
            (e, true) => format!("{e:?} without an answer"),
            (e, false) => format!("{e:?}"),
        };
        *ends.entry(ended).or_insert(0) += 1;
        if let Err(e) = judge(&r, &mut statuses) {
            if wrong.len() < 12 {
                wrong.push(format!(
                    "connection {connection}: {e}\n    sent: {}",
                    escaped(&bytes)
                ));
            }
        }
        if r.ended == Ended::Refused || !procfs::alive(pid) {
            let last: Vec<String> = recent.iter().map(|b| escaped(b)).collect();
            wrong.push(format!(
                "the node died by connection {connection}; the last connections sent:\n    {}",
                last.join("\n    ")
            ));
            break;
        }
    }
    (sent, statuses, ends, wrong)
}

#[test]
fn a_fuzzed_stream_of_requests_never_kills_the_node() {
    let _turn = heavy();
    let seed = match std::env::var("EDGE_FUZZ_SEED") {
        Ok(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).expect("EDGE_FUZZ_SEED: a number"),
            None => s.parse().expect("EDGE_FUZZ_SEED: a number"),
        },
        Err(_) => 0x5EED_ED6E,
    };
    eprintln!("fuzz seed {seed:#x} (EDGE_FUZZ_SEED to change it)");
    let cluster = Cluster::start(2);
    // Warm up each node, then take its baseline.
    let targets = [2, 1];
    let mut baseline: Vec<Usage> = Vec::new();
    for &id in &targets {
        for i in 0..20 {
            let _ = http::put(&format!("{}/store/f{i}", cluster.url(id)), &json!(i));
            let _ = http::get(&format!("{}/store/f{i}", cluster.url(id)));
        }
        served(&cluster.address(id), Duration::from_secs(2)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    for &id in &targets {
        baseline.push(procfs::usage(cluster.pid(id)));
    }
    let runs: Vec<_> = targets
        .iter()
        .map(|&id| {
            let (addr, pid) = (cluster.address(id), cluster.pid(id));
            std::thread::spawn(move || {
                fuzz(
                    &addr,
                    pid,
                    seed ^ u64::from(id),
                    Duration::from_secs(30),
                    2000,
                )
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for (&id, run) in targets.iter().zip(runs) {
        let (sent, statuses, ends, bad) = run.join().unwrap();
        eprintln!("NODE-{id}: {sent} requests; statuses {statuses:?}; connections ended {ends:?}");
        wrong.extend(bad.into_iter().map(|e| format!("NODE-{id} {e}")));
    }
    for (&id, before) in targets.iter().zip(&baseline) {
        let pid = cluster.pid(id);
        if !procfs::alive(pid) {
            wrong.push(format!("NODE-{id} is gone"));
            continue;
        }
        if let Err(e) = served(&cluster.address(id), Duration::from_secs(3)) {
            wrong.push(format!("NODE-{id} after the run: {e}"));
        }
        let (after, back) = procfs::wait_for_usage(pid, Duration::from_secs(12), |u| {
            u.threads <= before.threads + 2
                && u.fds <= before.fds + 4
                && u.rss_kib <= before.rss_kib + 32 * 1024
        });
        eprintln!("NODE-{id}: before {before}; after {after}");
        if !back {
            wrong.push(format!(
                "NODE-{id} not back near its baseline within 12 s: {before} -> {after}"
            ));
        }
    }
    check(&wrong);
}
