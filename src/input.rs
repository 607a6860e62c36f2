//! Parsing and validation of what clients send: keys, query strings, bodies.
//! Pure functions; every rejection carries the sentence a client will read.

use serde_json::Value;

/// Longest key, in Unicode scalar values.
pub const MAX_KEY_CHARS: usize = 250;
/// Largest value, as compact JSON.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest request body read at all; larger bodies are refused before parsing.
pub const MAX_BODY_BYTES: usize = MAX_VALUE_BYTES + 1024;

/// Why input was refused, and the HTTP status that says so.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    BadRequest(String),
    TooLarge(String),
}

fn bad(message: impl Into<String>) -> Invalid {
    Invalid::BadRequest(message.into())
}

/// Percent-decodes a path segment into a key and checks the key rules.
pub fn decode_key(segment: &str) -> Result<String, Invalid> {
    let bytes = percent_decode(segment)
        .ok_or_else(|| bad("The key contains a malformed percent-escape."))?;
    let key =
        String::from_utf8(bytes).map_err(|_| bad("The key is not valid UTF-8 after decoding."))?;
    check_key(&key)?;
    Ok(key)
}

/// The key rules: 1 to 250 characters, no `/`.
pub fn check_key(key: &str) -> Result<(), Invalid> {
    if key.is_empty() {
        return Err(bad("The key is empty."));
    }
    if key.contains('/') {
        return Err(bad("The key must not contain '/'."));
    }
    let chars = key.chars().count();
    if chars > MAX_KEY_CHARS {
        return Err(bad(format!(
            "The key is {chars} characters long; the limit is {MAX_KEY_CHARS}."
        )));
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` when an escape is malformed.
pub use treecache_common::segment::decode as percent_decode;

/// Encodes a key as one path segment: everything but unreserved characters is escaped.
pub use treecache_common::segment::encode as percent_encode;

/// The value of `local` in a query string: `true`, `false`, or absent.
pub fn local_flag(query: &str) -> Result<bool, Invalid> {
    let mut local = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "local" {
            local = match value {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(bad(format!(
                        "The query parameter 'local' takes true or false, not {:?}.",
                        String::from_utf8_lossy(&percent_decode(value).unwrap_or_default())
                    )))
                }
            };
        }
    }
    Ok(local)
}

/// The longest request id a write may carry.
pub const MAX_REQUEST_ID: usize = 200;

/// A write's `X-Treecache-Request-Id`: absent or empty is none; else 1 to
/// 200 visible ASCII characters.
pub fn request_id(header: Option<&str>) -> Result<Option<String>, Invalid> {
    let Some(id) = header.map(str::trim).filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    if id.len() > MAX_REQUEST_ID {
        return Err(bad(format!(
            "A request id takes at most {MAX_REQUEST_ID} characters, not {}.",
            id.len()
        )));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "A request id takes visible ASCII characters only (no spaces).",
        ));
    }
    Ok(Some(id.to_string()))
}

/// Extracts the value of a PUT body `{"value": V}` as compact JSON bytes.
pub fn put_value(body: &[u8]) -> Result<Vec<u8>, Invalid> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "The request body is missing; send {\"value\": <any JSON value>}.",
        ));
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("The request body is not valid JSON: {e}.")))?;
    let Value::Object(mut fields) = doc else {
        return Err(bad(
            "The request body must be a JSON object such as {\"value\": 42}.",
        ));
    };
    let value = fields
        .remove("value")
        .ok_or_else(|| bad("The request body has no \"value\" field."))?;
    let bytes = serde_json::to_vec(&value).expect("a parsed JSON value serializes");
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(Invalid::TooLarge(format!(
            "The value is {} bytes as compact JSON; the limit is {MAX_VALUE_BYTES}.",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Appends `s` to `out` as a JSON string literal.
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// The body `{"key": K, "value": V}` where `value` is already compact JSON.
pub fn key_value_body(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + value.len() + 24);
    out.extend_from_slice(b"{\"key\":");
    push_json_string(&mut out, key);
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(value);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_and_visible() {
        assert_eq!(request_id(None), Ok(None));
        assert_eq!(request_id(Some("  ")), Ok(None));
        assert_eq!(request_id(Some(" a-1 ")), Ok(Some("a-1".into())));
        assert_eq!(
            request_id(Some(&"x".repeat(200))),
            Ok(Some("x".repeat(200)))
        );
        assert!(request_id(Some(&"x".repeat(201))).is_err());
        assert!(request_id(Some("a b")).is_err());
        assert!(request_id(Some("é")).is_err());
    }

    #[test]
    fn keys_are_percent_decoded() {
        assert_eq!(decode_key("hello").unwrap(), "hello");
        assert_eq!(decode_key("a%20b").unwrap(), "a b");
        assert_eq!(decode_key("%C5%BElu%C5%A5").unwrap(), "žluť");
        assert_eq!(decode_key("a+b").unwrap(), "a+b");
    }

    #[test]
    fn bad_keys_are_refused() {
        for seg in ["", "a%2Fb", "a%2fb", "%zz", "%4", "%FF", "%C3"] {
            assert!(
                matches!(decode_key(seg), Err(Invalid::BadRequest(_))),
                "{seg}"
            );
        }
        let long = "é".repeat(251);
        assert!(decode_key(&percent_encode(&long)).is_err());
        let longest = "é".repeat(250);
        assert_eq!(decode_key(&percent_encode(&longest)).unwrap(), longest);
    }

    #[test]
    fn encoding_round_trips() {
        for key in ["plain", "with space", "ü?#&=%", "日本語", "a+b"] {
            assert_eq!(decode_key(&percent_encode(key)).unwrap(), key);
        }
    }

    #[test]
    fn local_takes_true_or_false() {
        assert_eq!(local_flag(""), Ok(false));
        assert_eq!(local_flag("local=true"), Ok(true));
        assert_eq!(local_flag("x=1&local=false"), Ok(false));
        assert!(local_flag("local=yes").is_err());
        assert!(local_flag("local").is_err());
    }

    #[test]
    fn put_bodies() {
        assert_eq!(put_value(br#"{"value": [1, 2]}"#).unwrap(), b"[1,2]");
        assert_eq!(put_value(br#"{"value": null}"#).unwrap(), b"null");
        assert_eq!(put_value(br#"{"value":"x","other":1}"#).unwrap(), b"\"x\"");
        for body in [&b""[..], b"  ", b"{", b"[1]", b"{\"val\":1}", b"42"] {
            assert!(
                matches!(put_value(body), Err(Invalid::BadRequest(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn values_over_one_mebibyte_are_too_large() {
        let just = format!("{{\"value\":\"{}\"}}", "a".repeat(MAX_VALUE_BYTES - 2));
        assert!(put_value(just.as_bytes()).is_ok());
        let over = format!("{{\"value\":\"{}\"}}", "a".repeat(MAX_VALUE_BYTES - 1));
        assert!(matches!(
            put_value(over.as_bytes()),
            Err(Invalid::TooLarge(_))
        ));
    }

    #[test]
    fn key_value_bodies_are_json() {
        let body = key_value_body("k\"ü", b"{\"a\":1}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"key": "k\"ü", "value": {"a": 1}}));
    }
}
