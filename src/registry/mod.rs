//! ZooKeeper: the only module that talks to it.
//!
//! The `zookeeper` crate (0.8) needs guarding, and this module does it:
//! - `connect()` returns before a session exists: we wait for `Connected`.
//! - Its reconnect loop retries without pause, logging an error per attempt,
//!   until the session times out, and its `Closed` state is final. So we
//!   connect only after a plain TCP probe succeeds; the node's logger swallows
//!   the crate's records and, through [`pace_client_log`], pauses the loop at
//!   its one log call per attempt; and on `Closed` we start over with a fresh
//!   client and back-off, logging our own state changes once each.
//! - A call can block forever during a silent partition, and so can dropping
//!   a client (its `Drop` closes the session with a blocking call): every call
//!   runs on a helper thread with a time bound, and a broken client is dropped
//!   on a thread of its own.
//! - After a restart of ZooKeeper, an ephemeral znode of our old session can
//!   linger until that session expires: ours are deleted and re-created on
//!   every new session.
//!
//! The rest of the node never waits on ZooKeeper without a bound, and never
//! needs it to serve data. Registrations are declared with [`Registry::keep`];
//! a session thread applies them whenever a session is (re)established.

pub mod layout;

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zookeeper::{Acl, CreateMode, WatchedEvent, Watcher, ZkError, ZkState, ZooKeeper};

pub use layout::ZnodeData;

const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const CONNECT_WAIT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Pause per failed connection attempt of the client's own reconnect loop.
const CLIENT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Whether a log record comes from the `zookeeper` crate.
pub fn is_client_log(target: &str) -> bool {
    target == "zookeeper" || target.starts_with("zookeeper::")
}

/// Handles a log record of the `zookeeper` crate instead of printing it.
///
/// While the server is down, the client's I/O thread retries connecting
/// with no pause: either an immediate "Failed to connect" and round again,
/// or a connect that is refused a moment later ("Reconnect due to HUP"),
/// which starts over with "Establishing Zk connection". The only code of
/// ours it runs on each attempt is these log calls. Sleeping in them turns a
/// loop that would burn a core for a whole session timeout into about ten
/// attempts a second. (`main.rs` lets the crate's info records through.)
pub fn pace_client_log(record: &log::Record<'_>) {
    if record.target() != "zookeeper::io" || record.level() > log::Level::Info {
        return;
    }
    let message = record.args().to_string();
    if message.starts_with("Failed to connect") || message.starts_with("Establishing Zk connection")
    {
        std::thread::sleep(CLIENT_RETRY_PAUSE);
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

struct Shared {
    connect: String,
    session: Mutex<Option<Arc<ZooKeeper>>>,
    desired: Mutex<Vec<Znode>>,
    /// Wakes the session thread when registrations change.
    nudge: Mutex<Option<mpsc::Sender<Event>>>,
}

enum Event {
    State(ZkState),
    Nudge,
}

/// The handle the node uses. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

impl Registry {
    /// Starts the session thread for the ensemble at `connect` (`h:p[,h:p]`).
    pub fn start(connect: &str) -> Registry {
        let shared = Arc::new(Shared {
            connect: connect.to_string(),
            session: Mutex::new(None),
            desired: Mutex::new(Vec::new()),
            nudge: Mutex::new(None),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("zookeeper".into())
            .spawn(move || run_sessions(s))
            .expect("spawn the ZooKeeper session thread");
        Registry { shared }
    }

    pub fn is_connected(&self) -> bool {
        self.shared.session.lock().unwrap().is_some()
    }

    /// Keeps `znode` registered, replacing an earlier one at the same path;
    /// applied now when connected and again on every new session.
    pub fn keep(&self, znode: Znode) {
        {
            let mut desired = self.shared.desired.lock().unwrap();
            desired.retain(|z| z.path != znode.path);
            desired.push(znode);
        }
        if let Some(tx) = self.shared.nudge.lock().unwrap().as_ref() {
            let _ = tx.send(Event::Nudge);
        }
    }

    /// Runs `f` with the current session, bounded by `CALL_TIMEOUT`.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ZooKeeper) -> Result<T, ZkError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let zk = self
            .shared
            .session
            .lock()
            .unwrap()
            .clone()
            .ok_or(RegistryError::NotConnected)?;
        bounded(move || f(&zk))
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

/// Runs `f` on its own thread and waits at most `CALL_TIMEOUT` for it.
/// A call that hangs is left behind on its thread; the caller goes on.
fn bounded<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ZkError> + Send + 'static,
) -> Result<T, RegistryError> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("zookeeper-call".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| RegistryError::Zk(format!("cannot start a thread: {e}")))?;
    match rx.recv_timeout(CALL_TIMEOUT) {
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

/// Whether some server of the ensemble accepts TCP connections.
fn reachable(connect: &str) -> bool {
    connect.split(',').any(|hp| {
        hp.trim()
            .to_socket_addrs()
            .ok()
            .into_iter()
            .flatten()
            .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
    })
}

/// Drops a client on a thread of its own: closing may block.
fn abandon(zk: Arc<ZooKeeper>) {
    let _ = std::thread::Builder::new()
        .name("zookeeper-close".into())
        .spawn(move || drop(zk));
}

/// Creates the parents of `path` that are missing, with empty data.
fn ensure_parents(zk: &ZooKeeper, path: &str) -> Result<(), ZkError> {
    let mut at = String::new();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push('/');
        at.push_str(part);
        match zk.create(
            &at,
            Vec::new(),
            Acl::open_unsafe().clone(),
            CreateMode::Persistent,
        ) {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes one znode as desired.
fn apply(zk: &ZooKeeper, z: &Znode) -> Result<(), ZkError> {
    ensure_parents(zk, &z.path)?;
    let acl = Acl::open_unsafe().clone();
    if z.ephemeral {
        // Whoever owns it (an old session of ours, say), replace it.
        match zk.delete(&z.path, None) {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(e) => return Err(e),
        }
        zk.create(&z.path, z.data.clone(), acl, CreateMode::Ephemeral)
            .map(|_| ())
    } else {
        match zk.create(&z.path, z.data.clone(), acl, CreateMode::Persistent) {
            Ok(_) => Ok(()),
            Err(ZkError::NodeExists) => zk.set_data(&z.path, z.data.clone(), None).map(|_| ()),
            Err(e) => Err(e),
        }
    }
}

/// Applies every desired znode; an error ends the session.
fn sync(shared: &Shared, zk: &Arc<ZooKeeper>) -> Result<(), RegistryError> {
    let desired = shared.desired.lock().unwrap().clone();
    let zk = zk.clone();
    bounded(move || {
        for z in &desired {
            apply(&zk, z)?;
        }
        Ok(())
    })
}

/// The session thread: connect, register, watch, and start over when it ends.
fn run_sessions(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(200);
    let mut said_unreachable = false;
    loop {
        if !reachable(&shared.connect) {
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
        }
        let (tx, rx) = mpsc::channel();
        let listener_tx = tx.clone();
        let zk = match ZooKeeper::connect(&shared.connect, SESSION_TIMEOUT, Quiet) {
            Ok(zk) => Arc::new(zk),
            Err(e) => {
                log::warn!("ZooKeeper client could not start: {e:?}");
                std::thread::sleep(backoff);
                continue;
            }
        };
        let listener_tx = Mutex::new(listener_tx);
        zk.add_listener(move |state| {
            let _ = listener_tx.lock().unwrap().send(Event::State(state));
        });
        if !wait_connected(&rx, CONNECT_WAIT) {
            abandon(zk);
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        *shared.nudge.lock().unwrap() = Some(tx);
        *shared.session.lock().unwrap() = Some(zk.clone());
        match sync(&shared, &zk) {
            Ok(()) => {
                log::info!(
                    "connected to ZooKeeper at {}; registrations in place",
                    shared.connect
                );
                said_unreachable = false;
                backoff = Duration::from_millis(200);
                watch(&shared, &zk, &rx);
            }
            Err(e) => log::warn!("registering in ZooKeeper failed ({e}); reconnecting"),
        }
        *shared.session.lock().unwrap() = None;
        *shared.nudge.lock().unwrap() = None;
        abandon(zk);
        std::thread::sleep(backoff);
    }
}

fn wait_connected(rx: &mpsc::Receiver<Event>, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::State(ZkState::Connected)) => return true,
            Ok(Event::State(ZkState::Closed | ZkState::AuthFailed)) => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Follows a live session until it ends, re-registering after reconnects
/// and whenever the desired registrations change.
fn watch(shared: &Shared, zk: &Arc<ZooKeeper>, rx: &mpsc::Receiver<Event>) {
    loop {
        match rx.recv() {
            Ok(Event::Nudge) => {
                if let Err(e) = sync(shared, zk) {
                    log::warn!("registering in ZooKeeper failed ({e}); reconnecting");
                    return;
                }
            }
            Ok(Event::State(ZkState::Connected)) => {
                log::info!("reconnected to ZooKeeper");
                if sync(shared, zk).is_err() {
                    return;
                }
            }
            Ok(Event::State(ZkState::Closed | ZkState::AuthFailed)) | Err(_) => {
                log::warn!("ZooKeeper session ended; starting a new one");
                return;
            }
            Ok(Event::State(_)) => {
                log::warn!("lost the connection to ZooKeeper; reconnecting");
                // The client retries until its session times out; after that it
                // reports Closed. Give up on it at that point at the latest.
                if !wait_connected(rx, SESSION_TIMEOUT + Duration::from_secs(1)) {
                    log::warn!("ZooKeeper session ended; starting a new one");
                    return;
                }
                log::info!("reconnected to ZooKeeper");
                if sync(shared, zk).is_err() {
                    return;
                }
            }
        }
    }
}
