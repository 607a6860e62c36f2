//! This node's ZooKeeper sessions as leases, and other nodes' liveness: the
//! registry's side of the node's [`Sessions`] seam.
//!
//! # Learning a session
//! The session thread learns each connection's session id and the timeout
//! its server granted (see `client`: the `zookeeper` crate tells neither),
//! and the [`Book`] keeps them. Each connection opens an *epoch* as soon as
//! the client reports it, on the client's I/O thread; what is learned of a
//! connection counts only while it is the newest, and a heartbeat confirms
//! only within the epoch it was sent in.
//!
//! A session id differing from the last one is a new session: the
//! *generation* goes up by one. A reconnection within the same session
//! keeps it. The crate opens a new session on the same client after an
//! expiry, and a fresh client opens a new one too; both are told apart by
//! the id alone.
//!
//! # The lease
//! A heartbeat thread sends a cheap call (`exists` of this node's liveness
//! znode) every sixth of the granted timeout `T`. When it succeeds, was
//! sent and answered within one generation, and finds the liveness znode
//! owned by this session, the instant the call was *sent* becomes
//! `confirmed_at`. The lease is valid while `now < confirmed_at + 2/3 T`.
//!
//! Why that is safe: ZooKeeper expires a session only after a whole `T`
//! without hearing from its client (its expiry check rounds up to its
//! tick, which only adds time), and a server processed our call, on behalf
//! of the live session, at some instant after we sent it. So the session
//! cannot expire before `confirmed_at + T`, and while the lease holds
//! there is a margin of `T/3` for the clocks of this machine and of the
//! servers not running at quite the same rate, and for a leader change in
//! the ensemble (which gives every session a fresh timeout: more time, not
//! less). Taking the send instant and not the answer's errs on the early
//! side; so does the epoch check (an answer to a heartbeat sent in an
//! earlier connection confirms nothing: the crate drops the calls of an old
//! connection, a new connection's epoch opens on the I/O thread before any
//! answer in it can arrive, and no heartbeat goes out in it until its
//! session is learned). The liveness znode exists as long as the session
//! that created it, so while the lease holds, no parent asking
//! [`Sessions::ended`] can find it gone. Two cases end a lease early
//! instead of waiting for the arithmetic: the registry gives up a client
//! (closing it ends the session at once, without a timeout, so the lease
//! ends before the close is sent); a new session begins (the client opens
//! one only once the server said the last one expired). Only once a session's lease has ended this way
//! may a later session of the same registry delete that session's liveness
//! znode (rather than wait up to a timeout for the server to expire it):
//! nothing is left that counts on it. A node that keeps no liveness znode
//! has a lease on its session alone.
//!
//! The heartbeat has a price with this client: it pings only after two
//! thirds of a timeout without traffic, and takes up a lost connection in
//! the same session only if it pinged less than a timeout ago (see the
//! parent module). With a heartbeat every sixth of a timeout it never
//! pings, so a lost connection (a server stopped, a partition) gives a new
//! session and a new generation, within a few hundred milliseconds, rather
//! than the same session again.
//!
//! # Others' liveness
//! [`Sessions::ended`] reads a liveness znode afresh, after a write in its
//! own session: a follower answers reads from its own copy, which may lag
//! the leader, but it answers our write only after applying everything
//! committed before it. Without it a lagging server could report the
//! znode of a child's new session missing while the child, through another
//! server, already holds a lease on it. [`Sessions::live`] lists the
//! liveness directory from a background reader, at most every 500 ms.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use zookeeper::{Acl, CreateMode, ZkError, ZooKeeper};

use super::znodes::ensure_parents;

use super::{bounded_for, layout, Event, Registry, Shared};
use crate::lease::{Lease, Sessions};

/// How often the heartbeat confirms the session: a sixth of its timeout.
pub(super) fn heartbeat_period(timeout: Duration) -> Duration {
    (timeout / 6).clamp(Duration::from_millis(20), Duration::from_secs(5))
}

/// The heartbeat: confirms the current session every sixth of its timeout
/// (and at once when woken: a session's registrations just went in place),
/// and tells the session thread about a client nobody answers.
pub(super) fn heartbeat(shared: Arc<Shared>, wake: mpsc::Receiver<()>) {
    let idle = Duration::from_millis(100);
    let mut said_stale = 0;
    loop {
        let beat = shared.book.lock().unwrap().beat();
        let client = shared.session.lock().unwrap().clone();
        let (Some(beat), Some(client)) = (beat, client) else {
            let _ = wake.recv_timeout(idle);
            continue;
        };
        if client.serial != beat.client {
            let _ = wake.recv_timeout(idle);
            continue;
        }
        let live = beat.live.clone();
        let followed: Vec<String> = shared.followed.lock().unwrap().keys().cloned().collect();
        let sent = Instant::now();
        let answer = bounded_for(beat.timeout, move || {
            let owner = match live {
                Some(path) => zk_owner(&client.zk, &path),
                None => client.zk.exists("/", false).map(|_| 0),
            }?;
            // After the lease's question, in the same call: the znodes the
            // node follows (`Registry::follow`), read once a beat.
            let read: Vec<(String, Option<Vec<u8>>)> = followed
                .into_iter()
                .filter_map(|path| match client.zk.get_data(&path, false) {
                    Ok((data, _)) => Some((path, Some(data))),
                    Err(ZkError::NoNode) => Some((path, None)),
                    Err(_) => None,
                })
                .collect();
            Ok((owner, read))
        });
        let stale = {
            let mut book = shared.book.lock().unwrap();
            if let Ok((owner, read)) = answer {
                book.answered(&beat, sent, owner);
                let mut followed = shared.followed.lock().unwrap();
                for (path, data) in read {
                    followed.insert(path, Some((sent, data)));
                }
            }
            book.stale(beat.client, Instant::now())
        };
        if stale && said_stale != beat.client {
            said_stale = beat.client;
            shared.send(Event::Stale(beat.client));
        }
        let next = sent + heartbeat_period(beat.timeout);
        if let Some(left) = next.checked_duration_since(Instant::now()) {
            let _ = wake.recv_timeout(left);
        }
    }
}

/// The session owning the ephemeral znode at `path`; 0 when it is missing
/// (or persistent).
fn zk_owner(zk: &ZooKeeper, path: &str) -> Result<i64, ZkError> {
    Ok(zk.exists(path, false)?.map_or(0, |s| s.ephemeral_owner))
}

/// Bound on [`Sessions::ended`]: the caller is waiting on it.
const ENDED_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the liveness directory is read for [`Sessions::live`].
const LIVE_EVERY: Duration = Duration::from_millis(500);
/// A listing older than this is not reported.
const LIVE_FRESH: Duration = Duration::from_millis(1500);

/// A write in this session that changes nothing but the directory's
/// version: it is answered only once the server has applied everything
/// committed before it.
fn barrier(zk: &ZooKeeper, dir: &str, acl: &[Acl]) -> Result<(), ZkError> {
    match zk.set_data(dir, Vec::new(), None) {
        Ok(_) => Ok(()),
        Err(ZkError::NoNode) => {
            ensure_parents(zk, &format!("{dir}/x"), acl)?;
            match zk.create(dir, Vec::new(), acl.to_vec(), CreateMode::Persistent) {
                Ok(_) | Err(ZkError::NodeExists) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Reads the liveness directory every `LIVE_EVERY`, for as long as the
/// process runs (started by the first call to [`Sessions::live`]).
fn read_live(registry: Registry) {
    let dir = layout::live_dir(&registry.shared.prefix);
    loop {
        if let Ok(mut names) = registry.children(&dir) {
            names.sort();
            *registry.shared.live.lock().unwrap() = Some((Instant::now(), names));
        }
        std::thread::sleep(LIVE_EVERY);
    }
}

impl Sessions for Registry {
    fn lease(&self) -> Lease {
        self.shared.book.lock().unwrap().lease(Instant::now())
    }

    fn ended(&self, name: &str) -> Result<bool, String> {
        if treecache_common::names::parse_node_name(name).is_none() {
            return Err(format!("{name:?} is not the name of a node"));
        }
        let dir = layout::live_dir(&self.shared.prefix);
        let path = layout::live_named(&self.shared.prefix, name);
        let acl = self.shared.acl.clone();
        self.call_within(ENDED_TIMEOUT, move |zk| {
            barrier(zk, &dir, &acl)?;
            Ok(zk.exists(&path, false)?.is_none())
        })
        .map_err(|e| e.to_string())
    }

    fn live(&self) -> Option<Vec<String>> {
        self.shared.live_reader.call_once(|| {
            let registry = self.clone();
            let _ = std::thread::Builder::new()
                .name("zookeeper-live".into())
                .spawn(move || read_live(registry));
        });
        let live = self.shared.live.lock().unwrap();
        let (read_at, names) = live.as_ref()?;
        (read_at.elapsed() < LIVE_FRESH).then(|| names.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn heartbeats_every_sixth_of_the_timeout() {
        assert_eq!(heartbeat_period(ms(2000)), ms(2000) / 6);
        assert_eq!(heartbeat_period(ms(6000)), ms(1000));
        assert_eq!(heartbeat_period(ms(60)), ms(20));
    }
}
