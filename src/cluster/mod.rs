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

/// A child's name in the output: `NODE-3`, or `standby-2`.
fn label(key: u32) -> String {
    match key.checked_sub(STANDBY) {
        Some(k) => format!("standby-{k}"),
        None => node_name(key),
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
        for k in 1..=self.args.standbys {
            self.spawn(STANDBY + k)?;
        }
        let k = self.args.standbys as usize;
        wait::wait_for_standbys(&self.agent, &root_url, k, &mut self.children)?;
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
        let (id, listen, data) = match key.checked_sub(STANDBY) {
            Some(k) => (
                args.root_id,
                address(args.base_port, self.tree.capacity() as u32 + k),
                Some(standby_data_dir(&self.data_dir, k)),
            ),
            None => (
                key,
                address(args.base_port, key),
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
