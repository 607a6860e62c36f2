//! Answers a worker writes to its client itself. Over plain TCP, a worker
//! that finishes a request writes the answer straight to the socket when
//! nothing is queued before it, instead of leaving it in the mailbox for
//! the loop: the loop is not woken for it, and the answer leaves sooner.
//! The loop learns that the request is done when it next looks at the
//! connection (the client's next request, or the sweep), or, when it is
//! already waiting on that answer, from a word in the mailbox.
//!
//! Who may touch the socket's outgoing side is settled by one atomic
//! state per request: the worker takes it to write; the loop's timeout
//! (503) takes it to give up; whoever comes second backs off.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use super::mailbox::{Mailbox, Posted};
use crate::http::message::{encode, http_date, Asked, Reply};
use crate::node::Node;

/// With the worker, not answered yet.
const WORKING: u8 = 0;
/// The worker is writing the answer.
const WRITING: u8 = 1;
/// The whole answer is written: the connection is the loop's again.
const DONE: u8 = 2;
/// The worker wrote part and posted the rest to the loop.
const POSTED: u8 = 3;
/// The loop answered 503 (too late): the worker's answer is dropped.
const ABANDONED: u8 = 4;
/// Set by the loop when it waits for this answer: the worker that ends
/// the request posts [`Posted::Resume`].
const WAITER: u8 = 8;

/// One request's claim on its client's socket.
pub(super) struct Direct {
    tcp: Arc<TcpStream>,
    state: AtomicU8,
}

/// What the loop learns when it looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// The worker wrote the whole answer.
    Done,
    /// Not yet (or the rest comes through the mailbox).
    Pending,
}

impl Direct {
    pub fn new(tcp: Arc<TcpStream>) -> Arc<Direct> {
        Arc::new(Direct {
            tcp,
            state: AtomicU8::new(WORKING),
        })
    }

    /// The loop looks; with `wait`, a worker that ends the request after
    /// this posts [`Posted::Resume`] for `token`.
    pub fn look(&self, wait: bool) -> Seen {
        let state = if wait {
            self.state.fetch_or(WAITER, Ordering::AcqRel)
        } else {
            self.state.load(Ordering::Acquire)
        };
        if state & !WAITER == DONE {
            Seen::Done
        } else {
            Seen::Pending
        }
    }

    /// The loop's timeout: true when the request is given up (the worker
    /// will not write); false when the worker is writing or has written.
    pub fn abandon(&self) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & !WAITER == WORKING).then_some(ABANDONED | (s & WAITER))
            })
            .is_ok()
    }

    fn claim(&self) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & !WAITER == WORKING).then_some(WRITING | (s & WAITER))
            })
            .is_ok()
    }

    /// Ends the write in `to`; true when the loop waits to hear of it.
    fn end(&self, to: u8) -> bool {
        self.state.swap(to, Ordering::AcqRel) & WAITER != 0
    }
}

/// Where a worker's answer goes: the connection's token, how it asked,
/// and the socket when the worker may write to it itself.
pub(super) struct Answer {
    pub token: u64,
    pub asked: Asked,
    pub direct: Option<Arc<Direct>>,
}

impl Answer {
    /// Gives `reply` to the client: written here when it may be, else
    /// through the mailbox.
    pub fn give(self, reply: Reply, mailbox: &Mailbox, node: &Node) {
        let Some(direct) = self.direct.filter(|_| !reply.close) else {
            mailbox.post(self.token, Posted::Reply(reply));
            return;
        };
        if !direct.claim() {
            // Given up by the loop (503): dropped.
            return;
        }
        let mut bytes = Vec::with_capacity(reply.body.len() + 256);
        encode(
            &reply,
            self.asked,
            &http_date(SystemTime::now()),
            &mut bytes,
        );
        node.count_response(reply.status);
        let written = write_some(&direct.tcp, &bytes);
        if written == bytes.len() {
            if direct.end(DONE) {
                mailbox.post(self.token, Posted::Resume);
            }
        } else {
            // The socket took part: the loop writes the rest, in order.
            bytes.drain(..written);
            direct.end(POSTED);
            mailbox.post(self.token, Posted::Rest(bytes));
        }
    }
}

/// Writes what the non-blocking socket takes now; how much that was (all
/// of it, when the client is gone: there is nobody to write the rest to).
fn write_some(mut tcp: &TcpStream, bytes: &[u8]) -> usize {
    let mut written = 0;
    while written < bytes.len() {
        match tcp.write(&bytes[written..]) {
            Ok(0) => return bytes.len(),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return bytes.len(),
        }
    }
    written
}
