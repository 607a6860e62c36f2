//! The HTTP server: one event loop that accepts, reads and writes every
//! connection, and pools of blocking workers for everything it does not
//! answer itself. It is the node's one HTTP/1.1 implementation: request
//! heads are parsed once, by httparse (`framing`), here.
//!
//! The loop holds each request until it is whole and within its limits, so
//! a client that sends slowly, or nothing, costs a few bytes of state here
//! and no thread anywhere:
//! - a request line plus headers over 16 KiB gets 431; a head that does
//!   not parse 400; another HTTP version 505; a body it will not read
//!   (too long for its route 413, a transfer coding 411 or 501) is refused
//!   before any of it is read (see `framing`); each closes the connection;
//! - a request (head and body) not wholly received within
//!   [`Limits::request_timeout`] (10 s) of its first byte (of the
//!   connection, for the first request) gets 408 and is closed;
//! - a connection with no request under way is closed after
//!   `--idle-timeout`;
//! - past `--max-connections` open connections, a new one gets 503 and is
//!   closed at once.
//!
//! A whole request is answered in the loop when it is a plain cache hit
//! (`api::answer_now`: a key's shard lock for a moment, no I/O, no other
//! thread woken); anything else goes, head and body together, to a worker
//! pool (`api::lane` says which), and its answer comes back through the
//! `mailbox`, or, over plain TCP with nothing queued before it, is written
//! by the worker itself (`direct`). A connection has one request with the workers at a time:
//! what it pipelines behind waits in its buffer, so answers leave in
//! request order. A request with the workers that is not answered within
//! its time (`--upstream-timeout` and a second; a replication call, 31 s)
//! gets 503 and its connection is closed; the late answer is dropped.
//!
//! What answers take while they wait to be written is bounded for the
//! whole node ([`ANSWER_BYTES`]): an answer that would go past it is
//! replaced by a 503.
//!
//! With `--tls-cert`, the port speaks TLS, terminated here (`client`): the
//! handshake runs in the same loop, counted against the request timeout
//! from the connection's first moment, and every limit above applies to
//! the plaintext. Past `--max-connections`, a TLS connection is closed
//! without an answer (the client could not read one before a handshake).
//!
//! Layout: `client` (a client's socket, plain or TLS), `framing` (heads),
//! `mailbox` (answers back from the workers), `direct` (answers the
//! workers write themselves), `epoll` (the system calls).

mod client;
mod direct;
mod epoll;
mod framing;
mod mailbox;

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::auth::Guard;
use crate::http::api::{self, Lane};
use crate::http::message::{encode, http_date, Asked, Reply, Request};
use crate::http::pool::Pool;
use crate::node::Node;

use client::Client;
use direct::{Answer, Direct, Seen};
use epoll::Epoll;
use framing::{head_end, read_head, resume_from, Head, HEAD_TOO_LARGE, MAX_HEAD};
use mailbox::{Mailbox, Posted};

/// What the loop enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Bytes a connection reads ahead (pipelined requests) or queues for its
/// client before it stops reading.
const BUFFERED: usize = 64 * 1024;
/// The most bytes the answers waiting to be written may take, in all.
pub const ANSWER_BYTES: usize = 32 << 20;
/// How long a connection closed after an answer may still send, and how
/// much: what it sends is read and dropped, so that closing with its data
/// unread (a reset) does not destroy the answer before the client has read
/// it. A body refused for its length may still come whole (within bounds);
/// after any other refusal a little more is read.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_BODY_BYTES: usize = (1 << 20) + LINGER_BYTES;
/// How often timeouts are checked.
const SWEEP: Duration = Duration::from_millis(200);
/// How long accepting pauses after it failed (too many open files).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The most threads of the lane that waits on other nodes.
const WAITING_THREADS_MAX: usize = 1024;
const LISTENER: u64 = u64::MAX;
const MAILBOX: u64 = u64::MAX - 1;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request on its way to a worker, and the connection it came on.
struct Job {
    answer: Answer,
    request: Request,
}

/// What the lane that waits on other nodes runs.
enum Waiting {
    /// A request to handle from the start.
    Request(Job),
    /// Work a receiver began and handed on.
    Deferred(Answer, api::Deferred),
}

/// Runs the server on this thread until the process ends; with `tls`, the
/// API port speaks HTTPS.
pub fn serve(
    node: Arc<Node>,
    guard: Arc<Guard>,
    listener: TcpListener,
    threads: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    no_delay(&listener);
    listener.set_nonblocking(true)?;
    let mailbox = Arc::new(Mailbox::new()?);
    let waiting = {
        let (node, guard, mailbox) = (node.clone(), guard.clone(), mailbox.clone());
        Arc::new(Pool::new("upstream", WAITING_THREADS_MAX, move |w| {
            let (answer, reply) = match w {
                Waiting::Request(job) => (
                    job.answer,
                    made(|| match api::handle(&node, &guard, job.request) {
                        api::Handled::Done(reply) => reply,
                        api::Handled::Defer(deferred) => api::finish(&node, deferred),
                    }),
                ),
                Waiting::Deferred(answer, deferred) => {
                    (answer, made(|| api::finish(&node, deferred)))
                }
            };
            answer.give(reply, &mailbox, &node);
        }))
    };
    let receivers = {
        let (node, guard, mailbox, waiting) = (
            node.clone(),
            guard.clone(),
            mailbox.clone(),
            waiting.clone(),
        );
        Pool::new("http", threads, move |job: Job| {
            let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                api::handle(&node, &guard, job.request)
            }));
            match handled {
                Ok(api::Handled::Done(reply)) => job.answer.give(reply, &mailbox, &node),
                Ok(api::Handled::Defer(d)) => waiting.submit(Waiting::Deferred(job.answer, d)),
                Err(_) => job.answer.give(panicked(), &mailbox, &node),
            }
        })
    };
    let epoll = Epoll::new()?;
    epoll.add(listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER)?;
    epoll.add(mailbox.fd(), libc::EPOLLIN as u32, MAILBOX)?;
    let config = node.config();
    let limits = Limits {
        request_timeout: Duration::from_secs(10),
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
    };
    let mut server = Server {
        listener,
        limits,
        tls,
        epoll,
        conns: Vec::new(),
        free: VecDeque::new(),
        open: 0,
        accept_paused: None,
        scratch: vec![0; BUFFERED],
        node,
        guard,
        receivers,
        waiting,
        mailbox,
        answer_bytes: 0,
        date: (0, String::new()),
    };
    server.run();
    Ok(())
}

/// The answer `work` makes, or a 500 when it panicked.
fn made(work: impl FnOnce() -> Reply) -> Reply {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| panicked())
}

fn panicked() -> Reply {
    log::error!("answering a request panicked");
    Reply::refusal(500, "The node failed while answering; see its log.")
}

/// Sets TCP_NODELAY on the listening socket; accepted sockets inherit it
/// on Linux. An answer written in two pieces would otherwise wait for the
/// peer's delayed ACK: 40 ms per hop.
fn no_delay(listener: &TcpListener) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a valid int option value.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::warn!(
            "cannot set TCP_NODELAY: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A request with the workers.
struct Working {
    since: Instant,
    allowed: Duration,
    asked: Asked,
    /// The worker may write the answer itself.
    direct: Option<Arc<Direct>>,
}

impl Working {
    /// The worker wrote the whole answer itself. With `wait`, a worker
    /// that has not yet tells the loop when it has.
    fn ended(&self, wait: bool) -> bool {
        self.direct
            .as_ref()
            .is_some_and(|d| d.look(wait) == Seen::Done)
    }
}

struct Conn {
    client: Client,
    generation: u32,
    /// Read from the client, not yet taken as a request.
    inbound: Vec<u8>,
    /// The search for the end of a head resumes here.
    scanned: usize,
    /// A head whose body is still coming.
    pending: Option<Head>,
    /// For the client (with TLS: not yet encrypted).
    outbound: Vec<u8>,
    /// Bytes of `outbound` counted in the node's answer bytes.
    charged: usize,
    /// When the request under way began (`None`: none under way).
    request_since: Option<Instant>,
    last_activity: Instant,
    working: Option<Working>,
    /// The client sent its last byte.
    client_done: bool,
    /// Nothing more is read or answered: close once `outbound` is out.
    closing: bool,
    /// Since when the answers are out and what the client sends is dropped
    /// (see [`LINGER`]).
    lingering: Option<Instant>,
    /// How many more bytes are dropped before the connection is closed.
    linger_bytes: usize,
    interest: u32,
}

impl Conn {
    /// Nothing waits to be written to the client.
    fn drained(&self) -> bool {
        self.outbound.is_empty() && !self.client.sending()
    }

    /// How much the connection reads ahead: a body it waits for whole.
    fn read_limit(&self) -> usize {
        self.pending
            .as_ref()
            .map_or(BUFFERED, |h| h.body.max(BUFFERED))
    }

    fn wants_input(&self) -> bool {
        !self.client_done && !self.closing && self.inbound.len() < self.read_limit()
    }
}

struct Server {
    listener: TcpListener,
    limits: Limits,
    /// The port speaks TLS under this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
    epoll: Epoll,
    conns: Vec<Option<Conn>>,
    free: VecDeque<usize>,
    open: usize,
    accept_paused: Option<Instant>,
    scratch: Vec<u8>,
    node: Arc<Node>,
    guard: Arc<Guard>,
    receivers: Pool<Job>,
    waiting: Arc<Pool<Waiting>>,
    mailbox: Arc<Mailbox>,
    /// What the answers in `outbound` buffers take, in all.
    answer_bytes: usize,
    /// The `Date` of answers made within this second (Unix time).
    date: (u64, String),
}

fn token(index: usize, generation: u32) -> u64 {
    (generation as u64) << 32 | index as u64
}

impl Server {
    fn run(&mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut replies = Vec::new();
        let mut last_sweep = Instant::now();
        loop {
            let n = self.epoll.wait(&mut events, SWEEP);
            for event in &events[..n] {
                let (flags, data) = (event.events, event.u64);
                match data {
                    LISTENER => self.accept(),
                    MAILBOX => {
                        self.mailbox.take(&mut replies);
                        for (token, reply) in replies.drain(..) {
                            self.answered(token, reply);
                        }
                    }
                    _ => {
                        let index = (data as u32) as usize;
                        if self.live(index, (data >> 32) as u32) {
                            self.on_client(index, flags);
                        }
                    }
                }
            }
            if last_sweep.elapsed() >= SWEEP {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
    }

    fn live(&self, index: usize, generation: u32) -> bool {
        matches!(self.conns.get(index), Some(Some(c)) if c.generation == generation)
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
                        self.node.count_response(503);
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
        let interest = libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        if self
            .epoll
            .add(client.fd(), interest, token(index, generation))
            .is_err()
        {
            self.free.push_back(index);
            return;
        }
        let now = Instant::now();
        self.conns[index] = Some(Conn {
            client,
            generation,
            inbound: Vec::new(),
            scanned: 0,
            pending: None,
            outbound: Vec::new(),
            charged: 0,
            request_since: Some(now),
            last_activity: now,
            working: None,
            client_done: false,
            closing: false,
            lingering: None,
            linger_bytes: LINGER_BYTES,
            interest,
        });
        self.open += 1;
    }

    fn close(&mut self, index: usize) {
        if let Some(conn) = self.conns[index].take() {
            let _ = self.epoll.delete(conn.client.fd());
            self.answer_bytes -= conn.charged;
            self.open -= 1;
            self.free.push_back(index);
        }
    }

    fn conn(&mut self, index: usize) -> Result<&mut Conn, ()> {
        self.conns.get_mut(index).and_then(Option::as_mut).ok_or(())
    }

    fn on_client(&mut self, index: usize, flags: u32) {
        let result = self.client_event(index, flags);
        match result {
            Ok(()) => self.settle(index),
            Err(()) => self.close(index),
        }
    }

    fn client_event(&mut self, index: usize, flags: u32) -> Result<(), ()> {
        if self.conn(index)?.lingering.is_some() {
            let Server { conns, scratch, .. } = self;
            let conn = conns.get_mut(index).and_then(Option::as_mut).ok_or(())?;
            let (dropped, ended) = conn.client.discard(scratch)?;
            conn.linger_bytes = conn.linger_bytes.checked_sub(dropped).ok_or(())?;
            conn.client_done |= ended;
            return Ok(());
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            self.send_out(index)?;
        }
        if flags & libc::EPOLLERR as u32 != 0 {
            return Err(());
        }
        let readable = flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
        if readable {
            self.receive(index)?;
        }
        self.advance(index)?;
        // Plaintext a TLS session held back while the buffer was full: the
        // socket, already read, would not wake the loop for it.
        while self.conn(index)?.client.holds_input() && self.conn(index)?.wants_input() {
            let before = self.conn(index)?.inbound.len();
            self.receive(index)?;
            self.advance(index)?;
            if self.conn(index)?.inbound.len() == before {
                break;
            }
        }
        self.send_out(index)
    }

    /// Reads what the client sent, while the connection wants it.
    fn receive(&mut self, index: usize) -> Result<(), ()> {
        let Server { conns, scratch, .. } = self;
        let conn = conns.get_mut(index).and_then(Option::as_mut).ok_or(())?;
        if !conn.wants_input() {
            return Ok(());
        }
        let limit = conn.read_limit();
        let received = conn.client.receive(&mut conn.inbound, limit, scratch)?;
        if received.active {
            let now = Instant::now();
            conn.last_activity = now;
            if !conn.inbound.is_empty() {
                conn.request_since.get_or_insert(now);
            }
        }
        conn.client_done |= received.ended;
        Ok(())
    }

    /// Takes the requests the client sent, one at a time: a whole head is
    /// read and checked, then its body awaited, then the request answered
    /// here or handed to a worker. Stops while a request is with the
    /// workers (what follows waits its turn) or the client does not take
    /// its answers.
    fn advance(&mut self, index: usize) -> Result<(), ()> {
        loop {
            let conn = self.conn(index)?;
            let waits = !conn.inbound.is_empty() || conn.client_done;
            if conn.working.as_ref().is_some_and(|w| w.ended(waits)) {
                conn.working = None;
                conn.last_activity = Instant::now();
            }
            if conn.closing || conn.working.is_some() || conn.outbound.len() >= BUFFERED {
                return Ok(());
            }
            if let Some(body) = conn.pending.as_ref().map(|h| h.body) {
                if conn.inbound.len() < body {
                    return Ok(());
                }
                let rest = conn.inbound.split_off(body);
                let body = std::mem::replace(&mut conn.inbound, rest);
                let head = conn.pending.take().expect("a pending head");
                self.start(index, head, body)?;
                continue;
            }
            if conn.scanned == 0 {
                // Empty lines before a request line are ignored.
                let blank = conn
                    .inbound
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                conn.inbound.drain(..blank);
            }
            if conn.inbound.is_empty() {
                return Ok(());
            }
            let Some(end) = head_end(&conn.inbound, resume_from(conn.scanned)) else {
                if conn.inbound.len() > MAX_HEAD {
                    return self.refuse(index, HEAD_TOO_LARGE.status, HEAD_TOO_LARGE.why);
                }
                conn.scanned = conn.inbound.len();
                return Ok(());
            };
            if end > MAX_HEAD {
                return self.refuse(index, HEAD_TOO_LARGE.status, HEAD_TOO_LARGE.why);
            }
            match read_head(&conn.inbound[..end], api::largest_body) {
                Err(r) => return self.refuse(index, r.status, r.why),
                Ok(None) => conn.scanned = end,
                Ok(Some(head)) => {
                    conn.inbound.drain(..end);
                    conn.scanned = 0;
                    if head.body == 0 {
                        self.start(index, head, Vec::new())?;
                    } else {
                        if head.expects_continue && conn.inbound.len() < head.body {
                            conn.outbound.extend_from_slice(CONTINUE);
                        }
                        conn.pending = Some(head);
                    }
                }
            }
        }
    }

    /// A whole request: answered now when it is a hit, else to a worker.
    fn start(&mut self, index: usize, head: Head, body: Vec<u8>) -> Result<(), ()> {
        let now = Instant::now();
        let asked = Asked {
            head_only: head.method == "HEAD",
            keep_alive: head.keep_alive,
        };
        let mut request = Request {
            method: head.method,
            target: head.target,
            headers: head.headers,
            body,
            received: now,
            verified: false,
        };
        let conn = self.conn(index)?;
        conn.request_since = (!conn.inbound.is_empty()).then_some(now);
        let token = token(index, conn.generation);
        let (node, guard) = (&self.node, &self.guard);
        // A panic here must not end the loop, which every connection needs.
        let now_answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
            api::answer_now(node, guard, &mut request)
        }))
        .unwrap_or_else(|_| Some(panicked()));
        if let Some(reply) = now_answer {
            self.queue(index, reply, asked);
            return Ok(());
        }
        let allowed = api::time_allowed(&request, self.node.config());
        let lane = api::lane(&request);
        let conn = self.conn(index)?;
        // Nothing queued before this answer: the worker may write it.
        let direct = (asked.keep_alive && conn.drained())
            .then(|| conn.client.socket().map(Direct::new))
            .flatten();
        conn.working = Some(Working {
            since: now,
            allowed,
            asked,
            direct: direct.clone(),
        });
        let answer = Answer {
            token,
            asked,
            direct,
        };
        let job = Job { answer, request };
        match lane {
            Lane::Receive => self.receivers.submit(job),
            Lane::Wait => self.waiting.submit(Waiting::Request(job)),
        }
        Ok(())
    }

    /// What a worker posted for the connection of `token`, if it still
    /// waits.
    fn answered(&mut self, token: u64, posted: Posted) {
        let index = (token as u32) as usize;
        if !self.live(index, (token >> 32) as u32) {
            return;
        }
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        match posted {
            // `advance` sees that the worker wrote it.
            Posted::Resume => {}
            Posted::Reply(reply) => {
                let Some(working) = conn.working.take() else {
                    // Answered already (503, too late).
                    return;
                };
                self.queue(index, reply, working.asked);
            }
            Posted::Rest(bytes) => {
                conn.working = None;
                if self.answer_bytes + bytes.len() > ANSWER_BYTES {
                    // Its start is out: no 503 can take its place.
                    self.close(index);
                    return;
                }
                conn.charged += bytes.len();
                self.answer_bytes += bytes.len();
                conn.outbound.extend_from_slice(&bytes);
            }
        }
        self.resume(index);
    }

    /// Goes on with a connection after its request was answered.
    fn resume(&mut self, index: usize) {
        let result = self.advance(index).and_then(|()| self.send_out(index));
        match result {
            Ok(()) => self.settle(index),
            Err(()) => self.close(index),
        }
    }

    /// Queues `reply` for the client, counted by its status; a 503 instead
    /// when the answers waiting to be written take all they may.
    fn queue(&mut self, index: usize, mut reply: Reply, asked: Asked) {
        let size = reply.body.len();
        if self.answer_bytes + size > ANSWER_BYTES {
            reply = Reply::refusal(
                503,
                "This node holds as many answers waiting for their clients as it may; try again.",
            );
        }
        self.node.count_response(reply.status);
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.date.0 != secs {
            self.date = (secs, http_date(SystemTime::now()));
        }
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        let before = conn.outbound.len();
        encode(&reply, asked, &self.date.1, &mut conn.outbound);
        let added = conn.outbound.len() - before;
        conn.charged += added;
        self.answer_bytes += added;
        if reply.close || !asked.keep_alive {
            conn.closing = true;
            conn.pending = None;
            conn.inbound = Vec::new();
        }
    }

    /// Answers `status` and closes: what the client sent after is not read.
    fn refuse(&mut self, index: usize, status: u16, why: &str) -> Result<(), ()> {
        let conn = self.conn(index)?;
        if conn.client.handshaking() {
            // No TLS session to answer in: the connection is only closed.
            conn.closing = true;
            self.node.count_response(status);
            return Ok(());
        }
        let asked = Asked {
            head_only: false,
            keep_alive: false,
        };
        if status == 413 {
            conn.linger_bytes = LINGER_BODY_BYTES;
        }
        self.queue(index, Reply::refusal(status, why).closing(), asked);
        Ok(())
    }

    /// Writes what is queued for the client; an error when it is gone.
    fn send_out(&mut self, index: usize) -> Result<(), ()> {
        let conn = self.conn(index)?;
        let before = conn.outbound.len();
        let progress = conn.client.send(&mut conn.outbound)?;
        let sent = (before - conn.outbound.len()).min(conn.charged);
        conn.charged -= sent;
        if progress {
            conn.last_activity = Instant::now();
        }
        self.answer_bytes -= sent;
        Ok(())
    }

    /// After an event: closes a connection that is done, and sets what the
    /// loop waits for on its socket.
    fn settle(&mut self, index: usize) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if conn.client_done && conn.working.is_none() && conn.outbound.len() < BUFFERED {
            // Every whole request was taken: what is left never will be.
            conn.closing = true;
        }
        if conn.closing && conn.outbound.is_empty() && conn.lingering.is_none() {
            // With TLS, the session's end goes last.
            conn.client.finish();
            if self.send_out(index).is_err() {
                self.close(index);
                return;
            }
        }
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if conn.closing && conn.drained() {
            if conn.client_done {
                self.close(index);
                return;
            }
            if conn.lingering.is_none() {
                conn.client.shut_down();
                conn.lingering = Some(Instant::now());
            }
        }
        let mut interest = 0;
        if conn.wants_input() || conn.lingering.is_some() {
            interest |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        }
        if !conn.drained() {
            interest |= libc::EPOLLOUT as u32;
        }
        if interest != conn.interest {
            let t = token(index, conn.generation);
            let _ = self.epoll.modify(conn.client.fd(), interest, t);
            conn.interest = interest;
        }
    }

    /// Timeouts: a request with the workers too long gets 503, one not
    /// whole in time 408; an idle connection, or one whose client stopped
    /// reading, is closed; a paused accept resumes.
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
            let Some(conn) = self.conns[index].as_mut() else {
                continue;
            };
            let quiet = now.duration_since(conn.last_activity);
            if conn
                .lingering
                .is_some_and(|since| now.duration_since(since) > LINGER)
            {
                self.close(index);
                continue;
            }
            if let Some(w) = conn.working.as_ref() {
                if w.ended(false) {
                    self.resume(index);
                } else if now.duration_since(w.since) > w.allowed
                    && w.direct.as_ref().is_none_or(|d| d.abandon())
                {
                    conn.working = None;
                    let why = "The request was not answered within its time budget.";
                    let _ = self.refuse(index, 503, why);
                    let _ = self.send_out(index);
                    self.settle(index);
                }
                continue;
            }
            if conn.closing || !conn.drained() {
                // Waiting on the client to take our answers.
                if quiet > limits.request_timeout.max(limits.idle_timeout) {
                    self.close(index);
                }
                continue;
            }
            let late = conn
                .request_since
                .is_some_and(|since| now.duration_since(since) > limits.request_timeout);
            if late {
                let _ = self.refuse(index, 408, "The request was not received in time (10 s).");
                let _ = self.send_out(index);
                self.settle(index);
            } else if conn.request_since.is_none() && quiet > limits.idle_timeout {
                self.close(index);
            }
        }
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
