//! The `treecache-cli` binary against real node processes and a real
//! ZooKeeper (through the harness of the node's tests, `treecache-harness`),
//! and against ports where nothing answers. Run `cargo build -p treecache`
//! first: the harness starts `target/debug/treecache`.
//!
//! One cluster serves every scenario that needs one, so the suite stays fast.

use treecache_harness as common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http, Cluster};
use serde_json::{json, Value};

/// What one run of the CLI did.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// stdout as JSON (it must be exactly one line).
    fn json(&self) -> Value {
        assert_eq!(self.stdout.lines().count(), 1, "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Runs the CLI with `args`, in an environment without the CLI's own variables
/// unless `env` sets them.
fn cli_with_env(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_treecache-cli"))
        .args(args)
        .env_remove("TREECACHE_MODE")
        .env_remove("TREECACHE_BASE_PORT")
        .envs(env.iter().copied())
        .output()
        .expect("run treecache-cli");
    Outcome {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn cli(args: &[&str]) -> Outcome {
    cli_with_env(args, &[])
}

/// Asserts a successful run and returns its stdout as JSON.
fn ok(args: &[&str]) -> Value {
    let outcome = cli(args);
    assert_eq!(outcome.code, 0, "{args:?}: {outcome:?}");
    assert_eq!(outcome.stderr, "", "{args:?}");
    outcome.json()
}

/// A `/nodes` document without each node's `live` flag, which comes and
/// goes with sessions (as `Cluster::tree` gives it).
fn without_live(mut doc: Value) -> Value {
    for node in doc["nodes"].as_array_mut().into_iter().flatten() {
        if let Some(fields) = node.as_object_mut() {
            fields.remove("live");
        }
    }
    doc
}

/// The root's own copy of `key`, read around the CLI.
fn at_root(cluster: &Cluster, key: &str) -> (u16, Value) {
    http::get(&format!("{}/store/{}", cluster.url(1), http::enc(key)))
}

#[test]
fn against_a_live_cluster() {
    let cluster = Cluster::start(2);
    every_command_works(&cluster);
    every_node_form_reaches_its_node(&cluster);
    values_are_json_when_they_parse_else_strings(&cluster);
    keys_travel_percent_encoded(&cluster);
    error_answers_are_printed_with_their_exit_status(&cluster);
    the_tree_is_drawn_with_names_addresses_and_slots(&cluster);
    ready_and_metrics_ask_the_node(&cluster);
    a_value_of_dash_comes_from_standard_input(&cluster);
}

fn ready_and_metrics_ask_the_node(cluster: &Cluster) {
    for id in 1..=3 {
        assert_eq!(ok(&["ready", &cluster.url(id)]), json!({"ready": true}));
    }
    let with_status = cli(&["--status", "ready", &cluster.address(2)]);
    assert_eq!(
        (with_status.code, with_status.stdout.as_str()),
        (0, "200 {\"ready\": true}\n")
    );
    let base = (cluster.port(3) - 3).to_string();
    assert_eq!(
        ok(&["ready", "3", "--base-port", &base]),
        json!({"ready": true})
    );

    // A read through NODE-2 shows in its metrics.
    assert_eq!(
        http::put(&format!("{}/store/m", cluster.url(1)), &json!(1)).0,
        200
    );
    assert_eq!(http::get(&format!("{}/store/m", cluster.url(2))).0, 200);
    let metrics = cli(&["metrics", &cluster.url(2)]);
    assert_eq!(metrics.code, 0, "{metrics:?}");
    assert!(metrics.stdout.starts_with("# HELP "), "{metrics:?}");
    assert!(metrics.stdout.ends_with('\n') && !metrics.stdout.ends_with("\n\n"));
    for line in [
        "treecache_build_info{version=\"",
        "treecache_zookeeper_connected 1",
        "treecache_cache_max_bytes ",
        "treecache_request_duration_seconds_count{method=\"GET\",route=\"store\"} ",
    ] {
        assert!(
            metrics.stdout.lines().any(|l| l.starts_with(line)),
            "{line}: {}",
            metrics.stdout
        );
    }
    let fetches = metrics
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("treecache_upstream_fetches_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(fetches.is_some_and(|n| n >= 1), "{}", metrics.stdout);
}

fn a_value_of_dash_comes_from_standard_input(cluster: &Cluster) {
    use std::io::Write;
    let root = cluster.url(1);
    for (input, expected) in [
        ("{\"from\": \"stdin\"}\n", json!({"from": "stdin"})),
        ("plain text\n", json!("plain text")),
        ("-", json!("-")),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_treecache-cli"))
            .args(["put", &root, "piped", "-"])
            .env_remove("TREECACHE_MODE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{input:?}: {output:?}");
        assert_eq!(at_root(cluster, "piped").1["value"], expected, "{input:?}");
    }
}

/// A stand-in node on loopback that answers every request with `answer`.
fn stub(answer: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    address
}

#[test]
fn a_node_that_is_not_ready_exits_3_with_its_reason() {
    let body = r#"{"ready": false, "reason": "not joined yet"}"#;
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let outcome = cli(&["ready", &stub(answer)]);
    assert_eq!(outcome.code, 3, "{outcome:?}");
    assert_eq!(
        outcome.json(),
        json!({"ready": false, "reason": "not joined yet"})
    );
    assert_eq!(outcome.stderr, "");
}

#[test]
fn ready_self_is_the_node_of_this_container() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    drop(silent);
    let outcome = cli_with_env(
        &["ready", "self"],
        &[("TREECACHE_MODE", "docker"), ("API_PORT", &port)],
    );
    assert_eq!(outcome.code, 3, "{outcome:?}");
    assert!(
        outcome
            .stderr
            .contains(&format!("cannot reach http://127.0.0.1:{port}/ready")),
        "{outcome:?}"
    );
    let host_mode = cli(&["ready", "self"]);
    assert_eq!(host_mode.code, 2, "{host_mode:?}");
    assert!(host_mode.stderr.contains("docker mode"), "{host_mode:?}");
}

#[test]
fn completions_for_bash_load_in_bash() {
    let outcome = cli(&["completions", "bash"]);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let status = Command::new("bash")
        .args([
            "-c",
            &format!("{}\ncomplete -p treecache-cli", outcome.stdout),
        ])
        .output()
        .expect("bash");
    assert!(status.status.success(), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("_treecache_cli"));
}

fn every_command_works(cluster: &Cluster) {
    let (root, cache) = (cluster.url(1), cluster.url(2));

    // A write through a cache node lands at the root.
    let put = cli(&["put", &cache, "greeting", "hello"]);
    assert_eq!(
        (put.code, put.stdout.as_str()),
        (0, "{\"key\": \"greeting\", \"value\": \"hello\"}\n")
    );
    assert_eq!(
        at_root(cluster, "greeting"),
        (200, json!({"key": "greeting", "value": "hello"}))
    );

    assert_eq!(
        ok(&["get", &cache, "greeting"]),
        json!({"key": "greeting", "value": "hello"})
    );
    let status = cli(&["--status", "get", &root, "greeting"]);
    assert_eq!(
        (status.code, status.stdout.as_str()),
        (0, "200 {\"key\": \"greeting\", \"value\": \"hello\"}\n")
    );

    assert_eq!(
        ok(&["delete", &cache, "greeting"]),
        json!({"key": "greeting"})
    );
    assert_eq!(at_root(cluster, "greeting").0, 404);

    let health = ok(&["health", &root]);
    assert_eq!(
        (&health["status"], &health["node"], &health["role"]),
        (&json!("alive"), &json!("NODE-1"), &json!("root"))
    );
    assert_eq!(health["address"], "127.0.0.1");
    let health = ok(&["health", &cluster.address(3)]);
    assert_eq!(
        (&health["node"], &health["role"]),
        (&json!("NODE-3"), &json!("cache"))
    );

    let tree = ok(&["tree", &cache, "--json"]);
    assert_eq!(without_live(tree), without_live(cluster.tree()));
}

fn every_node_form_reaches_its_node(cluster: &Cluster) {
    let (status, _) = http::put(&format!("{}/store/form", cluster.url(1)), &json!("reached"));
    assert_eq!(status, 200);
    // With this base port, node id 2 is localhost:{port of NODE-2}.
    let base = (cluster.port(2) - 2).to_string();
    let expected = json!({"key": "form", "value": "reached"});
    for node in ["NODE-2", "node-2", "2"] {
        assert_eq!(
            ok(&["get", node, "form", "--base-port", &base]),
            expected,
            "{node}"
        );
        assert_eq!(
            ok(&["health", node, "--base-port", &base])["node"],
            "NODE-2",
            "{node}"
        );
    }
    let from_env = cli_with_env(&["health", "2"], &[("TREECACHE_BASE_PORT", &base)]);
    assert_eq!(from_env.json()["node"], "NODE-2", "{from_env:?}");
    let flag_wins = cli_with_env(
        &["--base-port", &base, "health", "2"],
        &[("TREECACHE_BASE_PORT", "1")],
    );
    assert_eq!(flag_wins.json()["node"], "NODE-2", "{flag_wins:?}");

    let address = cluster.address(2);
    let url = cluster.url(2);
    let with_slash = format!("{url}/");
    for node in [address.as_str(), url.as_str(), with_slash.as_str()] {
        assert_eq!(ok(&["get", node, "form"]), expected, "{node}");
        assert_eq!(ok(&["health", node])["node"], "NODE-2", "{node}");
    }

    // Without NODE, `tree` asks node 1.
    let base_for_1 = (cluster.port(1) - 1).to_string();
    let drawing = cli(&["tree", "--base-port", &base_for_1, "--json"]);
    assert_eq!(drawing.code, 0, "{drawing:?}");
    assert_eq!(without_live(drawing.json()), without_live(cluster.tree()));
}

fn values_are_json_when_they_parse_else_strings(cluster: &Cluster) {
    let root = cluster.url(1);
    let cases: [(&[&str], Value); 11] = [
        (&["42"], json!(42)),
        (&["2.5"], json!(2.5)),
        (&["true"], json!(true)),
        (&["null"], json!(null)),
        (
            &[r#"{"a":1,"b":[true,null]}"#],
            json!({"a": 1, "b": [true, null]}),
        ),
        (&[r#""42""#], json!("42")),
        (&["hello world"], json!("hello world")),
        (&["{not json"], json!("{not json")),
        (&["-5"], json!(-5)),
        (&["--", "-x"], json!("-x")),
        (&["--", "--status"], json!("--status")),
    ];
    for (value_args, expected) in cases {
        let mut args = vec!["put", root.as_str(), "value"];
        args.extend_from_slice(value_args);
        let outcome = cli(&args);
        assert_eq!(outcome.code, 0, "{args:?}: {outcome:?}");
        assert_eq!(
            outcome.json(),
            json!({"key": "value", "value": expected}),
            "{args:?}"
        );
        assert_eq!(at_root(cluster, "value").1["value"], expected, "{args:?}");
    }
    // The value `-5` may also come before the options and the key after `--`.
    let outcome = cli(&["put", &root, "--status", "--", "-dash", "-5"]);
    assert_eq!(
        outcome.stdout, "200 {\"key\": \"-dash\", \"value\": -5}\n",
        "{outcome:?}"
    );
}

fn keys_travel_percent_encoded(cluster: &Cluster) {
    let root = cluster.url(1);
    let key = "a b?c#d%20e&f=g+ü😀";
    assert_eq!(
        ok(&["put", &root, key, "odd"]),
        json!({"key": key, "value": "odd"})
    );
    assert_eq!(
        at_root(cluster, key),
        (200, json!({"key": key, "value": "odd"}))
    );
    assert_eq!(
        ok(&["get", &cluster.url(3), key]),
        json!({"key": key, "value": "odd"})
    );
    assert_eq!(ok(&["delete", &root, key]), json!({"key": key}));
}

fn error_answers_are_printed_with_their_exit_status(cluster: &Cluster) {
    let root = cluster.url(1);
    // 404: exit 1, the node's error on stdout.
    let missing = cli(&["get", &cluster.url(2), "never-written"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.json()["error"].is_string(), "{missing:?}");
    let missing = cli(&["--status", "delete", &root, "never-written"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stdout.starts_with("404 {\"error\": "),
        "{missing:?}"
    );

    // Any other error status: exit 3. A '/' in a key is refused by the node.
    let slash = cli(&["--status", "put", &root, "a/b", "x"]);
    assert_eq!(slash.code, 3, "{slash:?}");
    assert!(slash.stdout.starts_with("400 {\"error\": "), "{slash:?}");
    assert_eq!(at_root(cluster, "a/b").0, 400);
}

fn the_tree_is_drawn_with_names_addresses_and_slots(cluster: &Cluster) {
    let outcome = cli(&["tree", &cluster.url(3)]);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        lines[0], "tree of depth 2: 3 of 3 slots taken, root NODE-1",
        "{outcome:?}"
    );
    let root_line = format!("NODE-1      {}  slot 0", cluster.address(1));
    assert_eq!(lines[1], root_line);
    // The children come in slot order, whichever joined first.
    let doc = cluster.tree();
    for (line, slot, branch) in [(lines[2], 1, "├── "), (lines[3], 2, "└── ")] {
        let id = cluster.at_slot(slot);
        let expected = format!("{branch}NODE-{id}  {}  slot {slot}", cluster.address(id));
        assert_eq!(line, expected, "{doc}");
    }
    assert_eq!(lines.len(), 4, "{outcome:?}");

    let with_status = cli(&["--status", "tree", &cluster.url(1)]);
    assert_eq!(
        with_status.stdout.lines().next(),
        Some("200"),
        "{with_status:?}"
    );
}

#[test]
fn an_unreachable_node_exits_3_naming_the_url() {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/store/k");
    for node in [
        format!("127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        let outcome = cli(&["get", &node, "k"]);
        assert_eq!(outcome.code, 3, "{outcome:?}");
        assert_eq!(outcome.stdout, "");
        assert_eq!(
            outcome.stderr,
            format!(
                "treecache-cli: cannot reach {url}: connection refused (is the node running?)\n"
            )
        );
    }
}

#[test]
fn a_node_that_never_answers_times_out_within_the_bound() {
    // Connections complete in the kernel's backlog, but nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let outcome = cli(&["--timeout", "0.5", "health", &address]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.code, 3, "{outcome:?}");
    assert_eq!(
        outcome.stderr,
        format!("treecache-cli: cannot reach http://{address}/: no answer within 0.5s\n")
    );
}

#[test]
fn a_timeout_may_have_a_unit_and_must_be_more_than_zero() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let outcome = cli(&["--timeout=500ms", "health", &address]);
    assert_eq!(outcome.code, 3, "{outcome:?}");
    assert_eq!(
        outcome.stderr,
        format!("treecache-cli: cannot reach http://{address}/: no answer within 0.5s\n")
    );
    for refused in ["0", "0ms", "soon", "-1"] {
        let outcome = cli(&["--timeout", refused, "health", &address]);
        assert_eq!(outcome.code, 2, "{refused}: {outcome:?}");
        assert!(
            outcome.stderr.contains("time-out"),
            "{refused}: {outcome:?}"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let cases: [(&[&str], &str); 9] = [
        (&[], "no command given"),
        (&["fetch", "1", "k"], "unknown command 'fetch'"),
        (&["put", "1", "k"], "put: missing VALUE"),
        (&["get", "1"], "get: missing KEY"),
        (&["health"], "health: missing NODE"),
        (
            &["get", "1", "k", "extra"],
            "get: unexpected argument 'extra'",
        ),
        (
            &["get", "1", "k", "--verbose"],
            "unknown option '--verbose'",
        ),
        (
            &["get", "--base-port", "port", "1", "k"],
            "'port' is not a port number",
        ),
        (&["get", "localhost", "k"], "'localhost' is not a node"),
    ];
    for (args, message) in cases {
        let outcome = cli(args);
        assert_eq!(outcome.code, 2, "{args:?}: {outcome:?}");
        assert_eq!(outcome.stdout, "", "{args:?}");
        let first = outcome.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("treecache-cli: ") && first.contains(message),
            "{args:?}: {outcome:?}"
        );
        assert!(
            outcome.stderr.contains("Usage: treecache-cli"),
            "{args:?}: {outcome:?}"
        );
    }
    let bad_mode = cli_with_env(&["get", "1", "k"], &[("TREECACHE_MODE", "cloud")]);
    assert_eq!(bad_mode.code, 2, "{bad_mode:?}");
    assert!(bad_mode.stderr.contains("TREECACHE_MODE"), "{bad_mode:?}");
}

#[test]
fn help_is_printed_for_the_tool_and_for_each_command() {
    let tool = cli(&["--help"]);
    assert_eq!(tool.code, 0);
    for command in [
        "get NODE KEY",
        "put NODE KEY VALUE",
        "delete NODE KEY",
        "health NODE",
        "ready NODE",
        "metrics NODE",
        "mget NODE KEY...",
        "keys NODE",
        "tree [NODE]",
    ] {
        assert!(
            tool.stdout
                .contains(&format!("treecache-cli [OPTIONS] {command}")),
            "{command}"
        );
    }
    for command in [
        "get", "put", "delete", "mget", "keys", "health", "ready", "metrics", "tree",
    ] {
        let by_word = cli(&["help", command]);
        let by_flag = cli(&[command, "--help"]);
        assert_eq!((by_word.code, by_flag.code), (0, 0), "{command}");
        assert_eq!(by_word.stdout, by_flag.stdout, "{command}");
        assert!(
            by_word
                .stdout
                .contains(&format!("Usage: treecache-cli [OPTIONS] {command}")),
            "{command}"
        );
        assert!(
            by_word.stdout.contains("Examples:\n  treecache-cli "),
            "{command}"
        );
    }
}

#[test]
fn with_tokens_the_cli_sends_its_token() {
    let cluster = Cluster::builder(2)
        .tokens("cli-reader read\ncli-writer write\n")
        .start();
    let cache = cluster.url(2);
    let refused = cli(&["put", &cache, "k", "1"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stdout.contains("token"), "{refused:?}");
    assert_eq!(
        ok(&["--token", "cli-writer", "put", &cache, "k", "1"]),
        json!({"key": "k", "value": 1})
    );
    let read = cli_with_env(&["get", &cache, "k"], &[("TREECACHE_TOKEN", "cli-reader")]);
    assert_eq!(read.code, 0, "{read:?}");
    assert_eq!(read.json(), json!({"key": "k", "value": 1}));
    let forbidden = cli_with_env(
        &["--status", "delete", &cache, "k"],
        &[("TREECACHE_TOKEN", "cli-reader")],
    );
    assert!(forbidden.stdout.starts_with("403"), "{forbidden:?}");
    // The flag wins over the variable.
    let deleted = cli_with_env(
        &["--token=cli-writer", "delete", &cache, "k"],
        &[("TREECACHE_TOKEN", "cli-reader")],
    );
    assert_eq!(deleted.code, 0, "{deleted:?}");
}
