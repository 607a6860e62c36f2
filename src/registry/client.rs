//! A client's life cycle: the session thread connects to one server (the
//! first of the connect string that accepts a TCP connection), learns the
//! session, hands it to `keep` to follow, and starts over with a fresh
//! client when it ends.
//!
//! # Learning a session
//! The `zookeeper` crate tells neither the session id nor the timeout the
//! server granted. Each time the client reports `Connected`, its listener
//! (on the client's I/O thread, before any answer in the new connection
//! can arrive) opens a new *epoch* in the book: no heartbeat sent before
//! confirms the lease from then on. The session thread then learns the
//! connection's session: the id is the owner of an ephemeral znode it
//! creates (and deletes again) under [`layout::sessions`]; the timeout is
//! what the client's one server grants a session of our own asking for the
//! same (`handshake`), asked again on every connection (a server restarted
//! with another range is thus asked anew). What is learned counts only if
//! no newer connection came meanwhile; a session that cannot be learned is
//! not used.
//!
//! The client is given one server only, so that the session and our own
//! are granted by the same server: with several, the crate moves to
//! another server on a lost connection, and that one may clamp the timeout
//! to a shorter range. When the server goes away, the registry starts a
//! new client on another one (see the parent module on why that happens
//! anyway).
//!
//! # Pacing the client's reconnect loop
//! Once a connection is lost, the client's I/O thread tries again at once
//! and without end until about a session timeout after its last ping, each
//! refused attempt starting over. Its listener is called on that thread as
//! each attempt starts (`Connecting`): it waits there, a pause per attempt
//! and then until the server accepts a TCP connection again (or the
//! registry gave the client up), so that the loop makes about ten attempts
//! a second at most instead of burning a core.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use zookeeper::{CreateMode, WatchedEvent, Watcher, ZkError, ZkState, ZooKeeper};

use super::book::{Connected, Granted, SessionInfo};
use super::znodes::ensure_parents;
use super::CALL_TIMEOUT;
use super::{acl, bounded_for, handshake, keep, layout, Event, RegistryError, Shared};

const CONNECT_WAIT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The pause per attempt of the client's reconnect loop (see the module doc).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

struct Quiet;

impl Watcher for Quiet {
    fn handle(&self, _: WatchedEvent) {}
}

/// The client calls go to, its serial number (one per client started), and
/// the one server it talks to.
#[derive(Clone)]
pub(super) struct Client {
    pub serial: u64,
    pub zk: Arc<ZooKeeper>,
    pub server: String,
}

/// Starts a client for `connect` (one server), catching a panic of its
/// constructor (it unwraps the opening of its first socket).
fn start_client(connect: &str, timeout: Duration) -> Result<ZooKeeper, String> {
    match std::panic::catch_unwind(|| ZooKeeper::connect(connect, timeout, Quiet)) {
        Ok(Ok(zk)) => Ok(zk),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(_) => Err("it panicked".into()),
    }
}

/// The session thread: connect, learn the session, register, watch, and
/// start over when it ends.
pub(super) fn run_sessions(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(200);
    let mut said_unreachable = false;
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
        let (servers, chroot) = split_connect(&connect);
        let server = servers[0].to_string();
        let (tx, rx) = mpsc::channel();
        let serial = shared.book.lock().unwrap().new_client();
        let zk = match start_client(&format!("{server}{chroot}"), shared.asked) {
            Ok(zk) => Arc::new(zk),
            Err(e) => {
                log::warn!("ZooKeeper client could not start: {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let client = Client { serial, zk, server };
        listen(&shared, &client, tx.clone());
        *shared.nudge.lock().unwrap() = Some(tx);
        if let Some(session) = first_session(&shared, &client, &rx) {
            *shared.session.lock().unwrap() = Some(client.clone());
            said_unreachable = false;
            backoff = Duration::from_millis(200);
            keep::watch(&shared, &client, &rx, session);
        } else {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        *shared.session.lock().unwrap() = None;
        *shared.nudge.lock().unwrap() = None;
        abandon(&shared, client);
        std::thread::sleep(backoff);
    }
}

/// Waits for the new client's first connection and learns its session;
/// `None` when it did not connect in time or its session is unknown.
fn first_session(
    shared: &Shared,
    client: &Client,
    rx: &mpsc::Receiver<Event>,
) -> Option<SessionInfo> {
    loop {
        let epoch = wait_connected(rx, CONNECT_WAIT, client.serial)?;
        match learn(shared, client, epoch) {
            Some(Connected::New(s) | Connected::Reconnected(s)) => return Some(s),
            Some(Connected::Unknown) => return None,
            // A newer connection came meanwhile: its event follows.
            None => {}
        }
    }
}

/// Follows the client's state changes, on its I/O thread: the book opens
/// an epoch for each connection at once (before any answer in it can
/// arrive), the session thread hears of them through `tx`, and an attempt
/// to connect again is paced (see the module doc).
fn listen(shared: &Arc<Shared>, client: &Client, tx: mpsc::Sender<Event>) {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let (serial, server) = (client.serial, client.server.clone());
    let tx = Mutex::new(tx);
    client.zk.add_listener(move |state| {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let event = {
            let mut book = shared.book.lock().unwrap();
            match state {
                ZkState::Connected | ZkState::ConnectedReadOnly => book
                    .connection(serial)
                    .map(|epoch| Event::Connected(serial, epoch)),
                other => {
                    book.disconnected(serial);
                    Some(Event::State(serial, other))
                }
            }
        };
        if let Some(event) = event {
            let _ = tx.lock().unwrap().send(event);
        }
        if state == ZkState::Connecting {
            pace_attempt(&shared, serial, &server);
        }
    });
}

/// Holds the client's I/O thread as it starts an attempt to connect: a
/// pause, then until `server` accepts a TCP connection, as long as the
/// registry wants the client.
fn pace_attempt(shared: &Shared, serial: u64, server: &str) {
    std::thread::sleep(RETRY_PAUSE);
    while shared.book.lock().unwrap().wants(serial) && !accepts(server) {
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// Whether `server` (`host:port`) accepts a TCP connection.
fn accepts(server: &str) -> bool {
    server
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// Learns the session of the connection `epoch` of `client`, just
/// established (see the module doc): authenticates it first, since the
/// znode that tells the id is created with the cluster's ACL. `None` when a
/// newer connection came meanwhile.
pub(super) fn learn(shared: &Shared, client: &Client, epoch: u64) -> Option<Connected> {
    let learned = authenticate(shared, client).and_then(|()| {
        let id = whoami(shared, client)?;
        let timeout = handshake::granted_timeout(&client.server, shared.asked, CALL_TIMEOUT)
            .map_err(|e| {
                RegistryError::Zk(format!("asking {} for a timeout: {e}", client.server))
            })?;
        Ok(Granted { id, timeout })
    });
    if let Err(e) = &learned {
        log::warn!("cannot learn this ZooKeeper session ({e}); not using it");
    }
    let connected =
        shared
            .book
            .lock()
            .unwrap()
            .learned(client.serial, epoch, learned.ok(), Instant::now());
    if let Some(Connected::New(s)) = connected {
        log_new_session(shared, s);
    }
    connected
}

/// The id of the client's session: the owner of an ephemeral znode it
/// creates (then deletes: it only tells who made it).
fn whoami(shared: &Shared, client: &Client) -> Result<i64, RegistryError> {
    let name = format!("{}/s-", layout::sessions(&shared.prefix));
    let (zk, acl) = (client.zk.clone(), shared.acl.clone());
    bounded_for(CALL_TIMEOUT, move || {
        let create = || {
            zk.create(
                &name,
                Vec::new(),
                acl.clone(),
                CreateMode::EphemeralSequential,
            )
        };
        let path = match create() {
            Err(ZkError::NoNode) => {
                ensure_parents(&zk, &name, &acl)?;
                create()?
            }
            other => other?,
        };
        let owner = zk.exists(&path, false)?.map(|s| s.ephemeral_owner);
        let _ = zk.delete(&path, None);
        owner.filter(|&id| id != 0).ok_or(ZkError::NoNode)
    })
}

fn log_new_session(shared: &Shared, s: SessionInfo) {
    log::info!(
        "ZooKeeper session 0x{:x} established (timeout granted: {} ms, asked for {} ms)",
        s.id,
        s.timeout.as_millis(),
        shared.asked.as_millis()
    );
}

/// Waits up to `wait` for the client `serial` to connect; the connection's
/// epoch, or `None` when it did not connect, or closed.
pub(super) fn wait_connected(
    rx: &mpsc::Receiver<Event>,
    wait: Duration,
    serial: u64,
) -> Option<u64> {
    let until = Instant::now() + wait;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::Connected(s, epoch)) if s == serial => return Some(epoch),
            Ok(Event::State(s, ZkState::Closed | ZkState::AuthFailed)) if s == serial => {
                return None
            }
            Ok(Event::Stale(s)) if s == serial => return None,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
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

/// The servers of `connect` from the first one that accepts a TCP
/// connection on, or `None` when none does (the client is given that first
/// one alone).
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
pub(super) fn authenticate(shared: &Shared, client: &Client) -> Result<(), RegistryError> {
    let Some(auth) = &shared.auth else {
        return Ok(());
    };
    let (zk, credentials) = (client.zk.clone(), acl::credentials(auth));
    bounded_for(CALL_TIMEOUT, move || zk.add_auth("digest", credentials))
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
