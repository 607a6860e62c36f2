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
//! copies each byte once more, in one thread for all connections, with no
//! wake-up of another thread per request: see docs/design.md for what that
//! costs.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

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
    tcp: TcpStream,
    up: Option<UnixStream>,
    generation: u32,
    reading: Reading,
    /// Read from the client: the first `ready` bytes are framed and go to
    /// tiny_http; the rest is a head still incomplete.
    inbound: Vec<u8>,
    ready: usize,
    /// From tiny_http, for the client.
    outbound: Vec<u8>,
    /// When the request under way began (`None`: none under way).
    request_since: Option<Instant>,
    last_activity: Instant,
    /// A whole request went to tiny_http and nothing came back since.
    awaiting: bool,
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

/// Runs the gate on its own thread until the process ends.
pub fn spawn(
    listener: TcpListener,
    upstream: Upstream,
    limits: Limits,
    count: Count,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.add(listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER)?;
    let mut gate = Gate {
        listener,
        upstream,
        limits,
        count,
        epoll,
        conns: Vec::new(),
        free: VecDeque::new(),
        open: 0,
        accept_paused: None,
        scratch: vec![0; BUFFERED],
    };
    std::thread::Builder::new()
        .name("gate".into())
        .spawn(move || gate.run())?;
    Ok(())
}

struct Gate {
    listener: TcpListener,
    upstream: Upstream,
    limits: Limits,
    count: Count,
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
                        refuse_at_once(tcp);
                        (self.count)(503);
                        continue;
                    }
                    if tcp.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.insert(tcp);
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

    fn insert(&mut self, tcp: TcpStream) {
        let index = self.free.pop_front().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let generation = next_generation();
        let now = Instant::now();
        let interest = libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        if self
            .epoll
            .add(tcp.as_raw_fd(), interest, token(index, generation, false))
            .is_err()
        {
            self.free.push_back(index);
            return;
        }
        self.conns[index] = Some(Conn {
            tcp,
            up: None,
            generation,
            reading: Reading::Head { scanned: 0 },
            inbound: Vec::new(),
            ready: 0,
            outbound: Vec::new(),
            request_since: Some(now),
            last_activity: now,
            awaiting: false,
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
            let _ = self.epoll.delete(conn.tcp.as_raw_fd());
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
        match result {
            Ok(()) => self.settle(index),
            Err(()) => self.close(index),
        }
    }

    fn conn(&mut self, index: usize) -> Result<&mut Conn, ()> {
        self.conns.get_mut(index).and_then(Option::as_mut).ok_or(())
    }

    /// Reads what the client sent, frames it, and passes on what is ready.
    fn client_readable(&mut self, index: usize, flags: u32) -> Result<(), ()> {
        let limits = self.limits;
        let Gate { conns, scratch, .. } = self;
        let conn = conns.get_mut(index).and_then(Option::as_mut).ok_or(())?;
        if flags & libc::EPOLLOUT as u32 != 0 {
            flush_out(conn)?;
        }
        if flags & libc::EPOLLERR as u32 != 0 {
            return Err(());
        }
        let readable = flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
        if readable && !conn.client_done {
            while conn.inbound.len() < BUFFERED {
                match conn.tcp.read(scratch) {
                    Ok(0) => {
                        conn.client_done = true;
                        break;
                    }
                    Ok(n) => {
                        let now = Instant::now();
                        conn.request_since.get_or_insert(now);
                        conn.last_activity = now;
                        conn.inbound.extend_from_slice(&scratch[..n]);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Err(()),
                }
            }
        }
        if let Some((status, reason, why)) = frame(conn, limits) {
            return self.refuse(index, status, reason, why);
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
                            conn.outbound.extend_from_slice(&scratch[..n]);
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
        flush_out(conn)
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
        if up_finished && conn.outbound.is_empty() {
            if let Some(last) = conn.closing.take() {
                // tiny_http has said all it had: our own answer, then the end.
                if let Some(up) = conn.up.take() {
                    let _ = self.epoll.delete(up.as_raw_fd());
                }
                conn.outbound = last;
                conn.finishing = true;
                if flush_out(conn).is_err() {
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
            self.close(index);
            return;
        }
        let mut tcp = 0;
        if !conn.client_done && conn.inbound.len() < BUFFERED {
            tcp |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        }
        if !conn.outbound.is_empty() {
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
            let _ = self.epoll.modify(conn.tcp.as_raw_fd(), tcp, t.0);
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
            if conn.closing.is_some() || conn.finishing || !conn.outbound.is_empty() {
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
fn frame(conn: &mut Conn, limits: Limits) -> Option<Refusal> {
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
                conn.ready += end;
                conn.reading = Reading::Body { left: body };
            }
        }
    }
}

/// Writes what is queued for the client; an error when the client is gone.
fn flush_out(conn: &mut Conn) -> Result<(), ()> {
    let mut written = 0;
    while written < conn.outbound.len() {
        match conn.tcp.write(&conn.outbound[written..]) {
            Ok(0) => return Err(()),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    if written > 0 {
        conn.last_activity = Instant::now();
    }
    conn.outbound.drain(..written);
    Ok(())
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

/// The end of a head (past its blank line) in `bytes`, searching from `from`.
fn find_head_end(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

type Refusal = (u16, &'static str, &'static str);

/// The length of the body that follows a whole head.
fn body_length(head: &[u8]) -> Result<u64, Refusal> {
    let text = std::str::from_utf8(head)
        .map_err(|_| (400, "Bad Request", "The request head is not ASCII."))?;
    let mut length = None;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value.trim().parse::<u64>().map_err(|_| {
                (
                    400,
                    "Bad Request",
                    "The Content-Length header is not a number.",
                )
            })?;
            if length.is_some_and(|l| l != n) {
                return Err((400, "Bad Request", "The request has two Content-Lengths."));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.trim().eq_ignore_ascii_case("identity")
        {
            return Err((
                411,
                "Length Required",
                "This node takes request bodies with a Content-Length only.",
            ));
        }
    }
    Ok(length.unwrap_or(0))
}

fn next_generation() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A small epoll handle.
struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        // SAFETY: creates a descriptor we then own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event { events, u64: data };
        // SAFETY: epoll_ctl on our epoll descriptor with a valid event.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn add(&self, fd: RawFd, events: u32, data: u64) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, data)
    }

    fn modify(&self, fd: RawFd, events: u32, data: u64) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, data)
    }

    fn delete(&self, fd: RawFd) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> usize {
        // SAFETY: the buffer is valid for `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout.as_millis() as libc::c_int,
            )
        };
        n.max(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_their_bodies() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n", 0), None);
        let head = b"PUT /store/k HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(body_length(head), Ok(12));
        assert_eq!(body_length(b"GET / HTTP/1.1\r\n\r\n"), Ok(0));
        let chunked = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(body_length(chunked).unwrap_err().0, 411);
        let two = b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(body_length(two).unwrap_err().0, 400);
    }
}
