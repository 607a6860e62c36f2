//! A client's life cycle: the session thread connects (to a server that
//! accepts a TCP connection first), learns the session, hands it to
//! `keep` to follow, and starts over with a fresh client when it ends.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use zookeeper::{WatchedEvent, Watcher, ZkState, ZooKeeper};

use super::sessions::{self, Connected, SessionInfo};
use super::{acl, bounded_for, keep, Event, RegistryError, Shared, CALL_TIMEOUT};

const CONNECT_WAIT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Quiet;

impl Watcher for Quiet {
    fn handle(&self, _: WatchedEvent) {}
}

/// The client calls go to, and its serial number (one per client started).
#[derive(Clone)]
pub(super) struct Client {
    pub serial: u64,
    pub zk: Arc<ZooKeeper>,
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
pub(super) fn run_sessions(shared: Arc<Shared>) {
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
pub(super) fn wait_connected(
    rx: &mpsc::Receiver<Event>,
    wait: Duration,
    serial: u64,
) -> Option<Connected> {
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
