//! `treecache cluster`: a whole cluster on this machine, for trying treecache out.
//!
//! Uses the ZooKeeper at `--zookeeper`, or starts one from the local
//! installation when none answers there; starts the N nodes as child
//! processes on `127.0.0.1:{base-port + id}`, sharing a cluster key made for
//! the run; waits until all are ready; starts the standbys of the root
//! (`--standbys K`, each with the root's id, on
//! `127.0.0.1:{base-port + N + k}` with its own data directory) and waits
//! until they are in sync; prints the tree, the root group, the URLs, and
//! what the nodes take (time, memory, threads); and stops everything it
//! started on Ctrl-C or SIGTERM (and, through the parent-death signal, even
//! if it is killed).
//!
//! The tree comes out as under Vagrant and Compose, NODE-2 in slot 1,
//! NODE-3 in slot 2, and so on, without starting the nodes one after the
//! other: once the root takes joins, the cluster command joins every other
//! node's name and address to it in id order (`reserve_slots`), and only
//! then starts those nodes, all at once. A node's own join then finds the
//! slot already held under its name, which it keeps, as any node that joins
//! again does.
//!
//! With `--root-shards K` every node is given K, and the command starts
//! K - 1 more root groups (shards 1 to K - 1), each a first member and
//! `--standbys` standbys, all with the root's id, `--shard s`, their own
//! port (after the root's standbys, shard by shard: see [`Cluster::port_of`])
//! and their own data directory beside the root's ([`shard_data_dir`]).
//! Each shard's first member is started once the root takes joins, and its
//! standbys once it leads its group; the report lists each shard's members.
//!
//! With `--tls-cert`, `--tls-key` and `--tls-ca` every node gets the three
//! (one certificate for all, which must name `127.0.0.1`), and the command
//! reaches the nodes over HTTPS itself.

/// Prints a line, ignoring a closed stdout: whoever started us may have stopped
/// reading, and the cluster must still stop everything it started.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The same for stderr.
macro_rules! esay {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod report;
mod wait;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use treecache::auth::ClusterKey;
use treecache::{node_name, stop_requested, NodesDoc, Tree};
use treecache_local::children;
use treecache_local::zookeeper::{self as zk_local, LocalZooKeeper};

pub use args::ClusterArgs;

/// Standby `k` is the child `STANDBY + k` (the children are known by id).
const STANDBY: u32 = 1 << 20;

/// Member `m` of shard `s` >= 1 is the child `SHARD_MEMBER + s * 256 + m`:
/// member 0 is started first (and leads at first), members 1 and up are
/// its standbys.
const SHARD_MEMBER: u32 = 1 << 24;

/// The child key of member `m` of shard `s` >= 1.
fn shard_member(s: u32, m: u32) -> u32 {
    SHARD_MEMBER + (s << 8) + m
}

/// The shard and member of a child key of a shard >= 1.
fn shard_of_key(key: u32) -> Option<(u32, u32)> {
    key.checked_sub(SHARD_MEMBER).map(|k| (k >> 8, k & 0xff))
}

/// How long the cluster may take to come up.
const UP_WITHIN: Duration = Duration::from_secs(60);

fn id_of(name: &str) -> u32 {
    name.trim_start_matches("NODE-").parse().unwrap_or(1)
}

/// Standby `k`'s data directory, beside the root's.
fn standby_data_dir(root: &std::path::Path, k: u32) -> std::path::PathBuf {
    let mut name = root.as_os_str().to_os_string();
    name.push(format!("-standby-{k}"));
    std::path::PathBuf::from(name)
}

/// Member `m` of shard `s` >= 1 keeps its data beside the root's too:
/// member 0 in `{root}-shard-{s}`, standby `m` in `{root}-shard-{s}-standby-{m}`.
fn shard_data_dir(root: &std::path::Path, s: u32, m: u32) -> std::path::PathBuf {
    let mut name = root.as_os_str().to_os_string();
    match m {
        0 => name.push(format!("-shard-{s}")),
        m => name.push(format!("-shard-{s}-standby-{m}")),
    }
    std::path::PathBuf::from(name)
}

/// [`Cluster::port_of`] in a tree of `n` nodes whose root groups have
/// `standbys` standbys each.
fn port_offset(n: u32, standbys: u32, key: u32) -> u32 {
    match (shard_of_key(key), key.checked_sub(STANDBY)) {
        (Some((s, m)), _) => n + standbys + (s - 1) * (standbys + 1) + m + 1,
        (None, Some(k)) => n + k,
        (None, None) => key,
    }
}

/// A child's name in the output: `NODE-3`, `standby-2` (of the root),
/// `shard-1` (shard 1's first member) or `shard-1-standby-2`.
fn label(key: u32) -> String {
    match (shard_of_key(key), key.checked_sub(STANDBY)) {
        (Some((s, 0)), _) => format!("shard-{s}"),
        (Some((s, m)), _) => format!("shard-{s}-standby-{m}"),
        (None, Some(k)) => format!("standby-{k}"),
        (None, None) => node_name(key),
    }
}

/// The children started: each under its key, a node's id or `STANDBY + k`.
type Children = Vec<(u32, Child)>;

/// When each step of the start-up ended, from the command's start.
type Phases = Vec<(&'static str, Duration)>;

/// Runs the cluster until a stop signal; returns the exit status.
pub fn run(args: ClusterArgs) -> i32 {
    treecache::catch_stop_signals();
    // Two pipes a node, and a connection to each while waiting for it.
    treecache::raise_open_files_limit();
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("treecache-cluster-{}", std::process::id()));
    let zookeeper = match zookeeper(&args.zookeeper, &dir) {
        Ok(zookeeper) => zookeeper,
        Err(e) => {
            esay!("treecache cluster: {e}");
            // Its data directory, in ours (the server is stopped by now).
            let _ = std::fs::remove_dir_all(&dir);
            return 1;
        }
    };
    let mut phases: Phases = vec![("ZooKeeper up", started.elapsed())];
    let mut cluster = match Cluster::prepare(args, &dir) {
        Ok(cluster) => cluster,
        Err((e, status)) => {
            esay!("treecache cluster: {e}");
            return status;
        }
    };
    let status = match cluster.bring_up(started, &mut phases) {
        Ok(doc) => {
            let zookeeper_pid = zookeeper.as_ref().and_then(LocalZooKeeper::pid);
            cluster.report(&doc, &phases, zookeeper_pid, started.elapsed());
            cluster.watch();
            0
        }
        Err(e) => {
            esay!("treecache cluster: {e}");
            1
        }
    };
    say!("Stopping the cluster");
    wait::stop_all(&mut cluster.children);
    drop(zookeeper);
    // Our temporary directory: ZooKeeper's data, and the root's unless --data-dir.
    let _ = std::fs::remove_dir_all(&dir);
    status
}

/// The ZooKeeper at `address` when one answers (`None`), else one started
/// on its port, with its data in `dir`.
fn zookeeper(address: &str, dir: &Path) -> Result<Option<LocalZooKeeper>, String> {
    if zk_local::is_ok(address, Duration::from_secs(1)) {
        say!("Using the ZooKeeper at {address}");
        return Ok(None);
    }
    let port = address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .expect("validated host:port");
    say!(
        "No ZooKeeper answers at {address}; starting one on port {port} in {}",
        dir.display()
    );
    LocalZooKeeper::start_unless(port, &dir.join("zookeeper"), stop_requested).map(Some)
}

/// `127.0.0.1:{base + id}`, where node `id` (or child `id`) listens.
fn address(base_port: u16, id: u32) -> String {
    format!("127.0.0.1:{}", base_port as u32 + id)
}

/// A cluster on its way up: what its nodes are started with, and the
/// children started so far.
struct Cluster {
    args: ClusterArgs,
    tree: Tree,
    /// The root's data directory; standby `k`'s is beside it.
    data_dir: PathBuf,
    /// The nodes' cluster key, made for this run.
    key_file: PathBuf,
    /// This binary, which the nodes run too.
    exe: PathBuf,
    /// Every call of ours to a node, over HTTPS when the cluster runs TLS.
    agent: ureq::Agent,
    /// The nodes' logs, on one thread for all of them.
    output: children::Output,
    children: Children,
}

impl Cluster {
    /// Makes the cluster key in `dir` and finds what the nodes need; an
    /// error comes with the exit status it ends the command with.
    fn prepare(args: ClusterArgs, dir: &Path) -> Result<Cluster, (String, i32)> {
        let data_dir = match &args.data_dir {
            Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
            None => dir.join("root-data"),
        };
        let key_file = dir.join("cluster.key");
        std::fs::create_dir_all(dir)
            .and_then(|()| treecache::auth::write_random_key(&key_file))
            .map_err(|e| (format!("cannot make a cluster key: {e}"), 1))?;
        let exe =
            std::env::current_exe().map_err(|e| (format!("cannot find my own binary: {e}"), 1))?;
        let agent = wait::nodes_agent(args.tls.as_ref()).map_err(|e| (e, 2))?;
        Ok(Cluster {
            tree: Tree::new(args.depth),
            args,
            data_dir,
            key_file,
            exe,
            agent,
            output: children::Output::start(),
            children: Vec::new(),
        })
    }

    fn scheme(&self) -> &'static str {
        if self.args.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn url(&self, id: u32) -> String {
        format!("{}://{}", self.scheme(), address(self.args.base_port, id))
    }

    /// Where child `key` listens, as an offset from `--base-port`: node
    /// `id` at `id`; the root's standby `k` at `N + k`; then the shards
    /// after the first, each `--standbys` + 1 ports, member `m` of shard
    /// `s` at `N + S + (s - 1) * (S + 1) + m + 1`.
    fn port_of(&self, key: u32) -> u32 {
        port_offset(self.tree.capacity() as u32, self.args.standbys, key)
    }

    /// The children of shard `s`, the one started first first: for shard
    /// 0 the root and its standbys.
    fn shard_members(&self, s: u32) -> Vec<u32> {
        let standbys = 1..=self.args.standbys;
        match s {
            0 => std::iter::once(self.args.root_id)
                .chain(standbys.map(|k| STANDBY + k))
                .collect(),
            s => std::iter::once(0)
                .chain(standbys)
                .map(|m| shard_member(s, m))
                .collect(),
        }
    }

    /// Every node but the root, in id order.
    fn others(&self) -> Vec<u32> {
        (1..=self.tree.capacity() as u32)
            .filter(|&i| i != self.args.root_id)
            .collect()
    }

    /// The root, the slots in id order, then every other node at once;
    /// then the standbys, once the root leads the group (the first member
    /// to write the group's state leads), and until they are in sync.
    fn bring_up(&mut self, started: Instant, phases: &mut Phases) -> Result<NodesDoc, String> {
        let mut mark = |step: &'static str| phases.push((step, started.elapsed()));
        let (root_id, base_port) = (self.args.root_id, self.args.base_port);
        let (root_url, others) = (self.url(root_id), self.others());
        self.spawn(root_id)?;
        let key = ClusterKey::load(&self.key_file)?;
        let root_address = address(base_port, root_id);
        let root = (root_url.as_str(), root_address.as_str());
        let to = |id| address(base_port, id);
        wait::reserve_slots(&self.agent, root, &others, to, &key, &mut self.children)?;
        mark("slots reserved");
        // The root takes joins: it has written the slot map, which the
        // shards' first members find.
        let shards = 1..self.args.root_shards;
        for s in shards.clone() {
            self.spawn(shard_member(s, 0))?;
        }
        // In id order; a stop asked for meanwhile is heeded at once.
        for &id in &others {
            if stop_requested() {
                return Err("stopped before the cluster was up".to_string());
            }
            self.spawn(id)?;
        }
        mark("nodes started");
        let urls: Vec<(u32, String)> = std::iter::once(root_id)
            .chain(others.iter().copied())
            .map(|id| (id, self.url(id)))
            .collect();
        wait::wait_ready(&self.agent, &urls, &mut self.children)?;
        mark("all ready");
        let n = self.tree.capacity();
        let doc = wait::wait_for_tree(&self.agent, &root_url, n, &mut self.children)?;
        mark("all live");
        // Each shard's standbys once its first member leads the shard.
        let firsts: Vec<(u32, String)> = shards
            .clone()
            .map(|s| (s, address(base_port, self.port_of(shard_member(s, 0)))))
            .collect();
        if !firsts.is_empty() {
            wait::wait_for_shard_primaries(&self.agent, &root_url, &firsts, &mut self.children)?;
            mark("shards led");
        }
        for k in 1..=self.args.standbys {
            self.spawn(STANDBY + k)?;
        }
        for s in shards.clone() {
            for m in 1..=self.args.standbys {
                self.spawn(shard_member(s, m))?;
            }
        }
        let k = self.args.standbys as usize;
        wait::wait_for_standbys(&self.agent, &root_url, k, &mut self.children)?;
        let shards: Vec<u32> = shards.collect();
        wait::wait_for_shard_standbys(&self.agent, &root_url, &shards, k, &mut self.children)?;
        mark("standbys in sync");
        Ok(doc)
    }

    /// Starts child `key`, its output copied to ours.
    fn spawn(&mut self, key: u32) -> Result<(), String> {
        let mut command = self.command(key);
        children::die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", label(key)))?;
        self.output.add(&label(key), &mut child);
        self.children.push((key, child));
        Ok(())
    }

    /// The command line of child `key`.
    fn command(&self, key: u32) -> Command {
        let args = &self.args;
        let listen = address(args.base_port, self.port_of(key));
        let (id, shard, data) = match (shard_of_key(key), key.checked_sub(STANDBY)) {
            (Some((s, m)), _) => (
                args.root_id,
                Some(s),
                Some(shard_data_dir(&self.data_dir, s, m)),
            ),
            (None, Some(k)) => (
                args.root_id,
                None,
                Some(standby_data_dir(&self.data_dir, k)),
            ),
            (None, None) => (
                key,
                None,
                (key == args.root_id).then(|| self.data_dir.clone()),
            ),
        };
        let mut command = Command::new(&self.exe);
        command
            .arg("node")
            .args(["--id", &id.to_string()])
            .args(["--depth", &args.depth.to_string()])
            .args(["--root-id", &args.root_id.to_string()])
            .args(["--listen", &listen])
            .args(["--advertise", &listen])
            .arg("--cluster-key-file")
            .arg(&self.key_file)
            .args(["--zookeeper", &args.zookeeper])
            .args(["--startup-delay", "0"])
            .args(["--log-level", &args.log_level])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The root group keeps the node's default unless --threads says
        // otherwise: the root takes every join and every miss of the tree.
        let threads = match id == args.root_id {
            true => args.threads,
            false => args.node_threads(),
        };
        if let Some(threads) = threads {
            command.args(["--threads", &threads.to_string()]);
        }
        if let Some(data) = data {
            command.arg("--data-dir").arg(data);
        }
        // Left out in a cluster of one shard, whose nodes run as before.
        if args.root_shards > 1 {
            command.args(["--root-shards", &args.root_shards.to_string()]);
        }
        if let Some(s) = shard {
            command.args(["--shard", &s.to_string()]);
        }
        if let Some(tls) = &args.tls {
            command
                .arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key)
                .arg("--tls-ca")
                .arg(&tls.ca);
        }
        command
    }

    /// Waits for a stop signal, or for a child to exit.
    fn watch(&mut self) {
        while !stop_requested() {
            if let Some((id, status)) = wait::exited(&mut self.children) {
                esay!(
                    "treecache cluster: {} exited ({status}); stopping",
                    label(id)
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ClusterArgs, String> {
        ClusterArgs::parse(pico_args::Arguments::from_vec(
            args.iter().map(Into::into).collect(),
        ))
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            (a.depth, a.root_id, a.base_port, a.zookeeper.as_str()),
            (3, 1, 5000, "127.0.0.1:2181")
        );
        let a = parse(&["--depth", "2", "--root-id", "3", "--base-port", "7000"]).unwrap();
        assert_eq!((a.depth, a.root_id, a.base_port), (2, 3, 7000));
        let a = parse(&["--depth=2", "--base-port=7000"]).unwrap();
        assert_eq!((a.depth, a.base_port), (2, 7000));
        assert_eq!(a.data_dir, None);
        assert_eq!(a.standbys, 1);
        let a = parse(&["--data-dir", "/tmp/x", "--standbys", "2"]).unwrap();
        assert_eq!(a.standbys, 2);
        let data = a.data_dir.unwrap();
        assert_eq!(data.display().to_string(), "/tmp/x");
        assert_eq!(
            standby_data_dir(&data, 2).display().to_string(),
            "/tmp/x-standby-2"
        );
        assert_eq!(label(STANDBY + 2), "standby-2");
        assert_eq!(label(3), "NODE-3");
    }

    #[test]
    fn shards_take_the_ports_after_the_roots_standbys() {
        assert_eq!(parse(&[]).unwrap().root_shards, 1);
        let a = parse(&["--root-shards", "3", "--standbys", "2"]).unwrap();
        assert_eq!(a.root_shards, 3);
        // 7 nodes, the root's 2 standbys, then 3 ports for each shard.
        assert_eq!(args::ports_needed(7, 2, 3), 7 + 2 + 3 + 3);
        let ports: Vec<u32> = [7, STANDBY + 2]
            .into_iter()
            .chain((1..3).flat_map(|s| (0..3).map(move |m| shard_member(s, m))))
            .map(|key| port_offset(7, 2, key))
            .collect();
        assert_eq!(ports, [7, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(port_offset(3, 0, shard_member(1, 0)), 4);
        assert_eq!(port_offset(3, 0, shard_member(63, 0)), 66);
        assert_eq!(shard_of_key(shard_member(63, 8)), Some((63, 8)));
        assert_eq!(shard_of_key(STANDBY + 1), None);
        assert_eq!(
            [label(shard_member(2, 0)), label(shard_member(2, 1))],
            ["shard-2", "shard-2-standby-1"]
        );
        let root = std::path::Path::new("/tmp/x");
        assert_eq!(
            shard_data_dir(root, 2, 0).display().to_string(),
            "/tmp/x-shard-2"
        );
        assert_eq!(
            shard_data_dir(root, 2, 1).display().to_string(),
            "/tmp/x-shard-2-standby-1"
        );
    }

    #[test]
    fn deep_trees_get_fewer_threads_per_node() {
        assert_eq!(parse(&[]).unwrap().node_threads(), None);
        assert_eq!(parse(&["--depth", "4"]).unwrap().node_threads(), None);
        assert_eq!(parse(&["--depth", "5"]).unwrap().node_threads(), Some(2));
        assert_eq!(parse(&["--depth=8"]).unwrap().node_threads(), Some(2));
        let a = parse(&["--depth", "8", "--threads", "6"]).unwrap();
        assert_eq!(a.node_threads(), Some(6));
        assert_eq!(parse(&["--threads=3"]).unwrap().node_threads(), Some(3));
        assert!(parse(&["--threads", "0"])
            .unwrap_err()
            .starts_with("--threads"));
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(parse(&["--depth", "0"]).unwrap_err().starts_with("--depth"));
        assert!(parse(&["--root-id", "4", "--depth", "2"])
            .unwrap_err()
            .starts_with("--root-id"));
        assert!(parse(&["--zookeeper", "nowhere"])
            .unwrap_err()
            .starts_with("--zookeeper"));
        assert!(parse(&["--bogus"]).unwrap_err().starts_with("--bogus"));
        assert!(parse(&["--standbys", "9"])
            .unwrap_err()
            .starts_with("--standbys"));
        for bad in ["0", "65", "-1", "many"] {
            let e = parse(&["--root-shards", bad]).unwrap_err();
            assert!(e.starts_with("--root-shards: "), "{bad}: {e}");
        }
        assert_eq!(parse(&["--root-shards=64"]).unwrap().root_shards, 64);
        // 7 nodes and 64 shards of 9 members each do not fit after port 65000.
        let e = parse(&["--root-shards=64", "--standbys=8", "--base-port=65000"]).unwrap_err();
        assert!(e.starts_with("--base-port"), "{e}");
        assert!(parse(&["--base-port", "65530"])
            .unwrap_err()
            .starts_with("--base-port"));
        assert!(parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .unwrap_err()
            .starts_with("--tls-cert"));
        let tls = parse(&["--tls-cert=c", "--tls-key=k", "--tls-ca=a"])
            .unwrap()
            .tls;
        assert_eq!(tls.unwrap().ca.display().to_string(), "a");
    }
}
