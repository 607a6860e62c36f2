//! Keys in URLs: a key travels percent-encoded as one path segment
//! (`/store/{key}`, `/internal/fill/{key}`).
//!
//! Every byte of the key's UTF-8 is escaped, as `%` and two uppercase hex
//! digits, except the unreserved characters of RFC 3986 (ASCII letters and
//! digits, `-`, `.`, `_`, `~`). So `/`, `?`, `#`, `%`, `+` and spaces stay
//! inside the one segment.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What [`encode`] escapes: everything but the unreserved characters.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A key as one path segment.
pub fn encode(key: &str) -> String {
    utf8_percent_encode(key, ESCAPED).to_string()
}

/// The bytes a path segment stands for; `None` when a `%` is not followed by
/// two hex digits. Bytes other than escapes are kept as they are (a `+` is a
/// `+`). The result need not be UTF-8: the caller decides what to accept.
pub fn decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(at, &byte)| {
        byte != b'%'
            || matches!(
                (bytes.get(at + 1), bytes.get(at + 2)),
                (Some(high), Some(low)) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit()
            )
    });
    well_formed.then(|| percent_decode_str(segment).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_stay_and_everything_else_is_escaped() {
        assert_eq!(encode("hello"), "hello");
        assert_eq!(encode("a-b.c_d~e09XYZ"), "a-b.c_d~e09XYZ");
        assert_eq!(encode("a b"), "a%20b");
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode("what?#100%"), "what%3F%23100%25");
        assert_eq!(encode("a+b&c=d\\e"), "a%2Bb%26c%3Dd%5Ce");
        assert_eq!(encode("ü"), "%C3%BC");
        assert_eq!(encode("😀"), "%F0%9F%98%80");
        assert_eq!(encode("\u{7f}\0"), "%7F%00");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn every_ascii_character_is_kept_or_escaped_as_before() {
        for byte in 0u8..128 {
            let text = char::from(byte).to_string();
            let kept = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
            let expected = if kept {
                text.clone()
            } else {
                format!("%{byte:02X}")
            };
            assert_eq!(encode(&text), expected, "{byte}");
        }
    }

    #[test]
    fn segments_are_decoded() {
        assert_eq!(decode("hello").unwrap(), b"hello");
        assert_eq!(decode("a%20b").unwrap(), b"a b");
        assert_eq!(decode("a%2fb%2F").unwrap(), b"a/b/");
        assert_eq!(decode("%C5%BElu%C5%A5").unwrap(), "žluť".as_bytes());
        assert_eq!(decode("a+b").unwrap(), b"a+b");
        assert_eq!(decode("%FF").unwrap(), [0xFF]);
        assert_eq!(decode("").unwrap(), b"");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for segment in ["%", "%4", "%zz", "%4g", "a%", "%%41", "%C3%B"] {
            assert_eq!(decode(segment), None, "{segment}");
        }
    }

    #[test]
    fn encoding_round_trips() {
        for key in ["plain", "with space", "ü?#&=%", "日本語", "a+b", "%41"] {
            assert_eq!(decode(&encode(key)).unwrap(), key.as_bytes());
        }
    }
}
