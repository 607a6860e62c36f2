//! tiny_http's answers on one connection, followed just closely enough to
//! count them. The gate answers a request itself only when every earlier
//! request of its connection has had its whole answer from tiny_http:
//! otherwise its answer would overtake theirs. Pure: fed the bytes as they
//! come.
//!
//! An answer ends where HTTP/1.1 says: after its head for a HEAD request,
//! a 1xx (which is no answer yet: `100 Continue`), a 204 or a 304; else
//! after its `Content-Length`, or its last chunk and trailers
//! (tiny_http chunks bodies of 32 KiB and more). What cannot be followed
//! (a body that ends only with the connection, a head that is not one)
//! leaves the count unknown, and the connection's requests all go to
//! tiny_http from then on.

use std::collections::VecDeque;

/// Longest answer head, or chunk-size or trailer line, followed.
const MAX_LINE: usize = 64 * 1024;

#[derive(Default)]
pub(super) struct Answers {
    /// The requests passed on whose answers have not wholly come back, in
    /// order: whether each was a HEAD (its answer has no body).
    awaited: VecDeque<bool>,
    state: State,
    /// The head or line under way, as far as it came.
    line: Vec<u8>,
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
enum State {
    /// An answer's head.
    #[default]
    Head,
    /// This many more bytes of a body.
    Body(u64),
    /// A chunk's size line.
    Size,
    /// This many more bytes of a chunk and the CR LF after it.
    Chunk(u64),
    /// The trailer lines after the last chunk, up to an empty one.
    Trailer,
    /// Not followed: how many answers are still to come is unknown.
    Lost,
}

impl Answers {
    /// A request was passed on; `head` if it is a HEAD.
    pub(super) fn sent(&mut self, head: bool) {
        self.awaited.push_back(head);
    }

    /// Some request passed on still awaits (some of) its answer, or the
    /// answers could not be followed.
    pub(super) fn awaited(&self) -> bool {
        !self.awaited.is_empty() || self.state == State::Lost
    }

    /// Follows what tiny_http sent next.
    pub(super) fn read(&mut self, mut bytes: &[u8]) {
        while let Some((&byte, rest)) = bytes.split_first() {
            match &mut self.state {
                State::Lost => return,
                State::Body(left) | State::Chunk(left) => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    bytes = &bytes[take as usize..];
                    if *left == 0 {
                        self.state = match self.state {
                            State::Body(_) => self.answered(),
                            _ => State::Size,
                        };
                    }
                    continue;
                }
                State::Head | State::Size | State::Trailer => {}
            }
            bytes = rest;
            self.line.push(byte);
            if self.line.len() > MAX_LINE {
                self.state = State::Lost;
                return;
            }
            if !self.line.ends_with(b"\r\n") {
                continue;
            }
            self.state = match self.state {
                State::Head if self.line.ends_with(b"\r\n\r\n") => {
                    let head = std::mem::take(&mut self.line);
                    self.after_head(&head)
                }
                State::Head => continue,
                State::Size => {
                    let line = std::mem::take(&mut self.line);
                    match chunk_size(&line) {
                        Some(0) => State::Trailer,
                        Some(n) => State::Chunk(n + 2),
                        None => State::Lost,
                    }
                }
                State::Trailer if self.line == b"\r\n" => {
                    self.line.clear();
                    self.answered()
                }
                State::Trailer => {
                    self.line.clear();
                    State::Trailer
                }
                _ => unreachable!("only heads and lines are read byte by byte"),
            };
        }
    }

    /// What follows a whole answer head.
    fn after_head(&mut self, head: &[u8]) -> State {
        let Ok(text) = std::str::from_utf8(head) else {
            return State::Lost;
        };
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .filter(|l| l.starts_with("HTTP/1."))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status else {
            return State::Lost;
        };
        if (100..200).contains(&status) {
            // `100 Continue`: the answer itself comes after.
            return State::Head;
        }
        let Some(&to_head) = self.awaited.front() else {
            // An answer to no request passed on.
            return State::Lost;
        };
        if to_head || status == 204 || status == 304 {
            return self.answered();
        }
        let mut length = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("transfer-encoding") {
                if value.eq_ignore_ascii_case("chunked") {
                    return State::Size;
                }
                return State::Lost;
            }
            if name.eq_ignore_ascii_case("content-length") {
                match value.parse::<u64>() {
                    Ok(n) => length = Some(n),
                    Err(_) => return State::Lost,
                }
            }
        }
        match length {
            Some(0) => self.answered(),
            Some(n) => State::Body(n),
            // The body ends with the connection.
            None => State::Lost,
        }
    }

    /// The first awaited answer is whole.
    fn answered(&mut self) -> State {
        self.awaited.pop_front();
        State::Head
    }
}

/// The size of a chunk from its line (hex digits, maybe extensions, CR LF).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let digits = text.split(';').next()?.trim();
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(answers: &mut Answers, bytes: &[u8], piece: usize) {
        for part in bytes.chunks(piece) {
            answers.read(part);
        }
    }

    #[test]
    fn answers_are_counted_whole_in_any_pieces() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n";
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n";
        let to_head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
        let continued =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for piece in [1, 3, 1000] {
            let mut answers = Answers::default();
            for head in [false, false, false, true, false] {
                answers.sent(head);
            }
            let all = [&ok[..], chunked, not_modified, to_head, continued];
            for (i, answer) in all.iter().enumerate() {
                assert!(answers.awaited());
                // All but the last byte: still awaited.
                fed(&mut answers, &answer[..answer.len() - 1], piece);
                assert_eq!(answers.awaited.len(), all.len() - i, "piece {piece}");
                fed(&mut answers, &answer[answer.len() - 1..], piece);
            }
            assert!(!answers.awaited(), "piece {piece}");
        }
    }

    #[test]
    fn what_cannot_be_followed_stays_awaited() {
        let mut answers = Answers::default();
        answers.sent(false);
        answers.read(b"HTTP/1.1 200 OK\r\n\r\nuntil the end");
        assert!(answers.awaited());
        let mut answers = Answers::default();
        answers.read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(answers.awaited(), "an answer to nothing");
        let mut answers = Answers::default();
        answers.sent(false);
        answers.read(b"garbage\r\n\r\n");
        assert!(answers.awaited());
    }
}
