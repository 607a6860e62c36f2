//! The `treecache` binary: wiring only.

use std::sync::Arc;

use treecache::cluster::{self, ClusterArgs};
use treecache::config::Config;
use treecache::node::Node;
use treecache::registry::{self, Registry};
use treecache::upstream::Upstream;
use treecache::{server, startup};

/// `treecache --help`: the node's flags come from `config::FLAGS`.
fn usage() -> String {
    format!(
        "\
treecache: a distributed key-value cache whose nodes form a binary tree

Usage:
  treecache node [FLAGS]      run one node (every flag also has an environment variable)
  treecache cluster [FLAGS]   run a whole local cluster with its own ZooKeeper
  treecache --version

Node flags (--flag VALUE or --flag=VALUE; each has an environment variable, and the flag wins):
{}

  TIME is seconds (5, 0.5) or a number with a unit: 250ms, 2s, 1m.
  SIZE is bytes (65536) or a number with a unit: K or KiB, M or MiB, G or GiB
  (powers of 1024); KB, MB, GB (powers of 1000).

Cluster flags:
  --depth D (3)  --root-id N (1)  --base-port P (5000: NODE-i on 127.0.0.1:P+i)
  --zookeeper H:P (127.0.0.1:2181; started from the local installation when none answers)
  --log-level LEVEL (info)
",
        treecache::config::flags_usage().trim_end()
    )
}

fn main() {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{}", usage());
        return;
    }
    if args.contains(["-V", "--version"]) {
        println!("treecache {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    match args.subcommand() {
        Ok(Some(cmd)) if cmd == "node" => run_node(args),
        Ok(Some(cmd)) if cmd == "cluster" => match ClusterArgs::parse(args) {
            Ok(a) => std::process::exit(cluster::run(a)),
            Err(e) => {
                eprintln!("treecache cluster: {e}");
                std::process::exit(2);
            }
        },
        Ok(Some(cmd)) => {
            eprintln!("treecache: unknown command {cmd:?}; try `treecache --help`");
            std::process::exit(2);
        }
        _ => {
            eprint!("{}", usage());
            std::process::exit(2);
        }
    }
}

/// The node's logger: simple_logger for our records; the ZooKeeper client's
/// records (an error per reconnect attempt, thousands a second while
/// ZooKeeper is down) go to the registry, which logs state changes itself.
struct NodeLogger {
    inner: simple_logger::SimpleLogger,
}

impl log::Log for NodeLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        registry::is_client_log(metadata.target()) || self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if registry::is_client_log(record.target()) {
            registry::pace_client_log(record);
        } else {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn init_logging(level: log::LevelFilter) {
    let inner = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_module_level("ureq", log::LevelFilter::Warn);
    log::set_boxed_logger(Box::new(NodeLogger { inner })).expect("the logger is set once");
    // The client's records down to info must reach NodeLogger even at a
    // quieter level: its reconnect loop is paced there.
    log::set_max_level(level.max(log::LevelFilter::Info));
}

fn run_node(args: pico_args::Arguments) {
    treecache::process::limit_malloc_arenas();
    treecache::process::raise_open_files_limit();
    let config = match Config::parse(args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("treecache node: {e}");
            std::process::exit(2);
        }
    };
    init_logging(config.log_level);

    let http = match std::net::TcpListener::bind(config.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("treecache node: cannot listen on {}: {e}", config.listen);
            std::process::exit(1);
        }
    };
    treecache::process::exit_on_stop_signals();
    let registry = Registry::start(&config.zookeeper);
    let locate_root: treecache::upstream::RootLocator = match &config.root {
        Some(address) => {
            let address = address.clone();
            Box::new(move || Some(address.clone()))
        }
        None => {
            let (registry, prefix, root_id) =
                (registry.clone(), config.zk_prefix.clone(), config.root_id);
            Box::new(move || startup::find_root(&registry, &prefix, root_id))
        }
    };
    let root_address = if config.is_root() {
        Some(config.advertise.clone())
    } else {
        config.root.clone()
    };
    let upstream = Upstream::new(
        treecache::config::node_name(config.root_id),
        root_address,
        config
            .upstream_timeout
            .min(std::time::Duration::from_secs(2)),
        locate_root,
    );
    log::info!(
        "{} listening on {} (advertised as {}), {} of a depth-{} tree, ZooKeeper {}",
        config.name(),
        config.listen,
        config.advertise,
        if config.is_root() { "root" } else { "cache" },
        config.tree.depth(),
        config.zookeeper
    );
    let threads = config.threads;
    let node = Arc::new(Node::new(config, upstream, registry));
    startup::start(node.clone());
    if let Err(e) = server::serve(node, http, threads) {
        log::error!("the server stopped: {e}");
        std::process::exit(1);
    }
}
