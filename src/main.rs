//! The `treecache` binary: wiring only.

use treecache::cluster::{self, ClusterArgs};

const USAGE: &str = "\
treecache: a distributed key-value cache whose nodes form a binary tree

Usage:
  treecache node [FLAGS]      run one node (every flag also has an environment variable)
  treecache cluster [FLAGS]   run a whole local cluster with its own ZooKeeper
  treecache --version

Node flags (environment variable, default):
  --id N                  NODE_ID (required)       this node's id, 1..2^depth-1
  --depth D               TREE_DEPTH (3)           depth of the tree, root at depth 1
  --root-id N             ROOT_NODE_ID (1)         id of the root node
  --port P                API_PORT (5000)          port the API listens on, all interfaces
  --listen IP:PORT        LISTEN_ADDRESS           full bind address; overrides --port
  --advertise HOST:PORT   ADVERTISE_ADDRESS        address other nodes use (NODE-{id}:{port})
  --zookeeper H:P[,H:P]   ZOOKEEPER (127.0.0.1:2181)
  --zk-prefix PATH        ZK_PREFIX (/treecache)   base znode of this cluster
  --root HOST:PORT        ROOT_ADDRESS             root's address; skips discovery
  --startup-delay SECS    STARTUP_DELAY (5)        wait before joining; the root never waits
  --threads N             THREADS (2 x cores)      HTTP receiver threads
  --log-level LEVEL       LOG_LEVEL (info)         error, warn, info, debug, trace
  --upstream-timeout SECS UPSTREAM_TIMEOUT (3)     time budget of one request across hops
  --cache-max-bytes SIZE  CACHE_MAX_BYTES (64MiB)  byte bound of a cache node (LRU)
  --max-store-bytes SIZE  MAX_STORE_BYTES (none)   byte bound of the root's store (507 when full)
  --docs-assets-url URL   DOCS_ASSETS_URL          base URL of the swagger-ui assets for /docs

Cluster flags:
  --depth D (3)  --root-id N (1)  --base-port P (5000: NODE-i on 127.0.0.1:P+i)
  --zookeeper H:P (127.0.0.1:2181; started from the local installation when none answers)
  --log-level LEVEL (info)
";

fn main() {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{USAGE}");
        return;
    }
    if args.contains(["-V", "--version"]) {
        println!("treecache {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    match args.subcommand() {
        Ok(Some(cmd)) if cmd == "node" => treecache::launch::node(args),
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
            eprint!("{USAGE}");
            std::process::exit(2);
        }
    }
}
