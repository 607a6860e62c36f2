//! ZooKeeper: the only module that talks to it.
//!
//! - `mod.rs` (here): the [`Registry`] handle, its shared state, and
//!   bounded calls.
//! - `client`: a client's life cycle: connect, learn the session, watch it,
//!   start over when it ends; its reconnect loop paced.
//! - `handshake`: the timeout a server grants, from a session of our own.
//! - `keep`: the registrations a node keeps ([`Registry::keep`]), applied
//!   again in every session.
//! - `znodes`: reads and writes of znodes for the rest of the node.
//! - [`layout`]: where a cluster's znodes live, and what they hold.
//! - `book`: what the registry knows of its sessions and the lease (pure
//!   bookkeeping).
//! - `sessions`: this node's sessions as leases (the heartbeat), and other
//!   nodes' liveness (the [`Sessions`] seam of the node).
//! - `acl`: the digest identity and the ACL of every znode created.
//!
//! The `zookeeper` crate (0.8) needs guarding, and this module does it:
//! - `connect()` returns before a session exists: we wait for `Connected`.
//! - Its reconnect loop retries without pause, logging an error per attempt,
//!   until the session times out, and its `Closed` state is final. So we
//!   connect only after a plain TCP probe succeeds; our state listener,
//!   which the loop calls on its own thread as each attempt starts, holds
//!   it there for a pause and until the server accepts a TCP connection
//!   again; and on `Closed` we start over with a fresh client and back-off,
//!   logging our own state changes once each. The crate's own records never
//!   print (see `logging`).
//! - It moves to the next server of its connect string on a lost
//!   connection, where the session may be granted another timeout: we give
//!   it one server only, the first of ours that accepts a TCP connection.
//!   Its constructor unwraps the opening of that socket: we catch a panic.
//! - It does not tell its session id or the session timeout the server
//!   granted: we learn both ourselves on every connection, the id from the
//!   owner of an ephemeral znode the session creates, the timeout from a
//!   handshake of our own with the same server. See `client` for how, and
//!   `sessions` for the lease that rests on them.
//! - A call can block forever during a silent partition, and so can dropping
//!   a client (its `Drop` closes the session with a blocking call): every call
//!   runs on a helper thread with a time bound, a broken client is dropped
//!   on a thread of its own, and a client that has not been answered for a
//!   whole session timeout is given up (the crate itself never notices).
//! - After an expiry the crate opens a new session on the same client, and
//!   tells nobody: we tell sessions apart by their ids.
//! - When the process logs at trace level, its I/O thread unwraps the
//!   socket's peer address for the record of a ping, and would die should
//!   the connection have been reset just then. Its calls would then fail,
//!   and the heartbeat, unanswered for a timeout, has the client replaced.
//!   (The heartbeat keeps the client from pinging anyway: see below.)
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
mod book;
mod client;
mod handshake;
mod keep;
pub mod layout;
mod sessions;
mod znodes;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use zookeeper::{Acl, ZkError, ZkState, ZooKeeper};

use crate::config::ZkAuth;

pub use crate::lease::{Lease, Sessions};
pub use book::SessionInfo;
pub use layout::ZnodeData;

use book::Book;
use client::Client;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// A znode holds what this build cannot read: which, and why.
    Unreadable(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::NotConnected => f.write_str("not connected to ZooKeeper"),
            RegistryError::TimedOut => f.write_str("ZooKeeper did not answer in time"),
            RegistryError::Zk(e) => write!(f, "ZooKeeper error: {e}"),
            RegistryError::Unreadable(e) => write!(f, "unreadable znode {e}"),
        }
    }
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
    /// The client of this serial established a connection: its epoch
    /// (see `client` on learning its session).
    Connected(u64, u64),
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
            .spawn(move || client::run_sessions(s))
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
