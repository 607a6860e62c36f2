//! A client's connection as the event loop sees it: plaintext in and out,
//! over plain TCP or over TLS on TCP. With TLS, the session is rustls'
//! sans-IO `ServerConnection`, driven by the loop's own non-blocking reads and
//! writes: the handshake runs in the epoll loop like any other bytes, and
//! what the client sent reaches the head parser (and its limits) as
//! plaintext.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// The socket of one client, and its TLS session when the port speaks TLS.
pub(super) struct Client {
    /// Shared with a worker that writes an answer itself (plain TCP only,
    /// see `direct`); the socket closes when the last holder lets go.
    tcp: Arc<TcpStream>,
    tls: Option<Box<ServerConnection>>,
    /// TLS: rustls holds plaintext that did not fit in the inbound buffer.
    held: bool,
    /// TLS: a close_notify is queued.
    notified: bool,
}

/// What one [`Client::receive`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Received {
    /// Bytes came from the socket (a handshake's count too).
    pub active: bool,
    /// The client sent its last byte.
    pub ended: bool,
}

impl Client {
    /// A client that speaks plaintext.
    pub fn plain(tcp: TcpStream) -> Client {
        Client {
            tcp: Arc::new(tcp),
            tls: None,
            held: false,
            notified: false,
        }
    }

    /// A client that speaks TLS under `config`: its handshake has not begun.
    pub fn tls(tcp: TcpStream, config: &Arc<ServerConfig>) -> Result<Client, rustls::Error> {
        Ok(Client {
            tcp: Arc::new(tcp),
            tls: Some(Box::new(ServerConnection::new(config.clone())?)),
            held: false,
            notified: false,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// The socket, for a worker to write an answer to: plain TCP only (a
    /// TLS session's state stays with the loop).
    pub fn socket(&self) -> Option<Arc<TcpStream>> {
        self.tls.is_none().then(|| self.tcp.clone())
    }

    /// A TLS client whose handshake is not done: it cannot read an answer.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Plaintext waits in the TLS session for room in the inbound buffer.
    pub fn holds_input(&self) -> bool {
        self.held
    }

    /// Bytes wait to be written to the socket (besides what the caller
    /// queues): TLS records, the handshake's included.
    pub fn sending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Reads what the client sent, in plaintext, onto `inbound` until it
    /// holds `limit` bytes or the socket has no more for now. An error
    /// when the connection broke (a TLS error: after its alert is sent).
    pub fn receive(
        &mut self,
        inbound: &mut Vec<u8>,
        limit: usize,
        scratch: &mut [u8],
    ) -> Result<Received, ()> {
        let mut received = Received::default();
        let Some(tls) = self.tls.as_mut() else {
            while inbound.len() < limit {
                match (&*self.tcp).read(scratch) {
                    Ok(0) => {
                        received.ended = true;
                        break;
                    }
                    Ok(n) => {
                        received.active = true;
                        inbound.extend_from_slice(&scratch[..n]);
                        if n < scratch.len() {
                            // A short read took all there was: the loop's
                            // epoll is level-triggered, so what comes next
                            // (the end of the stream too) wakes it again,
                            // and the read that would only say WouldBlock
                            // is saved.
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Err(()),
                }
            }
            return Ok(received);
        };
        let mut drained = false;
        loop {
            // First the plaintext rustls already holds: it takes no more
            // records while that is unread.
            while inbound.len() < limit {
                let room = scratch.len().min(limit - inbound.len());
                match tls.reader().read(&mut scratch[..room]) {
                    Ok(0) => {
                        // close_notify
                        received.ended = true;
                        return Ok(received);
                    }
                    Ok(n) => inbound.extend_from_slice(&scratch[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                        received.ended = true;
                        return Ok(received);
                    }
                    Err(_) => return Err(()),
                }
            }
            self.held = inbound.len() >= limit;
            if self.held || drained {
                return Ok(received);
            }
            let mut socket = Short {
                tcp: &self.tcp,
                short: false,
            };
            match tls.read_tls(&mut socket) {
                Ok(n) => {
                    received.active |= n > 0;
                    // As for plain TCP: a short read took all there was.
                    drained = n > 0 && socket.short;
                    if tls.process_new_packets().is_err() {
                        // Tell the client why (an alert), if it listens.
                        let _ = tls.write_tls(&mut &*self.tcp);
                        return Err(());
                    }
                    // At the end of the stream the reader says so next.
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(received),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
    }

    /// Writes what it can: of `outbound` (drained as it goes) and, with
    /// TLS, of the records waiting. True when anything went out.
    pub fn send(&mut self, outbound: &mut Vec<u8>) -> Result<bool, ()> {
        let Some(tls) = self.tls.as_mut() else {
            let mut written = 0;
            while written < outbound.len() {
                match (&*self.tcp).write(&outbound[written..]) {
                    Ok(0) => return Err(()),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Err(()),
                }
            }
            outbound.drain(..written);
            return Ok(written > 0);
        };
        let mut progress = false;
        loop {
            if !outbound.is_empty() {
                // rustls takes plaintext up to its own bound (64 KiB).
                let taken = tls.writer().write(outbound).map_err(|_| ())?;
                outbound.drain(..taken);
                if taken == 0 && !tls.wants_write() {
                    // Still handshaking: it is sent once the session is up.
                    return Ok(progress);
                }
            }
            while tls.wants_write() {
                match tls.write_tls(&mut &*self.tcp) {
                    Ok(0) => return Err(()),
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(progress),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Err(()),
                }
            }
            if outbound.is_empty() {
                return Ok(progress);
            }
        }
    }

    /// Reads and drops what the socket has (a connection being closed):
    /// how many bytes, and whether the client has sent its last one.
    pub fn discard(&mut self, scratch: &mut [u8]) -> Result<(usize, bool), ()> {
        let mut dropped = 0;
        loop {
            match (&*self.tcp).read(scratch) {
                Ok(0) => return Ok((dropped, true)),
                Ok(n) if n < scratch.len() => return Ok((dropped + n, false)),
                Ok(n) => {
                    dropped += n;
                    // The caller weighs this against its bound.
                    if dropped >= 16 * scratch.len() {
                        return Ok((dropped, false));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok((dropped, false)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
    }

    /// Ends our side of the stream: the client reads to its end.
    pub fn shut_down(&mut self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
    }

    /// Queues the end of a TLS session (close_notify), once; nothing for
    /// plain TCP or a session whose handshake is not done.
    pub fn finish(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            if !self.notified && !tls.is_handshaking() {
                tls.send_close_notify();
                self.notified = true;
            }
        }
    }
}

/// The socket as rustls reads it, noting whether a read came back short.
struct Short<'a> {
    tcp: &'a TcpStream,
    short: bool,
}

impl Read for Short<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (&mut &*self.tcp).read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}
