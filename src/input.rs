//! Parsing and validation of what clients send: keys, query strings, bodies.
//! Pure functions; every rejection carries the sentence a client will read.

use std::time::Duration;

use serde_json::Value;

/// Longest key, in Unicode scalar values.
pub const MAX_KEY_CHARS: usize = 250;
/// Largest value, as compact JSON.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest request body read at all; larger bodies are refused before parsing.
pub const MAX_BODY_BYTES: usize = MAX_VALUE_BYTES + 1024;
/// Longest time to live, in seconds: ten years.
pub const MAX_TTL_SECONDS: u64 = 315_360_000;
/// Most keys one `POST /mget` reads.
pub const MAX_MGET_KEYS: usize = 1000;
/// Most keys one page of `GET /keys` lists, and how many it lists by default.
pub const MAX_LIST_LIMIT: usize = 10_000;
pub const DEFAULT_LIST_LIMIT: usize = 1000;

/// Why input was refused, and the HTTP status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The key rules: 1 to 250 characters, no `/`, and neither `.` nor `..`
/// (a URL cannot carry those as a path segment: clients and proxies
/// resolve them away, so the key would reach another resource).
pub fn check_key(key: &str) -> Result<(), Invalid> {
    if key.is_empty() {
        return Err(bad("The key is empty."));
    }
    if key.contains('/') {
        return Err(bad("The key must not contain '/'."));
    }
    if key == "." || key == ".." {
        return Err(bad(
            "The keys \".\" and \"..\" are not allowed: a URL cannot carry them as a path segment.",
        ));
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

/// The parameters of a query string, each value decoded as a form encodes
/// it (`%XX` escapes, and `+` for a space); `None` for a value whose escapes
/// are malformed or that is not UTF-8.
fn query_params(query: &str) -> impl Iterator<Item = (&str, Option<String>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode(&value.replace('+', " "))
            .and_then(|bytes| String::from_utf8(bytes).ok());
        (name, decoded)
    })
}

/// The value of `local` in a query string: `true`, `false`, or absent.
pub fn local_flag(query: &str) -> Result<bool, Invalid> {
    let mut local = false;
    for (name, value) in query_params(query) {
        if name == "local" {
            local = match value.as_deref() {
                Some("true") => true,
                Some("false") => false,
                _ => {
                    return Err(bad(format!(
                        "The query parameter 'local' takes true or false, not {:?}.",
                        value.unwrap_or_default()
                    )))
                }
            };
        }
    }
    Ok(local)
}

/// The longest request id a write may carry.
pub const MAX_REQUEST_ID: usize = 200;

/// A write's `X-Treecache-Request-Id`: absent is none; else 1 to 200
/// visible ASCII characters.
pub fn request_id(header: Option<&str>) -> Result<Option<String>, Invalid> {
    let Some(id) = header.map(str::trim) else {
        return Ok(None);
    };
    if id.is_empty() {
        return Err(bad("A request id may not be empty."));
    }
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

/// A PUT body: `{"value": V}`, or `{"value": V, "ttl": SECONDS}`.
#[derive(Debug, PartialEq, Eq)]
pub struct PutBody {
    /// The value as compact JSON.
    pub value: Vec<u8>,
    /// How long the value lives; `None`: for good.
    pub ttl: Option<Duration>,
}

/// Reads a PUT body: the value as compact JSON bytes, and its time to live.
pub fn put_body(body: &[u8]) -> Result<PutBody, Invalid> {
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
    let ttl = fields.get("ttl").map(ttl).transpose()?;
    let bytes = serde_json::to_vec(&value).expect("a parsed JSON value serializes");
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(Invalid::TooLarge(format!(
            "The value is {} bytes as compact JSON; the limit is {MAX_VALUE_BYTES}.",
            bytes.len()
        )));
    }
    Ok(PutBody { value: bytes, ttl })
}

/// A time to live in seconds: a number above 0 and at most ten years,
/// counted to the millisecond (rounded, and at least 1 ms).
fn ttl(seconds: &Value) -> Result<Duration, Invalid> {
    let refuse = || {
        bad(format!(
            "\"ttl\" must be a number of seconds above 0 and at most {MAX_TTL_SECONDS}, \
             not {seconds}."
        ))
    };
    let s = seconds.as_f64().ok_or_else(refuse)?;
    if !(s > 0.0 && s <= MAX_TTL_SECONDS as f64) {
        return Err(refuse());
    }
    let ms = ((s * 1000.0).round() as u64).max(1);
    Ok(Duration::from_millis(ms))
}

/// Reads a `POST /mget` body `{"keys": [K, ...]}`: 1 to 1000 keys, each
/// valid; a key named twice is read once.
pub fn mget_keys(body: &[u8]) -> Result<Vec<String>, Invalid> {
    let shape = || {
        bad(format!(
            "The request body must be {{\"keys\": [1 to {MAX_MGET_KEYS} keys]}}."
        ))
    };
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("The request body is not valid JSON: {e}.")))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(shape)?;
    if keys.is_empty() || keys.len() > MAX_MGET_KEYS {
        return Err(shape());
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let key = key.as_str().ok_or_else(|| {
            bad(format!(
                "Every key must be a string; {key} is not (in \"keys\")."
            ))
        })?;
        check_key(key).map_err(|(Invalid::BadRequest(why) | Invalid::TooLarge(why))| {
            bad(format!("{why} (the key {key:?} in \"keys\")"))
        })?;
        if seen.insert(key) {
            out.push(key.to_string());
        }
    }
    Ok(out)
}

/// One page of `GET /keys`, as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Only keys that begin with it.
    pub prefix: String,
    /// Only keys after it in byte order ("": from the first).
    pub after: String,
    /// At most this many keys.
    pub limit: usize,
}

/// Reads the query of `GET /keys`: `prefix`, `after` (each any text of at
/// most 250 characters) and `limit` (1 to 10000, 1000 by default), each at
/// most once; other parameters are ignored.
pub fn listing(query: &str) -> Result<Listing, Invalid> {
    let mut listing = Listing {
        prefix: String::new(),
        after: String::new(),
        limit: DEFAULT_LIST_LIMIT,
    };
    let mut seen = Vec::new();
    for (name, value) in query_params(query) {
        if !matches!(name, "prefix" | "after" | "limit") {
            continue;
        }
        if seen.contains(&name) {
            return Err(bad(format!(
                "The query parameter '{name}' is given more than once."
            )));
        }
        seen.push(name);
        let value = value.ok_or_else(|| {
            bad(format!(
                "The query parameter '{name}' has a malformed escape or is not UTF-8."
            ))
        })?;
        match name {
            "limit" => {
                listing.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "The query parameter 'limit' takes a whole number from 1 to \
                             {MAX_LIST_LIMIT}, not {value:?}."
                        ))
                    })?;
            }
            _ if value.chars().count() > MAX_KEY_CHARS => {
                return Err(bad(format!(
                    "The query parameter '{name}' is longer than a key can be \
                     ({MAX_KEY_CHARS} characters)."
                )));
            }
            "prefix" => listing.prefix = value,
            _ => listing.after = value,
        }
    }
    Ok(listing)
}

/// Appends `s` to `out` as a JSON string literal.
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// The body `{"key": K, "value": V}` where `value` is already compact JSON.
pub fn key_value_body(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + value.len() + 48);
    out.extend_from_slice(b"{\"key\":");
    push_json_string(&mut out, key);
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(value);
    out.push(b'}');
    out
}

/// A body of [`key_value_body`] that gains `"ttl"`: the seconds its value has left.
pub fn with_ttl(mut body: Vec<u8>, seconds: f64) -> Vec<u8> {
    debug_assert_eq!(body.last(), Some(&b'}'));
    body.pop();
    body.extend_from_slice(b",\"ttl\":");
    serde_json::to_writer(&mut body, &seconds).expect("writing to a Vec cannot fail");
    body.push(b'}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_and_visible() {
        assert_eq!(request_id(None), Ok(None));
        assert!(request_id(Some("  ")).is_err());
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
        for seg in [
            "", "a%2Fb", "a%2fb", "%zz", "%4", "%FF", "%C3", ".", "..", "%2E", "%2e%2E",
        ] {
            assert!(
                matches!(decode_key(seg), Err(Invalid::BadRequest(_))),
                "{seg}"
            );
        }
        let long = "é".repeat(251);
        assert!(decode_key(&percent_encode(&long)).is_err());
        let longest = "é".repeat(250);
        assert_eq!(decode_key(&percent_encode(&longest)).unwrap(), longest);
        for dotted in [".a", "...", "a.", ".%2E."] {
            assert!(decode_key(dotted).is_ok(), "{dotted}");
        }
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

    fn value_of(body: &[u8]) -> Result<Vec<u8>, Invalid> {
        put_body(body).map(|b| b.value)
    }

    #[test]
    fn put_bodies() {
        assert_eq!(value_of(br#"{"value": [1, 2]}"#).unwrap(), b"[1,2]");
        assert_eq!(value_of(br#"{"value": null}"#).unwrap(), b"null");
        assert_eq!(value_of(br#"{"value":"x","other":1}"#).unwrap(), b"\"x\"");
        for body in [&b""[..], b"  ", b"{", b"[1]", b"{\"val\":1}", b"42"] {
            assert!(
                matches!(value_of(body), Err(Invalid::BadRequest(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_ttl_is_a_positive_number_of_seconds_counted_to_the_millisecond() {
        let ttl_of = |body: &str| put_body(body.as_bytes()).map(|b| b.ttl);
        assert_eq!(ttl_of(r#"{"value": 1}"#), Ok(None));
        assert_eq!(
            ttl_of(r#"{"value": 1, "ttl": 90}"#),
            Ok(Some(Duration::from_secs(90)))
        );
        assert_eq!(
            ttl_of(r#"{"value": 1, "ttl": 1.5}"#),
            Ok(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            ttl_of(r#"{"value": 1, "ttl": 0.1234}"#),
            Ok(Some(Duration::from_millis(123)))
        );
        assert_eq!(
            ttl_of(r#"{"value": 1, "ttl": 0.0001}"#),
            Ok(Some(Duration::from_millis(1))),
            "above 0 is at least a millisecond"
        );
        assert_eq!(
            ttl_of(r#"{"value": 1, "ttl": 315360000}"#),
            Ok(Some(Duration::from_secs(MAX_TTL_SECONDS)))
        );
        for bad_ttl in [
            "0",
            "-1",
            "315360000.5",
            "1e12",
            "\"10\"",
            "null",
            "true",
            "[1]",
        ] {
            let body = format!(r#"{{"value": 1, "ttl": {bad_ttl}}}"#);
            match ttl_of(&body) {
                Err(Invalid::BadRequest(why)) => assert!(why.contains("ttl"), "{why}"),
                other => panic!("ttl {bad_ttl}: {other:?}"),
            }
        }
    }

    #[test]
    fn mget_bodies_name_one_to_a_thousand_valid_keys_each_read_once() {
        assert_eq!(
            mget_keys(br#"{"keys": ["a", "b", "a"]}"#).unwrap(),
            ["a", "b"]
        );
        let most: Vec<String> = (0..MAX_MGET_KEYS).map(|i| format!("k{i}")).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "keys": most })).unwrap();
        assert_eq!(mget_keys(&body).unwrap().len(), MAX_MGET_KEYS);
        let too_many: Vec<String> = (0..=MAX_MGET_KEYS).map(|i| format!("k{i}")).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "keys": too_many })).unwrap();
        assert!(mget_keys(&body).is_err());
        let long = format!(r#"{{"keys": ["{}"]}}"#, "k".repeat(251));
        for body in [
            "",
            "{",
            "[]",
            "{}",
            r#"{"keys": []}"#,
            r#"{"keys": "a"}"#,
            r#"{"keys": [1]}"#,
            r#"{"keys": [""]}"#,
            r#"{"keys": ["a/b"]}"#,
            &long,
        ] {
            assert!(
                matches!(mget_keys(body.as_bytes()), Err(Invalid::BadRequest(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn listings_take_a_prefix_a_key_to_start_after_and_a_limit() {
        assert_eq!(
            listing("").unwrap(),
            Listing {
                prefix: String::new(),
                after: String::new(),
                limit: DEFAULT_LIST_LIMIT,
            }
        );
        assert_eq!(
            listing("prefix=user%3A1+%26&after=a%2Fb&limit=5&other=x").unwrap(),
            Listing {
                prefix: "user:1 &".into(),
                after: "a/b".into(),
                limit: 5,
            }
        );
        assert_eq!(listing("limit=10000").unwrap().limit, MAX_LIST_LIMIT);
        let long = "a".repeat(251);
        for query in [
            "limit=0",
            "limit=10001",
            "limit=-1",
            "limit=ten",
            "limit=",
            "prefix=%zz",
            "after=%FF",
            "limit=5&limit=6",
            "prefix=a&prefix=b",
            &format!("prefix={long}"),
        ] {
            assert!(
                matches!(listing(query), Err(Invalid::BadRequest(_))),
                "{query}"
            );
        }
    }

    #[test]
    fn a_body_gains_its_ttl() {
        let body = with_ttl(key_value_body("k", b"1"), 2.5);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"key": "k", "value": 1, "ttl": 2.5}));
    }

    #[test]
    fn values_over_one_mebibyte_are_too_large() {
        let just = format!("{{\"value\":\"{}\"}}", "a".repeat(MAX_VALUE_BYTES - 2));
        assert!(value_of(just.as_bytes()).is_ok());
        let over = format!("{{\"value\":\"{}\"}}", "a".repeat(MAX_VALUE_BYTES - 1));
        assert!(matches!(
            value_of(over.as_bytes()),
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
