//! Request heads as the gate reads them: where a head ends, and how long
//! the body after it is. Pure functions.

/// The end of a head (past its blank line) in `bytes`, searching from `from`.
pub(super) fn find_head_end(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

pub(super) type Refusal = (u16, &'static str, &'static str);

/// The length of the body that follows a whole head.
pub(super) fn body_length(head: &[u8]) -> Result<u64, Refusal> {
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
