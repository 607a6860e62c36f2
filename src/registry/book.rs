//! What the registry knows of this node's sessions: each connection's
//! epoch, the session learned of it, its generation, and when a heartbeat
//! last confirmed it. Pure bookkeeping; `sessions` says why the lease it
//! computes is safe, and `client` how a session is learned.

use std::time::{Duration, Instant};

use crate::lease::Lease;

/// A session of this node, as the registry knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The server's id of the session.
    pub id: i64,
    /// The session timeout the server granted.
    pub timeout: Duration,
    /// Counts this node's sessions (see [`Lease::generation`]).
    pub generation: u64,
}

/// A connection's session, as learned once it is established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Granted {
    pub id: i64,
    pub timeout: Duration,
}

/// What a `Connected` state change was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Connected {
    /// A new session (the generation went up).
    New(SessionInfo),
    /// The same session on a new connection.
    Reconnected(SessionInfo),
    /// Its session could not be learned: not to be used.
    Unknown,
}

/// What the registry knows of this node's sessions. Pure bookkeeping:
/// every method is told the time, so the tests drive it with instants of
/// their own.
#[derive(Debug, Default)]
pub(super) struct Book {
    /// The serial number of the newest client; others' news is ignored.
    client: u64,
    /// The current session, when known.
    session: Option<SessionInfo>,
    generation: u64,
    /// Whether the newest client is connected, in a session learned.
    connected: bool,
    /// Counts the connections of all clients: a heartbeat confirms only
    /// within the connection it was sent in.
    epoch: u64,
    /// Whether the registry gave up the newest client.
    given_up: bool,
    /// When a call was last sent that the session answered.
    heard_at: Option<Instant>,
    /// When a heartbeat was last sent that confirmed the lease.
    confirmed_at: Option<Instant>,
    /// The last generation announced to the callbacks.
    announced: u64,
    /// This registry's earlier sessions, newest last, whose leases ended.
    ended: Vec<i64>,
    /// The node's liveness znode, once it keeps one.
    live: Option<String>,
}

/// A heartbeat: what it confirms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Beat {
    pub client: u64,
    /// The connection it is sent in (see [`Book::connection`]).
    pub epoch: u64,
    pub generation: u64,
    pub timeout: Duration,
    /// The liveness znode whose owner it reads (none kept: the session alone).
    pub live: Option<String>,
}

/// How many of its ended sessions a registry remembers.
const REMEMBERED: usize = 16;

impl Book {
    /// A new client starts; returns its serial number.
    pub fn new_client(&mut self) -> u64 {
        self.client += 1;
        self.connected = false;
        self.given_up = false;
        self.client
    }

    /// The client `client` just established a connection, whose session is
    /// yet to be learned: nothing sent before confirms the lease from now
    /// on, and no heartbeat goes out until [`Book::learned`]. Returns the
    /// connection's epoch (`None`: not the newest client).
    pub fn connection(&mut self, client: u64) -> Option<u64> {
        if client != self.client {
            return None;
        }
        self.connected = false;
        self.epoch += 1;
        Some(self.epoch)
    }

    /// The session of the connection `epoch` of `client` was learned
    /// (`None`: it could not be). `None` when a newer connection or client
    /// came since.
    pub fn learned(
        &mut self,
        client: u64,
        epoch: u64,
        granted: Option<Granted>,
        now: Instant,
    ) -> Option<Connected> {
        if epoch != self.epoch {
            return None;
        }
        self.connected(client, granted, now)
    }

    /// Whether the registry still wants the client `client` to connect.
    pub fn wants(&self, client: u64) -> bool {
        client == self.client && !self.given_up
    }

    /// The client `client` connected in the session `granted` (`None`: it
    /// could not be learned). `None` for a client that is not the newest.
    pub fn connected(
        &mut self,
        client: u64,
        granted: Option<Granted>,
        now: Instant,
    ) -> Option<Connected> {
        if client != self.client {
            return None;
        }
        let Some(granted) = granted else {
            self.end_session();
            return Some(Connected::Unknown);
        };
        let same = self.session.map(|s| s.id) == Some(granted.id);
        if !same {
            // The client opens a new session only once the server expired
            // the one before: its lease is over.
            self.end_session();
        }
        self.connected = true;
        self.heard_at = Some(now);
        let session = SessionInfo {
            id: granted.id,
            timeout: granted.timeout,
            generation: if same {
                self.generation
            } else {
                self.generation + 1
            },
        };
        self.generation = session.generation;
        self.session = Some(session);
        Some(if same {
            Connected::Reconnected(session)
        } else {
            Connected::New(session)
        })
    }

    /// The client `client` lost its connection (its session may live on).
    pub fn disconnected(&mut self, client: u64) {
        if client == self.client {
            self.connected = false;
        }
    }

    /// The registry gives up the client `client` (and closes its session).
    pub fn abandon(&mut self, client: u64) {
        if client == self.client {
            self.connected = false;
            self.given_up = true;
            self.end_session();
        }
    }

    fn end_session(&mut self) {
        if let Some(s) = self.session.take() {
            if self.ended.len() == REMEMBERED {
                self.ended.remove(0);
            }
            self.ended.push(s.id);
        }
        self.confirmed_at = None;
        self.heard_at = None;
    }

    pub fn session(&self) -> Option<SessionInfo> {
        self.session
    }

    /// This registry's earlier sessions whose leases ended (the last few).
    pub fn ended_sessions(&self) -> Vec<i64> {
        self.ended.clone()
    }

    /// The node keeps its liveness znode at `path`: from now on only a
    /// heartbeat that finds it owned by the session confirms the lease.
    pub fn keep_live(&mut self, path: &str) {
        if self.live.as_deref() != Some(path) {
            self.live = Some(path.to_string());
            self.confirmed_at = None;
        }
    }

    /// The node no longer keeps its liveness znode at `path`: the lease
    /// rests on the session alone from now on.
    pub fn forget_live(&mut self, path: &str) {
        if self.live.as_deref() == Some(path) {
            self.live = None;
        }
    }

    /// The heartbeat to send now, if any: while connected in a known session.
    pub fn beat(&self) -> Option<Beat> {
        let session = self.session.filter(|_| self.connected)?;
        Some(Beat {
            client: self.client,
            epoch: self.epoch,
            generation: session.generation,
            timeout: session.timeout,
            live: self.live.clone(),
        })
    }

    /// The heartbeat `beat`, sent at `sent`, was answered: `owner` is the
    /// session owning its liveness znode (0 when missing; anything when it
    /// had none). It confirms the lease if the client, the session and the
    /// liveness znode are still those it was sent for, and the znode is
    /// the session's own.
    pub fn answered(&mut self, beat: &Beat, sent: Instant, owner: i64) {
        let Some(session) = self.session else {
            return;
        };
        if beat.client != self.client
            || beat.epoch != self.epoch
            || beat.generation != session.generation
        {
            return;
        }
        self.heard_at = self.heard_at.max(Some(sent));
        if beat.live == self.live && (beat.live.is_none() || owner == session.id) {
            self.confirmed_at = self.confirmed_at.max(Some(sent));
        }
    }

    /// The lease as of `now`.
    pub fn lease(&self, now: Instant) -> Lease {
        Lease {
            generation: self.generation,
            valid: match (self.session, self.confirmed_at) {
                (Some(s), Some(confirmed)) => lease_holds(confirmed, s.timeout, now),
                _ => false,
            },
        }
    }

    /// Whether `client`, connected as far as it knows, has not been
    /// answered for longer than the session timeout.
    pub fn stale(&self, client: u64, now: Instant) -> bool {
        match (self.session.filter(|_| self.connected), self.heard_at) {
            (Some(s), Some(heard)) => self.client == client && now > heard + s.timeout,
            _ => false,
        }
    }

    /// The session to announce, once: a new one whose registrations are in place.
    pub fn take_news(&mut self) -> Option<SessionInfo> {
        let session = self.session?;
        if session.generation <= self.announced {
            return None;
        }
        self.announced = session.generation;
        Some(session)
    }
}

/// Whether a lease confirmed by a call sent at `confirmed`, in a session
/// of `timeout`, holds at `now`.
pub(super) fn lease_holds(confirmed: Instant, timeout: Duration, now: Instant) -> bool {
    now < confirmed + timeout * 2 / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(id: i64, ms: u64) -> Option<Granted> {
        Some(Granted {
            id,
            timeout: Duration::from_millis(ms),
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const LIVE: &str = "/tc/live/NODE-4";

    /// A heartbeat of `generation` on `client`, for the liveness znode `live`.
    fn beat(client: u64, generation: u64, live: Option<&str>) -> Beat {
        Beat {
            client,
            epoch: 0,
            generation,
            timeout: ms(2000),
            live: live.map(str::to_string),
        }
    }

    #[test]
    fn the_lease_lasts_two_thirds_of_the_timeout_from_the_send() {
        let t0 = Instant::now();
        let mut book = Book::default();
        book.keep_live(LIVE);
        let c = book.new_client();
        let Some(Connected::New(s)) = book.connected(c, granted(7, 3000), t0) else {
            panic!("a new session");
        };
        assert_eq!(s.generation, 1);
        assert_eq!(
            book.beat(),
            Some(Beat {
                client: c,
                epoch: 0,
                generation: 1,
                timeout: ms(3000),
                live: Some(LIVE.into())
            })
        );
        // Connected, but not confirmed yet.
        assert!(!book.lease(t0).valid);
        // A heartbeat sent at 100 ms, answered at 900 ms, by our liveness znode.
        let b = book.beat().unwrap();
        book.answered(&b, t0 + ms(100), 7);
        assert!(book.lease(t0 + ms(900)).valid);
        assert!(book.lease(t0 + ms(2099)).valid);
        assert!(!book.lease(t0 + ms(2100)).valid);
        // A later heartbeat moves it on; an earlier one answered late does not move it back.
        book.answered(&b, t0 + ms(1000), 7);
        book.answered(&b, t0 + ms(500), 7);
        assert!(book.lease(t0 + ms(2999)).valid);
        assert!(!book.lease(t0 + ms(3000)).valid);
        assert_eq!(book.lease(t0 + ms(3000)).generation, 1);
        // Losing the connection does not end it: the session may live on.
        book.disconnected(c);
        assert!(book.lease(t0 + ms(2000)).valid);
        assert_eq!(book.beat(), None);
    }

    #[test]
    fn only_our_own_liveness_znode_confirms() {
        let t0 = Instant::now();
        let mut book = Book::default();
        let c = book.new_client();
        book.connected(c, granted(7, 3000), t0);
        // No liveness znode kept yet: the session alone.
        book.answered(&beat(c, 1, None), t0, 0);
        assert!(book.lease(t0).valid);
        // Once one is kept, only a heartbeat that finds it ours confirms;
        // an answer to a heartbeat sent before does not.
        book.keep_live(LIVE);
        assert!(!book.lease(t0).valid);
        book.answered(&beat(c, 1, None), t0 + ms(10), 0);
        assert!(!book.lease(t0 + ms(10)).valid);
        // Held by another session (8), or missing (0): the session is heard, no lease.
        book.answered(&beat(c, 1, Some(LIVE)), t0 + ms(20), 8);
        book.answered(&beat(c, 1, Some(LIVE)), t0 + ms(20), 0);
        assert!(!book.lease(t0 + ms(20)).valid);
        assert!(!book.stale(c, t0 + ms(3020)));
        assert!(book.stale(c, t0 + ms(3021)));
        book.answered(&beat(c, 1, Some(LIVE)), t0 + ms(30), 7);
        assert!(book.lease(t0 + ms(30)).valid);
        // Keeping the same one again changes nothing.
        book.keep_live(LIVE);
        assert!(book.lease(t0 + ms(30)).valid);
    }

    #[test]
    fn generations_count_sessions_not_connections() {
        let t0 = Instant::now();
        let mut book = Book::default();
        let live = Some(LIVE);
        book.keep_live(LIVE);
        let c = book.new_client();
        assert_eq!(book.lease(t0).generation, 0);
        assert!(matches!(
            book.connected(c, granted(7, 2000), t0),
            Some(Connected::New(_))
        ));
        book.answered(&beat(c, 1, live), t0, 7);
        // Reconnected to the same session: same generation, lease kept.
        book.disconnected(c);
        assert!(matches!(
            book.connected(c, granted(7, 2000), t0 + ms(200)),
            Some(Connected::Reconnected(SessionInfo { generation: 1, .. }))
        ));
        assert!(book.lease(t0 + ms(1000)).valid);
        // The same client gets a new session (the server expired the old
        // one): generation 2, not yet confirmed.
        let Some(Connected::New(s)) = book.connected(c, granted(9, 2000), t0 + ms(300)) else {
            panic!("a new session");
        };
        assert_eq!(s.generation, 2);
        assert!(!book.lease(t0 + ms(400)).valid);
        // A heartbeat of generation 1 answered now confirms nothing.
        book.answered(&beat(c, 1, live), t0 + ms(350), 9);
        assert!(!book.lease(t0 + ms(400)).valid);
        book.answered(&beat(c, 2, live), t0 + ms(350), 9);
        assert!(book.lease(t0 + ms(400)).valid);
        // Given up: the lease ends before the client is closed.
        book.abandon(c);
        assert!(!book.lease(t0 + ms(400)).valid);
        assert_eq!(book.ended_sessions(), [7, 9]);
        // A fresh client: a new session, generation 3; news of the old client is ignored.
        let c2 = book.new_client();
        assert_eq!(book.connected(c, granted(9, 2000), t0), None);
        let Some(Connected::New(s)) = book.connected(c2, granted(11, 2000), t0 + ms(500)) else {
            panic!("a new session");
        };
        assert_eq!(s.generation, 3);
        book.answered(&beat(c, 3, live), t0 + ms(600), 11);
        assert!(!book.lease(t0 + ms(600)).valid);
        book.answered(&beat(c2, 3, live), t0 + ms(600), 11);
        assert!(book.lease(t0 + ms(600)).valid);
    }

    #[test]
    fn each_new_session_is_announced_once() {
        let t0 = Instant::now();
        let mut book = Book::default();
        assert_eq!(book.take_news(), None);
        let c = book.new_client();
        book.connected(c, granted(7, 2000), t0);
        assert_eq!(book.take_news().map(|s| s.generation), Some(1));
        assert_eq!(book.take_news(), None);
        book.connected(c, granted(7, 2000), t0);
        assert_eq!(book.take_news(), None);
        book.connected(c, granted(8, 2000), t0);
        assert_eq!(book.take_news().map(|s| s.generation), Some(2));
    }

    #[test]
    fn a_connection_without_its_record_is_not_used() {
        let t0 = Instant::now();
        let mut book = Book::default();
        let c = book.new_client();
        book.connected(c, granted(7, 2000), t0);
        book.answered(&beat(c, 1, None), t0, 0);
        assert!(book.lease(t0).valid);
        assert_eq!(book.connected(c, None, t0), Some(Connected::Unknown));
        assert!(!book.lease(t0).valid);
        assert_eq!(book.beat(), None);
    }

    #[test]
    fn only_a_heartbeat_of_the_connection_confirms() {
        let t0 = Instant::now();
        let mut book = Book::default();
        let c = book.new_client();
        let e1 = book.connection(c).unwrap();
        assert_eq!(book.beat(), None, "not learned yet");
        assert!(matches!(
            book.learned(c, e1, granted(7, 3000), t0),
            Some(Connected::New(_))
        ));
        let b1 = book.beat().unwrap();
        assert_eq!(b1.epoch, e1);
        // Reconnected: the heartbeat of the last connection confirms
        // nothing, even in the same session, and none goes out until the
        // session of the new one is learned.
        let e2 = book.connection(c).unwrap();
        assert_eq!(book.beat(), None);
        book.answered(&b1, t0 + ms(10), 0);
        assert!(!book.lease(t0 + ms(10)).valid);
        // What is learned of a connection that was followed by another is dropped.
        let e3 = book.connection(c).unwrap();
        assert_eq!(book.learned(c, e2, granted(7, 3000), t0), None);
        assert!(matches!(
            book.learned(c, e3, granted(7, 3000), t0 + ms(20)),
            Some(Connected::Reconnected(SessionInfo { generation: 1, .. }))
        ));
        let b3 = book.beat().unwrap();
        book.answered(&b3, t0 + ms(20), 0);
        assert!(book.lease(t0 + ms(20)).valid);
        // A client given up is not wanted; a fresh one is.
        assert!(book.wants(c));
        book.abandon(c);
        assert!(!book.wants(c));
        let c2 = book.new_client();
        assert!(book.wants(c2) && !book.wants(c));
        assert_eq!(book.connection(c), None);
    }
}
