//! The server's own request and answer: what the event loop hands the
//! workers (a whole [`Request`], its head parsed and its body read within
//! its limits) and what comes back ([`Reply`]), and how an answer is
//! written on the wire ([`encode`]). `api` decides; this module only holds
//! and prints.

use std::time::Instant;

use crate::wire::Headers;

/// A whole request, as the loop read it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target (path and query) exactly as sent.
    pub target: String,
    /// The header fields in the order sent, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the loop had the whole head.
    pub received: Instant,
    /// Its signature was checked already, and holds (the loop checks a
    /// fill's before it tries to answer it).
    pub verified: bool,
}

impl Request {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The query, without the `?` (empty when there is none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }
}

impl Headers for Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    /// End the connection after this answer.
    pub close: bool,
}

pub const JSON: &str = "application/json";

impl Reply {
    /// An answer with a JSON body.
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            content_type: JSON,
            headers: Vec::new(),
            close: false,
        }
    }

    /// `{"error": why}` with `status`.
    pub fn refusal(status: u16, why: &str) -> Reply {
        let body = serde_json::to_vec(&serde_json::json!({ "error": why })).expect("JSON");
        Reply::json(status, body)
    }

    /// The same answer, and the connection ends after it.
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }
}

/// How the request an answer is for asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asked {
    /// `HEAD`: the answer's head only.
    pub head_only: bool,
    /// The connection stays open after the answer.
    pub keep_alive: bool,
}

/// Appends `reply` as an HTTP/1.1 answer to `out`; `date` is the value of
/// the `Date` header. Whether the connection ends after it is the reply's
/// `close` or the request's `keep_alive`.
pub fn encode(reply: &Reply, asked: Asked, date: &str, out: &mut Vec<u8>) {
    use std::io::Write;
    let reason = reason(reply.status);
    let _ = write!(
        out,
        "HTTP/1.1 {} {reason}\r\nDate: {date}\r\n",
        reply.status
    );
    // A 304 has no body, so no type of one.
    if reply.status != 304 {
        let _ = write!(
            out,
            "Content-Type: {}\r\nContent-Length: {}\r\n",
            reply.content_type,
            reply.body.len()
        );
    }
    for (name, value) in &reply.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if reply.close || !asked.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !asked.head_only && reply.status != 304 {
        out.extend_from_slice(&reply.body);
    }
}

/// The reason phrase of a status the node sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// The `Date` header's value for `at` (IMF-fixdate, RFC 9110 §5.6.7).
pub fn http_date(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let (year, month, day) = civil_from_days(days as i64);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][month as usize - 1];
    format!("{weekday}, {day:02} {month} {year} {h:02}:{m:02}:{s:02} GMT")
}

/// The calendar date of a count of days since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let at = UNIX_EPOCH + Duration::from_secs(1_796_622_245);
        assert_eq!(http_date(at), "Mon, 07 Dec 2026 05:44:05 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn an_answer_has_its_length_and_says_when_the_connection_ends() {
        let mut out = Vec::new();
        let reply = Reply::json(200, b"{}".to_vec());
        let open = Asked {
            head_only: false,
            keep_alive: true,
        };
        encode(&reply, open, "D", &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nDate: D\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\n\r\n{}"
        );
        out.clear();
        encode(&reply.clone().closing(), open, "D", &mut out);
        assert!(out.ends_with(b"Connection: close\r\n\r\n{}"));
        out.clear();
        let head = Asked {
            head_only: true,
            keep_alive: false,
        };
        encode(&reply, head, "D", &mut out);
        assert!(out.ends_with(b"Content-Length: 2\r\nConnection: close\r\n\r\n"));
        out.clear();
        encode(&Reply::json(304, Vec::new()), open, "D", &mut out);
        assert_eq!(out, b"HTTP/1.1 304 Not Modified\r\nDate: D\r\n\r\n");
    }
}
