//! Keys and values, requests, the keep-alive load generator and what it
//! measured.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Client connections that load keys into the root.
pub const LOADERS: usize = 8;
/// Upper bound on the time spent loading keys for a memory figure.
pub const LOAD_LIMIT: Duration = Duration::from_secs(300);
/// Keys read by the hit scenarios.
pub const HOT_KEYS: u64 = 1_000;
/// Client connections of the read scenarios.
pub const READERS: usize = 8;

// ---------------------------------------------------------------- keys

/// A 16-byte key.
pub fn small_key(i: u64) -> String {
    format!("k{i:015}")
}

/// A 32-byte value, as the JSON body of a PUT.
pub fn small_value(i: u64) -> String {
    format!("v{i:031}")
}

pub fn put_body(value: &str) -> Vec<u8> {
    format!("{{\"value\":\"{value}\"}}").into_bytes()
}

pub fn hot_key(i: u64) -> String {
    format!("hot{i:013}")
}

// ---------------------------------------------------------------- requests

/// One request of a load.
pub struct Req {
    pub method: &'static str,
    pub url: String,
    pub body: Option<Vec<u8>>,
    pub expect: u16,
}

impl Req {
    pub fn get(url: String, expect: u16) -> Req {
        Req {
            method: "GET",
            url,
            body: None,
            expect,
        }
    }

    pub fn put(url: String, value: &str) -> Req {
        Req {
            method: "PUT",
            url,
            body: Some(put_body(value)),
            expect: 200,
        }
    }
}

/// A client with one keep-alive connection (its `https://` calls trust
/// the harness's test CA).
pub fn agent() -> ureq::Agent {
    crate::common::http::builder()
        .timeout(Duration::from_secs(10))
        .max_idle_connections_per_host(1)
        .build()
}

/// Sends one request on the agent's connection; true when the status is the expected one.
pub fn send(agent: &ureq::Agent, req: &Req) -> bool {
    status(agent, req) == req.expect
}

/// Sends one request on the agent's connection and returns the status of
/// the answer, 0 when none came (refused, reset, timed out).
pub fn status(agent: &ureq::Agent, req: &Req) -> u16 {
    let request = agent.request(req.method, &req.url);
    let result = match &req.body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_bytes(body),
        None => request.call(),
    };
    match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => {
            let status = response.status();
            // Reading the body to its end returns the connection for reuse.
            let mut sink = Vec::with_capacity(256);
            let _ = response.into_reader().take(1 << 20).read_to_end(&mut sink);
            status
        }
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------- stats

/// What one load measured.
pub struct Stats {
    pub conns: usize,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Microseconds, sorted.
    pub latencies: Vec<u32>,
}

impl Stats {
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The latency at quantile `q`, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latencies, q)
    }

    /// The stats of timed requests: their latencies and errors, and their
    /// rate over `seconds`.
    pub fn of_timed<'a>(
        conns: usize,
        seconds: f64,
        timed: impl Iterator<Item = &'a Timed>,
    ) -> Stats {
        let mut latencies = Vec::new();
        let mut errors = 0;
        for t in timed {
            latencies.push(t.latency_us);
            errors += u64::from(!t.ok);
        }
        latencies.sort_unstable();
        Stats {
            conns,
            requests: latencies.len() as u64,
            errors,
            seconds,
            latencies,
        }
    }

    /// Several loads of the same scenario as one: every request of each,
    /// over the time they measured together.
    pub fn pooled(all: &[Stats]) -> Stats {
        let mut latencies: Vec<u32> = all
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        latencies.sort_unstable();
        Stats {
            conns: all.first().map_or(0, |s| s.conns),
            requests: all.iter().map(|s| s.requests).sum(),
            errors: all.iter().map(|s| s.errors).sum(),
            seconds: all.iter().map(|s| s.seconds).sum(),
            latencies,
        }
    }
}

/// The median of some figures (the mean of the middle two when their
/// number is even); NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Measures two setups `a` and `b` of one scenario in `rounds` rounds,
/// alternating so that neither always goes first: A B, B A, A B, ... The
/// argument of each call is the round's number. On a machine whose load
/// comes and goes, each round compares two loads seconds apart.
pub fn alternate(
    rounds: usize,
    mut a: impl FnMut(usize) -> Stats,
    mut b: impl FnMut(usize) -> Stats,
) -> (Vec<Stats>, Vec<Stats>) {
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            of_a.push(a(round));
            of_b.push(b(round));
        } else {
            of_b.push(b(round));
            of_a.push(a(round));
        }
    }
    (of_a, of_b)
}

/// Measures `setups` setups of one scenario in `rounds` rounds, each
/// round all of them one after the other, in an order that changes from
/// round to round so that none always goes first or last: the order of a
/// round is the one before it reversed, and every other round starts one
/// setup further on (for three setups, six rounds take each of the six
/// orders once; for two: A B, B A, B A, A B). `measure(setup, round)`
/// measures one; the result holds each setup's rounds, in round order.
pub fn rotate(
    rounds: usize,
    setups: usize,
    mut measure: impl FnMut(usize, usize) -> Stats,
) -> Vec<Vec<Stats>> {
    let mut of: Vec<Vec<Stats>> = (0..setups).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let shift = round / 2 % setups.max(1);
        let mut order: Vec<usize> = (0..setups).map(|i| (i + shift) % setups).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for setup in order {
            let stats = measure(setup, round);
            of[setup].push(stats);
        }
    }
    of
}

/// The latency at quantile `q` of sorted microseconds, in milliseconds.
pub fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

/// Sends the requests of two setups in turn from one thread, over one
/// keep-alive connection to each (A, B, A, B, ...), so that both see the
/// machine as it is at the same moment. After `warmup`, `measure` is cut
/// into `slices` equal spans of time; for each it returns the stats of A
/// and of B, whose `seconds` is the time their own requests took, so that
/// the throughput is that of one closed-loop connection to that setup
/// alone (one over the mean latency). `next_a(n)` gives A's n-th request.
pub fn interleave(
    warmup: Duration,
    measure: Duration,
    slices: usize,
    mut next_a: impl FnMut(u64) -> Option<Req>,
    mut next_b: impl FnMut(u64) -> Option<Req>,
) -> Vec<(Stats, Stats)> {
    let (agent_a, agent_b) = (agent(), agent());
    let start = Instant::now();
    let measured_from = start + warmup;
    let slice = measure / slices.max(1) as u32;
    let mut out: Vec<[(Vec<u32>, u64); 2]> = (0..slices).map(|_| Default::default()).collect();
    let mut one = |agent: &ureq::Agent, req: Req, side: usize| -> bool {
        let t0 = Instant::now();
        let ok = send(agent, &req);
        let t1 = Instant::now();
        if t0 >= measured_from {
            let i = ((t0 - measured_from).as_nanos() / slice.as_nanos().max(1)) as usize;
            if let Some(s) = out.get_mut(i) {
                s[side]
                    .0
                    .push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                s[side].1 += u64::from(!ok);
            }
        }
        t1 < measured_from + measure
    };
    for n in 0.. {
        let (Some(a), Some(b)) = (next_a(n), next_b(n)) else {
            break;
        };
        if !one(&agent_a, a, 0) || !one(&agent_b, b, 1) {
            break;
        }
    }
    out.into_iter()
        .map(|sides| {
            let [a, b] = sides.map(|(mut latencies, errors)| {
                latencies.sort_unstable();
                Stats {
                    conns: 1,
                    requests: latencies.len() as u64,
                    errors,
                    seconds: latencies.iter().map(|&us| us as f64 / 1e6).sum(),
                    latencies,
                }
            });
            (a, b)
        })
        .collect()
}

// ---------------------------------------------------------------- load

/// Runs `conns` keep-alive clients; `next(client, n)` gives a client's n-th
/// request, or None when it has no more. Requests that start after the
/// warm-up and before its end are measured.
pub fn load<F>(conns: usize, warmup: Duration, measure: Duration, next: F) -> Stats
where
    F: Fn(usize, u64) -> Option<Req> + Sync,
{
    let start = Instant::now();
    let measured_from = start + warmup;
    let until = measured_from + measure;
    let next = &next;
    let per_client: Vec<(Vec<u32>, u64, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                s.spawn(move || {
                    let agent = agent();
                    let mut latencies = Vec::with_capacity(1 << 16);
                    let mut errors = 0;
                    let mut n = 0;
                    let mut last = measured_from;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= until {
                            break;
                        }
                        let Some(req) = next(c, n) else { break };
                        n += 1;
                        let ok = send(&agent, &req);
                        let t1 = Instant::now();
                        if t0 >= measured_from {
                            latencies.push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                            if !ok {
                                errors += 1;
                            }
                            last = t1;
                        }
                    }
                    (latencies, errors, last)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ended = per_client
        .iter()
        .map(|(_, _, last)| *last)
        .max()
        .unwrap_or(measured_from);
    let mut latencies: Vec<u32> = per_client
        .iter()
        .flat_map(|(l, _, _)| l.iter().copied())
        .collect();
    latencies.sort_unstable();
    Stats {
        conns,
        requests: latencies.len() as u64,
        errors: per_client.iter().map(|(_, e, _)| e).sum(),
        seconds: ended.saturating_duration_since(measured_from).as_secs_f64(),
        latencies,
    }
}

/// Puts keys `from..to` (16-byte keys, 32-byte values) into the node at
/// `url` with `conns` connections; returns how many were written and the rate.
pub fn load_keys_with(url: &str, from: u64, to: u64, conns: usize) -> (u64, f64) {
    let counter = AtomicU64::new(from);
    let stats = load(conns, Duration::ZERO, LOAD_LIMIT, |_, _| {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        (i < to).then(|| Req::put(format!("{url}/store/{}", small_key(i)), &small_value(i)))
    });
    (stats.requests - stats.errors, stats.throughput())
}

/// [`load_keys_with`] with [`LOADERS`] connections.
pub fn load_keys(url: &str, from: u64, to: u64) -> (u64, f64) {
    load_keys_with(url, from, to, LOADERS)
}

/// One request of a [`timeline`]: when it started, how long it took.
#[derive(Clone, Copy)]
pub struct Timed {
    /// The client that sent it, and its number among that client's requests.
    pub client: usize,
    pub n: u64,
    /// Microseconds from the timeline's start.
    pub start_us: u64,
    pub latency_us: u32,
    pub ok: bool,
}

impl Timed {
    pub fn end_us(&self) -> u64 {
        self.start_us + self.latency_us as u64
    }
}

/// Runs `conns` keep-alive clients from `start` until `stop` is set (or
/// `next` has no more), recording when every request started and how long
/// it took; the result is in order of start.
pub fn timeline<F>(conns: usize, start: Instant, stop: &AtomicBool, next: F) -> Vec<Timed>
where
    F: Fn(usize, u64) -> Option<Req> + Sync,
{
    let next = &next;
    let mut all: Vec<Timed> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                s.spawn(move || {
                    let agent = agent();
                    let mut done = Vec::with_capacity(1 << 14);
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let Some(req) = next(c, n) else { break };
                        let t0 = Instant::now();
                        let ok = send(&agent, &req);
                        let t1 = Instant::now();
                        done.push(Timed {
                            client: c,
                            n,
                            start_us: (t0 - start).as_micros() as u64,
                            latency_us: (t1 - t0).as_micros().min(u32::MAX as u128) as u32,
                            ok,
                        });
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    all.sort_unstable_by_key(|t| t.start_us);
    all
}

// ---------------------------------------------------------------- bulk loading

/// Puts keys `from..to` (16-byte keys, 32-byte values) into the node at
/// `url` (`http://host:port`) over `conns` keep-alive connections, one
/// request at a time on each, with requests written and answers read by
/// hand: far less client CPU per write than [`load_keys_with`], for loading
/// many keys quickly. Returns how many were written (answered 200) and the
/// rate.
pub fn load_keys_fast(url: &str, from: u64, to: u64, conns: usize) -> (u64, f64) {
    let host = url.strip_prefix("http://").expect("an http:// URL");
    let next = AtomicU64::new(from);
    let t = Instant::now();
    let written: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                s.spawn(|| {
                    let mut stream =
                        std::net::TcpStream::connect(host).expect("connect to load keys");
                    stream.set_nodelay(true).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    let mut answers = Answers::default();
                    let mut request = Vec::with_capacity(256);
                    let mut written = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= to {
                            break written;
                        }
                        let body = put_body(&small_value(i));
                        request.clear();
                        request.extend_from_slice(
                            format!(
                                "PUT /store/{} HTTP/1.1\r\nHost: {host}\r\n\
                                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                                small_key(i),
                                body.len()
                            )
                            .as_bytes(),
                        );
                        request.extend_from_slice(&body);
                        std::io::Write::write_all(&mut stream, &request).expect("send a write");
                        if answers.next_status(&mut stream) == 200 {
                            written += 1;
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (written, written as f64 / t.elapsed().as_secs_f64())
}

/// Reads HTTP/1.1 answers (with a Content-Length) from a connection.
#[derive(Default)]
struct Answers {
    buffer: Vec<u8>,
}

impl Answers {
    /// The status of the next answer, whose body is skipped.
    fn next_status(&mut self, stream: &mut impl Read) -> u16 {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or_else(|| panic!("an answer without Content-Length: {head:?}"));
                let whole = end + 4 + length;
                if self.buffer.len() >= whole {
                    self.buffer.drain(..whole);
                    return status;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = stream
                .read(&mut chunk)
                .unwrap_or_else(|e| panic!("reading the answer to a PUT: {e} (none for 30 s?)"));
            assert!(n > 0, "the node closed the connection while loading keys");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}
