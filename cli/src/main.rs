//! `treecache-cli`: the command-line client of a treecache cluster. It sends
//! one request to one node and prints the answer (`keys` follows the
//! node's pages until it has them all).
//!
//! Layout:
//! - `args`: the command line turned into a command and its options
//! - `help`: the help texts; `completions`: the bash completion script
//! - `target`: which URL a NODE argument means, in host or docker mode
//! - `client`: the HTTP request of each command, sent with ureq
//! - `output`: the answer as one line of JSON, with `--status` and `--etag`
//! - `tree_view`: the `/nodes` document drawn as a tree
//! - `main`: wiring, and the exit status

mod args;
mod client;
mod command_name;
mod completions;
mod help;
mod output;
mod target;
mod tree_view;

use std::env;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

use args::{Command, Invocation, Options, Parsed, PutValue, UsageError};
use client::{Client, Reply};
use target::{Mode, ModeSettings};

/// The exit statuses (`treecache-cli --help`, "Exit status").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Success = 0,
    NotFound = 1,
    Usage = 2,
    Failure = 3,
}

impl Exit {
    /// 2xx is success, 404 is "not found", any other status is a failure.
    fn for_status(status: u16) -> Exit {
        match status {
            200..=299 => Exit::Success,
            404 => Exit::NotFound,
            _ => Exit::Failure,
        }
    }

    /// The exit status of a command's answer: `ready` succeeds only on 200
    /// (a node that is not ready answers 503: 3); `mget` is "not found"
    /// when any of its keys is missing.
    fn for_reply(command: &Command, reply: &Reply) -> Exit {
        match command {
            Command::Ready { .. } if reply.status != 200 => Exit::Failure,
            Command::Mget { .. } if reply.status == 200 => {
                let missing = serde_json::from_str::<Value>(&reply.body)
                    .ok()
                    .and_then(|doc| doc["missing"].as_array().map(|m| !m.is_empty()));
                match missing {
                    Some(false) => Exit::Success,
                    Some(true) => Exit::NotFound,
                    None => Exit::Failure,
                }
            }
            _ => Exit::for_status(reply.status),
        }
    }
}

fn main() -> ExitCode {
    let exit = run(env::args_os().skip(1).collect());
    ExitCode::from(exit as u8)
}

fn run(argv: Vec<OsString>) -> Exit {
    let invocation = match args::parse(argv) {
        Ok(Parsed::Run(invocation)) => invocation,
        Ok(Parsed::Help(text)) => {
            print(text.trim_end());
            return Exit::Success;
        }
        Ok(Parsed::Version) => {
            print(concat!("treecache-cli ", env!("CARGO_PKG_VERSION")));
            return Exit::Success;
        }
        Err(error) => return usage(&error),
    };
    if invocation.command == Command::Completions {
        print(completions::BASH.trim_end());
        return Exit::Success;
    }
    let tls = match invocation.options.cacert.as_deref().map(trust) {
        None => None,
        Some(Ok(config)) => Some(config),
        Some(Err(message)) => {
            return usage(&UsageError {
                message,
                command: None,
            })
        }
    };
    let base = match node_url(&invocation) {
        Ok(base) => base,
        Err(error) => {
            return usage(&UsageError {
                message: error.0,
                command: None,
            })
        }
    };
    let Invocation {
        mut command,
        options,
    } = invocation;
    if let Command::Put { value, .. } = &mut command {
        if *value == PutValue::Stdin {
            match read_stdin() {
                Ok(text) => *value = PutValue::Given(args::value_from_stdin(&text)),
                Err(problem) => {
                    eprintln!("treecache-cli: cannot read VALUE from standard input: {problem}");
                    return Exit::Failure;
                }
            }
        }
    }

    let client = Client::new(options.timeout, tls).with_token(options.token.clone());
    if let Command::Keys {
        prefix,
        after,
        limit,
        ..
    } = &command
    {
        let pages = Pages {
            prefix: prefix.as_deref(),
            after: after.clone(),
            limit: *limit,
        };
        return list_keys(&client, &base, pages, &options);
    }
    let reply = match client.send(&base, &client::request_for(&command)) {
        Ok(reply) => reply,
        Err(unreachable) => {
            eprintln!("treecache-cli: {unreachable}");
            return Exit::Failure;
        }
    };
    let prefix = prefix(&options, &reply);
    let draw_tree = matches!(command, Command::Tree { .. }) && !options.json && reply.status == 200;
    if draw_tree {
        return print_tree(&reply, prefix);
    }
    print(&output::with_prefix(
        prefix.as_deref(),
        &output::body_text(&reply.body),
    ));
    Exit::for_reply(&command, &reply)
}

/// What goes before the answer: the status (`--status`), then the version
/// of the key's ETag (`--etag`; `-` when the answer has none).
fn prefix(options: &Options, reply: &Reply) -> Option<String> {
    let mut words = Vec::new();
    if options.status {
        words.push(reply.status.to_string());
    }
    if options.etag {
        words.push(output::etag_version(reply.etag.as_deref()));
    }
    (!words.is_empty()).then(|| words.join(" "))
}

fn read_stdin() -> Result<String, String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())
}

/// Where `keys` starts and how many it wants.
struct Pages<'a> {
    prefix: Option<&'a str>,
    after: Option<String>,
    limit: Option<u64>,
}

/// `keys`: asks for pages (`after` the last key of the one before) until
/// the node says there are no more, or `--limit` keys have come; prints
/// them as one `{"keys": [...], "next": K or null}`, where `next` is where
/// a later `--after` would go on.
fn list_keys(client: &Client, base: &str, mut pages: Pages<'_>, options: &Options) -> Exit {
    let mut keys: Vec<Value> = Vec::new();
    let next = loop {
        let wanted = pages.limit.map(|l| l - keys.len() as u64);
        let page = wanted.map_or(client::KEYS_PAGE, |w| w.min(client::KEYS_PAGE));
        let request = client::Request {
            method: client::Method::Get,
            path: client::keys_path(pages.prefix, pages.after.as_deref(), page),
            body: None,
            headers: Vec::new(),
        };
        let reply = match client.send(base, &request) {
            Ok(reply) => reply,
            Err(unreachable) => {
                eprintln!("treecache-cli: {unreachable}");
                return Exit::Failure;
            }
        };
        if reply.status != 200 {
            let status = options.status.then(|| reply.status.to_string());
            print(&output::with_prefix(
                status.as_deref(),
                &output::body_text(&reply.body),
            ));
            return Exit::for_status(reply.status);
        }
        let doc: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        let (Some(got), Some(next)) = (doc["keys"].as_array(), doc.get("next")) else {
            eprintln!(
                "treecache-cli: the /keys answer is not {{\"keys\": [...], \"next\": ...}}: {}",
                reply.body.trim_end()
            );
            return Exit::Failure;
        };
        keys.extend(got.iter().cloned());
        let next = match next {
            Value::String(next) => next.clone(),
            _ => break Value::Null,
        };
        if pages.limit.is_some_and(|l| keys.len() as u64 >= l) {
            break Value::String(next);
        }
        if pages.after.as_deref() == Some(next.as_str()) {
            eprintln!("treecache-cli: the node's pages do not advance (next is {next:?} again)");
            return Exit::Failure;
        }
        pages.after = Some(next);
    };
    let status = options.status.then(|| "200".to_string());
    print(&output::with_prefix(
        status.as_deref(),
        &output::json_line(&json!({ "keys": keys, "next": next })),
    ));
    Exit::Success
}

/// The base URL of the node the command talks to; `tree` without NODE asks node 1.
fn node_url(invocation: &Invocation) -> Result<String, target::TargetError> {
    let settings = ModeSettings {
        docker_flag: invocation.options.docker,
        base_port_flag: invocation.options.base_port,
        mode_env: env::var("TREECACHE_MODE").ok(),
        base_port_env: env::var("TREECACHE_BASE_PORT").ok(),
    };
    let mode = Mode::choose(&settings)?;
    // With --cacert, nodes not given as URLs are reached over HTTPS.
    let scheme = match invocation.options.cacert {
        Some(_) => target::HTTPS,
        None => target::HTTP,
    };
    let node = invocation.command.node().unwrap_or("1");
    if node == target::SELF {
        return target::resolve_self(mode, env::var("API_PORT").ok().as_deref(), scheme);
    }
    target::resolve(node, mode, scheme)
}

/// The TLS configuration of `--cacert PATH`: its certificates, and no
/// others, are trusted.
fn trust(path: &str) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--cacert: cannot read {path}: {e}"))?;
    treecache_common::tls::client_config(&pem).map_err(|e| format!("--cacert: {path} {e}"))
}

fn print_tree(reply: &Reply, prefix: Option<String>) -> Exit {
    let drawing = serde_json::from_str::<Value>(&reply.body)
        .map_err(|error| format!("the /nodes answer is not JSON: {error}"))
        .and_then(|doc| tree_view::render(&doc));
    match drawing {
        Ok(drawing) => {
            print(&output::with_prefix(prefix.as_deref(), &drawing));
            Exit::Success
        }
        Err(problem) => {
            eprintln!(
                "treecache-cli: {problem}; the answer was: {}",
                reply.body.trim_end()
            );
            Exit::Failure
        }
    }
}

fn usage(error: &UsageError) -> Exit {
    let more = match error.command {
        Some(name) => format!("treecache-cli help {}", name.word()),
        None => "treecache-cli --help".to_string(),
    };
    eprintln!("treecache-cli: {error}");
    eprintln!("{}", help::synopsis(error.command));
    eprintln!("More: {more}");
    Exit::Usage
}

/// Prints `text` as a line on stdout. A closed stdout (`| head`) is not an error
/// worth a panic, so a failed write is ignored.
fn print(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            etag: None,
        }
    }

    #[test]
    fn ready_succeeds_only_when_the_node_is_ready() {
        let ready = Command::Ready { node: "1".into() };
        assert_eq!(Exit::for_reply(&ready, &reply(200, "{}")), Exit::Success);
        let not_ready = r#"{"ready": false, "reason": "not joined"}"#;
        assert_eq!(
            Exit::for_reply(&ready, &reply(503, not_ready)),
            Exit::Failure
        );
        assert_eq!(Exit::for_reply(&ready, &reply(404, "{}")), Exit::Failure);
    }

    #[test]
    fn mget_is_not_found_when_a_key_is_missing() {
        let mget = Command::Mget {
            node: "1".into(),
            keys: vec!["a".into(), "b".into()],
        };
        let all = r#"{"values": {"a": 1, "b": 2}, "missing": []}"#;
        assert_eq!(Exit::for_reply(&mget, &reply(200, all)), Exit::Success);
        let some = r#"{"values": {"a": 1}, "missing": ["b"]}"#;
        assert_eq!(Exit::for_reply(&mget, &reply(200, some)), Exit::NotFound);
        assert_eq!(Exit::for_reply(&mget, &reply(200, "junk")), Exit::Failure);
        assert_eq!(Exit::for_reply(&mget, &reply(400, "{}")), Exit::Failure);
    }

    #[test]
    fn the_status_and_etag_go_in_front() {
        let options = |status, etag| Options {
            status,
            json: false,
            docker: false,
            base_port: None,
            timeout: args::DEFAULT_TIMEOUT,
            token: None,
            cacert: None,
            etag,
        };
        let mut r = reply(200, "{}");
        r.etag = Some("\"7\"".into());
        assert_eq!(prefix(&options(true, true), &r).as_deref(), Some("200 7"));
        assert_eq!(prefix(&options(false, true), &r).as_deref(), Some("7"));
        assert_eq!(prefix(&options(false, false), &r), None);
        r.etag = None;
        assert_eq!(prefix(&options(false, true), &r).as_deref(), Some("-"));
    }
}
