//! Answers on their way from the workers back to the event loop: a list
//! under a lock, and an eventfd that wakes the loop when the list stops
//! being empty (one write per batch, not per answer).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use crate::http::message::Reply;

/// What a worker leaves for the loop about one connection's request.
pub enum Posted {
    /// The answer, for the loop to write.
    Reply(Reply),
    /// The part of an answer the worker could not write itself, in bytes.
    Rest(Vec<u8>),
    /// The worker wrote the whole answer, and the loop waits to hear it.
    Resume,
}

/// Where workers leave answers for the loop, each under the token of the
/// connection it is for.
pub struct Mailbox {
    replies: Mutex<Vec<(u64, Posted)>>,
    wake: OwnedFd,
}

impl Mailbox {
    pub fn new() -> std::io::Result<Mailbox> {
        // SAFETY: creates a descriptor we then own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mailbox {
            replies: Mutex::new(Vec::new()),
            // SAFETY: fd is a fresh descriptor owned by nobody else.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The descriptor the loop waits on.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Leaves `reply` for the connection of `token`, waking the loop if it
    /// may be asleep.
    pub fn post(&self, token: u64, reply: Posted) {
        let mut replies = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        let first = replies.is_empty();
        replies.push((token, reply));
        drop(replies);
        if first {
            let one: u64 = 1;
            // SAFETY: an 8-byte write of a valid u64 to our eventfd.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Takes every answer left so far. The wake-up is cleared first, so
    /// that an answer posted after the list was taken wakes the loop again.
    pub fn take(&self, into: &mut Vec<(u64, Posted)>) {
        let mut count: u64 = 0;
        // SAFETY: an 8-byte read into a valid u64 from our eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        let mut replies = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *replies, into);
    }
}
