//! Slow and oversized clients against a real node: 431 for a head over
//! 16 KiB, 408 for a request not whole within 10 s, idle keep-alive
//! connections closed, 503 past --max-connections; and 2,000 slow clients
//! cost the node neither threads nor much memory, while others are served
//! at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use treecache_harness::{http, Cluster};

fn connect(cluster: &Cluster) -> TcpStream {
    let s = TcpStream::connect(cluster.address(1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Reads until the peer closes; the text and whether it did close.
fn read_to_close(s: &mut TcpStream) -> (String, bool) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&all).into_owned(), true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&all).into_owned(), false),
        }
    }
}

fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// (threads, RSS in KiB) of a process, from /proc.
fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("Threads:"), field("VmRSS:"))
}

fn raise_open_files(to: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(to.max(limit.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn a_head_over_16_kib_gets_431_and_the_connection_is_closed() {
    let cluster = Cluster::start(1);
    let mut s = connect(&cluster);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let _ = s.write_all(big.as_bytes());
    let (text, closed) = read_to_close(&mut s);
    assert_eq!(status_of(&text), 431, "{text}");
    assert!(text.contains("\"error\""), "{text}");
    assert!(closed);
    // A header line that never ends, 200 MiB of it: cut off at 16 KiB.
    let mut s = connect(&cluster);
    s.write_all(b"GET / HTTP/1.1\r\nX-Endless: ").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < 200 << 20 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(
        sent < 8 << 20,
        "the node took {sent} bytes of one header line"
    );
    // Just under the limit is fine.
    let fits = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(15 * 1024)
    );
    let mut s = connect(&cluster);
    s.write_all(fits.as_bytes()).unwrap();
    let (text, _) = read_to_close(&mut s);
    assert_eq!(status_of(&text), 200, "{text}");
}

#[test]
fn a_request_not_whole_within_10_s_gets_408_and_an_idle_one_is_closed() {
    let cluster = Cluster::builder(1).arg("--idle-timeout").arg("1s").start();
    let started = Instant::now();
    let mut head = connect(&cluster);
    head.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut body = connect(&cluster);
    body.write_all(b"PUT /store/k HTTP/1.1\r\nContent-Length: 20\r\n\r\n{\"value\":")
        .unwrap();
    let mut silent = connect(&cluster);
    // Keep-alive: one whole request, answered, then nothing.
    let mut idle = connect(&cluster);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    let answered = Instant::now();
    let (text, closed) = read_to_close(&mut idle);
    assert!(text.is_empty() && closed, "{text}");
    let idled = answered.elapsed();
    assert!(
        idled >= Duration::from_millis(900) && idled < Duration::from_secs(3),
        "{idled:?}"
    );
    for (what, s) in [
        ("head", &mut head),
        ("body", &mut body),
        ("nothing", &mut silent),
    ] {
        let (text, closed) = read_to_close(s);
        assert_eq!(status_of(&text), 408, "{what}: {text}");
        assert!(closed, "{what}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(13),
        "{took:?}"
    );
    // The half-sent PUT changed nothing.
    assert_eq!(http::get(&format!("{}/store/k", cluster.url(1))).0, 404);
}

#[test]
fn past_max_connections_a_new_connection_gets_503() {
    let cluster = Cluster::builder(1)
        .arg("--max-connections")
        .arg("16")
        .start();
    // The harness's own keep-alive connection may hold a place: fill the rest.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..17 {
        let mut s = connect(&cluster);
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                refused = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
            _ => held.push(s),
        }
    }
    let text = refused.expect("a connection past the limit gets an answer at once");
    assert_eq!(status_of(&text), 503, "{text}");
    assert!(text.contains("max-connections"), "{text}");
    drop(held);
    // Served again at once.
    treecache_harness::wait_until(Duration::from_secs(2), "served again", || {
        http::get(&cluster.url(1)).0 == 200
    });
}

#[test]
fn two_thousand_slow_clients_cost_no_threads_and_little_memory() {
    raise_open_files(8192);
    let cluster = Cluster::builder(1)
        .arg("--max-connections")
        .arg("4096")
        .start();
    let pid = cluster.pid(1);
    assert_eq!(http::get(&cluster.url(1)).0, 200);
    let (threads_before, rss_before) = threads_and_rss(pid);
    let mut slow = Vec::new();
    for i in 0..2000 {
        let mut s = TcpStream::connect(cluster.address(1)).unwrap();
        s.write_all(format!("GET /store/k{i} HTTP/1.1\r\nHost: x\r\nX-Slow: ").as_bytes())
            .unwrap();
        slow.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (threads, rss) = threads_and_rss(pid);
    eprintln!(
        "2000 slow clients: threads {threads_before} -> {threads}, RSS {} -> {} KiB",
        rss_before, rss
    );
    assert!(
        threads <= threads_before + 4,
        "{threads_before} -> {threads}"
    );
    assert!(rss < rss_before + 48 * 1024, "{rss_before} -> {rss} KiB");
    // Others are served at once meanwhile.
    let t = Instant::now();
    assert_eq!(http::get(&cluster.url(1)).0, 200);
    assert_eq!(
        http::put(
            &format!("{}/store/x", cluster.url(1)),
            &serde_json::json!(1)
        )
        .0,
        200
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(http::get(&format!("{}/store/x", cluster.url(1))).0, 200);
    assert!(t.elapsed() < Duration::from_secs(1));
    let (threads_after, _) = threads_and_rss(pid);
    assert!(threads_after <= threads_before + 4, "{threads_after}");
}

/// The scheduling policy of each of a process's threads, by thread name
/// (field 41 of /proc/PID/task/TID/stat: 0 SCHED_OTHER, 3 SCHED_BATCH).
fn policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // The fields after the command name, which ends with ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let policy = rest.split_whitespace().nth(38).and_then(|p| p.parse().ok());
        if let Some(policy) = policy {
            out.push((name.trim().to_string(), policy));
        }
    }
    out
}

#[test]
fn the_threads_the_gate_feeds_do_not_preempt_it() {
    let cluster = Cluster::start(1);
    assert_eq!(http::get(&cluster.url(1)).0, 200);
    let threads = policies(cluster.pid(1));
    let of = |prefix: &str| -> Vec<u32> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, policy)| *policy)
            .collect()
    };
    const OTHER: u32 = 0;
    const BATCH: u32 = 3;
    // The event loop runs on the main thread, named after the binary.
    assert_eq!(of("treecache"), [OTHER], "{threads:?}");
    let workers = of("http-");
    assert!(!workers.is_empty(), "{threads:?}");
    assert!(workers.iter().all(|&p| p == BATCH), "{threads:?}");
    assert!(of("upstream-").iter().all(|&p| p == BATCH), "{threads:?}");
}
