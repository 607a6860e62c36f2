//! Node-to-node signatures made from the format documented in
//! docs/security.md, independently of the node's code: what a test needs to
//! send a call as another node would, or to forge one.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The signed headers, in order.
const SIGNED: [&str; 12] = [
    "x-treecache-budget-ms",
    "x-treecache-hop-ms",
    "x-treecache-request-id",
    "x-treecache-child-slot",
    "x-treecache-child-name",
    "x-treecache-child-address",
    "x-treecache-session",
    "x-treecache-epoch",
    "x-treecache-phase",
    "x-treecache-catch-up",
    "if-match",
    "if-none-match",
];

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `X-Treecache-Auth` value of a request to the node at `to` (its
/// advertised `host:port`), signed with `key` at `t` (milliseconds since the
/// Unix epoch).
pub fn sign(
    key: &[u8],
    to: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    t: u64,
) -> String {
    let mut text = format!("treecache-auth-v2\n{to}\n{method}\n{path}\n{t}\n");
    for name in SIGNED {
        match headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, v)) => text.push_str(&format!("{name}:{v}\n")),
            None => text.push_str(&format!("{name}!\n")),
        }
    }
    text.push_str(&hex(&Sha256::digest(body)));
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(text.as_bytes());
    format!("v2 t={t} to={to} mac={}", hex(&mac.finalize().into_bytes()))
}
