//! Random concurrent traffic against running nodes, refereed by the
//! linearizability checker: the container test's way to run
//! [`treecache_harness::traffic`] from a shell.
//!
//! ```text
//! treecache-traffic --node 1=http://172.30.7.11:5000 --node 4=http://172.30.7.14:5000 \
//!     [--read-after 2=http://172.30.7.12:5000] --keys a,b,c [--clients 6] \
//!     [--seconds 15] [--seed N] [--timeout 7s] [--final-wait 15s] [--history FILE] [--verbose]
//! treecache-traffic --check FILE
//! ```
//!
//! With `--node`s: `--clients` clients send random GETs, PUTs and DELETEs of
//! the `--keys` to random `--node`s for `--seconds`; then every key is read
//! once more at every `--node` and every `--read-after` node (one at a time;
//! a node that gives no definite answer is asked again until `--final-wait`
//! has passed), and the whole history is checked, per key, for
//! linearizability. `--history FILE` writes the history as JSON lines (one
//! operation per line; times in nanoseconds since the start).
//!
//! With `--check FILE`: checks a history written by `--history` (perhaps
//! edited) instead of sending traffic.
//!
//! Prints the seed, the tally and the verdict; the last line is the tally
//! as `name=value` words, for scripts. Exit status: 0 linearizable, 1 not
//! linearizable, 2 bad arguments or an unreadable history, 3 a final read
//! got no definite answer.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use treecache_common::units::parse_duration;
use treecache_harness::linearizability::{self, Call, Clock, Nanos, Operation, Outcome};
use treecache_harness::traffic::{send, value_text, Tally, Traffic};

const USAGE: &str = "usage: treecache-traffic --node ID=URL [--node ID=URL ...] \
[--read-after ID=URL ...] --keys K1,K2,... [--clients N] [--seconds S] [--seed N] \
[--timeout D] [--final-wait D] [--history FILE] [--verbose]
       treecache-traffic --check FILE";

/// What the command line asks for.
#[derive(Debug)]
struct Args {
    nodes: Vec<(u32, String)>,
    read_after: Vec<(u32, String)>,
    keys: Vec<String>,
    clients: usize,
    run_for: Duration,
    seed: Option<u64>,
    timeout: Duration,
    final_wait: Duration,
    history: Option<String>,
    check: Option<String>,
    verbose: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        nodes: Vec::new(),
        read_after: Vec::new(),
        keys: Vec::new(),
        clients: 6,
        run_for: Duration::from_secs(15),
        seed: None,
        timeout: Duration::from_secs(7),
        final_wait: Duration::from_secs(15),
        history: None,
        check: None,
        verbose: false,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--verbose" {
            parsed.verbose = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let duration = |v: &str| parse_duration(v).map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--node" => parsed.nodes.push(node_url(&value)?),
            "--read-after" => parsed.read_after.push(node_url(&value)?),
            "--keys" => {
                parsed.keys = value.split(',').map(str::to_string).collect();
                if parsed.keys.iter().any(|k| !plain_key(k)) {
                    return Err(format!(
                        "--keys {value}: keys are letters, digits, '-' and '_', comma-separated"
                    ));
                }
            }
            "--clients" => {
                parsed.clients = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--clients {value}: a number of at least 1"))?;
            }
            "--seconds" => parsed.run_for = duration(&value)?,
            "--seed" => {
                parsed.seed = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--seed {value}: a whole number"))?,
                );
            }
            "--timeout" => parsed.timeout = duration(&value)?,
            "--final-wait" => parsed.final_wait = duration(&value)?,
            "--history" => parsed.history = Some(value),
            "--check" => parsed.check = Some(value),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if parsed.check.is_none() && (parsed.nodes.is_empty() || parsed.keys.is_empty()) {
        return Err("--node and --keys are needed (or --check FILE)".into());
    }
    Ok(parsed)
}

/// `ID=URL`, such as `4=http://172.30.7.14:5000`.
fn node_url(text: &str) -> Result<(u32, String), String> {
    let (id, url) = text
        .split_once('=')
        .ok_or_else(|| format!("{text}: expected ID=URL"))?;
    let id = id
        .parse()
        .map_err(|_| format!("{text}: the node id is a number"))?;
    if !url.starts_with("http://") {
        return Err(format!("{text}: the URL starts with http://"));
    }
    Ok((id, url.trim_end_matches('/').to_string()))
}

/// A key that needs no escaping in a URL path.
fn plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("treecache-traffic: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.check {
        return match read_history(path) {
            Ok(history) => {
                println!(
                    "treecache-traffic: checking {} operations from {path}",
                    history.len()
                );
                if verdict(&history) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("treecache-traffic: {path}: {e}");
                ExitCode::from(2)
            }
        };
    }
    run(&args)
}

fn run(args: &Args) -> ExitCode {
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        nanos % 1_000_000_000_000
    });
    println!(
        "treecache-traffic: seed {seed} (--seed {seed} replays the choices); {} clients, \
         keys {}, nodes {} for {:?}",
        args.clients,
        args.keys.join(","),
        names(&args.nodes),
        args.run_for
    );
    let traffic = Traffic {
        keys: args.keys.clone(),
        clients: args.clients,
        // Bounded by the time; the history's room is reserved up front.
        ops_per_client: 1_000_000,
        timeout: args.timeout,
        pause_after_failure: Duration::from_millis(50),
        verbose: args.verbose,
        ..Traffic::default()
    };
    let clock = Clock::start();
    let mut history = traffic.run(&args.nodes, seed, clock, Instant::now() + args.run_for);
    let traffic_ops = history.len();
    let unknown_by_node = unknown_by_node(&history);
    println!(
        "treecache-traffic: {traffic_ops} operations in {:.1} s; unknown outcomes by node: {}",
        clock.now() as f64 / 1e9,
        if unknown_by_node.is_empty() {
            "none".to_string()
        } else {
            unknown_by_node
        }
    );

    if let Some(op) = history
        .iter()
        .filter(|op| op.outcome != Outcome::Unknown)
        .max_by_key(|op| op.returned - op.invoked)
    {
        println!(
            "treecache-traffic: slowest answer {:.2} s: {op}",
            (op.returned - op.invoked) as f64 / 1e9
        );
    }

    let mut every: Vec<(u32, String)> = args.nodes.clone();
    every.extend(args.read_after.iter().cloned());
    every.sort();
    every.dedup();
    let finals = final_reads(&every, &args.keys, args, clock, args.clients);
    let missing = finals.iter().filter(|op| op.outcome == Outcome::Unknown);
    let missing: Vec<String> = missing
        .map(|op| format!("{} at NODE-{}", op.key, op.node.unwrap_or(0)))
        .collect();
    history.extend(
        finals
            .into_iter()
            .filter(|op| op.outcome != Outcome::Unknown),
    );
    println!(
        "treecache-traffic: final reads of {} keys at {}: {} answered",
        args.keys.len(),
        names(&every),
        history.len() - traffic_ops
    );
    if let Some(path) = &args.history {
        if let Err(e) = write_history(path, &history, args.clients) {
            eprintln!("treecache-traffic: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
    }
    let linearizable = verdict(&history);
    if !missing.is_empty() {
        println!(
            "treecache-traffic: FAILED: no definite answer within {:?} to the final read of {}",
            args.final_wait,
            missing.join(", ")
        );
    }
    match (linearizable, missing.is_empty()) {
        (false, _) => ExitCode::from(1),
        (true, false) => ExitCode::from(3),
        (true, true) => ExitCode::SUCCESS,
    }
}

fn names(nodes: &[(u32, String)]) -> String {
    let names: Vec<String> = nodes.iter().map(|(id, _)| format!("NODE-{id}")).collect();
    names.join(",")
}

fn unknown_by_node(history: &[Operation]) -> String {
    let mut counts = std::collections::BTreeMap::<u32, usize>::new();
    for op in history.iter().filter(|op| op.outcome == Outcome::Unknown) {
        *counts.entry(op.node.unwrap_or(0)).or_default() += 1;
    }
    let mut text = String::new();
    for (node, n) in counts {
        let _ = write!(
            text,
            "{}NODE-{node} {n}",
            if text.is_empty() { "" } else { ", " }
        );
    }
    text
}

/// Every key read at every node, one read at a time, after the traffic.
/// A node that gives no definite answer (it may be coming back) is asked
/// again until `--final-wait` has passed; only the last attempt is kept,
/// with an unknown outcome when it got none.
fn final_reads(
    nodes: &[(u32, String)],
    keys: &[String],
    args: &Args,
    clock: Clock,
    client: usize,
) -> Vec<Operation> {
    let agent = ureq::AgentBuilder::new().timeout(args.timeout).build();
    let give_up = Instant::now() + args.final_wait;
    let mut reads = Vec::new();
    for (id, base) in nodes {
        for key in keys {
            loop {
                let invoked = clock.now();
                let answer = send(agent.get(&format!("{base}/store/{key}")), None);
                let returned = clock.now();
                let outcome = match &answer {
                    Some((200, body)) => Outcome::Read(Some(value_text(&body["value"]))),
                    Some((404, _)) => Outcome::Read(None),
                    _ => Outcome::Unknown,
                };
                if outcome == Outcome::Unknown && Instant::now() < give_up {
                    if args.verbose {
                        eprintln!("final read of {key} at NODE-{id} got {answer:?}; again");
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                reads.push(Operation {
                    key: key.clone(),
                    client,
                    node: Some(*id),
                    call: Call::Get,
                    outcome,
                    invoked,
                    returned,
                });
                break;
            }
        }
    }
    reads
}

/// Prints the tally and the checker's verdict: whether every key's history
/// is linearizable.
fn verdict(history: &[Operation]) -> bool {
    let started = Instant::now();
    let violations = linearizability::check(history);
    let tally = Tally::of(history);
    let keys: std::collections::BTreeSet<&str> = history.iter().map(|op| op.key.as_str()).collect();
    for violation in &violations {
        println!("{violation}");
    }
    if violations.is_empty() {
        println!(
            "treecache-traffic: linearizable: {} keys, {} operations checked in {:.2} s",
            keys.len(),
            history.len(),
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "treecache-traffic: NOT LINEARIZABLE: {} of {} keys (explanations above)",
            violations.len(),
            keys.len()
        );
    }
    println!(
        "answered={} unknown={} reads_of_values={} reads_of_absent={} puts={} \
         deletes_found={} deletes_missed={} overlapping_writes={} violations={}",
        tally.answered(),
        tally.unknown,
        tally.reads_of_values,
        tally.reads_of_absent,
        tally.puts,
        tally.deletes_found,
        tally.deletes_missed,
        tally.overlapping_writes,
        violations.len()
    );
    violations.is_empty()
}

// --- the history as JSON lines

/// One operation as a JSON object: `key`, `client`, `node`, `call` (`get`,
/// `put`, `delete`), `sent` (a PUT's value), `outcome` (`read`, `written`,
/// `deleted`, `unknown`), `read` (a GET's value, null for 404), `found` (a
/// DELETE's 200 or 404), `invoked` and `returned` (nanoseconds), and
/// `final` for the reads after the traffic.
fn operation_json(op: &Operation, final_client: usize) -> Value {
    let mut line = json!({
        "key": op.key,
        "client": op.client,
        "node": op.node,
        "invoked": op.invoked,
        "returned": op.returned,
    });
    let fields = line.as_object_mut().expect("an object");
    match &op.call {
        Call::Get => fields.insert("call".into(), json!("get")),
        Call::Put(value) => {
            fields.insert("sent".into(), json!(value));
            fields.insert("call".into(), json!("put"))
        }
        Call::Delete => fields.insert("call".into(), json!("delete")),
    };
    match &op.outcome {
        Outcome::Read(value) => {
            fields.insert("read".into(), json!(value));
            fields.insert("outcome".into(), json!("read"))
        }
        Outcome::Written => fields.insert("outcome".into(), json!("written")),
        Outcome::Deleted(found) => {
            fields.insert("found".into(), json!(found));
            fields.insert("outcome".into(), json!("deleted"))
        }
        Outcome::Unknown => fields.insert("outcome".into(), json!("unknown")),
    };
    if op.client == final_client {
        fields.insert("final".into(), json!(true));
    }
    line
}

fn operation_from_json(line: &Value) -> Result<Operation, String> {
    let text = |name: &str| {
        line[name]
            .as_str()
            .ok_or_else(|| format!("no string {name:?}"))
    };
    let number = |name: &str| {
        line[name]
            .as_u64()
            .ok_or_else(|| format!("no number {name:?}"))
    };
    let call = match text("call")? {
        "get" => Call::Get,
        "put" => Call::Put(text("sent")?.to_string()),
        "delete" => Call::Delete,
        other => return Err(format!("unknown call {other:?}")),
    };
    let outcome = match text("outcome")? {
        "read" => Outcome::Read(match &line["read"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => return Err(format!("\"read\" is {other}, not a string or null")),
        }),
        "written" => Outcome::Written,
        "deleted" => Outcome::Deleted(
            line["found"]
                .as_bool()
                .ok_or("no boolean \"found\"".to_string())?,
        ),
        "unknown" => Outcome::Unknown,
        other => return Err(format!("unknown outcome {other:?}")),
    };
    let op = Operation {
        key: text("key")?.to_string(),
        client: number("client")? as usize,
        node: line["node"].as_u64().map(|n| n as u32),
        call,
        outcome,
        invoked: number("invoked")? as Nanos,
        returned: number("returned")? as Nanos,
    };
    let fits = matches!(
        (&op.call, &op.outcome),
        (_, Outcome::Unknown)
            | (Call::Get, Outcome::Read(_))
            | (Call::Put(_), Outcome::Written)
            | (Call::Delete, Outcome::Deleted(_))
    );
    if !fits {
        return Err("the outcome does not fit the call".into());
    }
    Ok(op)
}

fn write_history(path: &str, history: &[Operation], final_client: usize) -> std::io::Result<()> {
    let mut text = String::new();
    for op in history {
        text.push_str(&operation_json(op, final_client).to_string());
        text.push('\n');
    }
    std::fs::write(path, text)
}

fn read_history(path: &str) -> Result<Vec<Operation>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| e.to_string())
                .and_then(|v| operation_from_json(&v))
                .map_err(|e| format!("line {}: {e}", n + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        client: usize,
        call: Call,
        outcome: Outcome,
        invoked: Nanos,
        returned: Nanos,
    ) -> Operation {
        Operation {
            key: "k".into(),
            client,
            node: Some(4),
            call,
            outcome,
            invoked,
            returned,
        }
    }

    #[test]
    fn a_history_survives_its_json_lines() {
        let history = vec![
            op(0, Call::Put("v1".into()), Outcome::Written, 1, 2),
            op(1, Call::Get, Outcome::Read(Some("v1".into())), 3, 4),
            op(1, Call::Get, Outcome::Read(None), 5, 6),
            op(0, Call::Delete, Outcome::Deleted(true), 7, 8),
            op(0, Call::Delete, Outcome::Deleted(false), 9, 10),
            op(2, Call::Put("v2".into()), Outcome::Unknown, 11, 12),
            op(3, Call::Get, Outcome::Read(None), 13, 14),
        ];
        for original in &history {
            let line = operation_json(original, 3);
            assert_eq!(line.get("final").is_some(), original.client == 3);
            let text = line.to_string();
            let back = operation_from_json(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(&back, original, "{text}");
        }
    }

    #[test]
    fn a_malformed_line_is_refused() {
        for text in [
            r#"{"key":"k","client":0,"node":1,"call":"get","outcome":"written","invoked":1,"returned":2}"#,
            r#"{"key":"k","client":0,"node":1,"call":"put","outcome":"written","invoked":1,"returned":2}"#,
            r#"{"key":"k","client":0,"node":1,"call":"get","outcome":"read","read":5,"invoked":1,"returned":2}"#,
            r#"{"key":"k","client":0,"call":"get","outcome":"read","read":null,"returned":2}"#,
        ] {
            assert!(
                operation_from_json(&serde_json::from_str(text).unwrap()).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn arguments() {
        let args = |list: &[&str]| parse_args(list.iter().map(|s| s.to_string()));
        let parsed = args(&[
            "--node",
            "1=http://10.0.1.11:5000/",
            "--read-after",
            "2=http://10.0.1.12:5000",
            "--keys",
            "a,b-1",
            "--seconds",
            "2.5",
            "--seed",
            "7",
        ])
        .unwrap();
        assert_eq!(parsed.nodes, vec![(1, "http://10.0.1.11:5000".to_string())]);
        assert_eq!(parsed.read_after[0].0, 2);
        assert_eq!(parsed.keys, vec!["a", "b-1"]);
        assert_eq!(parsed.run_for, Duration::from_millis(2500));
        assert_eq!(parsed.seed, Some(7));
        assert!(args(&["--check", "h.jsonl"]).is_ok());
        assert!(args(&["--keys", "a"]).is_err());
        assert!(args(&["--node", "x=http://a", "--keys", "a"]).is_err());
        assert!(args(&["--node", "1=ftp://a", "--keys", "a"]).is_err());
        assert!(args(&["--node", "1=http://a", "--keys", "a/b"]).is_err());
        assert!(args(&["--node", "1=http://a", "--keys", "a", "--clients", "0"]).is_err());
        assert!(args(&["--node", "1=http://a", "--keys", "a", "--bogus", "1"]).is_err());
        assert!(args(&["--node"]).is_err());
    }

    /// A read of a value overwritten before the read began is caught.
    #[test]
    fn a_stale_read_is_a_violation() {
        let history = vec![
            op(0, Call::Put("v1".into()), Outcome::Written, 1, 2),
            op(0, Call::Put("v2".into()), Outcome::Written, 3, 4),
            op(1, Call::Get, Outcome::Read(Some("v1".into())), 5, 6),
        ];
        assert_eq!(linearizability::check(&history).len(), 1);
    }
}
