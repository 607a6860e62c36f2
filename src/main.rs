//! The `treecache` binary: wiring only, and `treecache cluster` (`cluster/`).

mod cluster;

use cluster::ClusterArgs;

/// `treecache --help`: the node's flags come from `config::FLAGS`.
fn usage() -> String {
    format!(
        "\
treecache: a distributed key-value cache whose nodes form a binary tree

Usage:
  treecache node [FLAGS]      run one node (every flag also has an environment variable)
  treecache cluster [FLAGS]   run a whole local cluster with its own ZooKeeper
  treecache keygen PATH       write a new random cluster key to PATH (kept if PATH exists)
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
  --data-dir DIR (the root's data; by default a temporary directory removed at exit)
  --threads N (every node's --threads; by default the node's own, and 2 for the cache
    nodes from depth 5 on)
  --standbys S (1: standbys of each root group; the root's standby k on 127.0.0.1:P+N+k)
  --root-shards K (1 to 64, default 1: root groups the keys are split over, given to every
    node; shard s >= 1 is a first member and S standbys with the root's id and --shard s,
    member m (0 first) on 127.0.0.1:P+N+S+(s-1)*(S+1)+m+1, its data beside the root's)
  --tls-cert PATH --tls-key PATH --tls-ca PATH (every node's; all three or none: the
    nodes then speak HTTPS, and the certificate must name 127.0.0.1)
  The nodes take slots in id order: NODE-2 slot 1, NODE-3 slot 2, ...
",
        treecache::flags_usage().trim_end()
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
        Ok(Some(cmd)) if cmd == "node" => treecache::launch::node(args),
        Ok(Some(cmd)) if cmd == "cluster" => match ClusterArgs::parse(args) {
            Ok(a) => std::process::exit(cluster::run(a)),
            Err(e) => {
                eprintln!("treecache cluster: {e}");
                std::process::exit(2);
            }
        },
        Ok(Some(cmd)) if cmd == "keygen" => std::process::exit(keygen(args)),
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

/// `treecache keygen PATH`: a new random cluster key at PATH, unless a file
/// is there already (then it is kept: a container setup runs this on every
/// start). Exit 0 either way, 2 for bad arguments, 1 when it cannot write.
fn keygen(args: pico_args::Arguments) -> i32 {
    let paths = args.finish();
    let [path] = paths.as_slice() else {
        eprintln!("usage: treecache keygen PATH");
        return 2;
    };
    let path = std::path::Path::new(path);
    if path.exists() {
        println!("treecache keygen: keeping the key in {}", path.display());
        return 0;
    }
    match treecache::auth::write_random_key(path) {
        Ok(()) => {
            println!(
                "treecache keygen: wrote a new cluster key to {}",
                path.display()
            );
            0
        }
        Err(e) => {
            eprintln!("treecache keygen: cannot write {}: {e}", path.display());
            1
        }
    }
}
