//! The gate: the node's own accept loop, in front of tiny_http, which has
//! no limits of its own (it takes a header line of any length and keeps a
//! thread per connection for as long as the client likes).
//!
//! One thread runs an epoll loop over every client connection. It reads
//! each request's head itself and holds it until it is whole, so a client
//! that sends slowly, or nothing, costs a few bytes of state here and no
//! thread anywhere:
//! - a request line plus headers over [`Limits::max_head`] (16 KiB) gets
//!   431 and the connection is closed;
//! - a request (head and body) not wholly received within
//!   [`Limits::request_timeout`] (10 s) of its first byte (of the
//!   connection, for the first request) gets 408 and is closed;
//! - a connection with no request under way (and no answer awaited) is
//!   closed after `--idle-timeout`;
//! - past `--max-connections` open connections, a new one gets 503 and is
//!   closed at once.
//!
//! A connection whose first request is whole gets a Unix-socket connection
//! to tiny_http (listening on an abstract address of its own), and from
//! then on the loop relays: each whole request (head, then its
//! `Content-Length` body as it comes) to tiny_http, tiny_http's answers back.
//! tiny_http thus sees only well-formed, complete requests, and holds a
//! thread only for connections that have sent one (at most
//! `--max-connections`, and each only until its idle timeout). The relay
//! copies each byte once more, in one thread for all connections, at four
//! system calls per request (no read is made only to hear `EAGAIN`): see
//! docs/design.md, "What the relay costs".
//!
//! Cache hits skip the relay. A whole head without a body is first offered
//! to the node (`Answer`, which is `api::answer_now`): a plain
//! `GET /store/{key}` that is a hit the node may serve right now (its lease
//! valid, the client's token good) gets its answer, built by the receivers'
//! own code, queued here and written in the same event, at two system
//! calls and no other thread woken; anything else is relayed as above.
//! Answers must leave in request order, so the gate answers a request only
//! while no earlier request of its connection awaits tiny_http's answer;
//! `answers` follows tiny_http's answers (their lengths, chunks, 1xx) to
//! know when none does. What it cannot follow sends the connection's
//! requests to tiny_http from then on. The lookup takes the key's shard
//! lock for a moment, held by no one across I/O: the loop does not wait.
//!
//! With `--tls-cert`, the port speaks TLS, terminated here (`client`): the
//! handshake runs in the same loop, counted against the request timeout
//! from the connection's first moment (a handshake that stalls is closed
//! after 10 s, with no answer, since the client could not read one), and
//! the limits above apply to the plaintext. tiny_http still sees plaintext
//! on its Unix socket. Past `--max-connections`, a TLS connection is closed
//! without an answer.
//!
//! Layout: `client` (a client's socket: plain, or TLS with rustls), `head`
//! (where a head ends, how long its body is), `answers` (how many of
//! tiny_http's answers are still to come on a connection), `epoll` (the
//! system calls).

mod answers;
mod client;
mod epoll;
mod head;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use answers::Answers;
use client::Client;
use epoll::Epoll;
use head::{body_length, find_head_end, Refusal};

/// What the gate enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn new(idle_timeout: Duration, max_connections: usize) -> Limits {
        Limits {
            max_head: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout,
            max_connections,
        }
    }
}

/// Bytes a connection buffers in each direction before it stops reading.
const BUFFERED: usize = 64 * 1024;
/// How often timeouts are checked.
const SWEEP: Duration = Duration::from_millis(200);
/// How long accepting pauses after it failed (too many open files).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const LISTENER: u64 = u64::MAX;

/// Where tiny_http listens: an abstract Unix socket address.
#[derive(Clone, Debug)]
pub struct Upstream {
    name: Vec<u8>,
}

impl Upstream {
    /// A name of this process's own.
    pub fn for_port(port: u16) -> Upstream {
        Upstream {
            name: format!("treecache-{}-{port}", std::process::id()).into_bytes(),
        }
    }

    pub fn bind(&self) -> std::io::Result<std::os::unix::net::UnixListener> {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&self.name)?;
        std::os::unix::net::UnixListener::bind_addr(&addr)
    }

    /// A blocking connection (the pool nudge).
    pub fn connect(&self) -> std::io::Result<UnixStream> {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&self.name)?;
        UnixStream::connect_addr(&addr)
    }

    /// A non-blocking connection: refused at once (`WouldBlock`) when
    /// tiny_http's backlog is full, rather than waiting.
    fn connect_nonblocking(&self) -> std::io::Result<UnixStream> {
        // SAFETY: plain socket calls on a descriptor we own; `addr` is a
        // zeroed sockaddr_un with the abstract name copied in within bounds.
        unsafe {
            let fd = libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let owned = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let n = self.name.len().min(addr.sun_path.len() - 1);
            for (i, b) in self.name[..n].iter().enumerate() {
                addr.sun_path[i + 1] = *b as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sa_family_t>() + 1 + n;
            let rc = libc::connect(
                fd,
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                len as libc::socklen_t,
            );
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(UnixStream::from(owned))
        }
    }
}

/// Where a connection's current request stands.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    /// Waiting for a whole head; the search for its end resumes here.
    Head { scanned: usize },
    /// Passing on this many more bytes of a body.
    Body { left: u64 },
}

struct Conn {
    client: Client,
    up: Option<UnixStream>,
    generation: u32,
    reading: Reading,
    /// Read from the client: the first `ready` bytes are framed and go to
    /// tiny_http; the rest is a head still incomplete.
    inbound: Vec<u8>,
    ready: usize,
    /// From tiny_http, for the client (with TLS: not yet encrypted).
    outbound: Vec<u8>,
    /// When the request under way began (`None`: none under way).
    request_since: Option<Instant>,
    last_activity: Instant,
    /// A whole request went to tiny_http and nothing came back since.
    awaiting: bool,
    /// The requests framed for tiny_http whose answers have not wholly
    /// come back: while there are any, the gate answers none itself.
    answers: Answers,
    /// The client sent its last byte; no more reading from it.
    client_done: bool,
    /// Send this once tiny_http's answers are out, then close.
    closing: Option<Vec<u8>>,
    /// Close once what is queued for the client is out.
    finishing: bool,
    /// tiny_http closed its side.
    up_done: bool,
    /// Our side toward tiny_http is shut for writing.
    up_shut: bool,
    interest: (u32, u32),
}

/// Counts an answer the gate itself gave (by status).
pub type Count = Box<dyn Fn(u16) + Send>;

/// The answer to a whole request head (one without a body) when the node
/// can give it at once without waiting on anything (a cache hit); `None`
/// to pass the request on to tiny_http (`api::answer_now`).
pub type Answer = Box<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send>;

/// Runs the gate on its own thread until the process ends.
pub fn spawn(
    listener: TcpListener,
    upstream: Upstream,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    count: Count,
    answer: Answer,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.add(listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER)?;
    let mut gate = Gate {
        listener,
        upstream,
        limits,
        tls,
        count,
        answer,
        epoll,
        conns: Vec::new(),
        free: VecDeque::new(),
        open: 0,
        accept_paused: None,
        scratch: vec![0; BUFFERED],
    };
    std::thread::Builder::new()
        .name("gate".into())
        .spawn(move || {
            crate::http::server::set_policy(libc::SCHED_OTHER);
            gate.run()
        })?;
    Ok(())
}

struct Gate {
    listener: TcpListener,
    upstream: Upstream,
    limits: Limits,
    /// The port speaks TLS under this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
    count: Count,
    answer: Answer,
    epoll: Epoll,
    conns: Vec<Option<Conn>>,
    free: VecDeque<usize>,
    open: usize,
    accept_paused: Option<Instant>,
    scratch: Vec<u8>,
}

fn token(index: usize, generation: u32, up: bool) -> u64 {
    (generation as u64) << 32 | (index as u64) << 1 | up as u64
}

impl Gate {
    fn run(&mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut last_sweep = Instant::now();
        loop {
            let n = self.epoll.wait(&mut events, SWEEP);
            for event in &events[..n] {
                let (flags, data) = (event.events, event.u64);
                if data == LISTENER {
                    self.accept();
                    continue;
                }
                let index = (data as u32 >> 1) as usize;
                let generation = (data >> 32) as u32;
                let up = data & 1 == 1;
                let live = matches!(
                    self.conns.get(index),
                    Some(Some(c)) if c.generation == generation
                );
                if live {
                    self.on_event(index, up, flags);
                }
            }
            if last_sweep.elapsed() >= SWEEP {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
    }

    fn accept(&mut self) {
        if self.accept_paused.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((tcp, _)) => {
                    if self.open >= self.limits.max_connections {
                        // A TLS client could not read an answer before a
                        // handshake: it is only closed.
                        if self.tls.is_none() {
                            refuse_at_once(tcp);
                        }
                        (self.count)(503);
                        continue;
                    }
                    if tcp.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let client = match &self.tls {
                        None => Client::plain(tcp),
                        Some(config) => match Client::tls(tcp, config) {
                            Ok(client) => client,
                            Err(e) => {
                                log::warn!("cannot start a TLS session: {e}");
                                continue;
                            }
                        },
                    };
                    self.insert(client);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say: pause rather than spin.
                    log::warn!("accepting a connection failed: {e}; pausing");
                    let _ = self.epoll.delete(self.listener.as_raw_fd());
                    self.accept_paused = Some(Instant::now());
                    return;
                }
            }
        }
    }

    fn insert(&mut self, client: Client) {
        let index = self.free.pop_front().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let generation = next_generation();
        let now = Instant::now();
        let interest = libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        if self
            .epoll
            .add(client.fd(), interest, token(index, generation, false))
            .is_err()
        {
            self.free.push_back(index);
            return;
        }
        self.conns[index] = Some(Conn {
            client,
            up: None,
            generation,
            reading: Reading::Head { scanned: 0 },
            inbound: Vec::new(),
            ready: 0,
            outbound: Vec::new(),
            request_since: Some(now),
            last_activity: now,
            awaiting: false,
            answers: Answers::default(),
            client_done: false,
            closing: None,
            finishing: false,
            up_done: false,
            up_shut: false,
            interest: (interest, 0),
        });
        self.open += 1;
    }

    fn close(&mut self, index: usize) {
        if let Some(conn) = self.conns[index].take() {
            let _ = self.epoll.delete(conn.client.fd());
            if let Some(up) = &conn.up {
                let _ = self.epoll.delete(up.as_raw_fd());
            }
            self.open -= 1;
            self.free.push_back(index);
        }
    }

    fn on_event(&mut self, index: usize, up: bool, flags: u32) {
        let result = if up {
            self.upstream_readable(index, flags)
        } else {
            self.client_readable(index, flags)
        };
        let result = result.and_then(|()| self.resume_held(index));
        match result {
            Ok(()) => self.settle(index),
            Err(()) => self.close(index),
        }
    }

    /// Takes up plaintext a TLS session held back while the inbound buffer
    /// was full, once there is room again: the socket, already read, would
    /// not wake the loop for it.
    fn resume_held(&mut self, index: usize) -> Result<(), ()> {
        let Some(conn) = self.conns.get(index).and_then(Option::as_ref) else {
            return Ok(());
        };
        if conn.client.holds_input() && !conn.client_done && conn.inbound.len() < BUFFERED {
            return self.client_readable(index, libc::EPOLLIN as u32);
        }
        Ok(())
    }

    fn conn(&mut self, index: usize) -> Result<&mut Conn, ()> {
        self.conns.get_mut(index).and_then(Option::as_mut).ok_or(())
    }

    /// Reads what the client sent, frames it, and passes on what is ready.
    fn client_readable(&mut self, index: usize, flags: u32) -> Result<(), ()> {
        let limits = self.limits;
        let Gate {
            conns,
            scratch,
            answer,
            ..
        } = self;
        let conn = conns.get_mut(index).and_then(Option::as_mut).ok_or(())?;
        if flags & libc::EPOLLOUT as u32 != 0 {
            send_out(conn)?;
        }
        if flags & libc::EPOLLERR as u32 != 0 {
            return Err(());
        }
        let readable = flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
        if readable && !conn.client_done {
            let received = conn.client.receive(&mut conn.inbound, BUFFERED, scratch)?;
            if received.active {
                let now = Instant::now();
                conn.request_since.get_or_insert(now);
                conn.last_activity = now;
            }
            conn.client_done |= received.ended;
            if conn.client.sending() {
                // The TLS handshake's answer, or an alert.
                send_out(conn)?;
            }
        }
        if let Some((status, reason, why)) = frame(conn, limits, answer) {
            return self.refuse(index, status, reason, why);
        }
        if !conn.outbound.is_empty() {
            // Answers the gate gave: out in this same event.
            send_out(conn)?;
        }
        self.pass_on(index)
    }

    /// Passes the ready bytes on to tiny_http, connecting first if need be.
    fn pass_on(&mut self, index: usize) -> Result<(), ()> {
        let conn = self.conn(index)?;
        if conn.ready == 0 || conn.closing.is_some() {
            return Ok(());
        }
        if conn.up.is_none() {
            let generation = conn.generation;
            let up = match self.upstream.connect_nonblocking() {
                Ok(up) => up,
                Err(e) => {
                    log::warn!("cannot hand a connection to the HTTP server: {e}");
                    return self.refuse(
                        index,
                        503,
                        "Service Unavailable",
                        "This node is too busy to take the request; try again.",
                    );
                }
            };
            let interest = libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
            let t = token(index, generation, true);
            self.epoll
                .add(up.as_raw_fd(), interest, t)
                .map_err(|_| ())?;
            let conn = self.conn(index)?;
            conn.up = Some(up);
            conn.interest.1 = interest;
        }
        let conn = self.conn(index)?;
        let up = conn.up.as_mut().ok_or(())?;
        let mut written = 0;
        while written < conn.ready {
            match up.write(&conn.inbound[written..conn.ready]) {
                Ok(0) => return Err(()),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        conn.inbound.drain(..written);
        conn.ready -= written;
        if let Reading::Head { scanned } = &mut conn.reading {
            *scanned = scanned.saturating_sub(written);
        }
        Ok(())
    }

    /// Reads tiny_http's answers and sends them on to the client.
    fn upstream_readable(&mut self, index: usize, flags: u32) -> Result<(), ()> {
        if flags & libc::EPOLLOUT as u32 != 0 {
            self.pass_on(index)?;
        }
        let Gate { conns, scratch, .. } = self;
        let conn = conns.get_mut(index).and_then(Option::as_mut).ok_or(())?;
        let readable = flags
            & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
            != 0;
        if readable && !conn.up_done {
            if let Some(up) = conn.up.as_mut() {
                while conn.outbound.len() < BUFFERED {
                    match up.read(scratch) {
                        Ok(0) => {
                            conn.up_done = true;
                            break;
                        }
                        Ok(n) => {
                            conn.awaiting = false;
                            conn.last_activity = Instant::now();
                            conn.answers.read(&scratch[..n]);
                            conn.outbound.extend_from_slice(&scratch[..n]);
                            if n < scratch.len() {
                                // Drained for now (see `Client::receive`).
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            conn.up_done = true;
                            break;
                        }
                    }
                }
            }
        }
        send_out(conn)
    }

    /// Answers with `status` itself and closes, once what tiny_http still
    /// has to say is out (a request half passed on is cut off instead).
    fn refuse(&mut self, index: usize, status: u16, reason: &str, why: &str) -> Result<(), ()> {
        (self.count)(status);
        let conn = self
            .conns
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or(())?;
        let body = serde_json::to_vec(&serde_json::json!({ "error": why })).expect("JSON");
        let mut answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        if conn.client.handshaking() {
            // No TLS session to answer in: the connection is only closed.
            answer.clear();
        }
        conn.closing = Some(answer);
        conn.client_done = true;
        let half_sent = matches!(conn.reading, Reading::Body { .. }) || conn.ready > 0;
        conn.inbound.clear();
        conn.ready = 0;
        if let Some(up) = conn.up.take() {
            if half_sent {
                // What tiny_http has of this request is cut off with it.
                let _ = self.epoll.delete(up.as_raw_fd());
                conn.up_done = true;
            } else {
                // tiny_http answers what it has, then sees the end.
                let _ = up.shutdown(std::net::Shutdown::Write);
                conn.up = Some(up);
            }
        }
        Ok(())
    }

    /// After an event: closes a connection that is done, and sets what the
    /// loop waits for on each side.
    fn settle(&mut self, index: usize) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        let up_finished = conn.up.is_none() || conn.up_done;
        if up_finished && conn.drained() {
            if let Some(last) = conn.closing.take() {
                // tiny_http has said all it had: our own answer, then the end.
                if let Some(up) = conn.up.take() {
                    let _ = self.epoll.delete(up.as_raw_fd());
                }
                conn.outbound = last;
                conn.finishing = true;
                if send_out(conn).is_err() {
                    self.close(index);
                    return;
                }
            }
        }
        let conn = self.conns[index].as_mut().expect("still open");
        if conn.client_done && conn.closing.is_none() && !conn.finishing {
            // The client sends nothing more: tiny_http may end once it has
            // answered, and so may we.
            if conn.ready == 0 && !conn.up_shut {
                if let Some(up) = &conn.up {
                    let _ = up.shutdown(std::net::Shutdown::Write);
                }
                conn.up_shut = true;
            }
            if up_finished {
                conn.finishing = true;
            }
        }
        if conn.up.is_some() && conn.up_done && conn.closing.is_none() {
            // tiny_http closed (an answer with Connection: close).
            conn.finishing = true;
        }
        if conn.finishing && conn.outbound.is_empty() {
            // With TLS, the session's end goes last.
            conn.client.finish();
            if send_out(conn).is_err() || conn.drained() {
                self.close(index);
                return;
            }
        }
        let mut tcp = 0;
        if !conn.client_done && conn.inbound.len() < BUFFERED {
            tcp |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        }
        if !conn.drained() {
            tcp |= libc::EPOLLOUT as u32;
        }
        let mut up = 0;
        if conn.up.is_some() && !conn.up_done && conn.outbound.len() < BUFFERED {
            up |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        }
        if conn.ready > 0 && conn.up.is_some() {
            up |= libc::EPOLLOUT as u32;
        }
        let t = (
            token(index, conn.generation, false),
            token(index, conn.generation, true),
        );
        if tcp != conn.interest.0 {
            let _ = self.epoll.modify(conn.client.fd(), tcp, t.0);
            conn.interest.0 = tcp;
        }
        if let Some(u) = &conn.up {
            if up != conn.interest.1 {
                let _ = self.epoll.modify(u.as_raw_fd(), up, t.1);
                conn.interest.1 = up;
            }
        }
    }

    /// Timeouts: a request not whole in time gets 408; an idle connection,
    /// or one whose client stopped reading, is closed; a paused accept
    /// resumes.
    fn sweep(&mut self) {
        let now = Instant::now();
        if let Some(since) = self.accept_paused {
            if now.duration_since(since) >= ACCEPT_PAUSE {
                self.accept_paused = None;
                let fd = self.listener.as_raw_fd();
                if self.epoll.add(fd, libc::EPOLLIN as u32, LISTENER).is_ok() {
                    self.accept();
                }
            }
        }
        let limits = self.limits;
        for index in 0..self.conns.len() {
            let Some(conn) = self.conns[index].as_ref() else {
                continue;
            };
            let quiet = now.duration_since(conn.last_activity);
            if conn.closing.is_some() || conn.finishing || !conn.drained() {
                // Waiting on the client to take our answers.
                if quiet > limits.request_timeout.max(limits.idle_timeout) {
                    self.close(index);
                }
                continue;
            }
            let late = conn
                .request_since
                .is_some_and(|since| now.duration_since(since) > limits.request_timeout);
            if late && !conn.awaiting {
                let _ = self.refuse(
                    index,
                    408,
                    "Request Timeout",
                    "The request was not received in time (10 s).",
                );
                self.settle(index);
            } else if conn.request_since.is_none()
                && !conn.awaiting
                && conn.ready == 0
                && quiet > limits.idle_timeout
            {
                self.close(index);
            }
        }
    }
}

/// Finds the requests in what the client sent: a whole head is checked and
/// made ready, then its body as it comes. A refusal when the client broke
/// a limit or sent what cannot be framed.
///
/// A request without a body that `answer` answers at once is answered
/// here, its answer queued for the client, and never reaches tiny_http;
/// but only while no earlier request of the connection awaits tiny_http's
/// answer (its answer would overtake theirs), and while the client takes
/// what it is sent (`BUFFERED`). Otherwise it is passed on as any other.
fn frame(conn: &mut Conn, limits: Limits, answer: &Answer) -> Option<Refusal> {
    const TOO_LARGE: Refusal = (
        431,
        "Request Header Fields Too Large",
        "The request line and headers are larger than 16 KiB.",
    );
    loop {
        match conn.reading {
            Reading::Body { left } => {
                let have = (conn.inbound.len() - conn.ready) as u64;
                let take = have.min(left);
                conn.ready += take as usize;
                if left > take {
                    conn.reading = Reading::Body { left: left - take };
                    return None;
                }
                // The request is whole.
                conn.reading = Reading::Head {
                    scanned: conn.ready,
                };
                conn.awaiting = true;
                conn.request_since = (conn.inbound.len() > conn.ready).then(Instant::now);
            }
            Reading::Head { scanned } => {
                let pending = &conn.inbound[conn.ready..];
                let from = scanned.saturating_sub(conn.ready).saturating_sub(3);
                let Some(end) = find_head_end(pending, from) else {
                    if pending.len() > limits.max_head {
                        return Some(TOO_LARGE);
                    }
                    conn.reading = Reading::Head {
                        scanned: conn.inbound.len(),
                    };
                    return None;
                };
                if end > limits.max_head {
                    return Some(TOO_LARGE);
                }
                let body = match body_length(&pending[..end]) {
                    Ok(n) => n,
                    Err(refusal) => return Some(refusal),
                };
                // Not on a connection that is ending (refused, or closed by
                // tiny_http after `Connection: close`): nothing more is
                // answered on it.
                let direct = body == 0
                    && !conn.answers.awaited()
                    && conn.outbound.len() < BUFFERED
                    && conn.closing.is_none()
                    && !conn.finishing
                    && !conn.up_done;
                if let Some(answered) = direct.then(|| answer(&pending[..end])).flatten() {
                    // The head is taken out where it lies (past `ready`,
                    // which is 0 here: what is framed there is awaited).
                    conn.inbound.drain(conn.ready..conn.ready + end);
                    conn.outbound.extend_from_slice(&answered);
                    conn.reading = Reading::Head {
                        scanned: conn.ready,
                    };
                    conn.request_since = (conn.inbound.len() > conn.ready).then(Instant::now);
                    continue;
                }
                conn.answers.sent(pending.starts_with(b"HEAD "));
                conn.ready += end;
                conn.reading = Reading::Body { left: body };
            }
        }
    }
}

/// Writes what is queued for the client; an error when the client is gone.
fn send_out(conn: &mut Conn) -> Result<(), ()> {
    if conn.client.send(&mut conn.outbound)? {
        conn.last_activity = Instant::now();
    }
    Ok(())
}

impl Conn {
    /// Nothing waits to be written to the client.
    fn drained(&self) -> bool {
        self.outbound.is_empty() && !self.client.sending()
    }
}

/// 503 to a connection past the limit, without waiting on it.
fn refuse_at_once(mut tcp: TcpStream) {
    let body = br#"{"error":"This node has as many connections open as it takes (--max-connections); try again."}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tcp.set_nonblocking(true);
    let _ = tcp.write_all(&[head.as_bytes(), body].concat());
}

fn next_generation() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}
