//! `treecache-cli`: the command-line client of a treecache cluster. It sends
//! one request to one node and prints the answer.
//!
//! Layout:
//! - `args`: the command line turned into a command and its options
//! - `help`: the help texts
//! - `target`: which URL a NODE argument means, in host or docker mode
//! - `client`: the HTTP request of each command, sent with ureq
//! - `output`: the answer as one line of JSON, with `--status`
//! - `tree_view`: the `/nodes` document drawn as a tree
//! - `main`: wiring, and the exit status

mod args;
mod client;
mod help;
mod output;
mod target;
mod tree_view;

use std::env;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

use args::{Command, Invocation, Parsed, UsageError};
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
    let base = match node_url(&invocation) {
        Ok(base) => base,
        Err(error) => {
            return usage(&UsageError {
                message: error.0,
                command: None,
            })
        }
    };
    let Invocation { command, options } = invocation;

    let client = Client::new(options.timeout).with_token(options.token.clone());
    let reply = match client.send(&base, &client::request_for(&command)) {
        Ok(reply) => reply,
        Err(unreachable) => {
            eprintln!("treecache-cli: {unreachable}");
            return Exit::Failure;
        }
    };
    let status = options.status.then_some(reply.status);
    let draw_tree = matches!(command, Command::Tree { .. }) && !options.json && reply.status == 200;
    if draw_tree {
        return print_tree(&reply, status);
    }
    print(&output::with_status(
        status,
        &output::body_text(&reply.body),
    ));
    Exit::for_status(reply.status)
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
    target::resolve(invocation.command.node().unwrap_or("1"), mode)
}

fn print_tree(reply: &Reply, status: Option<u16>) -> Exit {
    let drawing = serde_json::from_str::<Value>(&reply.body)
        .map_err(|error| format!("the /nodes answer is not JSON: {error}"))
        .and_then(|doc| tree_view::render(&doc));
    match drawing {
        Ok(drawing) => {
            print(&output::with_status(status, &drawing));
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
