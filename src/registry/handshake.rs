//! The session timeout a server grants, learned from a handshake of our
//! own: the `zookeeper` crate keeps the one it was granted to itself.
//!
//! A server grants a new session the timeout asked for clamped to its
//! `[minSessionTimeout, maxSessionTimeout]`, and a session that reconnects
//! to it the same (it asks for what it was granted, and clamping twice
//! changes nothing). So a session of our own on the server the client
//! talks to, asking for the same timeout, is granted exactly what the
//! client's session was; it is closed at once. This speaks ZooKeeper's wire
//! protocol (its `ConnectRequest`, `ConnectResponse` and `closeSession`),
//! which every client and server version shares.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The `closeSession` operation code.
const CLOSE_SESSION: i32 = -11;
/// The longest answer to a handshake that is read (it holds 16 bytes of
/// password and a few numbers).
const MAX_ANSWER: usize = 256;

/// A handshake asking for a new session of `asked`, as a length-prefixed frame.
fn connect_request(asked: Duration) -> Vec<u8> {
    let asked_ms = i32::try_from(asked.as_millis()).unwrap_or(i32::MAX);
    let mut body = Vec::with_capacity(45);
    body.extend_from_slice(&0i32.to_be_bytes()); // protocol version
    body.extend_from_slice(&0i64.to_be_bytes()); // last zxid seen
    body.extend_from_slice(&asked_ms.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes()); // no session yet
    body.extend_from_slice(&16i32.to_be_bytes()); // its password: none yet
    body.extend_from_slice(&[0; 16]);
    body.push(0); // not read-only
    framed(&body)
}

/// The request that ends the session of the connection.
fn close_request() -> Vec<u8> {
    let mut body = Vec::with_capacity(8);
    body.extend_from_slice(&1i32.to_be_bytes()); // xid
    body.extend_from_slice(&CLOSE_SESSION.to_be_bytes());
    framed(&body)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("a small frame");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// The timeout and session id of an answer to a handshake (its body,
/// without the length); `None` for a refusal (timeout 0) or a short body.
fn granted(body: &[u8]) -> Option<(Duration, i64)> {
    let timeout = i32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
    let id = i64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
    let timeout = u64::try_from(timeout).ok().filter(|&t| t > 0)?;
    Some((Duration::from_millis(timeout), id))
}

/// Reads one length-prefixed frame of at most `MAX_ANSWER` bytes.
fn read_frame(stream: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut len = [0; 4];
    stream.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ANSWER {
        return Err(format!("an answer of {len} bytes"));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

/// The timeout the server `server` (`host:port`) grants a session asking
/// for `asked`, from a session of our own opened and closed for it; each
/// step waits at most `limit`.
pub(super) fn granted_timeout(
    server: &str,
    asked: Duration,
    limit: Duration,
) -> Result<Duration, String> {
    let addr = server
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{server} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(limit))
        .and_then(|()| stream.set_write_timeout(Some(limit)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&connect_request(asked))
        .map_err(|e| e.to_string())?;
    let answer = read_frame(&mut stream)?;
    let (timeout, _) = granted(&answer).ok_or("the server refused the session")?;
    // Ends the session at once rather than after its timeout; its answer
    // only tells that it is done.
    if stream.write_all(&close_request()).is_ok() {
        let _ = read_frame(&mut stream);
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_handshake_asks_for_a_new_session_of_the_timeout() {
        let frame = connect_request(Duration::from_millis(2500));
        assert_eq!(frame.len(), 4 + 45);
        assert_eq!(frame[..4], 45u32.to_be_bytes());
        assert_eq!(frame[16..20], 2500i32.to_be_bytes());
        assert_eq!(frame[20..28], [0; 8]);
        assert_eq!(close_request()[8..], (-11i32).to_be_bytes());
    }

    #[test]
    fn reads_the_timeout_of_an_answer() {
        let mut body = Vec::new();
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&4000i32.to_be_bytes());
        body.extend_from_slice(&0x1000_0abc_0000_0001i64.to_be_bytes());
        assert_eq!(
            granted(&body),
            Some((Duration::from_millis(4000), 0x1000_0abc_0000_0001))
        );
        body[4..8].copy_from_slice(&0i32.to_be_bytes());
        assert_eq!(granted(&body), None, "a refusal");
        assert_eq!(granted(&body[..12]), None, "too short");
    }

    /// A server that grants 1200 ms whatever is asked, and sees the close.
    #[test]
    fn learns_what_a_server_grants_and_closes_its_session() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap().to_string();
        let fake = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let request = read_frame(&mut s).unwrap();
            let mut answer = Vec::new();
            answer.extend_from_slice(&0i32.to_be_bytes());
            answer.extend_from_slice(&1200i32.to_be_bytes());
            answer.extend_from_slice(&77i64.to_be_bytes());
            answer.extend_from_slice(&16i32.to_be_bytes());
            answer.extend_from_slice(&[9; 16]);
            answer.push(0);
            s.write_all(&framed(&answer)).unwrap();
            let close = read_frame(&mut s).unwrap();
            s.write_all(&framed(&[0; 16])).unwrap();
            (request, close)
        });
        let timeout = granted_timeout(&server, Duration::from_secs(30), Duration::from_secs(2));
        assert_eq!(timeout, Ok(Duration::from_millis(1200)));
        let (request, close) = fake.join().unwrap();
        assert_eq!(request[12..16], 30_000i32.to_be_bytes());
        assert_eq!(close[4..], (-11i32).to_be_bytes());
    }
}
