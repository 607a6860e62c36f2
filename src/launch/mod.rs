//! `treecache node`: from flags to a serving node. This is the wiring: it
//! builds each part and hands it to the next, and decides nothing else.
//! `files` reads what the flags point at (keys, tokens, certificates, the
//! host name); `config` only parses.

mod files;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::auth::Guard;
use crate::config::Config;
use crate::http::client::HttpClient;
use crate::metrics::Metrics;
use crate::node::{Links, MapLoader, Node, RootLocator, ShardLocator};
use crate::registry::layout;
use crate::registry::Registry;
use files::Credentials;

/// How long a stopping node waits for the writes under way: with the sync
/// after it, a node exits within 5 s of SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(4);

/// Runs one node until the process ends; exits 2 on bad flags, 1 when it
/// cannot listen.
pub fn node(args: pico_args::Arguments) {
    crate::process::limit_malloc_arenas();
    crate::process::raise_open_files_limit();
    let (config, credentials) = match configure(args) {
        Ok(configured) => configured,
        Err(e) => {
            eprintln!("treecache node: {e}");
            std::process::exit(2);
        }
    };
    crate::logging::init(config.log_level, config.log_format);

    let listener = match std::net::TcpListener::bind(config.listen) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.listen);
            std::process::exit(1);
        }
    };
    // A signal during recovery exits at once; once the node serves, it
    // first finishes the writes under way and syncs the log.
    let serving: Arc<OnceLock<(Arc<Node>, Registry)>> = Arc::default();
    let stopping = serving.clone();
    let upkeep = crate::process::on_stop_signals(move || {
        if let Some((node, registry)) = stopping.get() {
            node.stop(STOP_WAIT);
            // Its znodes go now: a standby of the root takes over at once,
            // and no parent waits a session timeout for this node.
            registry.close(Duration::from_millis(500));
        }
    });
    let registry = Registry::start_with_auth(
        &config.zookeeper,
        config.zk_session_timeout,
        &config.zk_prefix,
        config.zk_auth.clone(),
    );
    let metrics = metrics(&config, &registry);
    let client = client(&config, &credentials, &registry, &metrics);
    let guard = guard(&config, &credentials, &registry);
    warn_of_open_doors(&config, &credentials);
    announce(&config, &credentials);
    let threads = config.threads;
    let links = Links {
        up: client.clone(),
        down: client,
        sessions: Arc::new(registry.clone()),
        locate_root: root_locator(&config, &registry),
        locate_shard: shard_locator(&config, &registry),
        slot_map: map_loader(&config, &registry),
    };
    let node = match Node::new(config, links, metrics) {
        Ok(node) => node,
        Err(e) => {
            log::error!("cannot start: {e}");
            std::process::exit(e.exit_status());
        }
    };
    let _ = serving.set((node.clone(), registry.clone()));
    // Each new ZooKeeper session: the node drops what its old one may have
    // left stale. The session already there, if any, is the first.
    let on_session = node.clone();
    registry.on_new_session(move |generation| on_session.session_changed(generation));
    node.session_changed(crate::node::Sessions::lease(&registry).generation);
    crate::startup::start(node.clone(), registry, &upkeep);
    let tls = credentials.tls.map(|t| t.server);
    if let Err(e) = crate::http::server::serve(node, guard, listener, threads, tls) {
        log::error!("the server stopped: {e}");
        std::process::exit(1);
    }
}

/// The flags parsed, and the files they name read.
fn configure(
    args: pico_args::Arguments,
) -> Result<(Config, Credentials), crate::config::ConfigError> {
    let config = Config::parse(args, &files::environment)?;
    let credentials = files::load(&config)?;
    Ok((config, credentials))
}

/// Where the root is: `--root`, else followed in ZooKeeper (on a process
/// of a root group, where its own group's primary is).
fn root_locator(config: &Config, registry: &Registry) -> RootLocator {
    match &config.root {
        Some(address) => {
            let address = address.clone();
            Box::new(move || Some(address.clone()))
        }
        None => {
            let prefix = layout::group(&config.zk_prefix, config.shard);
            let (registry, root_id) = (registry.clone(), config.root_id);
            Box::new(move || registry.follow_root(&prefix, root_id))
        }
    }
}

/// Where each root shard's primary is, read from ZooKeeper when asked
/// (shard 0's: `--root`, when given). The node keeps the address and asks
/// again only when a call fails, so the shards' znodes are not read with
/// every heartbeat of every node, as the root's is (`follow_root`).
fn shard_locator(config: &Config, registry: &Registry) -> ShardLocator {
    let (registry, prefix, root_id) = (registry.clone(), config.zk_prefix.clone(), config.root_id);
    let root = config.root.clone();
    Box::new(move |shard| match (shard, &root) {
        (0, Some(address)) => Some(address.clone()),
        _ => registry.find_root(&layout::group(&prefix, shard), root_id),
    })
}

/// The cluster's slot map, read again from ZooKeeper.
fn map_loader(config: &Config, registry: &Registry) -> MapLoader {
    let (registry, prefix) = (registry.clone(), config.zk_prefix.clone());
    Box::new(move || registry.slot_map(&prefix).ok().flatten())
}

/// The node's counters, with its byte bound and a probe of ZooKeeper.
fn metrics(config: &Config, registry: &Registry) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::default());
    metrics.set_cache_max_bytes(if config.is_root() {
        config.max_store_bytes.unwrap_or(0)
    } else {
        config.cache_max_bytes
    });
    let connected = registry.clone();
    metrics.set_zookeeper_probe(move || connected.is_connected());
    metrics
}

/// The client of calls to other nodes: signed with the cluster key, over
/// TLS when the cluster speaks it, naming this node's session.
fn client(
    config: &Config,
    credentials: &Credentials,
    registry: &Registry,
    metrics: &Arc<Metrics>,
) -> Arc<HttpClient> {
    let session_of = registry.clone();
    Arc::new(
        HttpClient::new(
            config.hop_timeout.min(config.upstream_timeout),
            config.hop_timeout,
            metrics.clone(),
            credentials.tls.as_ref().map(|t| t.client.clone()),
        )
        .with_key(credentials.cluster_key.clone())
        .with_session(Box::new(move || session_of.session().map(|s| s.id))),
    )
}

/// Who may do what at this node's API port.
fn guard(config: &Config, credentials: &Credentials, registry: &Registry) -> Arc<Guard> {
    Arc::new(Guard::new(
        credentials.cluster_key.clone(),
        crate::auth::Addresses::new(&config.advertise, config.listen),
        credentials.api_tokens.clone(),
        liveness_owner(registry.clone(), config.zk_prefix.clone()),
    ))
}

/// The first line of a node's log: who it is and where.
fn announce(config: &Config, credentials: &Credentials) {
    log::info!(
        "{} listening on {} ({}, advertised as {}), {} of a depth-{} tree, ZooKeeper {}",
        config.name(),
        config.listen,
        if credentials.tls.is_some() {
            "HTTPS"
        } else {
            "HTTP"
        },
        config.advertise,
        if config.is_root() { "root" } else { "cache" },
        config.tree.depth(),
        config.zookeeper
    );
}

/// Who holds a node's liveness znode, read from ZooKeeper (for the root's
/// check that one node id is one process).
fn liveness_owner(
    registry: Registry,
    prefix: String,
) -> Box<crate::auth::one_process::LivenessOwner> {
    Box::new(move |name: &str| {
        let path = crate::registry::layout::live_named(&prefix, name);
        registry
            .call(move |zk| zk.exists(&path, false))
            .map(|stat| stat.map(|s| s.ephemeral_owner).filter(|&owner| owner != 0))
            .map_err(|e| e.to_string())
    })
}

/// Says once, at start, what is left open by the flags given.
fn warn_of_open_doors(config: &Config, credentials: &Credentials) {
    match &credentials.cluster_key {
        None => log::warn!(
            "no --cluster-key-file: cluster traffic is unauthenticated, and anyone who reaches \
             this port can invalidate, flush, join and fill"
        ),
        Some(key) => {
            if let Some(warning) = key.file_warning() {
                log::warn!("{warning}");
            }
        }
    }
    if config.zk_auth.is_none() {
        log::warn!("no --zk-auth: the cluster's znodes are open to every ZooKeeper client");
    }
}
