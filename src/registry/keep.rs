//! The registrations a node keeps ([`Registry::keep`]): the session
//! thread applies them in each session, again after every reconnection,
//! and whenever they change; an ephemeral znode held by another live
//! session is left alone and tried again until that session ends.
//!
//! [`Registry::keep`]: super::Registry::keep

use std::sync::mpsc;
use std::time::Duration;

use zookeeper::{Acl, CreateMode, ZkError, ZkState, ZooKeeper};

use super::book::{Connected, SessionInfo};
use super::client::{learn, wait_connected, Client};
use super::znodes::ensure_parents;
use super::{bounded_for, Event, RegistryError, Shared, Znode, CALL_TIMEOUT};

/// How often a kept ephemeral znode held by another session is tried again.
const HELD_RETRY: Duration = Duration::from_millis(250);

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

/// What the session thread does next while it follows a session.
enum Next {
    /// Applies the registrations again (`true`: only those held by another
    /// session at the last try).
    Sync(bool),
    /// Learns the session of a connection just established (its epoch).
    Connection(u64),
    /// Gives the client up: its session ended, or it is not answered.
    End,
    /// Waits on.
    Wait,
}

/// Follows a live session until it ends, re-registering after reconnects,
/// on a new session of the same client, and whenever the desired
/// registrations change.
pub(super) fn watch(
    shared: &Shared,
    client: &Client,
    rx: &mpsc::Receiver<Event>,
    mut session: SessionInfo,
) {
    let mut only_held = false;
    loop {
        let in_place = match sync(shared, client, only_held) {
            Ok(all) => all,
            Err(e) => {
                log::warn!("registering in ZooKeeper failed ({e}); reconnecting");
                return;
            }
        };
        if in_place {
            announce(shared);
        }
        let wait = if in_place {
            Duration::from_secs(3600)
        } else {
            HELD_RETRY
        };
        only_held = loop {
            match next(shared, client.serial, &session, rx, wait) {
                Next::Sync(held) => break held,
                Next::Connection(epoch) => match learn(shared, client, epoch) {
                    Some(Connected::New(s)) => {
                        session = s;
                        break false;
                    }
                    Some(Connected::Reconnected(s)) => {
                        log::info!("reconnected to ZooKeeper (session 0x{:x} goes on)", s.id);
                        session = s;
                        break false;
                    }
                    Some(Connected::Unknown) => return,
                    // A newer connection came: its event follows.
                    None => {}
                },
                Next::End => return,
                Next::Wait => {}
            }
        };
    }
}

/// Waits up to `wait` for the next event of the client `serial`, in
/// `session`, and tells what it calls for.
fn next(
    shared: &Shared,
    serial: u64,
    session: &SessionInfo,
    rx: &mpsc::Receiver<Event>,
    wait: Duration,
) -> Next {
    match rx.recv_timeout(wait) {
        Err(mpsc::RecvTimeoutError::Timeout) => Next::Sync(true),
        Ok(Event::Nudge) => Next::Sync(false),
        Err(mpsc::RecvTimeoutError::Disconnected) => Next::End,
        Ok(Event::Connected(s, epoch)) if s == serial => Next::Connection(epoch),
        Ok(Event::State(s, ZkState::Closed | ZkState::AuthFailed)) if s == serial => {
            if !shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                log::warn!("ZooKeeper session ended; starting a new one");
            }
            Next::End
        }
        Ok(Event::State(s, _)) if s == serial => {
            log::warn!("lost the connection to ZooKeeper; reconnecting");
            // The client retries until its session times out; after that it
            // reports Closed. Give up on it at that point at the latest.
            match wait_connected(rx, session.timeout + Duration::from_secs(1), serial) {
                Some(epoch) => Next::Connection(epoch),
                None => {
                    log::warn!("ZooKeeper session ended; starting a new one");
                    Next::End
                }
            }
        }
        Ok(Event::Stale(s)) if s == serial => {
            log::warn!(
                "ZooKeeper has not answered for longer than the session timeout \
                 ({} ms); starting over with a new session",
                session.timeout.as_millis()
            );
            Next::End
        }
        Ok(_) => Next::Wait,
    }
}
