//! Who may do what: the cluster key that authenticates node-to-node calls
//! (here), the client tokens of the API (`tokens`), and the rule that one
//! node id is one process (`one_process`).
//!
//! # The cluster key
//! Every node of a cluster reads the same secret (`--cluster-key-file`).
//! A node-to-node request carries [`wire::AUTH_HEADER`]:
//!
//! ```text
//! X-Treecache-Auth: v2 t=<unix time in ms> to=<host:port> mac=<64 hex digits>
//! ```
//!
//! where `to` is the address the call is sent to, exactly as the caller
//! addresses it (the receiver's advertised `host:port`, which the caller
//! learned from the root's table or ZooKeeper), and the MAC is HMAC-SHA256,
//! under the key, of this text (each line but the last ends with `\n`; a
//! header that is absent is written as its name and `!`):
//!
//! ```text
//! treecache-auth-v2
//! <to>
//! <METHOD>
//! <path with its query, as sent>
//! <t>
//! x-treecache-budget-ms:<value>          (one line per header of wire::SIGNED_HEADERS)
//! ...
//! <hex SHA-256 of the body>
//! ```
//!
//! The secret itself never travels. The receiving route decides whether a
//! request must be signed (every `/internal/` route and `POST /nodes/join`),
//! and refuses one without a valid signature, whose `t` is more than
//! [`WINDOW`] away from its own clock, or whose `to` is not one of its own
//! [`Addresses`], with 401 before it changes anything. So a call captured on
//! its way to one node is no good at another. Comparisons of MACs are
//! constant-time (`hmac`'s `verify_slice`).
//!
//! A signed request may be replayed within the window, at the node it was
//! sent to, by whoever captured it. For most calls that is harmless (an
//! invalidation or a flush drops cached copies, a fill reads, a forwarded
//! write carries a request id the root answers once); a release notice and
//! a join are not, so their MACs are remembered for twice the window and a
//! second use is refused ([`Replays`]).

pub mod one_process;
pub mod tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::wire::{self, Headers};

/// How far a signed request's time may be from the receiver's clock.
pub const WINDOW: Duration = Duration::from_secs(30);

/// The fewest bytes a cluster key may have.
pub const MIN_KEY_BYTES: usize = 32;

/// The signature scheme a signature header names.
pub const VERSION: &str = "v2";
const DOMAIN: &str = "treecache-auth-v2";

type HmacSha256 = Hmac<Sha256>;

/// The shared secret of a cluster's nodes.
#[derive(Clone)]
pub struct ClusterKey {
    /// The MAC under the key, before any text: cloned for each request,
    /// so that the key's own blocks are hashed once.
    keyed: HmacSha256,
    /// The file it was read from, and that file's permission bits then.
    file: Option<(PathBuf, u32)>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// The parts of a request that its signature covers, besides the node it
/// is for (the sender's `to`, the receiver's [`Addresses`]).
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path with its query, exactly as sent.
    pub path: &'a str,
    pub headers: &'a dyn Headers,
    pub body: &'a [u8],
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// A node-to-node call whose signature was not accepted.
    Signature(Refused),
    /// A client without a token this node knows: why.
    Token(tokens::NoToken),
    /// A read token for a write.
    ReadOnly,
    /// A join of `name`, live in another ZooKeeper session (`session`, hex).
    LiveElsewhere { name: String, session: String },
}

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Malformed,
    /// Its time is this far from ours.
    OutOfWindow(Duration),
    BadMac,
    Replayed,
    /// Signed for `to`, which is not this node (known as `here`).
    ForAnother {
        to: String,
        here: String,
    },
}

impl ClusterKey {
    /// A key of these bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(key: Vec<u8>) -> Result<ClusterKey, String> {
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key must have at least {MIN_KEY_BYTES} bytes (it has {})",
                key.len()
            ));
        }
        let keyed = HmacSha256::new_from_slice(&key).expect("HMAC takes any key length");
        Ok(ClusterKey { keyed, file: None })
    }

    /// Reads a key file: its bytes, less one trailing newline. Its mode is
    /// noted (see [`ClusterKey::file_warning`]).
    pub fn load(path: &Path) -> Result<ClusterKey, String> {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let cannot =
            |e: std::io::Error| format!("cannot read the key file {}: {e}", path.display());
        let mut file = std::fs::File::open(path).map_err(cannot)?;
        let mode = file.metadata().map_err(cannot)?.permissions().mode() & 0o7777;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(cannot)?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        let mut key = ClusterKey::new(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        key.file = Some((path.to_path_buf(), mode));
        Ok(key)
    }

    /// What to warn of when the key's file lets its group or others at it
    /// (any of the bits 0o077): the file, its mode, and who may do what.
    pub fn file_warning(&self) -> Option<String> {
        let (path, mode) = self.file.as_ref()?;
        let mode = *mode;
        if mode & 0o077 == 0 {
            return None;
        }
        let who: Vec<String> = [("its group", mode >> 3 & 7), ("others", mode & 7)]
            .into_iter()
            .filter(|(_, bits)| *bits != 0)
            .map(|(who, bits)| format!("{who} may {}", permitted(bits)))
            .collect();
        Some(format!(
            "the cluster key file {} has mode {mode:04o}: {} (bits {:03o}); whoever reads the \
             key can sign calls as any node: chmod 600 {}",
            path.display(),
            who.join(", "),
            mode & 0o077,
            path.display()
        ))
    }

    fn mac(&self, to: &str, parts: &Signed<'_>, time_ms: u64) -> HmacSha256 {
        // The text, as documented above, is gathered on the stack and given
        // to the MAC in whole blocks: a call is signed and checked on every
        // hop of a miss, and the MAC fed piece by piece costs twice as much.
        let mut text = Text::new(self.keyed.clone());
        let mut digits = [0u8; 20];
        for line in [
            DOMAIN.as_bytes(),
            to.as_bytes(),
            parts.method.as_bytes(),
            parts.path.as_bytes(),
            decimal(time_ms, &mut digits),
        ] {
            text.line(&[line]);
        }
        for (name, lower) in wire::SIGNED_HEADERS.iter().zip(SIGNED_LOWER.iter()) {
            match parts.headers.header(name) {
                Some(value) => text.line(&[lower.as_bytes(), b":", value.as_bytes()]),
                None => text.line(&[lower.as_bytes(), b"!"]),
            }
        }
        text.push(&body_digest(parts.body));
        text.mac()
    }

    /// The value of the auth header for a request to the node at `to` (its
    /// address as the call is sent to it), made at `time_ms`.
    pub fn sign_at(&self, to: &str, parts: &Signed<'_>, time_ms: u64) -> String {
        let tag = self.mac(to, parts, time_ms).finalize().into_bytes();
        // Built in one allocation: every hop of a miss signs a call.
        let mut digits = [0u8; 20];
        let time = std::str::from_utf8(decimal(time_ms, &mut digits)).expect("ASCII digits");
        let mut out = String::with_capacity(VERSION.len() + time.len() + to.len() + 80);
        for piece in [VERSION, " t=", time, " to=", to, " mac="] {
            out.push_str(piece);
        }
        push_hex(&mut out, &tag);
        out
    }

    /// The value of the auth header for a request to `to` made now.
    pub fn sign(&self, to: &str, parts: &Signed<'_>) -> String {
        self.sign_at(to, parts, now_ms())
    }

    /// Checks the auth header of a request received by the node at `here`
    /// against the clock `now_ms`; the MAC on success (for [`Replays`]).
    pub fn verify_at(
        &self,
        here: &Addresses,
        parts: &Signed<'_>,
        now_ms: u64,
    ) -> Result<[u8; 32], Refused> {
        let value = parts
            .headers
            .header(wire::AUTH_HEADER)
            .ok_or(Refused::Missing)?;
        let header = parse_header(value).ok_or(Refused::Malformed)?;
        let away = Duration::from_millis(now_ms.abs_diff(header.time_ms));
        if away > WINDOW {
            return Err(Refused::OutOfWindow(away));
        }
        if !here.takes(header.to) {
            return Err(Refused::ForAnother {
                to: header.to.to_string(),
                here: here.to_string(),
            });
        }
        self.mac(header.to, parts, header.time_ms)
            .verify_slice(&header.tag)
            .map_err(|_| Refused::BadMac)?;
        Ok(header.tag)
    }

    /// Checks the auth header of a request received now by the node at `here`.
    pub fn verify(&self, here: &Addresses, parts: &Signed<'_>) -> Result<[u8; 32], Refused> {
        self.verify_at(here, parts, now_ms())
    }
}

/// The signed text on its way into the MAC: gathered in a buffer on the
/// stack, which is handed over whenever it fills (a text of a usual call,
/// about 450 bytes, fits) and at the end.
struct Text {
    mac: HmacSha256,
    buffer: [u8; 1024],
    len: usize,
}

impl Text {
    fn new(mac: HmacSha256) -> Text {
        Text {
            mac,
            buffer: [0; 1024],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buffer.len() {
            self.mac.update(&self.buffer[..self.len]);
            self.len = 0;
            if bytes.len() > self.buffer.len() {
                self.mac.update(bytes);
                return;
            }
        }
        self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// `pieces` and a newline.
    fn line(&mut self, pieces: &[&[u8]]) {
        for piece in pieces {
            self.push(piece);
        }
        self.push(b"\n");
    }

    fn mac(mut self) -> HmacSha256 {
        self.mac.update(&self.buffer[..self.len]);
        self.mac
    }
}

/// The fields of an auth header.
struct Header<'a> {
    time_ms: u64,
    to: &'a str,
    tag: [u8; 32],
}

/// `v2 t=<ms> to=<host:port> mac=<hex>` into its fields.
fn parse_header(value: &str) -> Option<Header<'_>> {
    let mut fields = value.split_ascii_whitespace();
    if fields.next()? != VERSION {
        return None;
    }
    let time_ms = fields.next()?.strip_prefix("t=")?.parse().ok()?;
    let to = fields
        .next()?
        .strip_prefix("to=")
        .filter(|to| !to.is_empty())?;
    let tag = unhex(fields.next()?.strip_prefix("mac=")?)?;
    if fields.next().is_some() {
        return None;
    }
    Some(Header { time_ms, to, tag })
}

/// The addresses a node takes signed calls for: its `--advertise` address,
/// which is where every other node sends its calls (they learn it from the
/// root's table or ZooKeeper), and its `--listen` address when that names
/// one IP (`127.0.0.1:5001`, not `0.0.0.0:5000`, which every node of a
/// container setup shares). Hosts compare without regard to ASCII case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    advertised: String,
    listen: Option<String>,
}

impl Addresses {
    /// The addresses of a node advertised as `advertised` that listens on
    /// `listen`.
    pub fn new(advertised: &str, listen: SocketAddr) -> Addresses {
        let listen = Some(listen.to_string())
            .filter(|_| !listen.ip().is_unspecified())
            .filter(|l| !l.eq_ignore_ascii_case(advertised));
        Addresses {
            advertised: advertised.to_string(),
            listen,
        }
    }

    /// Whether a call signed for `to` is for this node.
    pub fn takes(&self, to: &str) -> bool {
        std::iter::once(&self.advertised)
            .chain(&self.listen)
            .any(|a| a.eq_ignore_ascii_case(to))
    }
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.listen {
            Some(listen) => write!(f, "{}, or {listen}", self.advertised),
            None => f.write_str(&self.advertised),
        }
    }
}

/// `read`, `write`, `execute`, or several of them, for three permission bits.
fn permitted(bits: u32) -> String {
    let words: Vec<&str> = [(4, "read"), (2, "write"), (1, "execute")]
        .into_iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, word)| word)
        .collect();
    match words.as_slice() {
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        [] => String::new(),
    }
}

/// Writes a new random key to `path` (64 hex digits of 32 bytes from
/// `/dev/urandom`, and a newline), readable by its owner alone (0600).
pub fn write_random_key(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{}\n", hex(&random)).as_bytes())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The SHA-256 of a body in lowercase hex, as the signed text holds it.
/// Most signed calls (fills, probes) have no body: its digest is known.
fn body_digest(body: &[u8]) -> [u8; 64] {
    const EMPTY: &[u8; 64] = b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    if body.is_empty() {
        return *EMPTY;
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in Sha256::digest(body).iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends the lower-case hex of `bytes` to `out`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

/// The decimal digits of `n`, written into `buffer`.
fn decimal(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

/// The names of [`wire::SIGNED_HEADERS`] in lower case, as the signed text
/// holds them (a test checks them against it): constants, side by side in
/// the binary, so that signing and checking read them from few cache lines.
const SIGNED_LOWER: [&str; 12] = [
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

fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Most MACs remembered at once; past it, calls that must not be replayed
/// are refused until older ones expire (a flood of them needs the key).
const REPLAYS_MAX: usize = 100_000;

/// The MACs of signed calls that must not be replayed (release notices,
/// joins), each remembered for twice [`WINDOW`]: a MAC seen again within
/// that time is a replay. Older ones are outside the window anyway.
#[derive(Default)]
pub struct Replays {
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

impl Replays {
    /// Notes `tag` at `now_ms`; `Err` when it was seen before.
    pub fn first_use(&self, tag: [u8; 32], now_ms: u64) -> Result<(), Refused> {
        let keep = 2 * WINDOW.as_millis() as u64;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= REPLAYS_MAX {
            seen.retain(|_, at| now_ms.saturating_sub(*at) <= keep);
        }
        match seen.get(&tag) {
            Some(at) if now_ms.saturating_sub(*at) <= keep => Err(Refused::Replayed),
            _ if seen.len() >= REPLAYS_MAX => Err(Refused::Replayed),
            _ => {
                seen.insert(tag, now_ms);
                Ok(())
            }
        }
    }
}

/// What the receiving end checks, built once at start: the cluster key,
/// the addresses this node takes signed calls for, the client tokens, the
/// replays seen, and who holds a node's liveness.
pub struct Guard {
    key: Option<ClusterKey>,
    here: Addresses,
    tokens: Option<tokens::ApiTokens>,
    replays: Replays,
    liveness_owner: Box<one_process::LivenessOwner>,
}

/// The `WWW-Authenticate` challenge of a refused node-to-node call.
pub const CLUSTER_CHALLENGE: &str = "Treecache-HMAC";

impl Guard {
    /// `here`: this node's own addresses; a signed call must name one.
    pub fn new(
        key: Option<ClusterKey>,
        here: Addresses,
        tokens: Option<tokens::ApiTokens>,
        liveness_owner: Box<one_process::LivenessOwner>,
    ) -> Guard {
        Guard {
            key,
            here,
            tokens,
            replays: Replays::default(),
            liveness_owner,
        }
    }

    /// A node-to-node call: signed with the cluster key when there is one;
    /// `once` for calls that must not be replayed.
    pub fn node_to_node(&self, parts: &Signed<'_>, once: bool) -> Result<(), AuthError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let refused = AuthError::Signature;
        let tag = key.verify(&self.here, parts).map_err(refused)?;
        if once {
            self.replays.first_use(tag, now_ms()).map_err(refused)?;
        }
        Ok(())
    }

    /// A request of the data endpoints: a node's signed call (a forwarded
    /// write) passes on its signature, a client's on its token (when the
    /// node has tokens). A signature that is there must be valid.
    pub fn data(
        &self,
        parts: &Signed<'_>,
        authorization: Option<&str>,
        write: bool,
    ) -> Result<(), AuthError> {
        if self.key.is_some() && parts.headers.header(wire::AUTH_HEADER).is_some() {
            return self.node_to_node(parts, false);
        }
        self.client(authorization, write)
    }

    /// Whether a client's request needs a look at its body first: only a
    /// signed one does (its signature covers the body).
    pub fn needs_body(&self, headers: &dyn Headers) -> bool {
        self.key.is_some() && headers.header(wire::AUTH_HEADER).is_some()
    }

    /// A client's request of the data endpoints, on its token alone.
    pub fn client(&self, authorization: Option<&str>, write: bool) -> Result<(), AuthError> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        match tokens.allow(authorization, write) {
            Ok(_) => Ok(()),
            Err(tokens::Denied::Unauthenticated(m)) => Err(AuthError::Token(m)),
            Err(tokens::Denied::ReadOnly) => Err(AuthError::ReadOnly),
        }
    }

    /// Whether `name` may join from the session `session` (see `one_process`).
    pub fn join(&self, name: &str, session: Option<&str>) -> Result<(), AuthError> {
        one_process::check(self.liveness_owner.as_ref(), name, session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::Map;

    const ME: &str = "NODE-4:5000";

    fn key() -> ClusterKey {
        ClusterKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    fn here() -> Addresses {
        Addresses::new(ME, "0.0.0.0:5000".parse().unwrap())
    }

    fn signed<'a>(headers: &'a Map, body: &'a [u8]) -> Signed<'a> {
        Signed {
            method: "POST",
            path: "/internal/invalidate",
            headers,
            body,
        }
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let k = key();
        let mut headers = Map(vec![(wire::BUDGET_HEADER, "2000".into())]);
        let value = k.sign_at(ME, &signed(&headers, b"{}"), 1_000_000);
        assert!(
            value.starts_with("v2 t=1000000 to=NODE-4:5000 mac="),
            "{value}"
        );
        headers.0.push((wire::AUTH_HEADER, value.clone()));
        assert!(k
            .verify_at(&here(), &signed(&headers, b"{}"), 1_000_000)
            .is_ok());
        assert!(k
            .verify_at(&here(), &signed(&headers, b"{}"), 1_029_000)
            .is_ok());
        // Another body, another header value, another path, another key.
        assert_eq!(
            k.verify_at(&here(), &signed(&headers, b"{ }"), 1_000_000),
            Err(Refused::BadMac)
        );
        let mut changed = Map(vec![(wire::BUDGET_HEADER, "9000".into())]);
        changed.0.push((wire::AUTH_HEADER, value.clone()));
        assert_eq!(
            k.verify_at(&here(), &signed(&changed, b"{}"), 1_000_000),
            Err(Refused::BadMac)
        );
        let moved = Signed {
            path: "/internal/flush",
            ..signed(&headers, b"{}")
        };
        assert_eq!(
            k.verify_at(&here(), &moved, 1_000_000),
            Err(Refused::BadMac)
        );
        let other = ClusterKey::new(vec![7; 40]).unwrap();
        assert_eq!(
            other.verify_at(&here(), &signed(&headers, b"{}"), 1_000_000),
            Err(Refused::BadMac)
        );
        // A header added that the signature did not cover.
        let mut added = Map(vec![
            (wire::BUDGET_HEADER, "2000".into()),
            (wire::HOP_HEADER, "5".into()),
        ]);
        added.0.push((wire::AUTH_HEADER, value));
        assert_eq!(
            k.verify_at(&here(), &signed(&added, b"{}"), 1_000_000),
            Err(Refused::BadMac)
        );
    }

    #[test]
    fn a_call_signed_for_another_node_is_refused() {
        let k = key();
        let body = b"{}";
        // Signed for NODE-5, received by NODE-4.
        let mut headers = Map(vec![]);
        let value = k.sign_at("NODE-5:5000", &signed(&headers, body), 1_000_000);
        headers.0.push((wire::AUTH_HEADER, value.clone()));
        assert_eq!(
            k.verify_at(&here(), &signed(&headers, body), 1_000_000),
            Err(Refused::ForAnother {
                to: "NODE-5:5000".into(),
                here: ME.into()
            })
        );
        let to_five = Addresses::new("NODE-5:5000", "0.0.0.0:5000".parse().unwrap());
        assert!(k
            .verify_at(&to_five, &signed(&headers, body), 1_000_000)
            .is_ok());
        // The `to` of the header changed on the way: the MAC no longer fits.
        let forged = value.replace("to=NODE-5:5000", "to=NODE-4:5000");
        let headers = Map(vec![(wire::AUTH_HEADER, forged)]);
        assert_eq!(
            k.verify_at(&here(), &signed(&headers, body), 1_000_000),
            Err(Refused::BadMac)
        );
    }

    #[test]
    fn a_node_takes_its_advertised_address_and_a_listen_address_of_one_ip() {
        let any = Addresses::new("NODE-4:5000", "0.0.0.0:5000".parse().unwrap());
        assert!(any.takes("NODE-4:5000") && any.takes("node-4:5000"));
        assert!(!any.takes("0.0.0.0:5000") && !any.takes("NODE-4:5001"));
        assert!(!any.takes("127.0.0.1:5000"));
        assert_eq!(any.to_string(), "NODE-4:5000");
        let one = Addresses::new("proxy:7000", "127.0.0.1:5004".parse().unwrap());
        assert!(one.takes("proxy:7000") && one.takes("127.0.0.1:5004"));
        assert!(!one.takes("127.0.0.1:7000"));
        assert_eq!(one.to_string(), "proxy:7000, or 127.0.0.1:5004");
        let v6 = Addresses::new("NODE-4:5000", "[::1]:5000".parse().unwrap());
        assert!(v6.takes("[::1]:5000"));
        let same = Addresses::new("127.0.0.1:5004", "127.0.0.1:5004".parse().unwrap());
        assert_eq!(same.to_string(), "127.0.0.1:5004");
    }

    #[test]
    fn old_missing_and_garbled_signatures_are_refused() {
        let k = key();
        let mut headers = Map(vec![]);
        let value = k.sign_at(ME, &signed(&headers, b""), 1_000_000);
        headers.0.push((wire::AUTH_HEADER, value));
        assert!(matches!(
            k.verify_at(&here(), &signed(&headers, b""), 1_031_000),
            Err(Refused::OutOfWindow(_))
        ));
        assert!(matches!(
            k.verify_at(&here(), &signed(&headers, b""), 969_000),
            Err(Refused::OutOfWindow(_))
        ));
        assert_eq!(
            k.verify_at(&here(), &signed(&Map(vec![]), b""), 1_000_000),
            Err(Refused::Missing)
        );
        let mac = "0".repeat(64);
        for garbled in [
            "v2".to_string(),
            "v2 t=1 mac=00".to_string(),
            "v2 t=x to=NODE-4:5000 mac=00".to_string(),
            "v2 t=1000000 to=NODE-4:5000 mac=zz".to_string(),
            format!("v2 t=1000000 to= mac={mac}"),
            format!("v2 t=1000000 mac={mac}"),
            format!("v2 t=1000000 to=NODE-4:5000 mac={mac} more"),
            // The first version's header: no `to`.
            format!("v1 t=1000000 mac={mac}"),
        ] {
            let headers = Map(vec![(wire::AUTH_HEADER, garbled.clone())]);
            assert_eq!(
                k.verify_at(&here(), &signed(&headers, b""), 1_000_000),
                Err(Refused::Malformed),
                "{garbled}"
            );
        }
    }

    #[test]
    fn the_signed_text_is_as_documented() {
        // docs/security.md spells the text out; a signer written from it
        // (crates/harness/src/signing.rs) computes the same MAC.
        let k = key();
        let headers = Map(vec![(wire::BUDGET_HEADER, "2000".into())]);
        let mut text =
            String::from("treecache-auth-v2\nNODE-4:5000\nPOST\n/internal/invalidate\n1000000\n");
        for name in wire::SIGNED_HEADERS {
            let lower = name.to_ascii_lowercase();
            match name {
                wire::BUDGET_HEADER => text.push_str(&format!("{lower}:2000\n")),
                _ => text.push_str(&format!("{lower}!\n")),
            }
        }
        text.push_str(&hex(&Sha256::digest(b"{}")));
        let mut mac = HmacSha256::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(text.as_bytes());
        let want = format!(
            "v2 t=1000000 to=NODE-4:5000 mac={}",
            hex(&mac.finalize().into_bytes())
        );
        assert_eq!(k.sign_at(ME, &signed(&headers, b"{}"), 1_000_000), want);
    }

    #[test]
    fn a_text_longer_than_the_buffer_signs_as_the_whole_text() {
        // Pieces that straddle the buffer's end, one longer than the buffer,
        // and the sum past it: the MAC is that of the text written whole.
        let k = key();
        for (path_len, value_len) in [(900, 100), (100, 1500), (2000, 2000), (1017, 0)] {
            let path = format!("/internal/fill/{}", "k".repeat(path_len));
            let value = "7".repeat(value_len);
            let headers = Map(vec![(wire::REQUEST_ID_HEADER, value.clone())]);
            let mut text = format!("treecache-auth-v2\n{ME}\nGET\n{path}\n5\n");
            for name in wire::SIGNED_HEADERS {
                let lower = name.to_ascii_lowercase();
                match name {
                    wire::REQUEST_ID_HEADER => text.push_str(&format!("{lower}:{value}\n")),
                    _ => text.push_str(&format!("{lower}!\n")),
                }
            }
            text.push_str(&hex(&Sha256::digest(b"")));
            let mut mac = HmacSha256::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
            mac.update(text.as_bytes());
            let parts = Signed {
                method: "GET",
                path: &path,
                headers: &headers,
                body: b"",
            };
            let signed = k.sign_at(ME, &parts, 5);
            assert!(
                signed.ends_with(&hex(&mac.finalize().into_bytes())),
                "{path_len} {value_len}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused_and_one_newline_is_dropped() {
        assert!(ClusterKey::new(vec![1; 31]).is_err());
        let dir = std::env::temp_dir().join(format!("treecache-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, [b"x".repeat(32), b"\n".to_vec()].concat()).unwrap();
        let k = ClusterKey::load(&path).unwrap();
        let same = ClusterKey::new(b"x".repeat(32)).unwrap();
        let (headers, at) = (Map(Vec::new()), 1_000_000);
        assert_eq!(
            k.sign_at(ME, &signed(&headers, b""), at),
            same.sign_at(ME, &signed(&headers, b""), at)
        );
        std::fs::write(&path, [b"x".repeat(31), b"\n".to_vec()].concat()).unwrap();
        assert!(ClusterKey::load(&path).unwrap_err().contains("32 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_file_open_to_group_or_others_is_named_with_its_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("treecache-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        write_random_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(ClusterKey::load(&path).unwrap().file_warning(), None);
        for (mode, says) in [
            (
                0o644,
                "mode 0644: its group may read, others may read (bits 044)",
            ),
            (0o640, "mode 0640: its group may read (bits 040)"),
            (0o606, "mode 0606: others may read and write (bits 006)"),
            (
                0o677,
                "its group may read, write and execute, others may read, write and execute",
            ),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let warning = ClusterKey::load(&path).unwrap().file_warning().unwrap();
            assert!(warning.contains(says), "{warning}");
            assert!(warning.contains(&path.display().to_string()), "{warning}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(ClusterKey::load(&path).unwrap().file_warning(), None);
        assert_eq!(key().file_warning(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mac_is_accepted_once() {
        let r = Replays::default();
        assert!(r.first_use([1; 32], 1000).is_ok());
        assert_eq!(r.first_use([1; 32], 2000), Err(Refused::Replayed));
        assert!(r.first_use([2; 32], 2000).is_ok());
        assert!(r.first_use([1; 32], 1000 + 61_000).is_ok());
    }

    #[test]
    fn a_bodys_digest_is_its_sha256_in_hex() {
        for body in [&b""[..], b"{\"value\":1}"] {
            assert_eq!(body_digest(body), hex(&Sha256::digest(body)).as_bytes());
        }
    }

    #[test]
    fn the_lower_case_names_are_the_signed_headers_and_numbers_print_in_decimal() {
        for (name, lower) in wire::SIGNED_HEADERS.iter().zip(SIGNED_LOWER.iter()) {
            assert_eq!(&name.to_ascii_lowercase(), lower);
        }
        for n in [0, 7, 10, 1_733_580_000_123, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn hex_round_trips() {
        let tag = [0xab; 32];
        assert_eq!(unhex(&hex(&tag)), Some(tag));
    }
}
