//! ZooKeeper: the only module that talks to it.
//!
//! - `mod.rs` (here): the guarded client, the registrations a node keeps
//!   ([`Registry::keep`]) and bounded calls.
//! - [`layout`]: where a cluster's znodes live, and what they hold.
//! - `sessions`: this node's sessions as leases, and other nodes' liveness
//!   (the [`Sessions`] seam of the node).
//!
//! The `zookeeper` crate (0.8) needs guarding, and this module does it:
//! - `connect()` returns before a session exists: we wait for `Connected`.
//! - Its reconnect loop retries without pause, logging an error per attempt,
//!   until the session times out, and its `Closed` state is final. So we
//!   connect only after a plain TCP probe succeeds; the node's logger hands
//!   the crate's records to [`pace_client_log`], which pauses the loop at its
//!   one log call per attempt; and on `Closed` we start over with a fresh
//!   client and back-off, logging our own state changes once each.
//! - Its first connection goes to the first server of the connect string,
//!   and a stopped one there costs failed attempts out of the client's time
//!   to connect: we put a server that just accepted our probe first. Its
//!   constructor unwraps the opening of that socket: we catch a panic.
//! - It does not tell its session id or the session timeout the server
//!   granted; it logs them (at trace level) on every connection, and
//!   [`pace_client_log`] reads that record. See `sessions` for how.
//! - A call can block forever during a silent partition, and so can dropping
//!   a client (its `Drop` closes the session with a blocking call): every call
//!   runs on a helper thread with a time bound, a broken client is dropped
//!   on a thread of its own, and a client that has not been answered for a
//!   whole session timeout is given up (the crate itself never notices).
//! - After an expiry the crate opens a new session on the same client, and
//!   tells nobody: we tell sessions apart by their ids.
//! - With its trace records produced, its I/O thread unwraps the socket's
//!   peer address for the record of a ping, and would die should the
//!   connection have been reset just then. Its calls would then fail, and
//!   the heartbeat, unanswered for a timeout, has the client replaced. (The
//!   heartbeat keeps the client from pinging anyway: see below.)
//!
//! An ephemeral znode belongs to the session that created it: if a kept
//! ephemeral znode exists and belongs to another session (an earlier run of
//! this node, or another process with its id), we leave it alone and create
//! ours once that session has ended and ZooKeeper has deleted it. A node's
//! liveness thus never passes to a new session while an old one lives.
//! The one exception: a session this registry itself gave up, whose lease
//! it ended first; its znode is replaced at once.
//!
//! One weakness is only softened: the client reconnects within its session
//! only if it sent a ping (or started) less than about a session timeout
//! ago (whole seconds, rounded down), and it pings
//! only after two thirds of a timeout without traffic; the heartbeat of the
//! lease (every sixth of a timeout) leaves it no such pause. So when the
//! connection to a server breaks (the server stops, a partition), the
//! client gives up at its first attempt and we start a new session: the
//! generation goes up, and the liveness znode passes to the new session at
//! once (by the exception above). A reconnection within the session happens
//! only within about a timeout of the client's start.
//!
//! The rest of the node never waits on ZooKeeper without a bound, and never
//! needs it to serve data. Registrations are declared with [`Registry::keep`];
//! a session thread applies them whenever a session is (re)established.

mod acl;
pub mod layout;
mod sessions;

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use zookeeper::{Acl, CreateMode, WatchedEvent, Watcher, ZkError, ZkState, ZooKeeper};

use crate::config::ZkAuth;

pub use crate::node::peers::{Lease, Sessions};
pub use layout::ZnodeData;
pub use sessions::SessionInfo;

use sessions::{Book, Connected};

const CONNECT_WAIT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Pause per failed connection attempt of the client's own reconnect loop.
const CLIENT_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How often a kept ephemeral znode held by another session is tried again.
const HELD_RETRY: Duration = Duration::from_millis(250);

/// The most verbose level the process must let through for the crate's
/// records to reach [`pace_client_log`]: the record of a new connection is
/// a trace record. (`launch` sets the global maximum to at least this.)
pub const CLIENT_LOG_LEVEL: log::LevelFilter = log::LevelFilter::Trace;

/// Whether a log record comes from the `zookeeper` crate.
pub fn is_client_log(target: &str) -> bool {
    target == "zookeeper" || target.starts_with("zookeeper::")
}

/// Handles a log record of the `zookeeper` crate instead of printing it.
/// The process's logger must hand every record of the crate here (down to
/// [`CLIENT_LOG_LEVEL`]): without them a registry cannot learn its sessions
/// and refuses to use them.
///
/// While the server is down, the client's I/O thread retries connecting
/// with no pause: either an immediate "Failed to connect" and round again,
/// or a connect that is refused a moment later ("Reconnect due to HUP"),
/// which starts over with "Establishing Zk connection". The only code of
/// ours it runs on each attempt is these log calls. Sleeping in them turns a
/// loop that would burn a core for a whole session timeout into about ten
/// attempts a second.
///
/// The same thread logs each new connection's session id and granted
/// timeout, and a session's expiry; those are noted for the registry that
/// owns the thread (see `sessions`). Trace records are many: each costs a
/// target comparison, and those of the I/O thread the first few bytes of
/// their text.
pub fn pace_client_log(record: &log::Record<'_>) {
    if record.target() != "zookeeper::io" {
        return;
    }
    if record.level() == log::Level::Trace {
        sessions::note_trace(record.args());
        return;
    }
    if record.level() > log::Level::Info {
        return;
    }
    let message = record.args().to_string();
    if message.starts_with("Failed to connect") || message.starts_with("Establishing Zk connection")
    {
        std::thread::sleep(CLIENT_RETRY_PAUSE);
    } else {
        sessions::note_info(&message);
    }
}

/// A znode this node keeps in ZooKeeper for as long as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Znode {
    pub path: String,
    pub data: Vec<u8>,
    pub ephemeral: bool,
}

/// A znode read back: its path and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub path: String,
    pub data: Vec<u8>,
}

/// Why a call to ZooKeeper did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// No session right now.
    NotConnected,
    /// The call did not return within its bound.
    TimedOut,
    /// ZooKeeper answered with an error.
    Zk(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::NotConnected => f.write_str("not connected to ZooKeeper"),
            RegistryError::TimedOut => f.write_str("ZooKeeper did not answer in time"),
            RegistryError::Zk(e) => write!(f, "ZooKeeper error: {e}"),
        }
    }
}

struct Quiet;

impl Watcher for Quiet {
    fn handle(&self, _: WatchedEvent) {}
}

/// The client calls go to, and its serial number (one per client started).
#[derive(Clone)]
struct Client {
    serial: u64,
    zk: Arc<ZooKeeper>,
}

type Callback = Arc<dyn Fn(u64) + Send + Sync>;

/// A followed znode as a heartbeat read it: when, and its data (`None`: it
/// did not exist).
type Reading = (Instant, Option<Vec<u8>>);

struct Shared {
    connect: String,
    prefix: String,
    /// The digest identity each session authenticates as (`--zk-auth`).
    auth: Option<ZkAuth>,
    /// The ACL of every znode created (`acl`).
    acl: Vec<Acl>,
    /// The session timeout asked for.
    asked: Duration,
    /// The client of the current session, while connected.
    session: Mutex<Option<Client>>,
    desired: Mutex<Vec<Znode>>,
    /// Wakes the session thread (registrations changed, client events).
    nudge: Mutex<Option<mpsc::Sender<Event>>>,
    /// What we know of our sessions and the lease.
    book: Mutex<Book>,
    /// Told of each new session once its registrations are in place.
    callbacks: Mutex<Vec<Callback>>,
    /// Kept ephemeral znodes held by another session, and by which.
    held: Mutex<BTreeMap<String, i64>>,
    /// Wakes the heartbeat (a session's registrations are in place).
    wake: Mutex<mpsc::Sender<()>>,
    /// The names under the liveness directory, as last read.
    live: Mutex<Option<(Instant, Vec<String>)>>,
    live_reader: Once,
    /// The znodes read with every heartbeat ([`Registry::follow`]): when
    /// each was last read, and its data (`None`: it did not exist).
    followed: Mutex<BTreeMap<String, Option<Reading>>>,
    /// Set by [`Registry::close`]: no new session from then on.
    closed: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn send(&self, event: Event) {
        if let Some(tx) = self.nudge.lock().unwrap().as_ref() {
            let _ = tx.send(event);
        }
    }
}

enum Event {
    /// The client of this serial connected (what it learned is in the book).
    Connected(u64, Connected),
    /// The server said the session with this id expired.
    Expired(u64, i64),
    /// Another state of the client of this serial.
    State(u64, ZkState),
    /// The registrations changed.
    Nudge,
    /// The client of this serial has not been answered for a whole session timeout.
    Stale(u64),
}

/// The handle the node uses. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

impl Registry {
    /// Starts the session thread for the ensemble at `connect` (`h:p[,h:p]`),
    /// asking for sessions of `session_timeout`; `prefix` is the cluster's
    /// znode prefix (where the liveness znodes are).
    pub fn start(connect: &str, session_timeout: Duration, prefix: &str) -> Registry {
        Registry::start_with_auth(connect, session_timeout, prefix, None)
    }

    /// [`Registry::start`], authenticating every session as `auth` (the
    /// digest scheme) and creating every znode with an ACL for it alone.
    pub fn start_with_auth(
        connect: &str,
        session_timeout: Duration,
        prefix: &str,
        auth: Option<ZkAuth>,
    ) -> Registry {
        if log::max_level() < CLIENT_LOG_LEVEL {
            log::warn!(
                "the ZooKeeper client's trace records are not produced (log level {}): \
                 sessions cannot be learned, so none will be used",
                log::max_level()
            );
        }
        let (wake, woken) = mpsc::channel();
        let shared = Arc::new(Shared {
            connect: connect.to_string(),
            prefix: prefix.to_string(),
            acl: acl::for_cluster(auth.as_ref()),
            auth,
            asked: session_timeout,
            session: Mutex::new(None),
            desired: Mutex::new(Vec::new()),
            nudge: Mutex::new(None),
            book: Mutex::new(Book::default()),
            callbacks: Mutex::new(Vec::new()),
            held: Mutex::new(BTreeMap::new()),
            wake: Mutex::new(wake),
            live: Mutex::new(None),
            live_reader: Once::new(),
            followed: Mutex::new(BTreeMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("zookeeper".into())
            .spawn(move || run_sessions(s))
            .expect("spawn the ZooKeeper session thread");
        let s = shared.clone();
        std::thread::Builder::new()
            .name("zookeeper-heartbeat".into())
            .spawn(move || sessions::heartbeat(s, woken))
            .expect("spawn the ZooKeeper heartbeat thread");
        Registry { shared }
    }

    pub fn is_connected(&self) -> bool {
        self.shared.session.lock().unwrap().is_some()
    }

    /// Keeps `znode` registered, replacing an earlier one at the same path;
    /// applied now when connected and again on every new session. An
    /// ephemeral znode under [`layout::live_dir`] is the node's liveness
    /// znode: from then on the lease holds only while it is the session's
    /// own (see `sessions`).
    pub fn keep(&self, znode: Znode) {
        // The liveness znode (an ephemeral one under `layout::live_dir`):
        // the lease needs it from now on.
        let dir = format!("{}/", layout::live_dir(&self.shared.prefix));
        if znode.ephemeral && znode.path.starts_with(&dir) {
            self.shared.book.lock().unwrap().keep_live(&znode.path);
        }
        {
            let mut desired = self.shared.desired.lock().unwrap();
            desired.retain(|z| z.path != znode.path);
            desired.push(znode);
        }
        self.shared.send(Event::Nudge);
    }

    /// Stops keeping the znode at `path` (registered with [`Registry::keep`]):
    /// it is not made again in later sessions. A persistent one stays as it
    /// is; an ephemeral one goes with the current session. A liveness znode
    /// forgotten no longer counts for the lease, which then rests on the
    /// session alone.
    pub fn forget(&self, path: &str) {
        self.shared
            .desired
            .lock()
            .unwrap()
            .retain(|z| z.path != path);
        self.shared.held.lock().unwrap().remove(path);
        self.shared.book.lock().unwrap().forget_live(path);
        self.shared.send(Event::Nudge);
    }

    /// Ends this node's session now, for a process that is about to exit:
    /// its ephemeral znodes go at once, so that others need not wait a
    /// session timeout to learn it is gone (a standby of the root takes
    /// over at once). The lease ends first; no new session is started.
    /// Waits at most `wait` for ZooKeeper to confirm.
    pub fn close(&self, wait: Duration) {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let client = self.shared.session.lock().unwrap().take();
        let Some(client) = client else {
            return;
        };
        self.shared.book.lock().unwrap().abandon(client.serial);
        let zk = client.zk.clone();
        let closed = bounded_for(wait, move || zk.close());
        match closed {
            Ok(()) => log::info!("closed the ZooKeeper session"),
            Err(e) => log::warn!("closing the ZooKeeper session failed ({e})"),
        }
    }

    /// Calls `callback` with the new generation each time this node gets a
    /// new session (see [`Lease::generation`]), once the registrations of
    /// that session are in place (a kept ephemeral znode held by another
    /// session delays it until that session ends). It runs on the
    /// registry's session thread, under none of its locks, and should be
    /// quick. It hears of the sessions announced after it is added; the
    /// current generation is in [`Sessions::lease`].
    pub fn on_new_session(&self, callback: impl Fn(u64) + Send + Sync + 'static) {
        self.shared
            .callbacks
            .lock()
            .unwrap()
            .push(Arc::new(callback));
    }

    /// The current session: its id, the timeout the server granted, and its
    /// generation; `None` while there is none.
    pub fn session(&self) -> Option<SessionInfo> {
        self.shared.book.lock().unwrap().session()
    }

    /// Runs `f` with the current session, bounded by `CALL_TIMEOUT`.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ZooKeeper) -> Result<T, ZkError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        self.call_within(CALL_TIMEOUT, f)
    }

    /// Runs `f` with the current session, bounded by `limit`.
    fn call_within<T: Send + 'static>(
        &self,
        limit: Duration,
        f: impl FnOnce(&ZooKeeper) -> Result<T, ZkError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let client = self
            .shared
            .session
            .lock()
            .unwrap()
            .clone()
            .ok_or(RegistryError::NotConnected)?;
        bounded_for(limit, move || f(&client.zk))
    }

    /// Waits up to `wait` for a session, then runs `f` with it.
    pub fn call_when_connected<T: Send + 'static>(
        &self,
        wait: Duration,
        f: impl FnOnce(&ZooKeeper) -> Result<T, ZkError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let until = Instant::now() + wait;
        while !self.is_connected() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.call(f)
    }

    /// Reads the znode at `path` and every znode below it, parents first.
    pub fn read_subtree(&self, path: &str) -> Result<Vec<Record>, RegistryError> {
        let path = path.to_string();
        self.call(move |zk| {
            let mut out = Vec::new();
            let mut todo = vec![path];
            while let Some(p) = todo.pop() {
                let data = match zk.get_data(&p, false) {
                    Ok((data, _)) => data,
                    Err(ZkError::NoNode) => continue,
                    Err(e) => return Err(e),
                };
                match zk.get_children(&p, false) {
                    Ok(children) => todo.extend(children.into_iter().map(|c| format!("{p}/{c}"))),
                    Err(ZkError::NoNode) => {}
                    Err(e) => return Err(e),
                }
                out.push(Record { path: p, data });
            }
            Ok(out)
        })
    }

    /// The names of the children of `path` (empty when it does not exist).
    pub fn children(&self, path: &str) -> Result<Vec<String>, RegistryError> {
        let path = path.to_string();
        self.call(move |zk| match zk.get_children(&path, false) {
            Err(ZkError::NoNode) => Ok(Vec::new()),
            other => other,
        })
    }

    /// Deletes `path` and everything below it.
    pub fn delete_subtree(&self, path: &str) -> Result<(), RegistryError> {
        let path = path.to_string();
        self.call(move |zk| delete_recursive(zk, &path))
    }

    /// The root's advertised address, as registered in its znode.
    pub fn find_root(&self, prefix: &str, root_id: u32) -> Option<String> {
        let data = self.get(&layout::root(prefix, root_id)).ok()??;
        let d: ZnodeData = serde_json::from_slice(&data).ok()?;
        Some(d.address)
    }

    /// [`Registry::find_root`] for a node that asks often: the root's znode
    /// is read with every heartbeat of the lease (in the same call, so it
    /// costs no thread and no call of its own), and asked for directly only
    /// when that reading is older than two heartbeats.
    pub fn follow_root(&self, prefix: &str, root_id: u32) -> Option<String> {
        let data = self.follow(&layout::root(prefix, root_id))?;
        let d: ZnodeData = serde_json::from_slice(&data?).ok()?;
        Some(d.address)
    }

    /// The data of `path` (`Some(None)`: it does not exist), as read with
    /// the latest heartbeat if that is at most two heartbeats old, else
    /// read now; `None` when ZooKeeper cannot tell. From the first call on,
    /// every heartbeat reads `path` too.
    pub fn follow(&self, path: &str) -> Option<Option<Vec<u8>>> {
        let fresh = {
            let mut followed = self.shared.followed.lock().unwrap();
            let period = sessions::heartbeat_period(self.shared.asked);
            match followed.entry(path.to_string()).or_insert(None) {
                Some((at, data)) if at.elapsed() <= 2 * period => Some(data.clone()),
                _ => None,
            }
        };
        fresh.or_else(|| self.get(path).ok())
    }

    /// Writes `data` at the persistent znode `path`, creating it (and its
    /// parents) when it does not exist yet.
    pub fn put(&self, path: &str, data: Vec<u8>) -> Result<(), RegistryError> {
        let (path, acl) = (path.to_string(), self.shared.acl.clone());
        self.call(move |zk| {
            ensure_parents(zk, &path, &acl)?;
            match zk.create(&path, data.clone(), acl.clone(), CreateMode::Persistent) {
                Ok(_) => Ok(()),
                Err(ZkError::NodeExists) => zk.set_data(&path, data, None).map(|_| ()),
                Err(e) => Err(e),
            }
        })
    }

    /// The data of `path` and its version (for a conditional write), or
    /// `None` when it does not exist.
    pub fn read_versioned(&self, path: &str) -> Result<Option<(Vec<u8>, i32)>, RegistryError> {
        let path = path.to_string();
        self.call(move |zk| match zk.get_data(&path, false) {
            Ok((data, stat)) => Ok(Some((data, stat.version))),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e),
        })
    }

    /// Writes `data` at `path` only if it is still at version `expected`
    /// (`None`: only if it does not exist yet); `Ok(false)` when someone
    /// wrote (or created) it first.
    pub fn write_versioned(
        &self,
        path: &str,
        data: Vec<u8>,
        expected: Option<i32>,
    ) -> Result<bool, RegistryError> {
        let (path, acl) = (path.to_string(), self.shared.acl.clone());
        self.call(move |zk| match expected {
            Some(version) => match zk.set_data(&path, data, Some(version)) {
                Ok(_) => Ok(true),
                Err(ZkError::BadVersion | ZkError::NoNode) => Ok(false),
                Err(e) => Err(e),
            },
            None => {
                ensure_parents(zk, &path, &acl)?;
                match zk.create(&path, data, acl.clone(), CreateMode::Persistent) {
                    Ok(_) => Ok(true),
                    Err(ZkError::NodeExists) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        })
    }

    /// Makes sure this session has a member znode in the election directory
    /// `dir` (ephemeral, sequential, holding `data`); returns its name.
    pub fn ensure_member(&self, dir: &str, data: Vec<u8>) -> Result<String, RegistryError> {
        let me = self.session().ok_or(RegistryError::NotConnected)?.id;
        let (dir, acl) = (dir.to_string(), self.shared.acl.clone());
        self.call(move |zk| {
            if let Ok(names) = zk.get_children(&dir, false) {
                for name in names {
                    let path = format!("{dir}/{name}");
                    if let Ok((old, stat)) = zk.get_data(&path, false) {
                        if stat.ephemeral_owner == me {
                            if old != data {
                                zk.set_data(&path, data.clone(), Some(stat.version))?;
                            }
                            return Ok(name);
                        }
                    }
                }
            }
            ensure_parents(zk, &format!("{dir}/member-"), &acl)?;
            let path = zk.create(
                &format!("{dir}/member-"),
                data,
                acl.clone(),
                CreateMode::EphemeralSequential,
            )?;
            Ok(path.rsplit('/').next().unwrap_or_default().to_string())
        })
    }

    /// The member znodes of the election directory `dir`: name and data, in
    /// the order they were created (their sequence numbers).
    pub fn members(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
        let dir = dir.to_string();
        self.call(move |zk| {
            let mut names = match zk.get_children(&dir, false) {
                Ok(names) => names,
                Err(ZkError::NoNode) => Vec::new(),
                Err(e) => return Err(e),
            };
            names.sort();
            let mut members = Vec::new();
            for name in names {
                match zk.get_data(&format!("{dir}/{name}"), false) {
                    Ok((data, _)) => members.push((name, data)),
                    Err(ZkError::NoNode) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(members)
        })
    }

    /// The data of `path`, or `None` when it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let path = path.to_string();
        self.call(move |zk| match zk.get_data(&path, false) {
            Ok((data, _)) => Ok(Some(data)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e),
        })
    }
}

/// Runs `f` on its own thread and waits at most `limit` for it.
/// A call that hangs is left behind on its thread; the caller goes on.
fn bounded_for<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> Result<T, ZkError> + Send + 'static,
) -> Result<T, RegistryError> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("zookeeper-call".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| RegistryError::Zk(format!("cannot start a thread: {e}")))?;
    match rx.recv_timeout(limit) {
        Ok(result) => result.map_err(|e| RegistryError::Zk(format!("{e:?}"))),
        Err(_) => Err(RegistryError::TimedOut),
    }
}

fn delete_recursive(zk: &ZooKeeper, path: &str) -> Result<(), ZkError> {
    match zk.get_children(path, false) {
        Ok(children) => {
            for c in children {
                delete_recursive(zk, &format!("{path}/{c}"))?;
            }
        }
        Err(ZkError::NoNode) => return Ok(()),
        Err(e) => return Err(e),
    }
    match zk.delete(path, None) {
        Ok(()) | Err(ZkError::NoNode) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The servers of a connect string (`h:p,h:p[/chroot]`) and its chroot.
fn split_connect(connect: &str) -> (Vec<&str>, &str) {
    let (hosts, chroot) = match connect.find('/') {
        Some(i) => connect.split_at(i),
        None => (connect, ""),
    };
    let hosts = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    (hosts, chroot)
}

/// The connect string to give the client: the servers of `connect` from
/// the first one that accepts a TCP connection on, or `None` when none does.
/// (The client's first connection goes to the first server.)
fn reachable(connect: &str) -> Option<String> {
    let (hosts, chroot) = split_connect(connect);
    let first = hosts.iter().position(|hp| {
        hp.to_socket_addrs()
            .ok()
            .into_iter()
            .flatten()
            .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
    })?;
    let mut order = hosts[first..].to_vec();
    order.extend_from_slice(&hosts[..first]);
    Some(format!("{}{chroot}", order.join(",")))
}

/// Drops a client on a thread of its own: closing may block. Its lease
/// ends first: closing ends the session at once, without a timeout.
fn abandon(shared: &Shared, client: Client) {
    shared.book.lock().unwrap().abandon(client.serial);
    let _ = std::thread::Builder::new()
        .name("zookeeper-close".into())
        .spawn(move || drop(client));
}

/// Authenticates the client's connection as the digest identity, if any
/// (ZooKeeper keeps it per connection: done on every new connection).
fn authenticate(shared: &Shared, client: &Client) -> Result<(), RegistryError> {
    let Some(auth) = &shared.auth else {
        return Ok(());
    };
    let (zk, credentials) = (client.zk.clone(), acl::credentials(auth));
    bounded_for(CALL_TIMEOUT, move || zk.add_auth("digest", credentials))
}

/// Creates the parents of `path` that are missing, with empty data.
fn ensure_parents(zk: &ZooKeeper, path: &str, acl: &[Acl]) -> Result<(), ZkError> {
    let mut at = String::new();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push('/');
        at.push_str(part);
        match zk.create(&at, Vec::new(), acl.to_vec(), CreateMode::Persistent) {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How applying a znode went.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Done,
    /// An ephemeral znode that belongs to the session with this id.
    HeldBy(i64),
}

/// Makes one znode as desired, in the session `me`; `ended` are this
/// registry's earlier sessions, whose leases ended.
fn apply(
    zk: &ZooKeeper,
    z: &Znode,
    me: i64,
    ended: &[i64],
    acl: &[Acl],
) -> Result<Applied, ZkError> {
    ensure_parents(zk, &z.path, acl)?;
    let acl = acl.to_vec();
    if !z.ephemeral {
        return match zk.create(&z.path, z.data.clone(), acl, CreateMode::Persistent) {
            Ok(_) => Ok(Applied::Done),
            Err(ZkError::NodeExists) => zk
                .set_data(&z.path, z.data.clone(), None)
                .map(|_| Applied::Done),
            Err(e) => Err(e),
        };
    }
    // An ephemeral znode: ours to create, or to keep when we own it; never
    // taken from another session that is alive.
    for _ in 0..3 {
        match zk.create(&z.path, z.data.clone(), acl.clone(), CreateMode::Ephemeral) {
            Ok(_) => return Ok(Applied::Done),
            Err(ZkError::NodeExists) => {}
            Err(e) => return Err(e),
        }
        let (data, stat) = match zk.get_data(&z.path, false) {
            Ok(found) => found,
            // Gone in between: try creating it again.
            Err(ZkError::NoNode) => continue,
            Err(e) => return Err(e),
        };
        if stat.ephemeral_owner == me {
            if data != z.data {
                zk.set_data(&z.path, z.data.clone(), Some(stat.version))?;
            }
            return Ok(Applied::Done);
        }
        let owner = stat.ephemeral_owner;
        if owner == 0 {
            // A persistent znode where an ephemeral one belongs: no session
            // owns it, so it protects nobody's liveness.
            log::warn!(
                "replacing the persistent znode {} by an ephemeral one",
                z.path
            );
        } else if ended.contains(&owner) {
            // Ours, of a session given up (its lease ended then): nobody
            // counts on it any more.
            log::info!(
                "replacing {} of this node's earlier session 0x{owner:x}",
                z.path
            );
        } else {
            return Ok(Applied::HeldBy(owner));
        }
        match zk.delete(&z.path, Some(stat.version)) {
            Ok(()) | Err(ZkError::NoNode) | Err(ZkError::BadVersion) => {}
            Err(e) => return Err(e),
        }
    }
    Err(ZkError::NodeExists)
}

/// Applies the desired znodes in the current session (all of them, or only
/// those held by another session at the last try); an error ends the
/// session. `Ok(true)` when all are in place, `Ok(false)` when some
/// ephemeral znode belongs to another session for now.
fn sync(shared: &Shared, client: &Client, only_held: bool) -> Result<bool, RegistryError> {
    let (me, ended) = {
        let book = shared.book.lock().unwrap();
        let Some(me) = book.session().map(|s| s.id) else {
            return Err(RegistryError::NotConnected);
        };
        (me, book.ended_sessions())
    };
    let mut desired = shared.desired.lock().unwrap().clone();
    if only_held {
        let held = shared.held.lock().unwrap();
        desired.retain(|z| held.contains_key(&z.path));
    } else {
        let mut held = shared.held.lock().unwrap();
        held.retain(|path, _| desired.iter().any(|z| &z.path == path));
    }
    let zk = client.zk.clone();
    let acl = shared.acl.clone();
    let applied = bounded_for(CALL_TIMEOUT, move || {
        desired
            .into_iter()
            .map(|z| apply(&zk, &z, me, &ended, &acl).map(|a| (z.path, a)))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut held = shared.held.lock().unwrap();
    for (path, applied) in applied {
        match applied {
            Applied::HeldBy(owner) => {
                if held.insert(path.clone(), owner) != Some(owner) {
                    log::warn!(
                        "the znode {path} belongs to another live ZooKeeper session \
                         (0x{owner:x}); waiting for that session to end"
                    );
                }
            }
            Applied::Done => {
                if let Some(owner) = held.remove(&path) {
                    log::info!(
                        "the znode {path} is this node's now (session 0x{me:x}); \
                         session 0x{owner:x} ended"
                    );
                }
            }
        }
    }
    Ok(held.is_empty())
}

/// Once a new session's registrations are in place: tells the callbacks
/// (outside every lock) and wakes the heartbeat.
fn announce(shared: &Shared) {
    let news = shared.book.lock().unwrap().take_news();
    let _ = shared.wake.lock().unwrap().send(());
    let Some(session) = news else {
        return;
    };
    log::info!(
        "ZooKeeper session 0x{:x} (generation {}): registrations in place",
        session.id,
        session.generation
    );
    let callbacks = shared.callbacks.lock().unwrap().clone();
    for callback in callbacks {
        callback(session.generation);
    }
}

/// Starts a client for `connect` (a reachable server first), catching a
/// panic of its constructor (it unwraps the opening of its first socket).
fn start_client(connect: &str, timeout: Duration) -> Result<ZooKeeper, String> {
    match std::panic::catch_unwind(|| ZooKeeper::connect(connect, timeout, Quiet)) {
        Ok(Ok(zk)) => Ok(zk),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(_) => Err("it panicked".into()),
    }
}

/// The session thread: connect, register, watch, and start over when it ends.
fn run_sessions(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(200);
    let mut said_unreachable = false;
    let mut said_unknown = false;
    loop {
        if shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(connect) = reachable(&shared.connect) else {
            if !said_unreachable {
                log::warn!(
                    "ZooKeeper at {} is unreachable; serving on, and retrying",
                    shared.connect
                );
                said_unreachable = true;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        };
        let (tx, rx) = mpsc::channel();
        let serial = shared.book.lock().unwrap().new_client();
        let zk = match start_client(&connect, shared.asked) {
            Ok(zk) => Arc::new(zk),
            Err(e) => {
                log::warn!("ZooKeeper client could not start: {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let client = Client { serial, zk };
        listen(&shared, &client, tx.clone());
        *shared.nudge.lock().unwrap() = Some(tx);
        let connected = wait_connected(&rx, CONNECT_WAIT, serial);
        let session = match connected {
            Some(Connected::New(s) | Connected::Reconnected(s)) => Some(s),
            Some(Connected::Unknown) => {
                if !said_unknown {
                    log::error!(
                        "connected to ZooKeeper, but its client's record of the session \
                         (a trace record of target zookeeper::io) did not reach \
                         registry::pace_client_log: cannot tell this session's id and \
                         timeout, so not using it"
                    );
                    said_unknown = true;
                }
                None
            }
            None => None,
        };
        if let Some(session) = session {
            *shared.session.lock().unwrap() = Some(client.clone());
            said_unreachable = false;
            backoff = Duration::from_millis(200);
            watch(&shared, &client, &rx, session);
        } else {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        *shared.session.lock().unwrap() = None;
        *shared.nudge.lock().unwrap() = None;
        abandon(&shared, client);
        std::thread::sleep(backoff);
    }
}

/// Follows the client's state changes: the book learns of them on the
/// client's I/O thread, at once (before any answer in a new session can
/// arrive), and the session thread hears of them through `tx`.
fn listen(shared: &Arc<Shared>, client: &Client, tx: mpsc::Sender<Event>) {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let serial = client.serial;
    let tx = Mutex::new(tx);
    client.zk.add_listener(move |state| {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let heard = sessions::take_heard();
        let events: Vec<Event> = {
            let mut book = shared.book.lock().unwrap();
            match state {
                ZkState::Connected | ZkState::ConnectedReadOnly => book
                    .connected(serial, heard.connected, Instant::now())
                    .map(|c| Event::Connected(serial, c))
                    .into_iter()
                    .collect(),
                other => {
                    let mut events = Vec::new();
                    if let Some(id) = heard.expired {
                        if book.expired(serial, id) {
                            events.push(Event::Expired(serial, id));
                        }
                    }
                    book.disconnected(serial);
                    events.push(Event::State(serial, other));
                    events
                }
            }
        };
        // A new session is logged here, on the client's thread: the session
        // thread may give the client up before it hears of it.
        if let Some(Event::Connected(_, Connected::New(s))) = events.first() {
            log_new_session(&shared, *s);
        }
        let tx = tx.lock().unwrap();
        for event in events {
            let _ = tx.send(event);
        }
    });
}

fn log_new_session(shared: &Shared, s: SessionInfo) {
    log::info!(
        "ZooKeeper session 0x{:x} established (timeout granted: {} ms, asked for {} ms)",
        s.id,
        s.timeout.as_millis(),
        shared.asked.as_millis()
    );
}

/// Waits up to `wait` for the client `serial` to connect; `None` when it
/// did not, or when it closed.
fn wait_connected(rx: &mpsc::Receiver<Event>, wait: Duration, serial: u64) -> Option<Connected> {
    let until = Instant::now() + wait;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::Connected(s, connected)) if s == serial => return Some(connected),
            Ok(Event::State(s, ZkState::Closed | ZkState::AuthFailed)) if s == serial => {
                return None
            }
            Ok(Event::Stale(s)) if s == serial => return None,
            Ok(Event::Expired(s, id)) if s == serial => {
                log::warn!("ZooKeeper session 0x{id:x} expired");
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Follows a live session until it ends, re-registering after reconnects,
/// on a new session of the same client, and whenever the desired
/// registrations change.
fn watch(shared: &Shared, client: &Client, rx: &mpsc::Receiver<Event>, mut session: SessionInfo) {
    let serial = client.serial;
    if let Err(e) = authenticate(shared, client) {
        log::warn!("authenticating with ZooKeeper failed ({e}); reconnecting");
        return;
    }
    let mut in_place = match sync(shared, client, false) {
        Ok(all) => all,
        Err(e) => {
            log::warn!("registering in ZooKeeper failed ({e}); reconnecting");
            return;
        }
    };
    if in_place {
        announce(shared);
    }
    loop {
        let wait = if in_place {
            Duration::from_secs(3600)
        } else {
            HELD_RETRY
        };
        let mut only_held = false;
        let connected = match rx.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                only_held = true;
                None
            }
            Ok(Event::Nudge) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(Event::Connected(s, c)) if s == serial => Some(c),
            Ok(Event::Expired(s, id)) if s == serial => {
                log::warn!("ZooKeeper session 0x{id:x} expired");
                continue;
            }
            Ok(Event::State(s, ZkState::Closed | ZkState::AuthFailed)) if s == serial => {
                if !shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    log::warn!("ZooKeeper session ended; starting a new one");
                }
                return;
            }
            Ok(Event::State(s, _)) if s == serial => {
                log::warn!("lost the connection to ZooKeeper; reconnecting");
                // The client retries until its session times out; after that it
                // reports Closed. Give up on it at that point at the latest.
                match wait_connected(rx, session.timeout + Duration::from_secs(1), serial) {
                    Some(c) => Some(c),
                    None => {
                        log::warn!("ZooKeeper session ended; starting a new one");
                        return;
                    }
                }
            }
            Ok(Event::Stale(s)) if s == serial => {
                log::warn!(
                    "ZooKeeper has not answered for longer than the session timeout \
                     ({} ms); starting over with a new session",
                    session.timeout.as_millis()
                );
                return;
            }
            Ok(_) => continue,
        };
        match connected {
            None => {}
            Some(Connected::New(s)) => session = s,
            Some(Connected::Reconnected(s)) => {
                log::info!("reconnected to ZooKeeper (session 0x{:x} goes on)", s.id);
                session = s;
                if let Err(e) = authenticate(shared, client) {
                    log::warn!("authenticating with ZooKeeper failed ({e}); reconnecting");
                    return;
                }
            }
            Some(Connected::Unknown) => {
                log::error!(
                    "reconnected to ZooKeeper, but its client's record of the session did \
                     not reach registry::pace_client_log; starting over"
                );
                return;
            }
        }
        match sync(shared, client, only_held) {
            Ok(all) => {
                in_place = all;
                if all {
                    announce(shared);
                }
            }
            Err(e) => {
                log::warn!("registering in ZooKeeper failed ({e}); reconnecting");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings() {
        assert_eq!(
            split_connect("a:1, b:2,c:3/app"),
            (vec!["a:1", "b:2", "c:3"], "/app")
        );
        assert_eq!(split_connect("a:1"), (vec!["a:1"], ""));
    }

    #[test]
    fn a_reachable_server_goes_first() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert_eq!(
            reachable(&format!("{closed},{open}/x")),
            Some(format!("{open},{closed}/x"))
        );
        assert_eq!(reachable(&closed), None);
    }
}
