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

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::auth::{ClusterKey, Signed};
use crate::config::{node_name, parse_host_port};
use crate::local::children;
use crate::local::zookeeper::{self as zk_local, LocalZooKeeper};
use crate::process;
use crate::tree::Tree;
use crate::wire::{NodesDoc, AUTH_HEADER, JOIN_PATH};
use treecache_common::drawing::{draw_tree, Place};

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
    /// Standbys of the root.
    pub standbys: u32,
    /// `--threads` of every node; `None`: the node's default, or
    /// [`DEEP_TREE_THREADS`] in a tree of depth [`DEEP_TREE`] or more.
    pub threads: Option<usize>,
    /// `--tls-cert`, `--tls-key` and `--tls-ca` of every node.
    pub tls: Option<TlsFiles>,
}

/// The files of a cluster that runs TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
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
/// Standby `k` is the child `STANDBY + k` (the children are known by id).
const STANDBY: u32 = 1 << 20;

/// How long the cluster may take to come up.
const UP_WITHIN: Duration = Duration::from_secs(60);

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
        let base_port: u16 = opt(&mut args, "--base-port")?.unwrap_or(5000);
        if base_port as usize + tree.capacity() + standbys as usize > u16::MAX as usize {
            return Err(format!(
                "--base-port: {base_port} + {} is past the last port",
                tree.capacity() + standbys as usize
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

/// Runs the cluster until a stop signal; returns the exit status.
pub fn run(args: ClusterArgs) -> i32 {
    process::catch_stop_signals();
    // Two pipes a node, and a connection to each while waiting for it.
    process::raise_open_files_limit();
    let started = Instant::now();
    let tree = Tree::new(args.depth);
    let dir = std::env::temp_dir().join(format!("treecache-cluster-{}", std::process::id()));

    let _zookeeper = if zk_local::is_ok(&args.zookeeper, Duration::from_secs(1)) {
        say!("Using the ZooKeeper at {}", args.zookeeper);
        None
    } else {
        let port = args
            .zookeeper
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .expect("validated host:port");
        say!(
            "No ZooKeeper answers at {}; starting one on port {port} in {}",
            args.zookeeper,
            dir.display()
        );
        match LocalZooKeeper::start(port, &dir.join("zookeeper")) {
            Ok(zk) => Some(zk),
            Err(e) => {
                esay!("treecache cluster: {e}");
                // Its data directory, in ours (the server is stopped by now).
                let _ = std::fs::remove_dir_all(&dir);
                return 1;
            }
        }
    };
    let zk_up = started.elapsed();
    let data_dir = match &args.data_dir {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => dir.join("root-data"),
    };

    // The nodes' cluster key: made for this run, in our temporary directory.
    let key_file = dir.join("cluster.key");
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| crate::auth::write_random_key(&key_file))
    {
        esay!("treecache cluster: cannot make a cluster key: {e}");
        return 1;
    }

    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            esay!("treecache cluster: cannot find my own binary: {e}");
            return 1;
        }
    };
    let others: Vec<u32> = (1..=tree.capacity() as u32)
        .filter(|&i| i != args.root_id)
        .collect();
    // Every call of ours to a node, over HTTPS when the cluster runs TLS.
    let agent = match nodes_agent(args.tls.as_ref()) {
        Ok(agent) => agent,
        Err(e) => {
            esay!("treecache cluster: {e}");
            return 2;
        }
    };
    let scheme = if args.tls.is_some() { "https" } else { "http" };
    let url = |id: u32| format!("{scheme}://127.0.0.1:{}", args.base_port as u32 + id);
    let address = |id: u32| format!("127.0.0.1:{}", args.base_port as u32 + id);
    let root_url = url(args.root_id);
    let mut children: Vec<(u32, Child)> = Vec::new();
    // The nodes' logs, on one thread for all of them.
    let output = children::Output::start();
    // `key` is a node's id, or `STANDBY + k` for standby k.
    let spawn = |key: u32, children: &mut Vec<(u32, Child)>| -> Result<(), String> {
        let (id, listen, data) = match key.checked_sub(STANDBY) {
            Some(k) => (
                args.root_id,
                address(tree.capacity() as u32 + k),
                Some(standby_data_dir(&data_dir, k)),
            ),
            None => (
                key,
                address(key),
                (key == args.root_id).then(|| data_dir.clone()),
            ),
        };
        let mut command = Command::new(&exe);
        command
            .arg("node")
            .args(["--id", &id.to_string()])
            .args(["--depth", &args.depth.to_string()])
            .args(["--root-id", &args.root_id.to_string()])
            .args(["--listen", &listen])
            .args(["--advertise", &listen])
            .arg("--cluster-key-file")
            .arg(&key_file)
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
        children::die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", label(key)))?;
        output.add(&label(key), &mut child);
        children.push((key, child));
        Ok(())
    };

    // When each step of the start-up ended, from the command's start.
    let phases = std::cell::RefCell::new(vec![("ZooKeeper up", zk_up)]);
    let mark = |step: &'static str| phases.borrow_mut().push((step, started.elapsed()));
    // The root, the slots in id order, then every other node at once; then
    // the standbys, once the root leads the group (the first member to write
    // the group's state leads), and until they are in sync.
    let up = spawn(args.root_id, &mut children)
        .and_then(|()| {
            let key = ClusterKey::load(&key_file)?;
            let root_address = address(args.root_id);
            let root = (root_url.as_str(), root_address.as_str());
            reserve_slots(&agent, root, &others, address, &key, &mut children)?;
            mark("slots reserved");
            Ok(())
        })
        .and_then(|()| {
            // In id order; a stop asked for meanwhile is heeded at once.
            others.iter().try_for_each(|&id| {
                if process::stop_requested() {
                    return Err("stopped before the cluster was up".to_string());
                }
                spawn(id, &mut children)
            })?;
            mark("nodes started");
            Ok(())
        })
        .and_then(|()| {
            let urls: Vec<(u32, String)> = std::iter::once(args.root_id)
                .chain(others.iter().copied())
                .map(|id| (id, url(id)))
                .collect();
            wait_ready(&agent, &urls, &mut children)?;
            mark("all ready");
            Ok(())
        })
        .and_then(|()| wait_for_tree(&agent, &root_url, tree.capacity(), &mut children))
        .inspect(|_| mark("all live"))
        .and_then(|doc| {
            for k in 1..=args.standbys {
                spawn(STANDBY + k, &mut children)?;
            }
            wait_for_standbys(&agent, &root_url, args.standbys as usize, &mut children)?;
            mark("standbys in sync");
            Ok(doc)
        });
    let phases = phases.into_inner();
    let ready_at = phases
        .iter()
        .find(|(step, _)| *step == "all live")
        .map_or(Duration::ZERO, |(_, at)| *at);
    let status = match up {
        Ok(doc) => {
            let took = started.elapsed();
            print_tree(&doc, scheme);
            print_root_group(&agent, &root_url, scheme);
            let usage = Usage::of(children.iter().map(|(_, c)| c.id()));
            let mine = Usage::of(std::iter::once(std::process::id()));
            let zookeeper =
                _zookeeper
                    .as_ref()
                    .and_then(LocalZooKeeper::pid)
                    .map_or(String::new(), |pid| {
                        let zk = Usage::of(std::iter::once(pid));
                        format!(
                            "; ZooKeeper: {:.1} MiB, {} threads",
                            zk.rss_bytes as f64 / (1 << 20) as f64,
                            zk.threads
                        )
                    });
            let steps: Vec<String> = phases
                .iter()
                .map(|(step, at)| format!("{step} {:.2} s", at.as_secs_f64()))
                .collect();
            say!("\nstart-up, from the command's start: {}", steps.join(", "));
            say!(
                "{} nodes up in {:.2} s ({:.2} s of it for ZooKeeper; all ready and live at {:.2} s); {} ({:.1} a process); this command: {} threads{zookeeper}. Try:\n  curl{cacert} {root_url}/\n  curl{cacert} -X PUT -H 'Content-Type: application/json' -d '{{\"value\": \"world\"}}' {root_url}/store/hello\n  curl{cacert} {}/store/hello\nPress Ctrl-C to stop.",
                doc.nodes.len(),
                took.as_secs_f64(),
                zk_up.as_secs_f64(),
                ready_at.as_secs_f64(),
                usage,
                usage.threads as f64 / usage.processes.max(1) as f64,
                mine.threads,
                url(doc.nodes.last().map_or(args.root_id, |n| id_of(&n.name))),
                cacert = args
                    .tls
                    .as_ref()
                    .map_or(String::new(), |t| format!(" --cacert {}", t.ca.display())),
            );
            while !process::stop_requested() {
                if let Some((id, status)) = exited(&mut children) {
                    esay!(
                        "treecache cluster: {} exited ({status}); stopping",
                        label(id)
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            0
        }
        Err(e) => {
            esay!("treecache cluster: {e}");
            1
        }
    };
    say!("Stopping the cluster");
    stop_all(&mut children);
    drop(_zookeeper);
    // Our temporary directory: ZooKeeper's data, and the root's unless --data-dir.
    let _ = std::fs::remove_dir_all(&dir);
    status
}

/// What the node processes take, from /proc: resident memory and threads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub processes: usize,
    pub rss_bytes: u64,
    pub threads: u64,
}

impl Usage {
    /// The sum over these processes (those gone already count nothing).
    pub fn of(pids: impl Iterator<Item = u32>) -> Usage {
        let mut usage = Usage::default();
        for pid in pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let (rss, threads) = parse_proc_status(&status);
            usage.processes += 1;
            usage.rss_bytes += rss;
            usage.threads += threads;
        }
        usage
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} node processes: {:.1} MiB resident in all, {} threads",
            self.processes,
            self.rss_bytes as f64 / (1 << 20) as f64,
            self.threads
        )
    }
}

/// `VmRSS` (in bytes) and `Threads` of a `/proc/PID/status`.
fn parse_proc_status(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

/// The agent of the command's own calls to its nodes: HTTPS trusting the
/// cluster's CA when it runs TLS.
fn nodes_agent(tls: Option<&TlsFiles>) -> Result<ureq::Agent, String> {
    let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        let config = crate::http::tls::read_ca(&tls.ca).map_err(|e| format!("--tls-ca: {e}"))?;
        agent = agent.tls_config(config);
    }
    Ok(agent.build())
}

/// Joins each of `ids` to the root (its URL and its advertised address) in
/// this order, under the address it will listen on, so that slots follow
/// ids (see the module documentation). Waits for the root to take joins
/// first.
fn reserve_slots(
    agent: &ureq::Agent,
    (root_url, root_address): (&str, &str),
    ids: &[u32],
    address: impl Fn(u32) -> String,
    key: &ClusterKey,
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    let until = Instant::now() + UP_WITHIN;
    for &id in ids {
        let body = serde_json::json!({ "name": node_name(id), "address": address(id) }).to_string();
        loop {
            if process::stop_requested() {
                return Err("stopped before the cluster was up".into());
            }
            if let Some((id, status)) = exited(children) {
                return Err(format!("{} exited during start-up ({status})", label(id)));
            }
            // Signed with the cluster key, as a node's own join is, for the
            // root at the address it advertises.
            let auth = key.sign(
                root_address,
                &Signed {
                    method: "POST",
                    path: JOIN_PATH,
                    headers: &NoHeaders,
                    body: body.as_bytes(),
                },
            );
            let last = match agent
                .post(&format!("{root_url}{JOIN_PATH}"))
                .set("Content-Type", "application/json")
                .set(AUTH_HEADER, &auth)
                .send_string(&body)
            {
                Ok(_) => break,
                // 503: the root does not take joins yet.
                Err(ureq::Error::Status(503, _)) | Err(ureq::Error::Transport(_)) => {
                    "the root does not take joins yet".to_string()
                }
                Err(ureq::Error::Status(status, r)) => {
                    return Err(format!(
                        "the root refused the slot of {}: {status} {}",
                        node_name(id),
                        r.into_string().unwrap_or_default()
                    ))
                }
            };
            if Instant::now() > until {
                return Err(format!("{last} after {} s", UP_WITHIN.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Waits until every node of `urls` answers `GET /ready` with 200.
fn wait_ready(
    agent: &ureq::Agent,
    urls: &[(u32, String)],
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    let until = Instant::now() + UP_WITHIN;
    let mut waiting: Vec<&(u32, String)> = urls.iter().collect();
    while !waiting.is_empty() {
        if process::stop_requested() {
            return Err("stopped before the cluster was up".into());
        }
        if let Some((id, status)) = exited(children) {
            return Err(format!("{} exited during start-up ({status})", label(id)));
        }
        waiting.retain(|(_, url)| agent.get(&format!("{url}/ready")).call().is_err());
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > until {
            let names: Vec<String> = waiting
                .iter()
                .take(5)
                .map(|(id, _)| node_name(*id))
                .collect();
            return Err(format!(
                "{} nodes were not ready within {} s ({}, ...)",
                waiting.len(),
                UP_WITHIN.as_secs(),
                names.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn id_of(name: &str) -> u32 {
    name.trim_start_matches("NODE-").parse().unwrap_or(1)
}

fn exited(children: &mut [(u32, Child)]) -> Option<(u32, std::process::ExitStatus)> {
    children
        .iter_mut()
        .find_map(|(id, c)| c.try_wait().ok().flatten().map(|s| (*id, s)))
}

fn stop_all(children: &mut Vec<(u32, Child)>) {
    for (_, child) in children.iter() {
        children::signal(child.id(), libc::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(3);
    for (_, child) in children.iter_mut() {
        while child.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}

/// Polls the root's `/nodes` until `n` nodes have joined and each is live
/// (its liveness znode is there).
fn wait_for_tree(
    agent: &ureq::Agent,
    root_url: &str,
    n: usize,
    children: &mut [(u32, Child)],
) -> Result<NodesDoc, String> {
    poll_nodes(
        agent,
        root_url,
        children,
        "the cluster did not come up",
        |doc| {
            let live = doc.nodes.iter().filter(|n| n.live == Some(true)).count();
            match (doc.nodes.len(), live) {
                (joined, live) if joined == n && live == n => Ok(doc.clone()),
                (joined, live) => Err(format!("{joined} of {n} nodes joined, {live} live")),
            }
        },
    )
}

/// Polls the root's `/nodes` until `done` takes it (`Err` says what is
/// still missing), for [`UP_WITHIN`] at most, giving up when a child exits
/// or a stop is asked for.
fn poll_nodes<T>(
    agent: &ureq::Agent,
    root_url: &str,
    children: &mut [(u32, Child)],
    failure: &str,
    mut done: impl FnMut(&NodesDoc) -> Result<T, String>,
) -> Result<T, String> {
    let until = Instant::now() + UP_WITHIN;
    let mut last = String::from("no answer yet");
    while Instant::now() < until {
        if process::stop_requested() {
            return Err("stopped before the cluster was up".into());
        }
        if let Some((id, status)) = exited(children) {
            return Err(format!("{} exited during start-up ({status})", label(id)));
        }
        match agent.get(&format!("{root_url}/nodes")).call() {
            Ok(r) => match serde_json::from_reader::<_, NodesDoc>(r.into_reader()) {
                Ok(doc) => match done(&doc) {
                    Ok(t) => return Ok(t),
                    Err(missing) => last = missing,
                },
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        // A /nodes document of a thousand nodes is some 100 KiB: asked for
        // less often in a big tree.
        std::thread::sleep(Duration::from_millis(50.max(children.len() as u64 / 4)));
    }
    Err(format!(
        "{failure} within {} s ({last})",
        UP_WITHIN.as_secs()
    ))
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

/// Polls the root's `/nodes` until `k` standbys are in sync.
fn wait_for_standbys(
    agent: &ureq::Agent,
    root_url: &str,
    k: usize,
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    if k == 0 {
        return Ok(());
    }
    poll_nodes(
        agent,
        root_url,
        children,
        "the standbys were not in sync",
        |doc| {
            let in_sync = doc
                .root_group
                .iter()
                .flatten()
                .filter(|m| m.role == "standby" && m.in_sync)
                .count();
            match in_sync >= k {
                true => Ok(()),
                false => Err(format!("{in_sync} of {k} standbys in sync")),
            }
        },
    )
}

/// Prints the root group: the primary and each standby, with its URL.
fn print_root_group(agent: &ureq::Agent, root_url: &str, scheme: &str) {
    let doc = agent
        .get(&format!("{root_url}/nodes"))
        .call()
        .ok()
        .and_then(|r| serde_json::from_reader::<_, NodesDoc>(r.into_reader()).ok());
    let group = doc.and_then(|d| d.root_group).unwrap_or_default();
    if group.len() < 2 {
        return;
    }
    say!("\nroot group (the root's id, each with its own data directory):");
    for m in &group {
        let role = match (m.role.as_str(), m.in_sync) {
            ("root", _) => "primary",
            (_, true) => "standby, in sync",
            (_, false) => "standby, catching up",
        };
        say!("  {scheme}://{}  {role}", m.address);
    }
}

/// No headers: a join the cluster command sends carries none that are signed.
struct NoHeaders;

impl crate::wire::Headers for NoHeaders {
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
}

/// Prints the tree as an indented drawing with each node's slot and URL.
fn print_tree(doc: &NodesDoc, scheme: &str) {
    say!(
        "\ntreecache: depth {}, {} nodes, root {}",
        doc.depth,
        doc.nodes.len(),
        doc.root
    );
    let lines = draw_tree(doc, |place| match place {
        Place::Node(n) => vec![
            format!("{} (slot {})", n.name, n.slot),
            format!("{scheme}://{}", n.address),
        ],
        Place::Missing(name) => vec![name.to_string(), "(not in the node list)".to_string()],
        Place::Free(slot) => vec![format!("(free slot {slot})")],
    });
    for line in lines {
        say!("{line}");
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
    fn usage_is_read_from_proc_status() {
        let status = "Name:\ttreecache\nVmRSS:\t    4096 kB\nThreads:\t23\n";
        assert_eq!(parse_proc_status(status), (4096 * 1024, 23));
        assert_eq!(parse_proc_status(""), (0, 0));
        let me = Usage::of(std::iter::once(std::process::id()));
        assert_eq!(me.processes, 1);
        assert!(me.rss_bytes > 0 && me.threads >= 1, "{me:?}");
        let text = Usage {
            processes: 255,
            rss_bytes: 1536 << 20,
            threads: 8000,
        }
        .to_string();
        assert_eq!(
            text,
            "255 node processes: 1536.0 MiB resident in all, 8000 threads"
        );
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
