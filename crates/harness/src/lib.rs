//! The harness of the integration tests (the node's, in `tests/`, and the
//! CLI's) and of the benchmark: a real ZooKeeper and real node processes on
//! loopback, and a small HTTP client.
//!
//! - [`Cluster::start`] brings up every node of a tree (root first, then the
//!   others in id order, `STARTUP_DELAY=0`) and waits until all have joined;
//!   [`Cluster::builder`] changes the order, the root, the environment, or
//!   gives the cluster a ZooKeeper of its own.
//! - All clusters of one test binary share one ZooKeeper, each under its own
//!   znode prefix, unless a cluster asks for its own server
//!   ([`Builder::own_zookeeper`]) or a three-server ensemble of its own
//!   ([`Builder::ensemble`]), whose members it can stop and restart.
//! - Every process started here gets the parent-death signal, and a cluster
//!   kills its nodes when dropped; when a test fails, the tail of each node's
//!   log is printed.
//!
//! - [`Builder::root_shards`] starts a cluster of K root shards: shard 0 is
//!   the root's group, and each shard `s` >= 1 a group of its own, a first
//!   member and the builder's standbys, started with the root's id and
//!   `--shard s` ([`Cluster::member`], [`Cluster::shard_members`],
//!   [`Cluster::shard_primary`]); [`shards`] says which shard a key is in.
//!
//! A test that needs ZooKeeper fails loudly when it is not installed.
//!
//! [`traffic`] sends random concurrent requests and records their history;
//! [`linearizability`] judges such histories. The binary `treecache-traffic`
//! (`src/bin/`) does both from a shell, against nodes already running: the
//! container test uses it. [`proxy`] plays network faults between a client
//! and a server. [`sentinels`] are written during a fault and checked after
//! it. [`raw`] speaks HTTP/1.1 by hand and reads answers strictly;
//! [`procfs`] reads a process's threads, descriptors, memory and listening
//! sockets. [`route_zookeeper_log`] installs the test process's logger,
//! which shows what a registry in the test process says. [`tls`] makes the certificates
//! of clusters that run over TLS ([`Builder::tls`]); the HTTP client here
//! trusts their CA.

pub mod linearizability;
pub mod names;
pub mod procfs;
pub mod proxy;
pub mod raw;
pub mod sentinels;
pub mod shards;
pub mod signing;
pub mod tls;
pub mod traffic;

pub use names::{temp_dir, unique};

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use treecache_local::zookeeper::{LocalEnsemble, LocalZooKeeper};

/// The node binary: Cargo's for the `treecache` package's tests and
/// benchmarks (`CARGO_BIN_EXE_treecache`, which Cargo sets when it runs them),
/// else the `treecache` built beside the running test binary, in the same
/// target and profile directory (`target/debug/treecache` for the CLI's tests).
pub fn treecache_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_treecache") {
        return PathBuf::from(p);
    }
    // A test or benchmark binary lives in `target/<profile>/deps/`.
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let profile_dir = exe
        .parent()
        .filter(|dir| dir.ends_with("deps"))
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in a target directory", exe.display()));
    let bin = profile_dir.join("treecache");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p treecache` first",
        bin.display()
    );
    bin
}

/// The ids from `id` up to the root, `id` first, in a tree numbered the
/// way `treecache cluster` and [`Cluster`] number it: node i holds slot
/// i - 1, whose parent is slot (s - 1) / 2.
pub fn path_to_root(id: u32) -> Vec<u32> {
    let mut path = vec![id];
    let mut slot = id - 1;
    while slot > 0 {
        slot = (slot - 1) / 2;
        path.push(slot + 1);
    }
    path
}

/// A loopback port that was free a moment ago, and that no other call in
/// this process has given: the kernel may give a port it just gave again
/// once its listener is closed, and two tests running at once then started
/// their ZooKeepers on one port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A ZooKeeper server of our own, stopped on drop.
pub struct ZooKeeper {
    server: LocalZooKeeper,
}

impl ZooKeeper {
    pub fn start() -> ZooKeeper {
        let server = LocalZooKeeper::start(free_port(), &temp_dir("zk"))
            .unwrap_or_else(|e| panic!("cannot start ZooKeeper: {e}"));
        ZooKeeper { server }
    }

    pub fn addr(&self) -> String {
        self.server.address()
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub fn restart(&mut self) {
        self.server
            .restart()
            .unwrap_or_else(|e| panic!("cannot restart ZooKeeper: {e}"));
    }
}

/// A ZooKeeper ensemble of our own (three servers on loopback), stopped on drop.
pub struct Ensemble {
    servers: LocalEnsemble,
}

impl Ensemble {
    pub fn start() -> Ensemble {
        let servers = LocalEnsemble::start(3, &temp_dir("ensemble"))
            .unwrap_or_else(|e| panic!("cannot start a ZooKeeper ensemble: {e}"));
        Ensemble { servers }
    }

    /// `h:p,h:p,h:p`, member 1 first.
    pub fn connect_string(&self) -> String {
        self.servers.connect_string()
    }

    /// The client address of member `i` (1 to 3).
    pub fn address(&self, i: usize) -> String {
        self.servers.address(i)
    }

    /// Stops member `i` (1 to 3).
    pub fn stop(&mut self, i: usize) {
        self.servers.stop(i);
    }

    /// Starts member `i` (1 to 3) again and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        self.servers
            .restart(i)
            .unwrap_or_else(|e| panic!("cannot restart ZooKeeper member {i}: {e}"));
    }
}

/// Installs, once, the test process's logger: records of level info and
/// above to stderr, except the `zookeeper` crate's (a line per attempt to
/// reconnect). A registry in this process needs no logger to learn its
/// sessions; this only shows what it says.
pub fn route_zookeeper_log() {
    struct Route;

    fn is_client(target: &str) -> bool {
        target == "zookeeper" || target.starts_with("zookeeper::")
    }

    impl log::Log for Route {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Info && !is_client(metadata.target())
        }

        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                eprintln!(
                    "{:<5} [{}] {}",
                    record.level(),
                    record.target(),
                    record.args()
                );
            }
        }

        fn flush(&self) {}
    }

    static ROUTE: Route = Route;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&ROUTE).expect("no other logger in the test process");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The ZooKeeper shared by the clusters of this test binary. It is started by
/// a thread that lives as long as the process, so that its parent-death
/// signal fires only when the test binary exits.
pub fn shared_zookeeper() -> String {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        remove_leftovers();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let zk = ZooKeeper::start();
            tx.send(zk.addr()).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the shared ZooKeeper started")
    })
    .clone()
}

/// Removes the temporary directories of earlier test processes that have
/// exited (the shared ZooKeeper's outlives its process, which cannot clean up
/// after a static).
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("treecache-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Standby `k` of the root group is the process `STANDBY + k` of a
/// [`Cluster`]: it runs with the root's `--id`, on its own port and data
/// directory.
pub const STANDBY: u32 = 1000;

/// Member `m` of root shard `s` >= 1 is the process
/// `SHARD_MEMBER + 100 * s + m` of a [`Cluster`] ([`shard_member`]): it runs with the root's
/// `--id` and `--shard s`, on its own port and data directory. Member 0 is
/// started first, and leads its shard at first; members 1 and up are its
/// standbys. (Shard 0's members are the root and its standbys.)
pub const SHARD_MEMBER: u32 = 10_000;

/// The key of member `m` of shard `s` >= 1: see [`SHARD_MEMBER`] (and
/// [`Cluster::member`], which takes shard 0 too).
pub fn shard_member(s: u32, m: u32) -> u32 {
    assert!((1..=64).contains(&s) && m < 100, "member {m} of shard {s}");
    SHARD_MEMBER + 100 * s + m
}

/// The shard and member of a process key of a shard >= 1.
fn shard_member_of(key: u32) -> Option<(u32, u32)> {
    key.checked_sub(SHARD_MEMBER)
        .map(|k| (k / 100, k % 100))
        .filter(|&(s, _)| s >= 1)
}

/// A running node process.
pub struct NodeProc {
    /// Its key in the cluster: the node's id, `STANDBY + k`, or a shard
    /// member's ([`shard_member`]).
    pub id: u32,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    /// Flags for this process alone (a standby's, or the root's data directory).
    own_args: Vec<String>,
}

/// How to start a cluster.
pub struct Builder {
    depth: u32,
    root_id: u32,
    order: Option<Vec<u32>>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    own_zookeeper: bool,
    ensemble: bool,
    wait: bool,
    open_files: Option<u64>,
    root_data: bool,
    standbys: u32,
    root_shards: u32,
    key: bool,
    tokens: Option<String>,
    tls: bool,
    binary: Option<PathBuf>,
}

impl Builder {
    /// Starts the nodes from this binary rather than [`treecache_bin`]
    /// (the benchmark's builds of older commits). It must take the flags
    /// [`Cluster::command`] gives: a build of the first version has no
    /// cluster key ([`Builder::no_key`]), TLS or data directory.
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// The nodes serve HTTPS and call each other over it, with certificates
    /// of the test CA ([`tls::TestCa::shared`]); [`Cluster::url`] is then
    /// an `https://` URL.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// The root keeps its data in a directory of its own (the other nodes
    /// have none).
    pub fn root_data_dir(mut self) -> Self {
        self.root_data = true;
        self
    }

    /// Standbys of the root group, each with its own data directory (and
    /// the root gets one too); `start` waits until all are in sync.
    pub fn standbys(mut self, count: u32) -> Self {
        self.standbys = count;
        self.root_data = true;
        self
    }

    /// `k` root shards (`--root-shards k` for every node): shard 0 is the
    /// root and its standbys, and each shard `s` from 1 to `k - 1` a first
    /// member and [`Builder::standbys`] standbys of its own, each with its
    /// data directory (the root gets one too). `start` starts every
    /// shard's first member once the root answers, its standbys once that
    /// member says it is the primary, and waits until they are in sync,
    /// before the other nodes.
    pub fn root_shards(mut self, k: u32) -> Self {
        self.root_shards = k;
        self.root_data = true;
        self
    }

    /// Starts the nodes without a cluster key (by default they share one).
    pub fn no_key(mut self) -> Self {
        self.key = false;
        self
    }

    /// Gives the nodes a tokens file (`--api-tokens-file`) with these lines.
    pub fn tokens(mut self, lines: &str) -> Self {
        self.tokens = Some(lines.to_string());
        self
    }

    /// Starts every node with this limit on open files (RLIMIT_NOFILE).
    pub fn open_files(mut self, limit: u64) -> Self {
        self.open_files = Some(limit);
        self
    }

    pub fn root_id(mut self, id: u32) -> Self {
        self.root_id = id;
        self
    }

    /// Starts the non-root nodes in this order (each waits for the previous to join).
    pub fn order(mut self, ids: &[u32]) -> Self {
        self.order = Some(ids.to_vec());
        self
    }

    /// An environment variable for every node.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// An extra flag for every node.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// A ZooKeeper for this cluster alone (for tests that stop it).
    pub fn own_zookeeper(mut self) -> Self {
        self.own_zookeeper = true;
        self
    }

    /// A ZooKeeper ensemble of three servers for this cluster alone (for
    /// tests that stop one of them): see [`Cluster::stop_zookeeper_member`].
    pub fn ensemble(mut self) -> Self {
        self.ensemble = true;
        self
    }

    /// Do not wait for the nodes to join.
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    /// Starts the root alone and returns at once, without waiting for it
    /// (for a root that is expected to refuse to start).
    pub fn start_root_only(self) -> Cluster {
        let zk = self.own_zookeeper.then(ZooKeeper::start);
        let ensemble = self.ensemble.then(Ensemble::start);
        let zk_addr = match (&zk, &ensemble) {
            (_, Some(ensemble)) => ensemble.connect_string(),
            (Some(zk), None) => zk.addr(),
            (None, None) => shared_zookeeper(),
        };
        let dir = temp_dir("cluster");
        let mut args = self.args;
        let key_file = dir.join("cluster.key");
        if self.key {
            treecache::auth::write_random_key(&key_file).expect("write a cluster key");
            args.extend(["--cluster-key-file".into(), key_file.display().to_string()]);
        }
        if let Some(lines) = &self.tokens {
            let path = dir.join("tokens");
            std::fs::write(&path, lines).expect("write a tokens file");
            args.extend(["--api-tokens-file".into(), path.display().to_string()]);
        }
        if self.tls {
            args.extend(tls::TestCa::shared().node_args());
        }
        let mut cluster = Cluster {
            zk,
            ensemble,
            zk_addr,
            depth: self.depth,
            root_id: self.root_id,
            root_shards: self.root_shards,
            prefix: format!("/treecache-test-{}-{}", std::process::id(), unique()),
            key: self.key.then(|| {
                let text = std::fs::read(&key_file).unwrap();
                text.strip_suffix(b"\n").unwrap_or(&text).to_vec()
            }),
            dir,
            env: self.env,
            args,
            tls: self.tls,
            binary: self.binary.unwrap_or_else(treecache_bin),
            open_files: self.open_files,
            nodes: BTreeMap::new(),
            overrides: BTreeMap::new(),
        };
        let root_args = match self.root_data {
            true => vec!["--data-dir".into(), cluster.data_dir(self.root_id)],
            false => Vec::new(),
        };
        cluster.spawn_with(self.root_id, free_port(), root_args);
        cluster
    }

    pub fn start(self) -> Cluster {
        let capacity = (1u32 << self.depth) - 1;
        let (root_id, order, wait) = (self.root_id, self.order.clone(), self.wait);
        let (standbys, shards) = (self.standbys, 1..self.root_shards);
        let mut cluster = self.start_root_only();
        wait_until(Duration::from_secs(20), "the root answers", || {
            http::get(&cluster.url(root_id)).0 == 200
        });
        if standbys > 0 {
            // The first member to write the group's state leads: the root
            // first, so that it is the primary.
            wait_until(Duration::from_secs(20), "the root is the primary", || {
                http::get(&cluster.url(root_id)).1["role"] == "root"
            });
        }
        // Each shard's first member the same way, all shards at once.
        for s in shards.clone() {
            cluster.add_shard_member(s, 0);
        }
        for s in shards.clone() {
            let first = shard_member(s, 0);
            let what = format!("the first member of shard {s} is its primary");
            wait_until(Duration::from_secs(30), &what, || {
                cluster.says_primary(first)
            });
        }
        if standbys > 0 {
            for k in 1..=standbys {
                cluster.add_standby(k);
            }
            for s in shards.clone() {
                for m in 1..=standbys {
                    cluster.add_shard_member(s, m);
                }
            }
            cluster.wait_in_sync(standbys as usize);
            for s in shards {
                cluster.wait_shard_in_sync(s, standbys as usize);
            }
        }
        let order = order.unwrap_or_else(|| (1..=capacity).filter(|&i| i != root_id).collect());
        let sequential = cluster.nodes.len() == 1 && order.len() > 1 && wait;
        for id in order {
            cluster.spawn(id);
            if sequential {
                cluster.wait_joined(&[id]);
            }
        }
        if wait {
            let all = cluster.ids();
            cluster.wait_joined(&all);
        }
        cluster
    }
}

/// A ZooKeeper (shared or own) and the node processes of one tree.
pub struct Cluster {
    pub zk: Option<ZooKeeper>,
    pub ensemble: Option<Ensemble>,
    /// The nodes' `--zookeeper`.
    pub zk_addr: String,
    pub depth: u32,
    pub root_id: u32,
    /// Root shards (`--root-shards`, given to every node when not 1).
    pub root_shards: u32,
    pub prefix: String,
    /// The cluster key the nodes share, when they have one.
    pub key: Option<Vec<u8>>,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    /// The nodes speak HTTPS.
    tls: bool,
    /// The node binary.
    binary: PathBuf,
    open_files: Option<u64>,
    nodes: BTreeMap<u32, NodeProc>,
    /// Flags of single nodes (`set_flag`).
    overrides: BTreeMap<u32, Vec<(String, String)>>,
}

impl Cluster {
    /// Every node of a tree of `depth`, joined, with node 1 as the root.
    pub fn start(depth: u32) -> Cluster {
        Cluster::builder(depth).start()
    }

    pub fn builder(depth: u32) -> Builder {
        Builder {
            depth,
            root_id: 1,
            order: None,
            env: Vec::new(),
            args: Vec::new(),
            own_zookeeper: false,
            ensemble: false,
            wait: true,
            open_files: None,
            root_data: false,
            standbys: 0,
            root_shards: 1,
            key: true,
            tokens: None,
            tls: false,
            binary: None,
        }
    }

    /// The data directory of process `key` (the root, or a standby).
    pub fn data_dir(&self, key: u32) -> String {
        self.dir
            .join(format!("data-{key}"))
            .to_string_lossy()
            .into_owned()
    }

    /// Starts standby `k` of the root group (process `STANDBY + k`) on a
    /// fresh port, with its own data directory.
    pub fn add_standby(&mut self, k: u32) {
        let key = STANDBY + k;
        let args = vec!["--data-dir".into(), self.data_dir(key)];
        self.spawn_with(key, free_port(), args);
    }

    /// The processes of the root group: the root's key and the standbys'.
    pub fn root_group(&self) -> Vec<u32> {
        self.nodes
            .keys()
            .copied()
            .filter(|&k| k == self.root_id || (k > STANDBY && k < SHARD_MEMBER))
            .collect()
    }

    /// The process of the root group that says it is the primary now.
    pub fn primary(&self) -> Option<u32> {
        self.root_group()
            .into_iter()
            .find(|&k| self.says_primary(k))
    }

    /// Whether process `key` runs and its `GET /` says it is the primary
    /// of its root group (`"role": "root"`), within a second.
    fn says_primary(&self, key: u32) -> bool {
        self.nodes[&key].child.is_some() && {
            let (status, info) = http::get_within(&self.url(key), Duration::from_secs(1));
            status == 200 && info["role"] == "root"
        }
    }

    /// The key of member `m` of shard `shard`: of shard 0, the root (`m` =
    /// 0) or its standby `m`; of another, [`shard_member`].
    pub fn member(&self, shard: u32, m: u32) -> u32 {
        match (shard, m) {
            (0, 0) => self.root_id,
            (0, m) => STANDBY + m,
            (s, m) => shard_member(s, m),
        }
    }

    /// The processes of shard `shard` started so far (running or not):
    /// of shard 0, [`Cluster::root_group`].
    pub fn shard_members(&self, shard: u32) -> Vec<u32> {
        match shard {
            0 => self.root_group(),
            s => self
                .nodes
                .keys()
                .copied()
                .filter(|&k| shard_member_of(k).is_some_and(|(of, _)| of == s))
                .collect(),
        }
    }

    /// Every process started so far: the tree's nodes, then each shard's
    /// members (shard 0's are the root, listed already, and its standbys).
    pub fn everyone(&self) -> Vec<u32> {
        let mut all = self.ids();
        for s in 0..self.root_shards {
            for member in self.shard_members(s) {
                if !all.contains(&member) {
                    all.push(member);
                }
            }
        }
        all
    }

    /// The shard of process `key` when it is a member of a root group
    /// (`None` for the other nodes of the tree).
    pub fn shard_of_member(&self, key: u32) -> Option<u32> {
        match shard_member_of(key) {
            Some((s, _)) => Some(s),
            None => self.root_group().contains(&key).then_some(0),
        }
    }

    /// The member of shard `shard` that says it is its primary now (asked
    /// one by one, as [`Cluster::primary`] asks the root group).
    pub fn shard_primary(&self, shard: u32) -> Option<u32> {
        self.shard_members(shard)
            .into_iter()
            .find(|&k| self.says_primary(k))
    }

    /// The `shards` of the root's `/nodes` (as its primary answers it):
    /// each shard's ranges, primary and group.
    pub fn shards_document(&self) -> Value {
        let doc = self.nodes_document();
        assert!(doc["shards"].is_array(), "no shards in /nodes: {doc}");
        doc["shards"].clone()
    }

    /// Starts member `m` of shard `s` >= 1 on a fresh port, with the
    /// root's id, `--shard s` and its own data directory.
    pub fn add_shard_member(&mut self, s: u32, m: u32) {
        let key = shard_member(s, m);
        let args = vec![
            "--data-dir".into(),
            self.data_dir(key),
            "--shard".into(),
            s.to_string(),
        ];
        self.spawn_with(key, free_port(), args);
    }

    /// Waits until the root's `/nodes` names as shard `shard`'s primary
    /// the member that says it is ([`Cluster::shard_primary`]), and shows
    /// `count` other members as standbys in sync (for shard 0,
    /// [`Cluster::wait_in_sync`]). The root learns of a shard's failover
    /// a moment after the shard: until then its entry may still list the
    /// new primary as a standby.
    pub fn wait_shard_in_sync(&self, shard: u32, count: usize) {
        if shard == 0 {
            return self.wait_in_sync(count);
        }
        let what =
            format!("the root's /nodes shows shard {shard}'s primary and {count} standbys in sync");
        wait_until(Duration::from_secs(30), &what, || {
            let Some(primary) = self.shard_primary(shard) else {
                return false;
            };
            let primary = self.address(primary);
            let at = self.primary().unwrap_or(self.root_id);
            let (status, doc) = http::get(&format!("{}/nodes", self.url(at)));
            let entry = doc["shards"]
                .as_array()
                .and_then(|all| all.iter().find(|e| e["shard"] == shard));
            let group = entry.and_then(|e| e["root_group"].as_array());
            status == 200
                && entry.is_some_and(|e| e["primary"] == primary.as_str())
                && group.is_some_and(|g| {
                    g.iter()
                        .filter(|m| {
                            m["role"] == "standby"
                                && m["in_sync"] == true
                                && m["address"] != primary.as_str()
                        })
                        .count()
                        >= count
                })
        });
    }

    /// Waits until the primary's `/nodes` shows `count` standbys in sync.
    pub fn wait_in_sync(&self, count: usize) {
        wait_until(
            Duration::from_secs(30),
            &format!("{count} standbys in sync"),
            || {
                let Some(primary) = self.primary() else {
                    return false;
                };
                let (status, doc) = http::get(&format!("{}/nodes", self.url(primary)));
                status == 200
                    && doc["root_group"].as_array().is_some_and(|g| {
                        g.iter()
                            .filter(|m| m["role"] == "standby" && m["in_sync"] == true)
                            .count()
                            >= count
                    })
            },
        );
    }

    /// A registry in the test process on the cluster's ZooKeeper and
    /// prefix (sessions of 2 s), to look at the cluster's znodes.
    pub fn registry(&self) -> treecache::registry::Registry {
        route_zookeeper_log();
        treecache::registry::Registry::start(&self.zk_addr, Duration::from_secs(2), &self.prefix)
    }

    /// Stops member `i` (1 to 3) of the cluster's ensemble.
    pub fn stop_zookeeper_member(&mut self, i: usize) {
        self.ensemble
            .as_mut()
            .expect("a cluster started with Builder::ensemble")
            .stop(i);
    }

    /// Starts member `i` (1 to 3) of the cluster's ensemble again, and waits
    /// until it serves.
    pub fn restart_zookeeper_member(&mut self, i: usize) {
        self.ensemble
            .as_mut()
            .expect("a cluster started with Builder::ensemble")
            .restart(i);
    }

    /// The nodes of the tree (the standbys of the root group left out).
    pub fn ids(&self) -> Vec<u32> {
        self.nodes
            .keys()
            .copied()
            .filter(|&k| k < STANDBY)
            .collect()
    }

    pub fn port(&self, id: u32) -> u16 {
        self.nodes[&id].port
    }

    /// The base URL of node `id`: `https://` in a cluster that runs TLS.
    pub fn url(&self, id: u32) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port(id))
    }

    pub fn address(&self, id: u32) -> String {
        format!("127.0.0.1:{}", self.port(id))
    }

    pub fn pid(&self, id: u32) -> u32 {
        self.nodes[&id].child.as_ref().expect("running").id()
    }

    /// The node's log so far.
    pub fn log(&self, id: u32) -> String {
        std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default()
    }

    /// The command line that starts node `id` on `port`.
    pub fn command(&self, id: u32, port: u16) -> Command {
        let mut c = Command::new(&self.binary);
        for flag in treecache::FLAGS {
            c.env_remove(flag.env);
        }
        // A value set for this node alone (`set_flag`), else the cluster's.
        let value = |flag: &str, default: String| {
            self.overrides
                .get(&id)
                .and_then(|o| o.iter().find(|(f, _)| f == flag))
                .map_or(default, |(_, v)| v.clone())
        };
        c.arg("node")
            .args(["--id", &id.to_string()])
            .args(["--depth", &self.depth.to_string()])
            .args(["--root-id", &self.root_id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--advertise".to_string(),
                value("--advertise", format!("127.0.0.1:{port}")),
            ])
            .args([
                "--zookeeper".to_string(),
                value("--zookeeper", self.zk_addr.clone()),
            ])
            .args(["--zk-prefix", &self.prefix])
            .args(["--startup-delay", "0"]);
        // Left out in a cluster of one shard: a build of an older version
        // does not know the flag.
        let shards = value("--root-shards", self.root_shards.to_string());
        if shards != "1" {
            c.args(["--root-shards", &shards]);
        }
        c.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Gives node `id` its own `--advertise` or `--zookeeper` from its next
    /// start on (to put a proxy between it and the others), or its own
    /// `--root-shards` (to see it refuse another count than the cluster's).
    pub fn set_flag(&mut self, id: u32, flag: &str, value: &str) {
        assert!(
            ["--advertise", "--zookeeper", "--root-shards"].contains(&flag),
            "set_flag takes --advertise, --zookeeper or --root-shards, not {flag}"
        );
        let o = self.overrides.entry(id).or_default();
        o.retain(|(f, _)| f != flag);
        o.push((flag.to_string(), value.to_string()));
    }

    /// Starts node `id` on a fresh port (or its old one when it had one).
    pub fn spawn(&mut self, id: u32) {
        let port = self.nodes.get(&id).map_or_else(free_port, |n| n.port);
        self.spawn_at(id, port);
    }

    /// Starts process `key` (a node's id, or a standby's key) listening on
    /// `port`, with the flags of its own it had before.
    pub fn spawn_at(&mut self, key: u32, port: u16) {
        let own = self
            .nodes
            .get(&key)
            .map(|n| n.own_args.clone())
            .unwrap_or_default();
        self.spawn_with(key, port, own);
    }

    fn spawn_with(&mut self, key: u32, port: u16, own_args: Vec<String>) {
        let id = if key > STANDBY { self.root_id } else { key };
        let mut command = self.command(id, port);
        command.args(&own_args);
        let log = self.dir.join(format!("{}.log", label(key)));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        treecache_local::children::die_with_parent(&mut command);
        if let Some(limit) = self.open_files {
            treecache_local::children::limit_open_files(&mut command, limit);
        }
        let child = command.spawn().expect("start a node");
        self.nodes.insert(
            key,
            NodeProc {
                id: key,
                port,
                child: Some(child),
                log,
                own_args,
            },
        );
    }

    /// Waits until each of these nodes is ready (it has joined, and the
    /// root has opened for joins and writes) and answers from its cache
    /// (its lease holds). A node of the first version has neither `/ready`
    /// (it answers 404) nor a lease: it is ready once `GET /` says it
    /// has joined.
    pub fn wait_joined(&self, ids: &[u32]) {
        wait_until(
            Duration::from_secs(30),
            &format!("nodes {ids:?} joined"),
            || {
                ids.iter().all(|&id| {
                    let (status, ready) = http::get(&format!("{}/ready", self.url(id)));
                    let (_, info) = http::get(&self.url(id));
                    match status {
                        404 => info["joined"] == true,
                        _ => status == 200 && ready["ready"] == true && info["lease"] == true,
                    }
                })
            },
        );
    }

    /// The node binary the cluster runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Kills node `id` (SIGKILL) and waits for it to go.
    pub fn kill(&mut self, id: u32) {
        if let Some(mut child) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to node `id`.
    pub fn signal(&self, id: u32, signal: i32) {
        assert!(treecache_local::children::signal(self.pid(id), signal));
    }

    /// Waits up to `limit` for node `id` to exit, and returns how it ended.
    pub fn wait_exit(&mut self, id: u32, limit: Duration) -> Option<std::process::ExitStatus> {
        let node = self.nodes.get_mut(&id)?;
        let until = Instant::now() + limit;
        loop {
            let child = node.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Restarts node `id` on the same port.
    pub fn restart(&mut self, id: u32) {
        self.kill(id);
        self.spawn(id);
        self.wait_joined(&[id]);
    }

    /// Stops process `key` with SIGTERM, as an operator would, and waits
    /// up to 10 s for it to exit (then kills it); returns how it ended.
    pub fn stop(&mut self, key: u32) -> Option<std::process::ExitStatus> {
        if self.nodes.get(&key).is_none_or(|n| n.child.is_none()) {
            return None;
        }
        self.signal(key, 15);
        let status = self.wait_exit(key, Duration::from_secs(10));
        self.kill(key);
        status
    }

    /// Restarts a member of a root group (of any shard) on its port and
    /// data directory, and waits until it answers `GET /`, as the primary
    /// or as a standby ([`Cluster::restart`] waits for a node of the tree
    /// to be ready, which a standby is not).
    pub fn restart_member(&mut self, key: u32) {
        assert!(
            self.shard_of_member(key).is_some(),
            "{} is not a member of a root group",
            label(key)
        );
        self.kill(key);
        self.spawn(key);
        let what = format!("{} answers again", label(key));
        wait_until(Duration::from_secs(30), &what, || {
            let (status, info) = http::get_within(&self.url(key), Duration::from_secs(1));
            status == 200 && (info["role"] == "root" || info["role"] == "standby")
        });
    }

    /// Restarts node `id` on a new port.
    pub fn restart_elsewhere(&mut self, id: u32) {
        self.kill(id);
        self.spawn_at(id, free_port());
        self.wait_joined(&[id]);
    }

    /// Stops node `id` without killing it (SIGSTOP).
    pub fn freeze(&self, id: u32) {
        assert!(treecache_local::children::signal(
            self.pid(id),
            libc_sigstop()
        ));
    }

    /// Resumes a frozen node (SIGCONT).
    pub fn thaw(&self, id: u32) {
        assert!(treecache_local::children::signal(
            self.pid(id),
            libc_sigcont()
        ));
    }

    /// The root's `/nodes` document.
    /// The tree's shape, from the root's `/nodes`, without each node's
    /// `live` flag (which comes and goes with sessions); `live` has those.
    pub fn tree(&self) -> Value {
        let mut doc = self.nodes_document();
        if let Some(nodes) = doc["nodes"].as_array_mut() {
            for node in nodes {
                if let Some(fields) = node.as_object_mut() {
                    fields.remove("live");
                }
            }
        }
        doc
    }

    /// The root's `/nodes` document as it answers it (the primary's, when
    /// the root group has standbys).
    pub fn nodes_document(&self) -> Value {
        let at = self.primary().unwrap_or(self.root_id);
        let (status, doc) = http::get(&format!("{}/nodes", self.url(at)));
        assert_eq!(status, 200, "{doc}");
        doc
    }

    /// Whether the root's `/nodes` marks node `id` live (`None`: it cannot tell).
    pub fn live(&self, id: u32) -> Option<bool> {
        let doc = self.nodes_document();
        doc["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == format!("NODE-{id}"))?["live"]
            .as_bool()
    }

    /// The slot of node `id`, from the root's table.
    pub fn slot_of(&self, id: u32) -> u64 {
        let doc = self.tree();
        let name = format!("NODE-{id}");
        doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name.as_str())
            .and_then(|n| n["slot"].as_u64())
            .unwrap_or_else(|| panic!("{name} is not in the tree: {doc}"))
    }

    /// The name of the node in `slot`, from the root's table.
    pub fn at_slot(&self, slot: u64) -> u32 {
        let doc = self.tree();
        let name = doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["slot"] == slot)
            .unwrap_or_else(|| panic!("no node at slot {slot}: {doc}"))["name"]
            .as_str()
            .unwrap()
            .to_string();
        name.trim_start_matches("NODE-").parse().unwrap()
    }
}

/// How process `key` is named in logs: `NODE-3`, `root-standby-2`,
/// `shard-1-member-0`.
fn label(key: u32) -> String {
    match (shard_member_of(key), key.checked_sub(STANDBY)) {
        (Some((s, m)), _) => format!("shard-{s}-member-{m}"),
        (None, Some(k)) if k > 0 => format!("root-standby-{k}"),
        _ => format!("NODE-{key}"),
    }
}

fn libc_sigstop() -> i32 {
    19
}

fn libc_sigcont() -> i32 {
    18
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                treecache_local::children::signal(child.id(), libc_sigcont());
                let _ = child.kill();
                let _ = child.wait();
            }
            if failing {
                let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!(
                    "--- {} (last lines of {}) ---",
                    label(node.id),
                    node.log.display()
                );
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        if !failing {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `ok` until it holds, failing the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {limit:?} waiting until {what}");
}

/// A minimal HTTP client over one shared keep-alive agent.
pub mod http {
    use std::io::Read;
    use std::sync::OnceLock;
    use std::time::Duration;

    use serde_json::Value;

    /// An answer: status, headers (lower-case names) and raw body.
    #[derive(Debug)]
    pub struct Answer {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Answer {
        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or(Value::Null)
        }
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// An agent builder whose `https://` calls trust the test CA
    /// ([`crate::tls::TestCa::shared`]) alone.
    pub fn builder() -> ureq::AgentBuilder {
        ureq::AgentBuilder::new().tls_config(crate::tls::TestCa::shared().client_config())
    }

    pub fn agent() -> &'static ureq::Agent {
        static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
        AGENT.get_or_init(|| {
            builder()
                .timeout(Duration::from_secs(10))
                .max_idle_connections_per_host(32)
                .build()
        })
    }

    /// Any request; status 0 means the node could not be reached.
    pub fn request(
        method: &str,
        url: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = agent().request(method, url);
        for (n, v) in headers {
            req = req.set(n, v);
        }
        let result = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                let status = r.status();
                let headers = r
                    .headers_names()
                    .into_iter()
                    .map(|n| {
                        let v = r.header(&n).unwrap_or("").to_string();
                        (n.to_ascii_lowercase(), v)
                    })
                    .collect();
                let mut body = Vec::new();
                let _ = r.into_reader().take(4 << 20).read_to_end(&mut body);
                Answer {
                    status,
                    headers,
                    body,
                }
            }
            Err(e) => Answer {
                status: 0,
                headers: Vec::new(),
                body: e.to_string().into_bytes(),
            },
        }
    }

    pub fn get(url: &str) -> (u16, Value) {
        let a = request("GET", url, None, &[]);
        (a.status, a.json())
    }

    /// A GET that gives up after `limit` (status 0), for a process that
    /// may be frozen.
    pub fn get_within(url: &str, limit: Duration) -> (u16, Value) {
        let answer = builder().timeout(limit).build().get(url).call();
        match answer {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                let status = r.status();
                let json = r
                    .into_string()
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                (status, json.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub fn put(url: &str, value: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(&serde_json::json!({ "value": value })).unwrap();
        let a = request(
            "PUT",
            url,
            Some(&body),
            &[("Content-Type", "application/json")],
        );
        (a.status, a.json())
    }

    pub fn delete(url: &str) -> (u16, Value) {
        let a = request("DELETE", url, None, &[]);
        (a.status, a.json())
    }

    /// Percent-encodes a key for a URL path.
    pub fn enc(key: &str) -> String {
        treecache_common::segment::encode(key)
    }
}
