//! The command line: argv turned into one [`Invocation`], a help text, or a
//! [`UsageError`]. No I/O; the environment is read by `main`.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use serde_json::Value;
use treecache_common::units;

use crate::command_name::{CommandName, COMMAND_OPTIONS};
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
        value: PutValue,
        /// `--ttl`: seconds the value lives.
        ttl: Option<u64>,
        condition: Option<Condition>,
    },
    Delete {
        node: String,
        key: String,
        /// `--if-match N`.
        if_match: Option<u64>,
    },
    Health {
        node: String,
    },
    Ready {
        node: String,
    },
    Metrics {
        node: String,
    },
    Keys {
        node: String,
        prefix: Option<String>,
        after: Option<String>,
        /// Most keys to list; all when `None`.
        limit: Option<u64>,
    },
    Mget {
        node: String,
        keys: Vec<String>,
    },
    /// `node` is `None` when the user named none: ask node 1.
    Tree {
        node: Option<String>,
    },
    /// Prints a completion script; talks to no node.
    Completions,
}

/// The VALUE of `put`.
#[derive(Debug, PartialEq)]
pub enum PutValue {
    Given(Value),
    /// `-`: read from standard input (by `main`, before the request is made).
    Stdin,
}

/// A condition on a write, sent as a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `--if-match N`: `If-Match: "N"`, only if the key's version is N.
    IfMatch(u64),
    /// `--if-absent`: `If-None-Match: *`, only if the key does not exist.
    IfAbsent,
}

impl Command {
    /// The NODE argument, if the command has one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Command::Get { node, .. }
            | Command::Put { node, .. }
            | Command::Delete { node, .. }
            | Command::Health { node }
            | Command::Ready { node }
            | Command::Metrics { node }
            | Command::Keys { node, .. }
            | Command::Mget { node, .. } => Some(node),
            Command::Tree { node } => node.as_deref(),
            Command::Completions => None,
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
    /// `--cacert` (or `TREECACHE_CACERT`): the CA file that nodes'
    /// certificates must chain to; nodes are then reached over HTTPS.
    pub cacert: Option<String>,
    /// `--etag`: print the answer's ETag (the key's version) before it.
    pub etag: bool,
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

const VALUE_OPTIONS: [&str; 9] = [
    "--base-port",
    "--timeout",
    "--token",
    "--cacert",
    "--ttl",
    "--if-match",
    "--prefix",
    "--after",
    "--limit",
];

/// The options as given, before they are checked against the command.
struct Given {
    help: bool,
    version: bool,
    if_absent: bool,
    ttl: Option<u64>,
    if_match: Option<u64>,
    prefix: Option<String>,
    after_key: Option<String>,
    limit: Option<u64>,
    options: Options,
}

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
    let given = options(&mut args)?;
    let mut operands = operands(args)?;
    operands.extend(after.iter().cloned());

    if given.version {
        return Ok(Parsed::Version);
    }
    let mut operands = operands.into_iter();
    let Some(word) = operands.next() else {
        return if given.help {
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
    if given.help {
        return Ok(Parsed::Help(help::for_command(name)));
    }
    check_options(name, &given)?;
    let command = command(name, operands.collect())?;
    Ok(Parsed::Run(given.apply(command)))
}

/// Reads every option (each at most once), in this order: the first bad
/// one is the error.
fn options(args: &mut pico_args::Arguments) -> Result<Given, UsageError> {
    let bad = |e: pico_args::Error| usage_error(e.to_string(), None);
    let help = flag(args, &["-h", "--help"]);
    let version = flag(args, &["-V", "--version"]);
    let status = flag(args, &["--status"]);
    let json = flag(args, &["--json"]);
    let docker = flag(args, &["--docker"]);
    let base_port = args
        .opt_value_from_fn("--base-port", parse_base_port)
        .map_err(bad)?;
    let timeout = args
        .opt_value_from_fn("--timeout", parse_timeout)
        .map_err(bad)?
        .unwrap_or(DEFAULT_TIMEOUT);
    let token = text_or_env(args, "--token", "TREECACHE_TOKEN")?;
    let cacert = text_or_env(args, "--cacert", "TREECACHE_CACERT")?;
    let etag = flag(args, &["--etag"]);
    let if_absent = flag(args, &["--if-absent"]);
    let ttl = args.opt_value_from_fn("--ttl", parse_ttl).map_err(bad)?;
    let if_match = args
        .opt_value_from_fn("--if-match", parse_version)
        .map_err(bad)?;
    let prefix = args.opt_value_from_str("--prefix").map_err(bad)?;
    let after_key = args.opt_value_from_str("--after").map_err(bad)?;
    let limit = args
        .opt_value_from_fn("--limit", parse_limit)
        .map_err(bad)?;
    Ok(Given {
        help,
        version,
        if_absent,
        ttl,
        if_match,
        prefix,
        after_key,
        limit,
        options: Options {
            status,
            json,
            docker,
            base_port,
            timeout,
            token,
            cacert,
            etag,
        },
    })
}

/// A text option, else its environment variable; empty is not given.
fn text_or_env(
    args: &mut pico_args::Arguments,
    option: &'static str,
    variable: &str,
) -> Result<Option<String>, UsageError> {
    Ok(args
        .opt_value_from_str::<_, String>(option)
        .map_err(|e| usage_error(e.to_string(), None))?
        .or_else(|| std::env::var(variable).ok())
        .filter(|t| !t.is_empty()))
}

/// What is left once the options are read: the operands, or an error for
/// an option unknown or given twice.
fn operands(args: pico_args::Arguments) -> Result<Vec<String>, UsageError> {
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
    Ok(operands)
}

/// Refuses an option of some commands alone given to another, and the
/// two conditions of `put` together.
fn check_options(name: CommandName, given: &Given) -> Result<(), UsageError> {
    let present = [
        given.options.json,
        given.options.etag,
        given.ttl.is_some(),
        given.if_absent,
        given.if_match.is_some(),
        given.prefix.is_some(),
        given.after_key.is_some(),
        given.limit.is_some(),
    ];
    for ((option, applies_to), present) in COMMAND_OPTIONS.iter().zip(present) {
        if present && !name.takes(option) {
            return Err(usage_error(
                format!("{option} only applies to {applies_to}"),
                Some(name),
            ));
        }
    }
    if given.if_absent && given.if_match.is_some() {
        return Err(usage_error(
            "put: give --if-match or --if-absent, not both",
            Some(name),
        ));
    }
    Ok(())
}

impl Given {
    /// The command with the options that belong to it, and the others.
    fn apply(self, mut command: Command) -> Invocation {
        match &mut command {
            Command::Put { ttl, condition, .. } => {
                *ttl = self.ttl;
                *condition = match (self.if_match, self.if_absent) {
                    (Some(version), _) => Some(Condition::IfMatch(version)),
                    (None, true) => Some(Condition::IfAbsent),
                    (None, false) => None,
                };
            }
            Command::Delete { if_match, .. } => *if_match = self.if_match,
            Command::Keys {
                prefix,
                after,
                limit,
                ..
            } => {
                *prefix = self.prefix;
                *after = self.after_key;
                *limit = self.limit;
            }
            _ => {}
        }
        Invocation {
            command,
            options: self.options,
        }
    }
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
    let most = if name == CommandName::Mget {
        usize::MAX
    } else {
        required.len() + optional.len()
    };
    if let Some(extra) = operands.get(most) {
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
            value: match next() {
                stdin if stdin == "-" => PutValue::Stdin,
                text => PutValue::Given(parse_value(&text)),
            },
            ttl: None,
            condition: None,
        },
        CommandName::Delete => Command::Delete {
            node: next(),
            key: key(name, next())?,
            if_match: None,
        },
        CommandName::Health => Command::Health { node: next() },
        CommandName::Ready => Command::Ready { node: next() },
        CommandName::Metrics => Command::Metrics { node: next() },
        CommandName::Keys => Command::Keys {
            node: next(),
            prefix: None,
            after: None,
            limit: None,
        },
        CommandName::Mget => {
            let node = next();
            let mut keys = Vec::new();
            for text in operands {
                if text.is_empty() {
                    return Err(usage_error("mget: a KEY must not be empty", Some(name)));
                }
                keys.push(text);
            }
            Command::Mget { node, keys }
        }
        CommandName::Tree => Command::Tree {
            node: Some(next()).filter(|node| !node.is_empty()),
        },
        CommandName::Completions => match next().as_str() {
            "bash" => Command::Completions,
            other => {
                return Err(usage_error(
                    format!("completions: no completions for '{other}' (only bash)"),
                    Some(name),
                ))
            }
        },
    };
    Ok(command)
}

/// A VALUE read from standard input (`put NODE KEY -`): without the one
/// line break that ends it, if any, then as a VALUE on the command line.
pub fn value_from_stdin(text: &str) -> Value {
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    parse_value(text)
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

/// `--ttl`: whole seconds, at least 1: `90`, or a time with a unit that
/// comes to whole seconds (`2m`, `1500ms` is refused).
fn parse_ttl(text: &str) -> Result<u64, String> {
    let seconds = text.trim().parse::<u64>().ok().or_else(|| {
        units::parse_duration(text)
            .ok()
            .filter(|d| d.subsec_nanos() == 0)
            .map(|d| d.as_secs())
    });
    match seconds {
        Some(s) if s >= 1 => Ok(s),
        _ => Err(format!(
            "'{text}' is not a TTL: give whole seconds (90) or a time with a unit (2m), at least 1s"
        )),
    }
}

/// `--if-match`: a version, as a node's ETag gives it (`7` or `"7"`).
fn parse_version(text: &str) -> Result<u64, String> {
    text.trim()
        .trim_matches('"')
        .parse::<u64>()
        .map_err(|_| format!("'{text}' is not a version: --if-match takes the number of an ETag"))
}

/// `--limit`: how many keys at most, at least 1.
fn parse_limit(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "'{text}' is not a limit: give a whole number from 1"
        )),
    }
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
            Command::Put {
                value: PutValue::Given(value),
                ..
            } => value,
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
                value: PutValue::Given(json!("v")),
                ttl: None,
                condition: None,
            }
        );
        assert_eq!(
            run(&["delete", "localhost:5001", "k"]).command,
            Command::Delete {
                node: "localhost:5001".into(),
                key: "k".into(),
                if_match: None,
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
                cacert: None,
                etag: false,
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
        assert_eq!(put_value(&["put", "1", "k", "\"-\""]), json!("-"));
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
    fn a_value_of_dash_is_read_from_standard_input() {
        match run(&["put", "1", "k", "-"]).command {
            Command::Put { value, .. } => assert_eq!(value, PutValue::Stdin),
            other => panic!("{other:?}"),
        }
        assert_eq!(value_from_stdin("{\"a\": 1}\n"), json!({"a": 1}));
        assert_eq!(value_from_stdin("hello\r\n"), json!("hello"));
        assert_eq!(value_from_stdin("two\nlines\n"), json!("two\nlines"));
        assert_eq!(value_from_stdin(""), json!(""));
    }

    #[test]
    fn the_new_commands_take_their_operands_and_options() {
        assert_eq!(
            run(&["ready", "2"]).command,
            Command::Ready { node: "2".into() }
        );
        assert_eq!(
            run(&["metrics", "NODE-2"]).command,
            Command::Metrics {
                node: "NODE-2".into()
            }
        );
        assert_eq!(
            run(&["mget", "1", "a", "b c", "--", "-d"]).command,
            Command::Mget {
                node: "1".into(),
                keys: vec!["a".into(), "b c".into(), "-d".into()]
            }
        );
        assert_eq!(
            run(&[
                "keys",
                "1",
                "--prefix",
                "user:",
                "--limit=10",
                "--after",
                "user:5"
            ])
            .command,
            Command::Keys {
                node: "1".into(),
                prefix: Some("user:".into()),
                after: Some("user:5".into()),
                limit: Some(10),
            }
        );
        assert_eq!(
            run(&["keys", "1"]).command,
            Command::Keys {
                node: "1".into(),
                prefix: None,
                after: None,
                limit: None,
            }
        );
        assert_eq!(run(&["completions", "bash"]).command, Command::Completions);
        match run(&["put", "1", "k", "v", "--ttl", "90", "--if-match", "\"7\""]).command {
            Command::Put { ttl, condition, .. } => {
                assert_eq!((ttl, condition), (Some(90), Some(Condition::IfMatch(7))))
            }
            other => panic!("{other:?}"),
        }
        match run(&["put", "1", "k", "v", "--ttl=2m", "--if-absent"]).command {
            Command::Put { ttl, condition, .. } => {
                assert_eq!((ttl, condition), (Some(120), Some(Condition::IfAbsent)))
            }
            other => panic!("{other:?}"),
        }
        match run(&["delete", "1", "k", "--if-match=3"]).command {
            Command::Delete { if_match, .. } => assert_eq!(if_match, Some(3)),
            other => panic!("{other:?}"),
        }
        assert!(run(&["get", "1", "k", "--etag"]).options.etag);
    }

    #[test]
    fn options_of_other_commands_are_refused() {
        let cases: [(&[&str], &str); 10] = [
            (
                &["get", "1", "k", "--ttl", "5"],
                "--ttl only applies to 'put'",
            ),
            (
                &["delete", "1", "k", "--if-absent"],
                "--if-absent only applies to 'put'",
            ),
            (
                &["get", "1", "k", "--if-match", "1"],
                "--if-match only applies",
            ),
            (
                &["tree", "--prefix", "a"],
                "--prefix only applies to 'keys'",
            ),
            (&["ready", "1", "--etag"], "--etag only applies"),
            (
                &["put", "1", "k", "v", "--if-match", "1", "--if-absent"],
                "not both",
            ),
            (&["put", "1", "k", "v", "--ttl", "0"], "not a TTL"),
            (&["put", "1", "k", "v", "--ttl", "1500ms"], "not a TTL"),
            (&["keys", "1", "--limit", "0"], "not a limit"),
            (
                &["delete", "1", "k", "--if-match", "seven"],
                "not a version",
            ),
        ];
        for (words, message) in cases {
            let e = error(words);
            assert!(e.message.contains(message), "{words:?}: {}", e.message);
        }
        assert_eq!(error(&["mget", "1"]).message, "mget: missing KEY");
        assert_eq!(
            error(&["mget", "1", "a", ""]).message,
            "mget: a KEY must not be empty"
        );
        assert!(error(&["completions", "fish"])
            .message
            .contains("only bash"));
        assert_eq!(
            error(&["completions"]).message,
            "completions: missing SHELL"
        );
        assert_eq!(error(&["ready"]).message, "ready: missing NODE");
        assert_eq!(
            error(&["keys", "1", "x"]).message,
            "keys: unexpected argument 'x'"
        );
    }

    #[test]
    fn times_take_the_forms_the_node_takes() {
        // The node's flags (--startup-delay, --hop-timeout, ...) read times
        // with units::parse_duration; so do --timeout and --ttl here.
        for text in ["5", "0.5", "250ms", "2s", "1m", "1.5m", " 500 ms "] {
            let node = units::parse_duration(text).unwrap();
            let words = ["--timeout", text, "health", "1"];
            assert_eq!(run(&words).options.timeout, node, "{text:?}");
            let form = format!("--timeout={text}");
            assert_eq!(run(&[&form, "health", "1"]).options.timeout, node);
        }
        for (text, seconds) in [("90", 90), ("2s", 2), ("2m", 120), ("1.5m", 90)] {
            match run(&["put", "1", "k", "v", "--ttl", text]).command {
                Command::Put { ttl, .. } => assert_eq!(ttl, Some(seconds), "{text}"),
                other => panic!("{other:?}"),
            }
        }
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
