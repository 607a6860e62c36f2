//! The flags of `treecache cluster`, read into [`ClusterArgs`].

use treecache::{parse_host_port, TlsFiles, Tree};

/// Options of `treecache cluster`.
#[derive(Debug, PartialEq, Eq)]
pub struct ClusterArgs {
    pub depth: u32,
    pub root_id: u32,
    pub base_port: u16,
    pub zookeeper: String,
    pub log_level: String,
    /// The root's data directory; by default one in the cluster's
    /// temporary directory, removed at exit. Standby `k` keeps its data
    /// beside it, in `{data_dir}-standby-{k}`.
    pub data_dir: Option<std::path::PathBuf>,
    /// Standbys of each root group (of the root, and of every shard).
    pub standbys: u32,
    /// Root groups the key space is split over (`--root-shards`): shard 0
    /// is the root's group, each shard `s` >= 1 a group of its own.
    pub root_shards: u32,
    /// `--threads` of every node; `None`: the node's default, or
    /// [`DEEP_TREE_THREADS`] in a tree of depth [`DEEP_TREE`] or more.
    pub threads: Option<usize>,
    /// `--tls-cert`, `--tls-key` and `--tls-ca` of every node.
    pub tls: Option<TlsFiles>,
}

/// From this depth on (31 nodes and more), the nodes of `treecache cluster`
/// get [`DEEP_TREE_THREADS`] receiver threads each unless `--threads` says
/// otherwise: on one machine, thousands of threads that mostly idle cost
/// memory and start-up time and buy nothing.
pub const DEEP_TREE: u32 = 5;
/// The receivers of each node in a deep local tree.
pub const DEEP_TREE_THREADS: usize = 2;

/// The most standbys `treecache cluster` starts.
const MAX_STANDBYS: u32 = 8;

/// The most root shards a cluster may have.
const MAX_SHARDS: u32 = treecache::shards::MAX_SHARDS;

/// The ports past `--base-port` a cluster takes: its `nodes`, the
/// `standbys` of the root, and the `standbys + 1` members of each shard
/// after the first.
pub fn ports_needed(nodes: usize, standbys: u32, root_shards: u32) -> usize {
    nodes + standbys as usize + (root_shards as usize - 1) * (standbys as usize + 1)
}
impl ClusterArgs {
    pub fn parse(mut args: pico_args::Arguments) -> Result<ClusterArgs, String> {
        /// An optional flag's value, an error naming the flag if it does not parse.
        fn opt<T: std::str::FromStr>(
            args: &mut pico_args::Arguments,
            name: &'static str,
        ) -> Result<Option<T>, String>
        where
            T::Err: std::fmt::Display,
        {
            args.opt_value_from_str(name)
                .map_err(|e| format!("{name}: {e}"))
        }
        let depth: u32 = opt(&mut args, "--depth")?.unwrap_or(3);
        if !(1..=Tree::MAX_DEPTH).contains(&depth) {
            return Err(format!(
                "--depth: must be between 1 and {} (got {depth})",
                Tree::MAX_DEPTH
            ));
        }
        let tree = Tree::new(depth);
        let root_id: u32 = opt(&mut args, "--root-id")?.unwrap_or(1);
        if !tree.contains_id(root_id) {
            return Err(format!(
                "--root-id: must be between 1 and {} (got {root_id})",
                tree.capacity()
            ));
        }
        let standbys: u32 = opt(&mut args, "--standbys")?.unwrap_or(1);
        if standbys > MAX_STANDBYS {
            return Err(format!(
                "--standbys: at most {MAX_STANDBYS} (got {standbys})"
            ));
        }
        let root_shards: u32 = opt(&mut args, "--root-shards")?.unwrap_or(1);
        if !(1..=MAX_SHARDS).contains(&root_shards) {
            return Err(format!(
                "--root-shards: must be between 1 and {MAX_SHARDS} (got {root_shards})"
            ));
        }
        let base_port: u16 = opt(&mut args, "--base-port")?.unwrap_or(5000);
        let ports = ports_needed(tree.capacity(), standbys, root_shards);
        if base_port as usize + ports > u16::MAX as usize {
            return Err(format!(
                "--base-port: {base_port} + {ports} is past the last port"
            ));
        }
        let zookeeper: String =
            opt(&mut args, "--zookeeper")?.unwrap_or_else(|| "127.0.0.1:2181".into());
        parse_host_port(&zookeeper).map_err(|m| format!("--zookeeper: {m} (got {zookeeper:?})"))?;
        let log_level: String = opt(&mut args, "--log-level")?.unwrap_or_else(|| "info".into());
        let data_dir: Option<std::path::PathBuf> = opt(&mut args, "--data-dir")?;
        let threads: Option<usize> = opt(&mut args, "--threads")?;
        if threads.is_some_and(|n| !(1..=1024).contains(&n)) {
            return Err("--threads: expected a number of threads from 1 to 1024".into());
        }
        let tls = match (
            opt(&mut args, "--tls-cert")?,
            opt(&mut args, "--tls-key")?,
            opt(&mut args, "--tls-ca")?,
        ) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            _ => return Err("--tls-cert: give --tls-cert, --tls-key and --tls-ca, or none".into()),
        };
        if let Some(extra) = args.finish().first() {
            return Err(format!(
                "{}: is not a flag of treecache cluster",
                extra.to_string_lossy()
            ));
        }
        Ok(ClusterArgs {
            depth,
            root_id,
            base_port,
            zookeeper,
            log_level,
            data_dir,
            standbys,
            root_shards,
            threads,
            tls,
        })
    }

    /// The `--threads` its nodes get, if any.
    pub fn node_threads(&self) -> Option<usize> {
        self.threads
            .or((self.depth >= DEEP_TREE).then_some(DEEP_TREE_THREADS))
    }
}
