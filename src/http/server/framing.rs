//! Request heads as the loop reads them: where a head ends, what it says
//! (parsed by httparse, the one parser of the node), and whether the node
//! will read the body that follows. Pure functions over bytes.
//!
//! A head is refused, before any of its body is read, when:
//! - it does not parse (400), or its version is not HTTP/1.0 or HTTP/1.1
//!   (505); its target is not a path (400); a header value is not ASCII
//!   (400); it has more than [`MAX_HEADERS`] headers (431);
//! - it has `Transfer-Encoding` and `Content-Length` both (400), a
//!   transfer coding other than `chunked` (501), or `chunked` (411: the
//!   node reads bodies framed by `Content-Length` only);
//! - its `Content-Length` is not one decimal number (400, two that differ
//!   too), or is larger than the route takes (413).
//!
//! `Upgrade` and `Connection: upgrade` change nothing: a body is read as
//! its `Content-Length` says, and the connection stays HTTP/1.1.

/// The largest request line plus headers.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most header fields a head may have.
pub const MAX_HEADERS: usize = 100;

/// Why a head is not served: a status and one sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: &'static str,
}

const fn refusal(status: u16, why: &'static str) -> Refusal {
    Refusal { status, why }
}

pub const HEAD_TOO_LARGE: Refusal =
    refusal(431, "The request line and headers are larger than 16 KiB.");

/// A whole head, read.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The body's length (`Content-Length`, 0 without one).
    pub body: usize,
    /// The connection stays open after the answer (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expects_continue: bool,
}

/// Where the head that begins `bytes` ends (past its empty line),
/// searching from `from`: lines end at LF, with or without CR.
pub fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let lf = at + bytes.get(at..)?.iter().position(|&b| b == b'\n')?;
        match (bytes.get(lf + 1), bytes.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => at = lf + 1,
        }
    }
}

/// Where the search for a head's end resumes once `len` bytes were
/// searched: the last two may begin an end that more bytes complete.
pub fn resume_from(len: usize) -> usize {
    len.saturating_sub(2)
}

/// Reads the whole head `bytes` (up to and with its empty line);
/// `largest_body` tells the most body bytes a path takes. `None` when
/// httparse finds it incomplete after all.
pub fn read_head(
    bytes: &[u8],
    largest_body: impl Fn(&str) -> usize,
) -> Result<Option<Head>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => {
            return Err(refusal(505, "This node speaks HTTP/1.0 and HTTP/1.1 only."))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refusal(431, "The request has more than 100 headers."))
        }
        Err(_) => return Err(refusal(400, "The request head is not valid HTTP/1.1.")),
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Ok(None);
    };
    if !target.starts_with('/') {
        return Err(refusal(400, "The request target must be a path."));
    }
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let value = std::str::from_utf8(field.value)
            .ok()
            .filter(|v| v.is_ascii())
            .ok_or(refusal(400, "A header value is not ASCII."))?;
        headers.push((field.name.to_string(), value.trim().to_string()));
    }
    let body = body_length(&headers)?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if body > largest_body(path) {
        return Err(refusal(
            413,
            "The request body is larger than this route takes.",
        ));
    }
    let has = |name: &str, token: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let keep_alive = match minor {
        1 => !has("Connection", "close"),
        _ => has("Connection", "keep-alive"),
    };
    let expects_continue = minor == 1 && body > 0 && has("Expect", "100-continue");
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body,
        keep_alive,
        expects_continue,
    }))
}

/// The length of the body from the framing headers, or why it cannot be
/// read. A length too large to count is as too large as any.
fn body_length(headers: &[(String, String)]) -> Result<usize, Refusal> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut codings = named("Transfer-Encoding").peekable();
    let mut lengths = named("Content-Length").peekable();
    if codings.peek().is_some() {
        if lengths.peek().is_some() {
            return Err(refusal(
                400,
                "The request has both Transfer-Encoding and Content-Length.",
            ));
        }
        let chunked_only = codings
            .flat_map(|v| v.split(','))
            .all(|c| c.trim().eq_ignore_ascii_case("chunked"));
        return Err(match chunked_only {
            true => refusal(
                411,
                "This node takes request bodies with a Content-Length only.",
            ),
            false => refusal(
                501,
                "This node takes no transfer coding (Content-Length only).",
            ),
        });
    }
    let mut length = None;
    for value in lengths {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refusal(400, "The Content-Length header is not a number."));
        }
        let n = value.parse::<usize>().unwrap_or(usize::MAX);
        if length.is_some_and(|l| l != n) {
            return Err(refusal(400, "The request has two Content-Lengths."));
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LARGEST: usize = 1000;

    fn read(text: &str) -> Result<Option<Head>, Refusal> {
        read_head(text.as_bytes(), |_| LARGEST)
    }

    fn status(text: &str) -> u16 {
        read(text).unwrap_err().status
    }

    #[test]
    fn a_head_ends_at_its_empty_line_with_or_without_cr() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\n\r\n", 0), Some(23));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r", 0), None);
        // The search resumes where it left off.
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n", 14), Some(18));
    }

    #[test]
    fn a_plain_head_is_read() {
        let head = read("PUT /store/k?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.method, "PUT");
        assert_eq!(head.target, "/store/k?x=1");
        assert_eq!(head.body, 12);
        assert!(head.keep_alive);
        assert!(!head.expects_continue);
        assert_eq!(head.headers[0], ("Host".into(), "a".into()));
        let old = read("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive);
        let kept = read("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(kept.unwrap().unwrap().keep_alive);
        let closing = read("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n");
        assert!(!closing.unwrap().unwrap().keep_alive);
        let waits = read("PUT / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
        assert!(waits.unwrap().unwrap().expects_continue);
    }

    #[test]
    fn what_cannot_be_framed_is_refused_before_its_body() {
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/1.2\r\n\r\n"), 505);
        assert_eq!(status("GET /\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"),
            413
        );
        let huge = "GET / HTTP/1.1\r\nContent-Length: 1000000000000000000000000\r\n\r\n";
        assert_eq!(status(huge), 413);
        assert_eq!(status("GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            400
        );
        let two = "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(status(two), 400);
        let same = "GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(read(same).unwrap().unwrap().body, 2);
        let both = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(status(both), 400);
        assert_eq!(
            status("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status("PUT / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"),
            501
        );
        let listed = "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(status(listed), 501);
        assert_eq!(status("GET http://a/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nA : b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nA: \u{e9}\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), 400);
        let many: String = (0..101).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
    }

    #[test]
    fn upgrade_changes_nothing() {
        let text = "POST /mget HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
                    Content-Length: 4\r\n\r\n";
        let head = read(text).unwrap().unwrap();
        assert_eq!(head.body, 4);
        assert!(head.keep_alive);
    }
}
