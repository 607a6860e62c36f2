//! Random concurrent traffic for the linearizability checker: clients send
//! GET, PUT and DELETE of a few keys to random nodes, each on its own
//! keep-alive connection, and record every operation with the instants it
//! was sent and answered. Faults may be injected meanwhile; a request that
//! gets no answer, or a 5xx, is recorded with an unknown outcome.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::linearizability::{Call, Clock, Operation, Outcome};

/// A small generator (xorshift64*) whose seed is printed, so that a failing
/// run can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the environment variable `var` when set, else from the
    /// clock; prints the seed and how to replay it.
    pub fn seeded(what: &str, var: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64);
                nanos | 1
            });
        eprintln!("{what}: seed {seed} ({var}={seed} replays it)");
        Rng(seed | 1)
    }

    /// Seeded from the environment variable `var` when set, else from
    /// `default`, so that a run is the same every time unless asked
    /// otherwise; prints the seed and how to replay it.
    pub fn fixed(what: &str, var: &str, default: u64) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        let from = if seed == default { "the default" } else { var };
        eprintln!("{what}: seed {seed} ({from}; {var}={seed} replays it)");
        Rng(seed | 1)
    }

    /// A generator for one of several streams of one seed.
    pub fn stream(seed: u64, n: u64) -> Rng {
        Rng((seed ^ (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The shape of a run.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub keys: Vec<String>,
    pub clients: usize,
    /// Most operations one client sends.
    pub ops_per_client: usize,
    /// Out of 20: GETs, then PUTs; the rest are DELETEs.
    pub gets: u64,
    pub puts: u64,
    /// Bound on one request.
    pub timeout: Duration,
    /// Wait after a request that got no definite answer, so that a node
    /// that is down does not turn the run into a flood of refusals.
    pub pause_after_failure: Duration,
    /// Print each request without a definite answer.
    pub verbose: bool,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            keys: vec!["lin-a".into(), "lin-b".into(), "lin-c".into()],
            clients: 6,
            ops_per_client: 300,
            gets: 10,
            puts: 7,
            timeout: Duration::from_secs(10),
            pause_after_failure: Duration::from_millis(20),
            verbose: true,
        }
    }
}

impl Traffic {
    /// Runs every client until `stop_at` (or its last operation) against the
    /// nodes at `urls` (id and base URL), and returns the whole history.
    pub fn run(
        &self,
        urls: &[(u32, String)],
        seed: u64,
        clock: Clock,
        stop_at: Instant,
    ) -> Vec<Operation> {
        std::thread::scope(|s| {
            let clients: Vec<_> = (0..self.clients)
                .map(|client| {
                    let rng = Rng::stream(seed, client as u64);
                    s.spawn(move || self.client(client, urls, rng, clock, stop_at))
                })
                .collect();
            clients
                .into_iter()
                .flat_map(|c| c.join().expect("a client thread panicked"))
                .collect()
        })
    }

    fn client(
        &self,
        client: usize,
        urls: &[(u32, String)],
        mut rng: Rng,
        clock: Clock,
        stop_at: Instant,
    ) -> Vec<Operation> {
        let agent = crate::http::builder().timeout(self.timeout).build();
        let mut history = Vec::with_capacity(self.ops_per_client);
        for n in 0..self.ops_per_client {
            if Instant::now() >= stop_at {
                break;
            }
            let key = &self.keys[rng.below(self.keys.len() as u64) as usize];
            let (node, base) = &urls[rng.below(urls.len() as u64) as usize];
            let url = format!("{base}/store/{key}");
            let call = match rng.below(20) {
                r if r < self.gets => Call::Get,
                r if r < self.gets + self.puts => Call::Put(format!("c{client}-{n}")),
                _ => Call::Delete,
            };
            let invoked = clock.now();
            let answer = match &call {
                Call::Get => send(agent.get(&url), None),
                Call::Put(value) => send(agent.put(&url), Some(json!({ "value": value }))),
                Call::Delete => send(agent.delete(&url), None),
            };
            let returned = clock.now();
            let outcome = match (&call, &answer) {
                (Call::Get, Some((200, body))) => Outcome::Read(Some(value_text(&body["value"]))),
                (Call::Get, Some((404, _))) => Outcome::Read(None),
                (Call::Put(_), Some((200, _))) => Outcome::Written,
                (Call::Delete, Some((200, _))) => Outcome::Deleted(true),
                (Call::Delete, Some((404, _))) => Outcome::Deleted(false),
                (_, other) => {
                    if self.verbose {
                        eprintln!(
                            "client {client}: {call:?} {url} got {other:?} after {:.1} ms",
                            (returned - invoked) as f64 / 1e6
                        );
                    }
                    Outcome::Unknown
                }
            };
            let failed = outcome == Outcome::Unknown;
            history.push(Operation {
                key: key.to_string(),
                client,
                node: Some(*node),
                call,
                outcome,
                invoked,
                returned,
            });
            if failed {
                std::thread::sleep(self.pause_after_failure);
            }
        }
        history
    }
}

/// Sends a request; `None` when no HTTP answer came back.
pub fn send(request: ureq::Request, body: Option<Value>) -> Option<(u16, Value)> {
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(&body.to_string()),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(_)) => return None,
    };
    let status = response.status();
    let text = response.into_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A value as the checker compares it: a string as itself, anything else as JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a history holds, to tell a meaningful run from a vacuous one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub reads_of_values: usize,
    pub reads_of_absent: usize,
    pub puts: usize,
    pub deletes_found: usize,
    pub deletes_missed: usize,
    pub unknown: usize,
    /// Acknowledged writes that overlapped in time another operation on their key.
    pub overlapping_writes: usize,
}

impl Tally {
    pub fn of(history: &[Operation]) -> Tally {
        let mut tally = Tally::default();
        for op in history {
            match op.outcome {
                Outcome::Read(Some(_)) => tally.reads_of_values += 1,
                Outcome::Read(None) => tally.reads_of_absent += 1,
                Outcome::Written => tally.puts += 1,
                Outcome::Deleted(true) => tally.deletes_found += 1,
                Outcome::Deleted(false) => tally.deletes_missed += 1,
                Outcome::Unknown => tally.unknown += 1,
            }
        }
        tally.overlapping_writes = history
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Written | Outcome::Deleted(_)))
            .filter(|w| {
                history.iter().any(|other| {
                    other.key == w.key
                        && other.client != w.client
                        && other.invoked < w.returned
                        && w.invoked < other.returned
                })
            })
            .count();
        tally
    }

    /// Operations with a definite answer.
    pub fn answered(&self) -> usize {
        self.reads_of_values
            + self.reads_of_absent
            + self.puts
            + self.deletes_found
            + self.deletes_missed
    }
}

/// Checks every key's history, prints what is wrong, and fails the test
/// with the seed when any key's history is not linearizable.
pub fn assert_linearizable(history: &[Operation], seed: u64, var: &str) {
    let started = Instant::now();
    let violations = crate::linearizability::check(history);
    eprintln!(
        "{} operations checked in {:?}: {:?}",
        history.len(),
        started.elapsed(),
        Tally::of(history)
    );
    for violation in &violations {
        eprintln!("{violation}");
    }
    assert!(
        violations.is_empty(),
        "{} keys have a history that is not linearizable (explanations above); {var}={seed} replays it",
        violations.len()
    );
}
