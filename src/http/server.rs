//! The HTTP server: tiny_http with two fixed pools of worker threads.
//!
//! - Receivers (`--threads` of them) take requests off the socket and answer
//!   everything that needs no other node. They may wait on children (an
//!   invalidation passed down), never on a parent.
//! - The upstream pool runs work that waits on other nodes: the parent or
//!   the root, and children slow to acknowledge an invalidation. It is
//!   separate so that however many requests wait, receivers remain to answer
//!   the invalidations those very requests may depend on; and it grows when
//!   all its threads wait (`pool`), so that work stuck on a frozen node does
//!   not stall work that waits on nobody.
//!
//! Clients do not reach tiny_http directly: the gate (`gate`) accepts them,
//! holds each request until it is whole and within its limits, and relays
//! it to tiny_http over a Unix socket of this process; a plain GET that is
//! a cache hit it answers itself (`api::answer_now`).
//! The threads of both pools, and tiny_http's own, run `SCHED_BATCH`, so
//! that waking one does not preempt the gate (`set_policy`).
//!
//! tiny_http's accept thread ends for good on the first failed `accept`
//! (too many open files, say), or panics when it cannot duplicate an
//! accepted socket (the same cause, one step later), after which a server
//! would silently stop taking connections. When either happens here (a panic
//! hook notices the second), a new tiny_http server is
//! built on the same listening socket (retrying until that works), workers
//! move to it within `POLL`, and one thread keeps serving the connections
//! the old one still has open.
//!
//! tiny_http's connection thread pool can also strand a connection: when two
//! connections are accepted while one idle pool thread is waking up, the
//! second is queued with no thread to serve it until some other connection
//! closes (seen as invalidations that went unanswered for seconds). Any new
//! connection makes the pool hand a thread its queue, so the node opens and
//! closes a connection to itself every `NUDGE`: a stranded connection waits
//! that long at most.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::auth::Guard;
use crate::http::api;
use crate::http::gate::{self, Limits, Upstream};
use crate::http::pool::Pool;
use crate::node::Node;

/// Most threads of the lane that waits on other nodes.
const WAITING_THREADS_MAX: usize = 1024;

/// How often an idle receiver checks that its server is still the current one.
const POLL: Duration = Duration::from_millis(250);

/// How often the node connects to itself to unstrand queued connections.
const NUDGE: Duration = Duration::from_millis(50);

/// Connects to tiny_http's own listening socket every `NUDGE` (see the
/// module docs): the pool thread that takes the connection reads its end
/// at once and goes on to the next queued connection.
fn nudge_connection_pool(upstream: Upstream) {
    let spawned = std::thread::Builder::new()
        .name("pool-nudge".into())
        .spawn(move || loop {
            std::thread::sleep(NUDGE);
            drop(upstream.connect());
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the connection-pool nudge: {e}");
    }
}

/// Sets TCP_NODELAY on the listening socket; accepted sockets inherit it on
/// Linux. tiny_http writes a response over about 1 KiB in two pieces, and
/// without it the second waits for the peer's delayed ACK: 40 ms per hop.
fn no_delay(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
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

/// Sets the scheduling policy of the calling thread (and so of the threads
/// it starts). The HTTP threads run `SCHED_BATCH`: a thread of that policy,
/// when woken, does not preempt the one running on its CPU. The gate wakes
/// a tiny_http thread with every request it passes on; as `SCHED_OTHER`
/// that thread would take the gate's CPU at once, and the one thread that
/// serves every connection would be switched out once or twice a request.
/// CPU shares are as before (the same weight); only wake-up preemption
/// goes.
pub(crate) fn set_policy(policy: libc::c_int) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid
    // parameter; SCHED_OTHER and SCHED_BATCH need no privilege.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc != 0 {
        log::debug!(
            "cannot set the scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Set when code of tiny_http panicked: its accept thread may be gone.
static TINY_HTTP_PANICKED: AtomicBool = AtomicBool::new(false);

/// Notes panics in tiny_http's own threads (then reports them as usual).
fn watch_tiny_http_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .location()
            .is_some_and(|l| l.file().contains("tiny_http"))
        {
            TINY_HTTP_PANICKED.store(true, Ordering::SeqCst);
        }
        report(info);
    }));
}

/// The tiny_http server currently accepting, replaced if its accept loop dies.
struct Acceptor {
    listener: UnixListener,
    current: RwLock<Arc<tiny_http::Server>>,
    replacing: Mutex<()>,
}

impl Acceptor {
    fn new(listener: UnixListener) -> std::io::Result<Acceptor> {
        let server = Self::build(&listener)?;
        Ok(Acceptor {
            listener,
            current: RwLock::new(Arc::new(server)),
            replacing: Mutex::new(()),
        })
    }

    fn build(listener: &UnixListener) -> std::io::Result<tiny_http::Server> {
        tiny_http::Server::from_listener(listener.try_clone()?, None)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn current(&self) -> Arc<tiny_http::Server> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces `failed` (once, however many workers saw it fail) and returns
    /// it, so that its open connections can still be served. Listening again
    /// needs a descriptor too, so under EMFILE this waits until one is free.
    fn replace(
        &self,
        failed: &Arc<tiny_http::Server>,
        error: &dyn std::fmt::Display,
    ) -> Option<Arc<tiny_http::Server>> {
        let _one_at_a_time = self.replacing.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&self.current(), failed) {
            return None;
        }
        log::error!("accepting connections failed ({error}); listening again");
        let server = loop {
            // A failure such as EMFILE can last a while: do not spin on it.
            std::thread::sleep(Duration::from_millis(100));
            match Self::build(&self.listener) {
                Ok(server) => break server,
                Err(e) => log::debug!("cannot listen again yet: {e}"),
            }
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(server);
        log::info!("accepting connections again");
        Some(failed.clone())
    }
}

/// Handles one request if one arrives within `wait` (forever with `None`).
fn receive(
    node: &Node,
    guard: &Guard,
    server: &tiny_http::Server,
    deferred: &Pool<api::Deferred>,
    wait: Option<Duration>,
) -> Result<(), std::io::Error> {
    let request = match wait {
        Some(wait) => server.recv_timeout(wait)?,
        None => Some(server.recv()?),
    };
    if let Some(job) = request.and_then(|r| api::handle(node, guard, r)) {
        deferred.submit(job);
    }
    Ok(())
}

/// Runs the server until the process ends.
pub fn serve(
    node: Arc<Node>,
    guard: Arc<Guard>,
    listener: TcpListener,
    threads: usize,
) -> std::io::Result<()> {
    no_delay(&listener);
    // Every thread started from here on (tiny_http's, the pools') inherits
    // this; the gate sets itself back (see `set_policy`).
    set_policy(libc::SCHED_BATCH);
    let upstream = Upstream::for_port(listener.local_addr()?.port());
    let acceptor = Arc::new(Acceptor::new(upstream.bind()?)?);
    let limits = Limits::new(node.config().idle_timeout, node.config().max_connections);
    let counting = node.clone();
    let (answering, answering_guard) = (node.clone(), guard.clone());
    gate::spawn(
        listener,
        upstream.clone(),
        limits,
        node.config().tls.as_ref().map(|t| t.server.clone()),
        Box::new(move |status| counting.count_response(status)),
        // A panic in the node's code must not end the gate's thread, which
        // every connection goes through: the request goes to a receiver.
        Box::new(move |head| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                api::answer_now(&answering, &answering_guard, head)
            }))
            .unwrap_or_else(|_| {
                log::error!("answering a request in the gate panicked; it goes to a receiver");
                None
            })
        }),
    )?;
    nudge_connection_pool(upstream);
    watch_tiny_http_panics();
    let waiting = {
        let node = node.clone();
        Arc::new(Pool::new(
            "upstream",
            (threads * 4).clamp(16, 256),
            WAITING_THREADS_MAX,
            move |job| api::finish(&node, job),
        ))
    };
    let tx = waiting;
    let receivers = (0..threads)
        .map(|i| {
            let (node, guard, acceptor, tx) =
                (node.clone(), guard.clone(), acceptor.clone(), tx.clone());
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || loop {
                    let server = acceptor.current();
                    let failure: Option<(Arc<tiny_http::Server>, Box<dyn std::fmt::Display>)> =
                        match receive(&node, &guard, &server, &tx, Some(POLL)) {
                            Err(e) => Some((server, Box::new(e))),
                            // The panic may have ended the accept thread of a
                            // server installed since we fetched ours.
                            Ok(()) if TINY_HTTP_PANICKED.swap(false, Ordering::SeqCst) => Some((
                                acceptor.current(),
                                Box::new("tiny_http's accept thread panicked"),
                            )),
                            Ok(()) => None,
                        };
                    if let Some((server, e)) = failure {
                        if let Some(old) = acceptor.replace(&server, &e) {
                            let (node, guard, tx) = (node.clone(), guard.clone(), tx.clone());
                            // Requests on connections the old server accepted.
                            std::thread::spawn(move || {
                                while receive(&node, &guard, &old, &tx, None).is_ok() {}
                            });
                        }
                    }
                })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for r in receivers {
        let _ = r.join();
    }
    Ok(())
}
