//! The command line: argv turned into one [`Invocation`], a help text, or a
//! [`UsageError`]. No I/O; the environment is read by `main`.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use serde_json::Value;
use treecache_common::units;

use crate::help;

/// Time allowed for one request when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Invocation),
    /// Print this text on stdout and exit 0.
    Help(&'static str),
    Version,
}

/// A command to run, with the options that shape it.
#[derive(Debug, PartialEq)]
pub struct Invocation {
    pub command: Command,
    pub options: Options,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Get {
        node: String,
        key: String,
    },
    Put {
        node: String,
        key: String,
        value: Value,
    },
    Delete {
        node: String,
        key: String,
    },
    Health {
        node: String,
    },
    /// `node` is `None` when the user named none: ask node 1.
    Tree {
        node: Option<String>,
    },
}

impl Command {
    /// The NODE argument, if the command has one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Command::Get { node, .. }
            | Command::Put { node, .. }
            | Command::Delete { node, .. }
            | Command::Health { node } => Some(node),
            Command::Tree { node } => node.as_deref(),
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct Options {
    /// `--status`: print the HTTP status before the answer.
    pub status: bool,
    /// `--json` (tree only): print the raw `/nodes` document.
    pub json: bool,
    /// `--docker`: bare node ids name containers.
    pub docker: bool,
    /// `--base-port`: host-mode base port.
    pub base_port: Option<u16>,
    /// `--timeout`: bound on one request, connecting included.
    pub timeout: Duration,
    /// `--token` (or `TREECACHE_TOKEN`): sent as `Authorization: Bearer`.
    pub token: Option<String>,
}

/// The commands, by the word that names them on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandName {
    Get,
    Put,
    Delete,
    Health,
    Tree,
}

impl CommandName {
    fn from_word(word: &str) -> Option<CommandName> {
        match word {
            "get" => Some(CommandName::Get),
            "put" => Some(CommandName::Put),
            "delete" => Some(CommandName::Delete),
            "health" => Some(CommandName::Health),
            "tree" => Some(CommandName::Tree),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            CommandName::Get => "get",
            CommandName::Put => "put",
            CommandName::Delete => "delete",
            CommandName::Health => "health",
            CommandName::Tree => "tree",
        }
    }

    /// Names of the command's operands: the required ones, then the optional ones.
    fn operands(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            CommandName::Get | CommandName::Delete => (&["NODE", "KEY"], &[]),
            CommandName::Put => (&["NODE", "KEY", "VALUE"], &[]),
            CommandName::Health => (&["NODE"], &[]),
            CommandName::Tree => (&[], &["NODE"]),
        }
    }
}

/// A command line that cannot be run. `command` is set when the words named one,
/// so the hint can point at that command's help.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    pub command: Option<CommandName>,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn usage_error(message: impl Into<String>, command: Option<CommandName>) -> UsageError {
    UsageError {
        message: message.into(),
        command,
    }
}

const VALUE_OPTIONS: [&str; 3] = ["--base-port", "--timeout", "--token"];

/// Parses the arguments after the program name.
///
/// Options may stand anywhere before `--`; everything after `--` is an operand.
/// An operand may also start with `-` when it is a negative number (`-5`).
pub fn parse(argv: Vec<OsString>) -> Result<Parsed, UsageError> {
    let argv = argv
        .into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| usage_error(format!("argument {arg:?} is not valid UTF-8"), None))
        })
        .collect::<Result<Vec<String>, UsageError>>()?;
    let (before, after) = match argv.iter().position(|arg| arg == "--") {
        Some(at) => (&argv[..at], &argv[at + 1..]),
        None => (&argv[..], &[][..]),
    };

    let mut args = pico_args::Arguments::from_vec(before.iter().map(OsString::from).collect());
    let help = flag(&mut args, &["-h", "--help"]);
    let version = flag(&mut args, &["-V", "--version"]);
    let status = flag(&mut args, &["--status"]);
    let json = flag(&mut args, &["--json"]);
    let docker = flag(&mut args, &["--docker"]);
    let base_port = args
        .opt_value_from_fn("--base-port", parse_base_port)
        .map_err(|e| usage_error(e.to_string(), None))?;
    let timeout = args
        .opt_value_from_fn("--timeout", parse_timeout)
        .map_err(|e| usage_error(e.to_string(), None))?
        .unwrap_or(DEFAULT_TIMEOUT);
    let token = args
        .opt_value_from_str::<_, String>("--token")
        .map_err(|e| usage_error(e.to_string(), None))?
        .or_else(|| std::env::var("TREECACHE_TOKEN").ok())
        .filter(|t| !t.is_empty());

    let mut operands = Vec::new();
    for arg in args.finish() {
        let arg = arg.into_string().unwrap_or_default();
        if looks_like_option(&arg) {
            // pico-args took the first `--timeout 1` or `--timeout=1`; another is left.
            let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
            let problem = if VALUE_OPTIONS.contains(&name) {
                format!("option {arg} is given more than once")
            } else {
                format!("unknown option '{arg}' (put '--' before an operand that starts with '-')")
            };
            return Err(usage_error(problem, None));
        }
        operands.push(arg);
    }
    operands.extend(after.iter().cloned());

    if version {
        return Ok(Parsed::Version);
    }
    let mut operands = operands.into_iter();
    let Some(word) = operands.next() else {
        return if help {
            Ok(Parsed::Help(help::GENERAL))
        } else {
            Err(usage_error("no command given", None))
        };
    };
    if word == "help" {
        return help_for(operands.collect());
    }
    let Some(name) = CommandName::from_word(&word) else {
        return Err(usage_error(format!("unknown command '{word}'"), None));
    };
    if help {
        return Ok(Parsed::Help(help::for_command(name)));
    }
    if json && name != CommandName::Tree {
        return Err(usage_error(
            "--json only applies to 'tree' (the other commands always print JSON)",
            Some(name),
        ));
    }
    let command = command(name, operands.collect())?;
    let options = Options {
        status,
        json,
        docker,
        base_port,
        timeout,
        token,
    };
    Ok(Parsed::Run(Invocation { command, options }))
}

/// `help` and `help COMMAND`.
fn help_for(operands: Vec<String>) -> Result<Parsed, UsageError> {
    match operands.as_slice() {
        [] => Ok(Parsed::Help(help::GENERAL)),
        [word] => match CommandName::from_word(word) {
            Some(name) => Ok(Parsed::Help(help::for_command(name))),
            None => Err(usage_error(
                format!("no help for unknown command '{word}'"),
                None,
            )),
        },
        [_, extra, ..] => Err(usage_error(
            format!("help: unexpected argument '{extra}'"),
            None,
        )),
    }
}

/// Builds the command from its operands, checking that each required one is there
/// and that there are no more than it takes.
fn command(name: CommandName, operands: Vec<String>) -> Result<Command, UsageError> {
    let (required, optional) = name.operands();
    let word = name.word();
    if let Some(missing) = required.get(operands.len()) {
        return Err(usage_error(
            format!("{word}: missing {missing}"),
            Some(name),
        ));
    }
    if let Some(extra) = operands.get(required.len() + optional.len()) {
        return Err(usage_error(
            format!("{word}: unexpected argument '{extra}'"),
            Some(name),
        ));
    }
    let mut operands = operands.into_iter();
    let mut next = || operands.next().unwrap_or_default();
    let command = match name {
        CommandName::Get => Command::Get {
            node: next(),
            key: key(name, next())?,
        },
        CommandName::Put => Command::Put {
            node: next(),
            key: key(name, next())?,
            value: parse_value(&next()),
        },
        CommandName::Delete => Command::Delete {
            node: next(),
            key: key(name, next())?,
        },
        CommandName::Health => Command::Health { node: next() },
        CommandName::Tree => Command::Tree {
            node: Some(next()).filter(|node| !node.is_empty()),
        },
    };
    Ok(command)
}

fn key(name: CommandName, key: String) -> Result<String, UsageError> {
    let problem = match key.as_str() {
        "" => "KEY must not be empty",
        // URL parsing folds the path segments `.` and `..` (even percent-encoded)
        // into their parent, so such a request would reach another endpoint.
        "." | ".." => "the keys '.' and '..' cannot be sent in a URL",
        _ => return Ok(key),
    };
    Err(usage_error(
        format!("{}: {problem}", name.word()),
        Some(name),
    ))
}

/// A VALUE is JSON when it parses as JSON (`42`, `true`, `null`, `"x"`, `{"a":1}`),
/// otherwise it is the string as typed.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Removes every occurrence of a flag, so that a repeated flag is not left over
/// as an "unknown option".
fn flag(args: &mut pico_args::Arguments, keys: &[&'static str]) -> bool {
    let mut seen = false;
    for key in keys {
        while args.contains(*key) {
            seen = true;
        }
    }
    seen
}

/// An argument that starts with `-` is an option, unless it is `-` alone or a
/// negative number such as `-5` or `-0.5`.
fn looks_like_option(arg: &str) -> bool {
    let mut chars = arg.chars();
    chars.next() == Some('-')
        && chars
            .next()
            .is_some_and(|c| !c.is_ascii_digit() && c != '.')
}

fn parse_base_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("'{text}' is not a port number (0-65535)"))
}

/// Seconds (`2`, `0.5`) or a time with a unit (`500ms`, `2s`, `1m`), more
/// than 0 and at most a day: the node's parser of durations.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match units::parse_duration(text) {
        Ok(timeout) if !timeout.is_zero() => Ok(timeout),
        _ => Err(format!(
            "'{text}' is not a time-out: give seconds (2, 0.5) or a time with a unit \
             (500ms, 2s, 1m), more than 0"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_words(words: &[&str]) -> Result<Parsed, UsageError> {
        parse(words.iter().map(OsString::from).collect())
    }

    fn run(words: &[&str]) -> Invocation {
        match parse_words(words) {
            Ok(Parsed::Run(invocation)) => invocation,
            other => panic!("{words:?} gave {other:?}"),
        }
    }

    fn error(words: &[&str]) -> UsageError {
        match parse_words(words) {
            Err(error) => error,
            other => panic!("{words:?} should be a usage error, gave {other:?}"),
        }
    }

    fn put_value(words: &[&str]) -> Value {
        match run(words).command {
            Command::Put { value, .. } => value,
            other => panic!("not a put: {other:?}"),
        }
    }

    #[test]
    fn values_that_parse_as_json_are_json() {
        assert_eq!(parse_value("42"), json!(42));
        assert_eq!(parse_value("-5"), json!(-5));
        assert_eq!(parse_value("2.5"), json!(2.5));
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value("null"), json!(null));
        assert_eq!(parse_value(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(parse_value("[1, \"x\"]"), json!([1, "x"]));
        assert_eq!(parse_value("\"42\""), json!("42"));
    }

    #[test]
    fn other_values_are_strings() {
        assert_eq!(parse_value("world"), json!("world"));
        assert_eq!(parse_value("hello world"), json!("hello world"));
        assert_eq!(parse_value(""), json!(""));
        assert_eq!(parse_value("{a:1}"), json!("{a:1}"));
        assert_eq!(parse_value("True"), json!("True"));
        assert_eq!(parse_value("--verbose"), json!("--verbose"));
    }

    #[test]
    fn each_command_takes_its_operands() {
        assert_eq!(
            run(&["get", "NODE-2", "k"]).command,
            Command::Get {
                node: "NODE-2".into(),
                key: "k".into()
            }
        );
        assert_eq!(
            run(&["put", "1", "k", "v"]).command,
            Command::Put {
                node: "1".into(),
                key: "k".into(),
                value: json!("v")
            }
        );
        assert_eq!(
            run(&["delete", "localhost:5001", "k"]).command,
            Command::Delete {
                node: "localhost:5001".into(),
                key: "k".into()
            }
        );
        assert_eq!(
            run(&["health", "3"]).command,
            Command::Health { node: "3".into() }
        );
        assert_eq!(run(&["tree"]).command, Command::Tree { node: None });
        assert_eq!(
            run(&["tree", "2"]).command,
            Command::Tree {
                node: Some("2".into())
            }
        );
    }

    #[test]
    fn options_stand_anywhere_before_the_double_dash() {
        let invocation = run(&[
            "--status",
            "get",
            "1",
            "--base-port",
            "7000",
            "k",
            "--docker",
        ]);
        assert_eq!(
            invocation.options,
            Options {
                status: true,
                json: false,
                docker: true,
                base_port: Some(7000),
                timeout: DEFAULT_TIMEOUT,
                token: None,
            }
        );
        assert!(run(&["tree", "--json"]).options.json);
        assert_eq!(
            run(&["--base-port=6000", "health", "1"]).options.base_port,
            Some(6000)
        );
        let timeout = run(&["health", "1", "--timeout", "0.5"]).options.timeout;
        assert_eq!(timeout, Duration::from_millis(500));
        assert_eq!(
            run(&["--timeout=3", "health", "1"]).options.timeout,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn a_timeout_may_have_a_unit() {
        let timeout = |text: &str| run(&["--timeout", text, "health", "1"]).options.timeout;
        assert_eq!(timeout("500ms"), Duration::from_millis(500));
        assert_eq!(timeout("2s"), Duration::from_secs(2));
        assert_eq!(timeout("1m"), Duration::from_secs(60));
        for refused in ["0ms", "0s", "-1", "5h", "1441m"] {
            let message = error(&["--timeout", refused, "get", "1", "k"]).message;
            assert!(message.contains("time-out"), "{refused}: {message}");
        }
    }

    #[test]
    fn a_value_may_start_with_a_dash() {
        assert_eq!(put_value(&["put", "1", "k", "-5"]), json!(-5));
        assert_eq!(put_value(&["put", "1", "k", "-0.5"]), json!(-0.5));
        assert_eq!(put_value(&["put", "1", "k", "-"]), json!("-"));
        assert_eq!(put_value(&["put", "1", "k", "--", "-x"]), json!("-x"));
        assert_eq!(
            put_value(&["put", "--", "1", "k", "--status"]),
            json!("--status")
        );
        // After `--` nothing is an option, not even a known one.
        assert!(!run(&["put", "--", "1", "k", "--status"]).options.status);
    }

    #[test]
    fn a_key_may_start_with_a_dash_or_hold_anything() {
        match run(&["get", "1", "--", "-k ?#%/ü"]).command {
            Command::Get { key, .. } => assert_eq!(key, "-k ?#%/ü"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_is_there_for_the_tool_and_each_command() {
        assert_eq!(parse_words(&["--help"]), Ok(Parsed::Help(help::GENERAL)));
        assert_eq!(parse_words(&["-h"]), Ok(Parsed::Help(help::GENERAL)));
        assert_eq!(parse_words(&["help"]), Ok(Parsed::Help(help::GENERAL)));
        let put = help::for_command(CommandName::Put);
        assert_eq!(parse_words(&["help", "put"]), Ok(Parsed::Help(put)));
        assert_eq!(parse_words(&["put", "--help"]), Ok(Parsed::Help(put)));
        assert_eq!(parse_words(&["put", "1", "-h"]), Ok(Parsed::Help(put)));
        assert_eq!(parse_words(&["--version"]), Ok(Parsed::Version));
    }

    #[test]
    fn wrong_command_lines_are_usage_errors() {
        assert_eq!(error(&[]).message, "no command given");
        assert_eq!(
            error(&["fetch", "1", "k"]).message,
            "unknown command 'fetch'"
        );
        assert_eq!(
            error(&["help", "fetch"]).message,
            "no help for unknown command 'fetch'"
        );
        let missing = error(&["put", "1", "k"]);
        assert_eq!(missing.message, "put: missing VALUE");
        assert_eq!(missing.command, Some(CommandName::Put));
        assert_eq!(error(&["get", "1"]).message, "get: missing KEY");
        assert_eq!(error(&["health"]).message, "health: missing NODE");
        assert_eq!(
            error(&["get", "1", "k", "x"]).message,
            "get: unexpected argument 'x'"
        );
        assert_eq!(
            error(&["tree", "1", "2"]).message,
            "tree: unexpected argument '2'"
        );
        assert_eq!(
            error(&["get", "1", ""]).message,
            "get: KEY must not be empty"
        );
        assert!(error(&["put", "1", "..", "v"])
            .message
            .contains("cannot be sent"));
        assert!(error(&["get", "1", "k", "--verbose"])
            .message
            .contains("unknown option '--verbose'"));
        assert!(error(&["put", "1", "k", "-x"])
            .message
            .contains("unknown option '-x'"));
        assert!(error(&["get", "1", "k", "--json"])
            .message
            .contains("only applies to 'tree'"));
        assert!(error(&["--base-port", "70000", "get", "1", "k"])
            .message
            .contains("70000"));
        assert!(error(&["get", "1", "k", "--base-port"])
            .message
            .contains("--base-port"));
        assert!(error(&["--timeout", "0", "get", "1", "k"])
            .message
            .contains("time-out"));
        assert!(error(&["--timeout", "soon", "get", "1", "k"])
            .message
            .contains("time-out"));
        let twice = error(&["--timeout", "1", "--timeout", "2", "get", "1", "k"]);
        assert!(
            twice.message.contains("more than once"),
            "{}",
            twice.message
        );
        for twice in [
            &["--timeout=1", "--timeout=2", "get", "1", "k"][..],
            &["--base-port=1", "get", "1", "k", "--base-port", "2"],
        ] {
            let message = error(twice).message;
            assert!(message.contains("more than once"), "{twice:?}: {message}");
        }
        assert!(error(&["--timeout=", "get", "1", "k"])
            .message
            .contains("--timeout"));
    }

    #[test]
    fn repeated_flags_are_harmless() {
        assert!(
            run(&["--status", "get", "1", "k", "--status"])
                .options
                .status
        );
    }
}
