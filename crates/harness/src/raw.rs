//! HTTP/1.1 spoken by hand over TCP, for tests of the edge: write any bytes
//! at all, then read what comes back and judge it strictly.
//!
//! [`parse`] takes one answer off the front of a byte stream and refuses
//! anything that is not a well-formed HTTP/1.1 answer: a status line
//! `HTTP/1.1 DDD reason`, header lines `name: value` ending in CRLF, and a
//! body exactly as long as its `Content-Length` says (or chunked).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One answer as it came.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The answer says the connection ends after it.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// The body is a JSON object with an `error` string, as every error
    /// body of the node is.
    pub fn is_json_error(&self) -> bool {
        self.json()["error"].is_string()
    }
}

/// How a read of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The peer closed (end of stream).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// Nothing came for the time allowed; the connection is still open.
    Silent,
    /// No connection: the peer refused it (nothing listens there).
    Refused,
}

/// What one connection received.
#[derive(Debug)]
pub struct Received {
    pub bytes: Vec<u8>,
    pub ended: Ended,
}

impl Received {
    /// The answers in what came, strictly parsed; an error too when bytes
    /// are left after the last whole one.
    pub fn responses(&self) -> Result<Vec<Response>, String> {
        let (answers, rest) = parse_all(&self.bytes)?;
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes after the last whole answer ({:?}): {:?}",
                rest.len(),
                self.ended,
                String::from_utf8_lossy(&rest[..rest.len().min(200)])
            ));
        }
        Ok(answers)
    }
}

/// A connection to `addr` whose reads give up after `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    let _ = s.set_nodelay(true);
    s
}

fn try_connect(addr: &str, timeout: Duration) -> Option<TcpStream> {
    let s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let _ = s.set_nodelay(true);
    Some(s)
}

fn refused() -> Received {
    Received {
        bytes: Vec::new(),
        ended: Ended::Refused,
    }
}

/// Writes `bytes` (as much as the peer takes: a write error ends it, since
/// a node may close before taking all) and reads until the peer closes,
/// nothing comes for `silence`, or `limit` has passed since the start.
/// `Refused` when the connection cannot be made.
pub fn exchange(addr: &str, bytes: &[u8], silence: Duration, limit: Duration) -> Received {
    let Some(mut s) = try_connect(addr, silence) else {
        return refused();
    };
    let _ = s.write_all(bytes);
    read_until_end(&mut s, silence, limit)
}

/// As [`exchange`], and the client then says it sends nothing more
/// (shuts its side for writing) before it reads.
pub fn exchange_and_end(addr: &str, bytes: &[u8], silence: Duration, limit: Duration) -> Received {
    let Some(mut s) = try_connect(addr, silence) else {
        return refused();
    };
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    read_until_end(&mut s, silence, limit)
}

/// Reads until the peer closes or resets, nothing comes for `silence`, or
/// `limit` has passed.
pub fn read_until_end(s: &mut TcpStream, silence: Duration, limit: Duration) -> Received {
    let until = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let _ = s.set_read_timeout(Some(silence));
    loop {
        if Instant::now() >= until {
            return Received {
                bytes,
                ended: Ended::Silent,
            };
        }
        match s.read(&mut buf) {
            Ok(0) => {
                return Received {
                    bytes,
                    ended: Ended::Closed,
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Received {
                    bytes,
                    ended: Ended::Silent,
                }
            }
            Err(_) => {
                return Received {
                    bytes,
                    ended: Ended::Reset,
                }
            }
        }
    }
}

/// Reads until `count` whole answers have come (or the peer closes, or
/// `limit` passes): the answers, and how the reading ended (`Silent` when
/// it stopped because all had come).
pub fn read_responses(
    s: &mut TcpStream,
    count: usize,
    limit: Duration,
) -> Result<(Vec<Response>, Ended), String> {
    let until = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (answers, _) = parse_all(&bytes)?;
        if answers.len() >= count {
            return Ok((answers, Ended::Silent));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{} of {count} answers within {limit:?}; then {:?}",
                answers.len(),
                String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(300)..])
            ));
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ok((answers, Ended::Closed)),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok((answers, Ended::Reset)),
        }
    }
}

/// Every whole answer at the front of `bytes`, and the bytes after them
/// (an answer still incomplete). An error for bytes that are not HTTP/1.1.
pub fn parse_all(bytes: &[u8]) -> Result<(Vec<Response>, &[u8]), String> {
    let mut answers = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match parse(&bytes[at..]).map_err(|e| format!("answer {}: {e}", answers.len() + 1))? {
            Some((answer, used)) => {
                answers.push(answer);
                at += used;
            }
            None => break,
        }
    }
    Ok((answers, &bytes[at..]))
}

/// One answer off the front of `bytes` and the bytes it took; `None` while
/// it is incomplete; an error for what is not a well-formed HTTP/1.1 answer.
pub fn parse(bytes: &[u8]) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        // A head that cannot become well-formed is refused at once.
        check_partial_head(bytes)?;
        return Ok(None);
    };
    let head =
        std::str::from_utf8(&bytes[..head_end]).map_err(|_| "the head is not ASCII".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .ok_or_else(|| format!("status line {status_line:?} is not HTTP/1.1"))?;
    let (code, reason) = rest.split_at(rest.len().min(3));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) || code.starts_with('0') {
        return Err(format!("status line {status_line:?} has no status code"));
    }
    let status: u16 = code.parse().expect("three digits");
    let reason = match reason.strip_prefix(' ') {
        Some(r) => r,
        None if reason.is_empty() => "",
        None => {
            return Err(format!(
                "status line {status_line:?}: no space after the code"
            ))
        }
    };
    if !reason
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(format!("status line {status_line:?}: bad reason phrase"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {line:?} has no colon"))?;
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(format!("header name {name:?} is not a token"));
        }
        if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(format!("header {name} has a bad value {value:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut answer = Response {
        status,
        reason: reason.to_string(),
        headers,
        body: Vec::new(),
    };
    let body_at = head_end + 4;
    let lengths: Vec<&str> = answer
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let chunked = answer
        .header("transfer-encoding")
        .map(|te| te.eq_ignore_ascii_case("chunked"));
    if (100..200).contains(&status) || status == 204 || status == 304 {
        // No body, whatever the headers say.
        return Ok(Some((answer, body_at)));
    }
    match (lengths.as_slice(), chunked) {
        ([length], None) => {
            if length.is_empty() || !length.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("Content-Length {length:?} is not a number"));
            }
            let n: usize = length
                .parse()
                .map_err(|_| format!("Content-Length {length:?} is too large"))?;
            if bytes.len() < body_at + n {
                return Ok(None);
            }
            answer.body = bytes[body_at..body_at + n].to_vec();
            Ok(Some((answer, body_at + n)))
        }
        ([], Some(true)) => {
            let Some((body, used)) = dechunk(&bytes[body_at..])? else {
                return Ok(None);
            };
            answer.body = body;
            Ok(Some((answer, body_at + used)))
        }
        ([], None) => Err(format!("answer {status} has no Content-Length")),
        _ => Err(format!(
            "answer {status} has Content-Length {lengths:?} and Transfer-Encoding {:?}",
            answer.header("transfer-encoding")
        )),
    }
}

/// An error when `bytes`, the start of a head, cannot begin a well-formed one.
fn check_partial_head(bytes: &[u8]) -> Result<(), String> {
    const START: &[u8] = b"HTTP/1.1 ";
    let n = bytes.len().min(START.len());
    if bytes[..n] != START[..n] {
        return Err(format!(
            "not an HTTP/1.1 answer: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ));
    }
    Ok(())
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A chunked body: the body and the bytes it took; `None` while incomplete.
fn dechunk(bytes: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&bytes[at..at + eol])
            .map_err(|_| "a chunk size line is not ASCII".to_string())?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| format!("chunk size {size:?} is not hexadecimal"))?;
        at += eol + 2;
        if n == 0 {
            // No trailers are sent: the blank line ends the body.
            if bytes.len() < at + 2 {
                return Ok(None);
            }
            if &bytes[at..at + 2] != b"\r\n" {
                return Err("trailers after the last chunk".to_string());
            }
            return Ok(Some((body, at + 2)));
        }
        if bytes.len() < at + n + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&bytes[at..at + n]);
        if &bytes[at + n..at + n + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".to_string());
        }
        at += n + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_answers_are_read_and_others_refused() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 404 Not Found\r\n\
                    content-length: 11\r\n\r\n{\"error\":1}";
        let (answers, rest) = parse_all(two).unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].body, b"hi");
        assert_eq!(answers[1].status, 404);
        assert!(rest.is_empty());
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi";
        assert_eq!(parse_all(short).unwrap().0.len(), 0);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap().unwrap().0.body, b"hi");
        for bad in [
            &b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            b"garbage",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
