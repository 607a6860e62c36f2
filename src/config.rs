//! Flags and environment variables turned into one validated [`Config`].
//!
//! Every flag has an environment variable; the flag wins where both are given.
//! A bad value is reported as one line naming the flag, and the node exits with 2.
//!
//! [`FLAGS`] is the one table of the flags: each row holds a flag's name,
//! environment variable, default, meaning and parser. The flags are read
//! from it, `treecache --help` is rendered from it, and a test checks
//! README.md's configuration table against it. Reading is pure: paths of
//! files (the cluster key, the tokens, TLS) stay paths here, and the host
//! name comes from the environment lookup as `HOSTNAME`; the wiring
//! (`launch`) reads what they point at.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::logging::LogFormat;
use crate::tree::Tree;
use crate::wal::Fsync;

/// Default base URL of the swagger-ui assets that `/docs` loads.
pub const DEFAULT_DOCS_ASSETS_URL: &str = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14";

/// One flag of `treecache node`: a row of [`FLAGS`].
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    pub flag: &'static str,
    /// What the usage text writes after the flag, e.g. `N` in `--id N`.
    pub value: &'static str,
    /// The environment variable read when the flag is not given.
    pub env: &'static str,
    pub default: DefaultValue,
    pub meaning: &'static str,
    /// Parses the flag's text into its place among the flags given.
    read: fn(&str, &mut Given) -> Result<(), String>,
}

/// What a flag is when neither it nor its environment variable is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// The node does not start without it.
    Required,
    /// This text, read by the flag's own parser: the table is the code's default.
    Value(&'static str),
    /// A default that the code works out, or none; the text says which.
    Described(&'static str),
}

impl DefaultValue {
    /// The default as the usage text shows it.
    pub fn text(&self) -> &'static str {
        match self {
            DefaultValue::Required => "required",
            DefaultValue::Value(text) | DefaultValue::Described(text) => text,
        }
    }
}

/// The flags as read, each `None` until its row of [`FLAGS`] sets it (a
/// flag with a [`DefaultValue::Value`] is always set); [`Config::parse`]
/// then checks them against each other.
#[derive(Default)]
struct Given {
    id: Option<u32>,
    first_id: Option<u32>,
    depth: Option<u32>,
    root_id: Option<u32>,
    root_shards: Option<u32>,
    shard: Option<u32>,
    port: Option<u16>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    zookeeper: Option<String>,
    zk_prefix: Option<String>,
    root: Option<String>,
    startup_delay: Option<Duration>,
    threads: Option<usize>,
    log_level: Option<log::LevelFilter>,
    log_format: Option<LogFormat>,
    upstream_timeout: Option<Duration>,
    hop_timeout: Option<Duration>,
    zk_session_timeout: Option<Duration>,
    cache_max_bytes: Option<u64>,
    max_store_bytes: Option<u64>,
    data_dir: Option<PathBuf>,
    fsync: Option<Fsync>,
    cluster_key_file: Option<PathBuf>,
    api_tokens_file: Option<PathBuf>,
    zk_auth: Option<ZkAuth>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    idle_timeout: Option<Duration>,
    max_connections: Option<usize>,
    docs_assets_url: Option<String>,
}

/// A row of [`FLAGS`]: `flag!("--flag" "VALUE" "ENV", default, field <- parser, "meaning")`.
macro_rules! flag {
    ($flag:literal $value:literal $env:literal, $default:expr, $field:ident <- $parse:expr, $meaning:literal) => {
        Flag {
            flag: $flag,
            value: $value,
            env: $env,
            default: $default,
            meaning: $meaning,
            read: |text, given| {
                given.$field = Some(($parse)(text)?);
                Ok(())
            },
        }
    };
}

/// The flags of `treecache node`, in the order of the usage text.
#[rustfmt::skip]
pub const FLAGS: &[Flag] = {
    use DefaultValue::{Described, Required, Value};
    &[
        flag!("--id" "N" "NODE_ID", Required,
            id <- parse_u32,
            "this node's id, 1 to 2^depth - 1"),
        flag!("--id-from-ordinal" "FIRST" "ID_FROM_ORDINAL", Described("none: --id gives the id"),
            first_id <- parse_u32,
            "instead of --id: FIRST plus the ordinal that ends this host's name (StatefulSet pod treecache-4 with 1: NODE-5)"),
        flag!("--depth" "D" "TREE_DEPTH", Value("3"),
            depth <- parse_u32,
            "depth of the tree (1 to 10), root at depth 1"),
        flag!("--root-id" "N" "ROOT_NODE_ID", Value("1"),
            root_id <- parse_u32,
            "id of the root node"),
        flag!("--root-shards" "K" "ROOT_SHARDS", Value("1"),
            root_shards <- parse_shards,
            "root groups the key space is split over (1 to 64), the same on every node"),
        flag!("--shard" "S" "SHARD", Value("0"),
            shard <- parse_u32,
            "with the root's id: the root group (shard) this process belongs to, 0 to K - 1"),
        flag!("--port" "P" "API_PORT", Value("5000"),
            port <- parse_port,
            "port the API listens on, all interfaces"),
        flag!("--listen" "IP:PORT" "LISTEN_ADDRESS", Described("0.0.0.0:{port}"),
            listen <- parse_listen,
            "full bind address; overrides --port"),
        flag!("--advertise" "HOST:PORT" "ADVERTISE_ADDRESS", Described("NODE-{id}:{listen port}"),
            advertise <- parse_host_port,
            "address other nodes use to reach this one"),
        flag!("--zookeeper" "H:P[,H:P]" "ZOOKEEPER", Value("127.0.0.1:2181"),
            zookeeper <- parse_zookeeper,
            "ZooKeeper connect string"),
        flag!("--zk-prefix" "PATH" "ZK_PREFIX", Value("/treecache"),
            zk_prefix <- parse_prefix,
            "base znode of this cluster"),
        flag!("--root" "HOST:PORT" "ROOT_ADDRESS", Described("found in ZooKeeper"),
            root <- parse_host_port,
            "the root's address; skips discovery"),
        flag!("--startup-delay" "TIME" "STARTUP_DELAY", Value("5"),
            startup_delay <- parse_duration,
            "wait of a non-root node before it joins; the root never waits"),
        flag!("--threads" "N" "THREADS", Described("2 per core, 4 to 32"),
            threads <- parse_threads,
            "most HTTP receiver threads (started on demand), 1 to 1024"),
        flag!("--log-level" "LEVEL" "LOG_LEVEL", Value("info"),
            log_level <- parse_level,
            "error, warn, info, debug or trace"),
        flag!("--log-format" "FORMAT" "LOG_FORMAT", Value("text"),
            log_format <- LogFormat::parse,
            "text, or json: one object per line with ts, level, target and msg"),
        flag!("--upstream-timeout" "TIME" "UPSTREAM_TIMEOUT", Value("3"),
            upstream_timeout <- at_least::<10>,
            "time budget of one request across all its hops, at least 10ms"),
        flag!("--hop-timeout" "TIME" "HOP_TIMEOUT", Value("1"),
            hop_timeout <- at_least::<10>,
            "bound on one call to one other node, at least 10ms"),
        flag!("--zk-session-timeout" "TIME" "ZK_SESSION_TIMEOUT", Value("6"),
            zk_session_timeout <- at_least::<500>,
            "ZooKeeper session timeout asked for: how long a dead node holds up writes"),
        flag!("--cache-max-bytes" "SIZE" "CACHE_MAX_BYTES", Value("64MiB"),
            cache_max_bytes <- parse_bytes,
            "byte bound of a cache node's store (LRU)"),
        flag!("--max-store-bytes" "SIZE" "MAX_STORE_BYTES", Described("none"),
            max_store_bytes <- parse_bytes,
            "byte bound of the root's store; a PUT past it gets 507"),
        flag!("--data-dir" "DIR" "DATA_DIR", Described("none: the root keeps its data in memory only"),
            data_dir <- parse_path,
            "the root's data directory (log and snapshots); cache nodes ignore it"),
        flag!("--fsync" "MODE" "FSYNC", Value("always"),
            fsync <- Fsync::parse,
            "when the root's log is synced: always, everysec or no"),
        flag!("--cluster-key-file" "PATH" "CLUSTER_KEY_FILE", Described("none: cluster traffic unauthenticated, with a warning"),
            cluster_key_file <- parse_path,
            "file of the cluster's shared secret (at least 32 bytes): signs node-to-node calls"),
        flag!("--api-tokens-file" "PATH" "API_TOKENS_FILE", Described("none: the data endpoints are open"),
            api_tokens_file <- parse_path,
            "file of client tokens, lines `TOKEN read` or `TOKEN write`; needs a cluster key"),
        flag!("--zk-auth" "USER:PASSWORD" "ZK_AUTH", Described("none: open znodes, with a warning"),
            zk_auth <- parse_zk_auth,
            "ZooKeeper digest identity; the cluster's znodes are then this identity's alone"),
        flag!("--tls-cert" "PATH" "TLS_CERT", Described("none: the API port speaks plain HTTP"),
            tls_cert <- parse_path,
            "this node's certificate chain (PEM): the API port speaks HTTPS; needs --tls-key and --tls-ca"),
        flag!("--tls-key" "PATH" "TLS_KEY", Described("none"),
            tls_key <- parse_path,
            "the private key (PEM) of --tls-cert"),
        flag!("--tls-ca" "PATH" "TLS_CA", Described("none"),
            tls_ca <- parse_path,
            "CA certificates (PEM) that other nodes' certificates must chain to; nodes then call each other over HTTPS"),
        flag!("--idle-timeout" "TIME" "IDLE_TIMEOUT", Value("30"),
            idle_timeout <- at_least::<1000>,
            "an idle keep-alive connection is closed after this long"),
        flag!("--max-connections" "N" "MAX_CONNECTIONS", Value("1024"),
            max_connections <- parse_max_connections,
            "open connections at most; past it a new one gets 503 and is closed"),
        flag!("--docs-assets-url" "URL" "DOCS_ASSETS_URL", Value(DEFAULT_DOCS_ASSETS_URL),
            docs_assets_url <- parse_docs_url,
            "base URL of the swagger-ui assets that /docs loads"),
    ]
};

/// The lines of `treecache --help` that list the node's flags, from [`FLAGS`]:
/// each flag with its meaning, and under it its variable and default.
pub fn flags_usage() -> String {
    let width = FLAGS
        .iter()
        .map(|f| f.flag.len() + 1 + f.value.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for f in FLAGS {
        let flag = format!("{} {}", f.flag, f.value);
        let default = match f.default {
            DefaultValue::Required => "required".to_string(),
            default => format!("default: {}", default.text()),
        };
        out.push_str(&format!("  {flag:width$}  {}\n", f.meaning));
        out.push_str(&format!("  {:width$}  env {}; {default}\n", "", f.env));
    }
    out
}

/// Everything a node needs to know at start.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: u32,
    pub tree: Tree,
    pub root_id: u32,
    /// Root groups (shards) the key space is split over, the same on every node.
    pub root_shards: u32,
    /// The shard of this process's root group (0 for every other node).
    pub shard: u32,
    pub listen: SocketAddr,
    /// `host:port` other nodes use to reach this one.
    pub advertise: String,
    pub zookeeper: String,
    pub zk_prefix: String,
    /// Address of the root when given with `--root`; otherwise found in ZooKeeper.
    pub root: Option<String>,
    pub startup_delay: Duration,
    pub threads: usize,
    pub log_level: log::LevelFilter,
    pub log_format: LogFormat,
    pub upstream_timeout: Duration,
    /// Bound on one call to one other node: a fill, an invalidation, a
    /// flush, a probe of a parent, a replication request.
    pub hop_timeout: Duration,
    /// The ZooKeeper session timeout this node asks for (the server may grant another).
    pub zk_session_timeout: Duration,
    pub cache_max_bytes: u64,
    pub max_store_bytes: Option<u64>,
    /// The root's data directory; `None`: in memory only.
    pub data_dir: Option<PathBuf>,
    pub fsync: Fsync,
    pub docs_assets_url: String,
    /// The file of the cluster's shared secret, with `--cluster-key-file`.
    pub cluster_key_file: Option<PathBuf>,
    /// The file of the client tokens, with `--api-tokens-file` (only with
    /// a cluster key).
    pub api_tokens_file: Option<PathBuf>,
    /// The ZooKeeper digest identity, with `--zk-auth`.
    pub zk_auth: Option<ZkAuth>,
    /// The files of TLS on the API port and in calls to other nodes, with
    /// `--tls-cert`, `--tls-key` and `--tls-ca`: all three or none.
    pub tls_files: Option<TlsFiles>,
    /// How long a keep-alive connection may idle.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// The files of a node (or a local cluster) that speaks TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM) of `cert`.
    pub key: PathBuf,
    /// The CA certificates (PEM) other nodes' certificates must chain to.
    pub ca: PathBuf,
}

/// A ZooKeeper digest identity (`--zk-auth USER:PASSWORD`); its `Debug`
/// hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkAuth {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for ZkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ZkAuth({}:..)", self.user)
    }
}

impl Config {
    pub fn is_root(&self) -> bool {
        self.id == self.root_id
    }

    pub fn name(&self) -> String {
        node_name(self.id)
    }

    /// The host part of the advertised address, as `GET /` reports it.
    pub fn advertised_host(&self) -> &str {
        split_host(&self.advertise)
    }
}

/// `NODE-{id}`.
pub use treecache_common::names::node_name;

/// The host of a `host:port` address (brackets of an IPv6 literal kept).
pub fn split_host(address: &str) -> &str {
    match address.rfind(':') {
        Some(i) if !address[i + 1..].contains(']') => &address[..i],
        _ => address,
    }
}

/// A configuration error: which flag, and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub flag: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.flag, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(flag: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            flag: flag.to_string(),
            message: message.into(),
        }
    }

    /// A value of `flag` refused: the reason, then the text given.
    pub fn refused(flag: &str, reason: &str, given: &str) -> ConfigError {
        ConfigError::new(flag, format!("{reason} (got {given:?})"))
    }
}

fn error(flag: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(flag, message)
}

/// Reads every row of [`FLAGS`]: the flag, else its environment variable,
/// else its [`DefaultValue::Value`] read by the same parser.
fn read_flags(
    args: &mut pico_args::Arguments,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Given, ConfigError> {
    let mut given = Given::default();
    for f in FLAGS {
        let text = match args.opt_value_from_str::<_, String>(f.flag) {
            Ok(Some(v)) => Some(v),
            Ok(None) => env(f.env).filter(|v| !v.is_empty()),
            Err(e) => return Err(error(f.flag, e.to_string())),
        };
        match (text, f.default) {
            (Some(v), _) => {
                (f.read)(v.trim(), &mut given).map_err(|m| ConfigError::refused(f.flag, &m, &v))?
            }
            (None, DefaultValue::Value(text)) => (f.read)(text, &mut given)
                .unwrap_or_else(|m| panic!("the default of {}, {text:?}, is wrong: {m}", f.flag)),
            (None, _) => {}
        }
    }
    Ok(given)
}

fn parse_u32(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| "expected a whole number".to_string())
}

fn parse_shards(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(k) if (1..=crate::shards::MAX_SHARDS).contains(&k) => Ok(k),
        _ => Err("expected a number of shards from 1 to 64".to_string()),
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| "expected a port number".to_string())
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| "expected ip:port, such as 0.0.0.0:5000".to_string())
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err("expected a number of threads from 1 to 1024".to_string()),
    }
}

fn parse_max_connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (16..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected a number from 16 to 1000000".to_string()),
    }
}

/// A duration of at least `MIN_MS` milliseconds.
fn at_least<const MIN_MS: u64>(s: &str) -> Result<Duration, String> {
    let min = Duration::from_millis(MIN_MS);
    parse_duration(s).and_then(|d| {
        if d >= min {
            Ok(d)
        } else {
            Err(format!("must be at least {min:?}"))
        }
    })
}

fn parse_docs_url(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") || s.starts_with('/') {
        Ok(s.trim_end_matches('/').to_string())
    } else {
        Err("expected an http(s) URL or an absolute path".to_string())
    }
}

fn parse_zk_auth(s: &str) -> Result<ZkAuth, String> {
    match s.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(ZkAuth {
            user: user.to_string(),
            password: password.to_string(),
        }),
        _ => Err("expected USER:PASSWORD".to_string()),
    }
}
/// Durations (`5`, `0.5`, `250ms`, `2s`, `1m`) and sizes (`65536`, `64KiB`,
/// `64M`, `1G`, `10MB`): the parsers the CLI uses too.
pub use treecache_common::units::{parse_duration, parse_size as parse_bytes};

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err("expected error, warn, info, debug or trace".to_string()),
    }
}

/// `host:port` with a non-empty host and a numeric port.
pub fn parse_host_port(s: &str) -> Result<String, String> {
    let ok = match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(|c: char| c == '/' || c.is_whitespace())
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok()
        }
        None => false,
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected host:port".to_string())
    }
}

fn parse_zookeeper(s: &str) -> Result<String, String> {
    for part in s.split(',') {
        parse_host_port(part.trim())
            .map_err(|_| "expected host:port[,host:port...]".to_string())?;
    }
    Ok(s.to_string())
}

fn parse_prefix(s: &str) -> Result<String, String> {
    let valid = s.starts_with('/')
        && s.len() > 1
        && !s.ends_with('/')
        && !s.contains("//")
        && s.split('/').skip(1).all(|p| p != "." && p != "..");
    if valid {
        Ok(s.to_string())
    } else {
        Err("expected a znode path such as /treecache".to_string())
    }
}

/// The ordinal at the end of a StatefulSet pod's host name: 4 in
/// `treecache-4` (and in `treecache-4.treecache.default.svc`).
pub fn ordinal_of(host: &str) -> Result<u32, String> {
    let short = host.split('.').next().unwrap_or_default();
    short
        .rsplit_once('-')
        .and_then(|(_, digits)| treecache_common::names::parse_node_id(digits))
        .ok_or_else(|| {
            format!("the host name {host:?} does not end in -ORDINAL, as a StatefulSet pod's does")
        })
}

/// The thread count used when `--threads` is not given.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).clamp(4, 32)
}

/// A flag that must be given: [`read_flags`] sets every flag with a default.
fn set<T>(value: Option<T>) -> T {
    value.expect("a flag with a default in FLAGS is always set")
}

impl Config {
    /// Builds the configuration of `treecache node` from its arguments and
    /// environment (`HOSTNAME` included, for `--id-from-ordinal`).
    pub fn parse(
        mut args: pico_args::Arguments,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut g = read_flags(&mut args, env)?;
        let config = Config::check(&mut g, env)?;
        if let Some(extra) = args.finish().first() {
            let extra = extra.to_string_lossy();
            return Err(error(&extra, "is not a flag of treecache node"));
        }
        Ok(config)
    }

    /// The flags read, checked against each other, with the defaults that
    /// depend on other flags worked out.
    fn check(g: &mut Given, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let depth = set(g.depth);
        if !(1..=Tree::MAX_DEPTH).contains(&depth) {
            return Err(error(
                "--depth",
                format!("must be between 1 and {} (got {depth})", Tree::MAX_DEPTH),
            ));
        }
        let tree = Tree::new(depth);
        let id = node_id(g, tree, env)?;
        let root_id = in_tree(tree, "--root-id", set(g.root_id))?;
        let (root_shards, shard) = shards(g, id == root_id)?;
        let listen = g
            .listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], set(g.port))));
        let advertise = g
            .advertise
            .take()
            .unwrap_or_else(|| format!("{}:{}", node_name(id), listen.port()));
        if g.api_tokens_file.is_some() && g.cluster_key_file.is_none() {
            return Err(error(
                "--api-tokens-file",
                "needs --cluster-key-file too: without a key, node-to-node calls (and so \
                 forwarded writes) cannot be told from a client's",
            ));
        }
        Ok(Config {
            id,
            tree,
            root_id,
            root_shards,
            shard,
            listen,
            advertise,
            zookeeper: set(g.zookeeper.take()),
            zk_prefix: set(g.zk_prefix.take()),
            root: g.root.take(),
            startup_delay: set(g.startup_delay),
            threads: g.threads.unwrap_or_else(default_threads),
            log_level: set(g.log_level),
            log_format: set(g.log_format),
            upstream_timeout: set(g.upstream_timeout),
            hop_timeout: set(g.hop_timeout),
            zk_session_timeout: set(g.zk_session_timeout),
            cache_max_bytes: set(g.cache_max_bytes),
            max_store_bytes: g.max_store_bytes,
            data_dir: g.data_dir.take(),
            fsync: set(g.fsync),
            docs_assets_url: set(g.docs_assets_url.take()),
            cluster_key_file: g.cluster_key_file.take(),
            api_tokens_file: g.api_tokens_file.take(),
            zk_auth: g.zk_auth.take(),
            tls_files: tls_files(g)?,
            idle_timeout: set(g.idle_timeout),
            max_connections: set(g.max_connections),
        })
    }
}

/// `--root-shards` and `--shard`: a shard below the count, and other than 0
/// only on a process of a root group (`root`).
fn shards(g: &Given, root: bool) -> Result<(u32, u32), ConfigError> {
    let (root_shards, shard) = (set(g.root_shards), set(g.shard));
    if shard >= root_shards {
        return Err(error(
            "--shard",
            format!("must be below --root-shards ({root_shards}) (got {shard})"),
        ));
    }
    if shard != 0 && !root {
        return Err(error(
            "--shard",
            "is taken by the root group's processes only (started with the root's id)",
        ));
    }
    Ok((root_shards, shard))
}

/// `id` when the tree has it, else an error naming `flag`.
fn in_tree(tree: Tree, flag: &str, id: u32) -> Result<u32, ConfigError> {
    if tree.contains_id(id) {
        return Ok(id);
    }
    Err(error(
        flag,
        format!(
            "must be between 1 and {} for a tree of depth {} (got {id})",
            tree.capacity(),
            tree.depth()
        ),
    ))
}

/// This node's id: `--id`, or `--id-from-ordinal` plus the ordinal that
/// ends the host name (`HOSTNAME`).
fn node_id(
    g: &Given,
    tree: Tree,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<u32, ConfigError> {
    match (g.id, g.first_id) {
        (Some(_), Some(_)) => Err(error(
            "--id-from-ordinal",
            "give either --id (NODE_ID) or --id-from-ordinal (ID_FROM_ORDINAL), not both",
        )),
        (Some(id), None) => in_tree(tree, "--id", id),
        (None, Some(first)) => {
            let host = env("HOSTNAME").unwrap_or_default();
            let id = ordinal_of(&host)
                .and_then(|ordinal| {
                    first
                        .checked_add(ordinal)
                        .ok_or_else(|| "the id is past 2^32".to_string())
                })
                .map_err(|m| error("--id-from-ordinal", m))?;
            in_tree(tree, "--id-from-ordinal", id)
        }
        (None, None) => Err(error(
            "--id",
            "is required (or set NODE_ID, or give --id-from-ordinal)",
        )),
    }
}

/// `--tls-cert`, `--tls-key` and `--tls-ca`: all three or none.
fn tls_files(g: &mut Given) -> Result<Option<TlsFiles>, ConfigError> {
    match (g.tls_cert.take(), g.tls_key.take(), g.tls_ca.take()) {
        (None, None, None) => Ok(None),
        (Some(_), None, _) => Err(error(
            "--tls-key",
            "is required with --tls-cert (give both or neither)",
        )),
        (None, Some(_), _) => Err(error(
            "--tls-cert",
            "is required with --tls-key (give both or neither)",
        )),
        (None, None, Some(_)) => Err(error(
            "--tls-ca",
            "needs --tls-cert and --tls-key: the whole cluster speaks HTTPS, or none of it",
        )),
        (Some(_), Some(_), None) => Err(error(
            "--tls-ca",
            "is required with --tls-cert: nodes call each other over HTTPS and check \
             each other's certificates against this CA",
        )),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args = pico_args::Arguments::from_vec(args.iter().map(Into::into).collect());
        Config::parse(args, &|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = parse(&["--id", "4"], &[]).unwrap();
        assert_eq!(c.tree.depth(), 3);
        assert_eq!(c.root_id, 1);
        assert_eq!(c.listen, "0.0.0.0:5000".parse().unwrap());
        assert_eq!(c.advertise, "NODE-4:5000");
        assert_eq!(c.zookeeper, "127.0.0.1:2181");
        assert_eq!(c.zk_prefix, "/treecache");
        assert_eq!(c.startup_delay, Duration::from_secs(5));
        assert_eq!(c.cache_max_bytes, 64 << 20);
        assert_eq!(c.max_store_bytes, None);
        assert!(!c.is_root());
    }

    #[test]
    fn environment_is_used_and_a_flag_wins() {
        let env = [("NODE_ID", "2"), ("API_PORT", "6000"), ("TREE_DEPTH", "4")];
        let c = parse(&[], &env).unwrap();
        assert_eq!((c.id, c.listen.port(), c.tree.depth()), (2, 6000, 4));
        let c = parse(&["--port", "6100", "--id", "3"], &env).unwrap();
        assert_eq!((c.id, c.listen.port()), (3, 6100));
        assert_eq!(c.advertise, "NODE-3:6100");
    }

    #[test]
    fn a_flag_may_take_its_value_after_an_equals_sign() {
        let c = parse(
            &[
                "--id=4",
                "--port=6000",
                "--zookeeper=a:1,b:2",
                "--root-id",
                "2",
                "--root=h:7000",
            ],
            &[],
        )
        .unwrap();
        assert_eq!((c.id, c.listen.port(), c.root_id), (4, 6000, 2));
        assert_eq!(c.zookeeper, "a:1,b:2");
        assert_eq!(c.root.as_deref(), Some("h:7000"));
        assert_eq!(parse(&["--id=x"], &[]).unwrap_err().flag, "--id");
        assert_eq!(parse(&["--id="], &[]).unwrap_err().flag, "--id");
    }

    #[test]
    fn the_id_may_come_from_a_stateful_set_ordinal() {
        let host = |name: &'static str| [("HOSTNAME", name)];
        let c = parse(&["--id-from-ordinal", "1"], &host("treecache-4")).unwrap();
        assert_eq!((c.id, c.name()), (5, "NODE-5".to_string()));
        assert_eq!(c.advertise, "NODE-5:5000");
        let c = parse(&["--id-from-ordinal=2"], &host("treecache-0")).unwrap();
        assert_eq!(c.id, 2);
        let env = [
            ("ID_FROM_ORDINAL", "2"),
            ("HOSTNAME", "cache-5.treecache.ns.svc"),
        ];
        assert_eq!(parse(&[], &env).unwrap().id, 7);
        assert_eq!(ordinal_of("my-app-12"), Ok(12));
        for refused in [
            &["--id-from-ordinal", "1"][..],
            &["--id-from-ordinal", "1", "--id", "2"],
        ] {
            let host = if refused.len() == 2 {
                "treecache"
            } else {
                "t-1"
            };
            let e = parse(refused, &[("HOSTNAME", host)]).unwrap_err();
            assert_eq!(e.flag, "--id-from-ordinal", "{e}");
        }
        for host in [
            "treecache",
            "treecache-",
            "treecache-01",
            "treecache-x",
            "4",
        ] {
            assert!(ordinal_of(host).is_err(), "{host}");
        }
        // Ordinal 7 with FIRST 1 is NODE-8: outside a depth-3 tree.
        let e = parse(&["--id-from-ordinal", "1"], &host("treecache-7")).unwrap_err();
        assert!(e.message.contains("between 1 and 7"), "{e}");
        let e = parse(&["--id-from-ordinal", "1", "--id", "1"], &[]).unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        assert_eq!(
            parse(&["--id", "1"], &[]).unwrap().log_format,
            LogFormat::Text
        );
        let c = parse(&["--id=1", "--log-format=json"], &[]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let c = parse(&["--id", "1"], &[("LOG_FORMAT", "json")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let e = parse(&["--id", "1", "--log-format", "xml"], &[]).unwrap_err();
        assert_eq!(e.flag, "--log-format");
    }

    #[test]
    fn every_value_flag_takes_its_value_after_an_equals_sign_too() {
        let spaced = parse(
            &[
                "--id",
                "3",
                "--depth",
                "4",
                "--startup-delay",
                "250ms",
                "--cache-max-bytes",
                "10MB",
                "--max-store-bytes",
                "1GiB",
                "--zk-session-timeout",
                "2s",
                "--hop-timeout",
                "1500ms",
                "--upstream-timeout",
                "1m",
                "--threads",
                "2",
                "--log-level",
                "debug",
                "--log-format",
                "json",
                "--fsync",
                "no",
            ],
            &[],
        )
        .unwrap();
        let joined = parse(
            &[
                "--id=3",
                "--depth=4",
                "--startup-delay=250ms",
                "--cache-max-bytes=10MB",
                "--max-store-bytes=1GiB",
                "--zk-session-timeout=2s",
                "--hop-timeout=1500ms",
                "--upstream-timeout=1m",
                "--threads=2",
                "--log-level=debug",
                "--log-format=json",
                "--fsync=no",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(format!("{spaced:?}"), format!("{joined:?}"));
        assert_eq!(joined.startup_delay, Duration::from_millis(250));
        assert_eq!(joined.cache_max_bytes, 10_000_000);
        assert_eq!(joined.max_store_bytes, Some(1 << 30));
        assert_eq!(joined.hop_timeout, Duration::from_millis(1500));
        assert_eq!(joined.upstream_timeout, Duration::from_secs(60));
    }

    #[test]
    fn every_size_unit_and_duration_unit_reaches_the_config() {
        let sizes = [
            ("65536", 65536),
            ("64K", 64 << 10),
            ("64KiB", 64 << 10),
            ("64KB", 64_000),
            ("8M", 8 << 20),
            ("8MiB", 8 << 20),
            ("8MB", 8_000_000),
            ("2G", 2 << 30),
            ("2GiB", 2 << 30),
            ("2GB", 2_000_000_000),
        ];
        for (text, bytes) in sizes {
            let flag = format!("--cache-max-bytes={text}");
            assert_eq!(
                parse(&["--id=2", &flag], &[]).unwrap().cache_max_bytes,
                bytes
            );
            let env = [("MAX_STORE_BYTES", text)];
            assert_eq!(
                parse(&["--id=1"], &env).unwrap().max_store_bytes,
                Some(bytes)
            );
        }
        let durations = [
            ("5", Duration::from_secs(5)),
            ("0.5", Duration::from_millis(500)),
            ("750ms", Duration::from_millis(750)),
            ("3s", Duration::from_secs(3)),
            ("2m", Duration::from_secs(120)),
        ];
        for (text, d) in durations {
            let flag = format!("--startup-delay={text}");
            assert_eq!(parse(&["--id=2", &flag], &[]).unwrap().startup_delay, d);
            let env = [("ZK_SESSION_TIMEOUT", text)];
            assert_eq!(parse(&["--id=2"], &env).unwrap().zk_session_timeout, d);
        }
    }

    #[test]
    fn listen_overrides_port() {
        let c = parse(
            &["--id", "1", "--port", "1", "--listen", "127.0.0.1:7001"],
            &[],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:7001".parse().unwrap());
        assert!(c.is_root());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--id"),
            (&["--id", "8"], "--id"),
            (&["--id", "0"], "--id"),
            (&["--id", "x"], "--id"),
            (&["--id", "1", "--depth", "11"], "--depth"),
            (&["--id", "1", "--depth", "0"], "--depth"),
            (&["--id", "1", "--root-id", "9"], "--root-id"),
            (&["--id", "1", "--listen", "nowhere"], "--listen"),
            (&["--id", "1", "--advertise", "host"], "--advertise"),
            (&["--id", "1", "--advertise", "a b:1"], "--advertise"),
            (&["--id", "1", "--advertise", "host:+1"], "--advertise"),
            (&["--id", "1", "--zookeeper", "a:1,b"], "--zookeeper"),
            (&["--id", "1", "--zk-prefix", "x"], "--zk-prefix"),
            (&["--id", "1", "--startup-delay", "-1"], "--startup-delay"),
            (&["--id", "1", "--log-level", "loud"], "--log-level"),
            (&["--id", "1", "--threads", "0"], "--threads"),
            (
                &["--id", "1", "--cache-max-bytes", "lots"],
                "--cache-max-bytes",
            ),
            (&["--id", "1", "--bogus"], "--bogus"),
        ];
        for (args, flag) in cases {
            let e = parse(args, &[]).unwrap_err();
            assert_eq!(e.flag, *flag, "{args:?} gave {e}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert!(parse_bytes("MiB").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes_and_durations_take_every_unit_of_the_shared_parsers() {
        let c = parse(
            &[
                "--id",
                "2",
                "--cache-max-bytes",
                "1G",
                "--startup-delay",
                "1m",
            ],
            &[("MAX_STORE_BYTES", "2GB"), ("UPSTREAM_TIMEOUT", "1500ms")],
        )
        .unwrap();
        assert_eq!(c.cache_max_bytes, 1 << 30);
        assert_eq!(c.max_store_bytes, Some(2_000_000_000));
        assert_eq!(c.startup_delay, Duration::from_secs(60));
        assert_eq!(c.upstream_timeout, Duration::from_millis(1500));
        let c = parse(&["--id", "2", "--cache-max-bytes", "2GiB"], &[]).unwrap();
        assert_eq!(c.cache_max_bytes, 2 << 30);
    }

    #[test]
    fn the_flag_table_has_one_row_per_flag_and_variable() {
        let flags: BTreeSet<&str> = FLAGS.iter().map(|f| f.flag).collect();
        let vars: BTreeSet<&str> = FLAGS.iter().map(|f| f.env).collect();
        assert_eq!((flags.len(), vars.len()), (FLAGS.len(), FLAGS.len()));
        for f in FLAGS {
            assert!(f.flag.starts_with("--"), "{f:?}");
            assert!(
                f.env.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{f:?}"
            );
            assert!(!f.value.is_empty() && !f.meaning.is_empty(), "{f:?}");
        }
    }

    /// The flags whose value is a path.
    const PATHS: [&str; 6] = [
        "--data-dir",
        "--cluster-key-file",
        "--api-tokens-file",
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
    ];

    #[test]
    fn every_flag_of_the_table_and_its_variable_are_read() {
        for f in FLAGS {
            let id: &[&str] = if f.flag == "--id" {
                &[]
            } else {
                &["--id", "1"]
            };
            let mut args = id.to_vec();
            args.extend([f.flag, "%%"]);
            if PATHS.contains(&f.flag) {
                // Any text is a path: read, not refused (the wiring reads
                // the file). The other paths are given too, as TLS and the
                // tokens need their companions.
                let others: Vec<&str> = PATHS
                    .iter()
                    .filter(|&&p| p != f.flag)
                    .flat_map(|&p| [p, "x"])
                    .collect();
                let with_flag = [&args[..], &others].concat();
                let with_env = [id, &others].concat();
                for c in [parse(&with_flag, &[]), parse(&with_env, &[(f.env, "%%")])] {
                    assert!(format!("{:?}", c.unwrap()).contains("\"%%\""), "{f:?}");
                }
                continue;
            }
            assert_eq!(parse(&args, &[]).unwrap_err().flag, f.flag, "{f:?}");
            let error = parse(id, &[(f.env, "%%")]).unwrap_err();
            assert_eq!(error.flag, f.flag, "{f:?}");
        }
    }

    #[test]
    fn the_usage_text_shows_every_flag_with_its_variable_and_default() {
        let usage = flags_usage();
        for f in FLAGS {
            let line = usage
                .lines()
                .position(|l| {
                    l.trim_start()
                        .starts_with(&format!("{} {} ", f.flag, f.value))
                })
                .unwrap_or_else(|| panic!("{} is not in\n{usage}", f.flag));
            let under = usage.lines().nth(line + 1).unwrap();
            assert!(under.contains(&format!("env {};", f.env)), "{under}");
            assert!(under.ends_with(f.default.text()), "{under}");
            assert!(usage.lines().nth(line).unwrap().ends_with(f.meaning));
        }
        assert!(usage.contains("env THREADS; default: 2 per core, 4 to 32"));
        assert!(usage.contains("env NODE_ID; required"));
    }

    /// The (flag, variable) rows of README.md's configuration table: the
    /// markdown table whose header is `flag | env | default | meaning`.
    fn readme_flags() -> Vec<(String, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let cells = |line: &str| -> Vec<String> {
            let line = line.trim();
            let line = line.strip_prefix('|').unwrap_or(line);
            let line = line.strip_suffix('|').unwrap_or(line);
            line.split('|')
                .map(|cell| cell.trim().trim_matches('`').trim().to_string())
                .collect()
        };
        let mut tables = 0;
        let mut rows = Vec::new();
        let mut lines = readme.lines();
        while let Some(line) = lines.next() {
            let header: Vec<String> = cells(line).iter().map(|c| c.to_lowercase()).collect();
            if header != ["flag", "env", "default", "meaning"] {
                continue;
            }
            tables += 1;
            lines.next(); // |---|---|...
            for row in lines.by_ref() {
                if !row.trim_start().starts_with('|') {
                    break;
                }
                let row = cells(row);
                rows.push((row[0].clone(), row[1].clone()));
            }
        }
        assert_eq!(tables, 1, "README.md should have one configuration table");
        rows
    }

    #[test]
    fn the_readme_configuration_table_lists_the_same_flags_and_variables() {
        let mut documented = readme_flags();
        documented.sort();
        let mut ours: Vec<(String, String)> = FLAGS
            .iter()
            .map(|f| (f.flag.to_string(), f.env.to_string()))
            .collect();
        ours.sort();
        assert_eq!(documented, ours, "README.md's table against config::FLAGS");
    }

    #[test]
    fn host_of_an_address() {
        assert_eq!(split_host("10.0.1.67:5000"), "10.0.1.67");
        assert_eq!(split_host("NODE-1:5000"), "NODE-1");
        assert_eq!(split_host("[::1]:5000"), "[::1]");
    }
}
