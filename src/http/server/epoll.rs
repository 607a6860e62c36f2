//! A small epoll handle: the calls the server makes, each a thin wrapper.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A small epoll handle.
pub(super) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub(super) fn new() -> std::io::Result<Epoll> {
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

    pub(super) fn ctl(
        &self,
        op: libc::c_int,
        fd: RawFd,
        events: u32,
        data: u64,
    ) -> std::io::Result<()> {
        let mut event = libc::epoll_event { events, u64: data };
        // SAFETY: epoll_ctl on our epoll descriptor with a valid event.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn add(&self, fd: RawFd, events: u32, data: u64) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, data)
    }

    pub(super) fn modify(&self, fd: RawFd, events: u32, data: u64) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, data)
    }

    pub(super) fn delete(&self, fd: RawFd) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    pub(super) fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> usize {
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
