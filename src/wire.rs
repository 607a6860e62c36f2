//! The node-to-node protocol, both ends of it: every path, header and body
//! one node sends another, with its encoding and its decoding.
//!
//! The HTTP client (`http::client`) builds its requests and reads its answers
//! here; the HTTP server (`http::api`) reads those requests and builds those
//! answers here. No other module names a header or builds a node-to-node
//! body, so a change to the protocol is a change to this file (and the
//! contract in openapi.yaml).
//!
//! The calls:
//! - `GET /internal/fill/{key}` ([`FillRequest`] → [`Fill`]): a child asks
//!   its parent for a key it missed; the answer carries the value's version,
//!   the time it has left if it expires, and whether the child may cache it.
//! - `POST /internal/invalidate` ([`Invalidate`] → [`Invalidated`]): a
//!   parent tells a child to drop a key before a write is applied.
//! - `POST /internal/evicted` ([`Release`] → [`Released`]): a child tells
//!   its parent it no longer holds some keys.
//! - `POST /internal/flush` ([`Flush`] → [`Flushed`]): a restarted node
//!   tells a child to drop everything.
//! - `POST /nodes/join` ([`Join`] → [`Joined`]) and `GET /nodes`
//!   ([`NodesDoc`]): joining the root, and the tree as the root knows it.
//! - `PUT`/`DELETE /store/{key}` ([`ForwardedWrite`]): a write passed on to
//!   the root with its condition, whose answer is relayed unchanged; and
//!   `GET /store/{key}` ([`StoreValue`]), a standby's read of the primary.
//! - `GET /keys` ([`Listing`] → [`KeysPage`]): a page of keys, asked of the
//!   root and relayed unchanged.
//!
//! Every call carries the budget left to its request ([`BUDGET_HEADER`]).
//!
//! A request that does not parse is [`Malformed`]; an answer that does not
//! is `from`'s fault ([`UpstreamError::Invalid`]); either way this module
//! says what is wrong, and `http::api` how the client is told.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::deadline::Deadline;
use crate::input::{self, Listing};
pub use crate::peer::Peer;
use crate::peer::UpstreamError;
use crate::precondition::{self, Condition, Tags};

/// The time budget left to the request a call serves, in milliseconds.
pub const BUDGET_HEADER: &str = "X-Treecache-Budget-Ms";
/// How long the caller waits for this one call (its hop timeout), in
/// milliseconds: a node answers within it (with an error or "still working"
/// if need be) rather than let the caller take it for dead.
pub const HOP_HEADER: &str = "X-Treecache-Hop-Ms";
/// The version of the value in a fill answer.
pub const VERSION_HEADER: &str = "X-Treecache-Version";
/// The milliseconds the value in a fill answer has left, when it expires:
/// time left rather than a time of day, so that nodes need no clocks that
/// agree (see `crate::expiry`).
pub const TTL_HEADER: &str = "X-Treecache-Ttl-Ms";
/// A value's version as clients see it (`precondition::etag`); relayed with
/// the answers of writes passed on to the root and of reads a standby asks
/// of the primary.
pub const ETAG_HEADER: &str = "ETag";
/// `1` when the asking child may cache the fill answer (it is recorded as a holder).
pub const CACHEABLE_HEADER: &str = "X-Treecache-Cacheable";
/// `1` when requests that joined the child's fill must fill again.
pub const FENCED_HEADER: &str = "X-Treecache-Fenced";
/// Identifies a forwarded write, so that the root applies it at most once
/// however often it is sent (a retry after a broken connection reuses it).
pub const REQUEST_ID_HEADER: &str = "X-Treecache-Request-Id";
/// The slot, name and address of the child asking for a fill.
pub const CHILD_SLOT_HEADER: &str = "X-Treecache-Child-Slot";
pub const CHILD_NAME_HEADER: &str = "X-Treecache-Child-Name";
pub const CHILD_ADDRESS_HEADER: &str = "X-Treecache-Child-Address";
/// The signature of a node-to-node call under the cluster key (`auth`).
pub const AUTH_HEADER: &str = "X-Treecache-Auth";
/// On a join: the joining process's ZooKeeper session id (hex), so that the
/// root can refuse a name whose liveness znode another session holds
/// (`auth::one_process`).
pub const SESSION_HEADER: &str = "X-Treecache-Session";
/// On a call from another node to a root group's process: the root shard
/// the caller takes the key (or the `/keys` page) to be of. A primary of
/// another shard refuses it with 421 rather than pass it on; on `/keys`, a
/// primary answers its own keys only. Not signed: it can only narrow what
/// the receiver does (a refusal, fewer keys), never widen it.
pub const SHARD_HEADER: &str = "X-Treecache-Shard";

/// The shard a call from another node was meant for, if it names one.
pub fn meant_for_shard(headers: &impl Headers) -> Option<u32> {
    headers.header(SHARD_HEADER)?.trim().parse().ok()
}

/// A 421 answer of a root shard's primary, `{"error", "shard", "primary"}`,
/// as the error it is to the caller; `None` for any other body.
pub fn wrong_shard(body: &[u8]) -> Option<UpstreamError> {
    #[derive(Deserialize)]
    struct Misdirected {
        shard: u32,
        primary: Option<String>,
    }
    let m: Misdirected = serde_json::from_slice(body).ok()?;
    Some(UpstreamError::WrongShard {
        shard: m.shard,
        primary: m.primary,
        body: body.to_vec(),
    })
}

/// The request headers a signature covers, besides the method, the path
/// with its query, the time and the body: every header that changes what
/// the receiver does.
pub const SIGNED_HEADERS: [&str; 12] = [
    BUDGET_HEADER,
    HOP_HEADER,
    REQUEST_ID_HEADER,
    CHILD_SLOT_HEADER,
    CHILD_NAME_HEADER,
    CHILD_ADDRESS_HEADER,
    SESSION_HEADER,
    EPOCH_HEADER,
    PHASE_HEADER,
    CATCH_UP_HEADER,
    precondition::IF_MATCH,
    precondition::IF_NONE_MATCH,
];

pub const NODES_PATH: &str = "/nodes";
pub const JOIN_PATH: &str = "/nodes/join";
pub const STORE_PREFIX: &str = "/store/";
pub const KEYS_PATH: &str = "/keys";
pub const MGET_PATH: &str = "/mget";
pub const FILL_PREFIX: &str = "/internal/fill/";
pub const INVALIDATE_PATH: &str = "/internal/invalidate";
pub const EVICTED_PATH: &str = "/internal/evicted";
pub const FLUSH_PATH: &str = "/internal/flush";
pub const REPLICATE_PATH: &str = "/internal/replicate";
/// The epoch of the primary that sends a replication request.
pub const EPOCH_HEADER: &str = "X-Treecache-Epoch";
/// What a replication request carries: `live` writes, or a catch-up's
/// `reset`, `chunk` or `end`.
pub const PHASE_HEADER: &str = "X-Treecache-Phase";
/// The catch-up a `reset`, `chunk` or `end` belongs to.
pub const CATCH_UP_HEADER: &str = "X-Treecache-Catch-Up";

/// A node-to-node request that does not parse (400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The body is not what the endpoint takes: why not.
    Body(String),
    /// A fill without this header.
    FillHeader(&'static str),
    /// A replication request without its epoch.
    Epoch,
    /// A replication request without its phase.
    Phase,
}

/// Header lookup, case-insensitive, on whichever end holds the headers.
pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

/// Whether a node keeps the header `name` of another node's answer: the
/// protocol's own, and the ETag it relays.
pub fn kept_header(name: &str) -> bool {
    let ours = name.len() > 12 && name[..12].eq_ignore_ascii_case("x-treecache-");
    ours || name.eq_ignore_ascii_case(ETAG_HEADER)
}

/// A call to another node as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    /// Starts with `/`; a key in it is percent-encoded.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    /// A JSON body, if any.
    pub body: Option<Vec<u8>>,
}

impl Request {
    fn get(path: String) -> Request {
        Request {
            method: "GET",
            path,
            headers: Vec::new(),
            body: None,
        }
    }
}

/// An answer as it goes on the wire: status, headers, JSON body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn new(status: u16, body: Vec<u8>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// A 200 answer with `value` as its JSON body.
    pub fn json<T: Serialize>(value: &T) -> Answer {
        Answer::new(
            200,
            serde_json::to_vec(value).expect("an answer serializes"),
        )
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The answer relayed unchanged as an error.
    pub fn relayed(self) -> UpstreamError {
        UpstreamError::Relayed {
            status: self.status,
            body: self.body,
        }
    }
}

impl Headers for Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The budget a call carries, read back by the node it reached; `None` when
/// absent or unreadable (the node's own bound applies then).
pub fn budget(headers: &impl Headers) -> Option<Duration> {
    headers
        .header(BUDGET_HEADER)
        .and_then(|h| h.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// The hop timeout a call carries, `None` when absent or unreadable.
pub fn hop(headers: &impl Headers) -> Option<Duration> {
    headers
        .header(HOP_HEADER)
        .and_then(|h| h.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// The budget header for a call made on behalf of a request with `deadline`.
pub fn budget_header(deadline: Deadline) -> (&'static str, String) {
    (
        BUDGET_HEADER,
        deadline.for_next_hop().as_millis().to_string(),
    )
}

/// A JSON request body of a node-to-node endpoint, with its path and the
/// body of the 200 answer it gets.
pub trait Message: Serialize + DeserializeOwned {
    const PATH: &'static str;
    type Reply: Serialize + DeserializeOwned;

    /// The `POST` that carries this message.
    fn request(&self) -> Request {
        Request {
            method: "POST",
            path: Self::PATH.to_string(),
            headers: Vec::new(),
            body: Some(serde_json::to_vec(self).expect("a message serializes")),
        }
    }

    /// Reads the message from a request body.
    fn decode(body: &[u8]) -> Result<Self, Malformed> {
        decode_body(body)
    }
}

/// Reads a JSON request body into `T`, or why it does not fit.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Malformed> {
    serde_json::from_slice(body).map_err(|e| Malformed::Body(e.to_string()))
}

/// Reads `from`'s answer: a 200 as `T`, any other status as itself (to be
/// relayed or judged by the caller). A 200 that is not a `T` is `from`'s
/// fault, reported as such.
pub fn decode_reply<T: DeserializeOwned>(
    answer: Answer,
    from: &Peer,
) -> Result<Result<T, Answer>, UpstreamError> {
    if answer.status != 200 {
        return Ok(Err(answer));
    }
    serde_json::from_slice(&answer.body)
        .map(Ok)
        .map_err(|e| UpstreamError::invalid(from, format!("its answer was not understood: {e}")))
}

/// `POST /internal/invalidate`: drop `key`, whose write got `version`, and
/// pass the invalidation on before acknowledging.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidate {
    pub key: String,
    pub version: u64,
}

/// The answer to [`Invalidate`] once it is done (200): whether this node
/// dropped a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidated {
    pub key: String,
    pub dropped: bool,
}

/// Where an invalidation stands, as its receiver answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// 200: the key is gone here and below.
    Done(Invalidated),
    /// 202: still waiting on a node below (one that is slow, or whose
    /// session has not ended yet): send it again to wait some more.
    Working { key: String },
}

impl Progress {
    pub fn answer(&self) -> Answer {
        match self {
            Progress::Done(done) => Answer::json(done),
            Progress::Working { key } => {
                let mut a = Answer::json(&serde_json::json!({ "key": key, "working": true }));
                a.status = 202;
                a
            }
        }
    }

    /// Reads `from`'s answer; statuses other than 200 and 202 are relayed.
    pub fn decode(answer: Answer, from: &Peer) -> Result<Progress, UpstreamError> {
        match answer.status {
            202 => {
                #[derive(Deserialize)]
                struct Working {
                    key: String,
                }
                serde_json::from_slice::<Working>(&answer.body)
                    .map(|w| Progress::Working { key: w.key })
                    .map_err(|e| {
                        UpstreamError::invalid(from, format!("its answer was not understood: {e}"))
                    })
            }
            _ => match decode_reply::<Invalidated>(answer, from)? {
                Ok(done) => Ok(Progress::Done(done)),
                Err(other) => Err(other.relayed()),
            },
        }
    }
}

impl Message for Invalidate {
    const PATH: &'static str = INVALIDATE_PATH;
    type Reply = Invalidated;
}

/// `POST /internal/evicted`: the child in `slot` no longer holds `keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub keys: Vec<String>,
    pub slot: usize,
}

/// The answer to [`Release`]: how many directory entries were cleared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub released: usize,
}

impl Message for Release {
    const PATH: &'static str = EVICTED_PATH;
    type Reply = Released;
}

/// `POST /internal/flush`: drop everything cached, and pass it on; with
/// `slots`, only the keys in those hash-slot ranges (`[from, to]`, both
/// included): those of one root shard whose new primary lost track of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flush {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<Vec<[u32; 2]>>,
}

/// The answer to [`Flush`]: how many children acknowledged it in turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flushed {
    pub flushed: bool,
    pub children: usize,
}

impl Message for Flush {
    const PATH: &'static str = FLUSH_PATH;
    type Reply = Flushed;

    /// An empty body (or `{}`) drops everything.
    fn decode(body: &[u8]) -> Result<Flush, Malformed> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Flush::default());
        }
        let flush: Flush =
            serde_json::from_slice(body).map_err(|e| Malformed::Body(e.to_string()))?;
        // A range that is not one is refused, not read as no slots.
        match flush
            .slots
            .as_deref()
            .and_then(crate::shards::ranges_problem)
        {
            Some(problem) => Err(Malformed::Body(problem)),
            None => Ok(flush),
        }
    }
}

/// `POST /nodes/join`: a node asks the root for its slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    pub name: String,
    pub address: String,
}

/// The root's answer to a join: where the node sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub slot: usize,
    pub depth: u32,
    pub parent: Option<Peer>,
    /// The node's znode path.
    pub path: String,
}

impl Message for Join {
    const PATH: &'static str = JOIN_PATH;
    type Reply = Joined;
}

/// What a replication request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Writes as the primary applies them, to be made durable before the
    /// answer.
    Live,
    /// A catch-up begins: the standby drops what it holds.
    Reset,
    /// Part of the primary's state, for a catch-up.
    Chunk,
    /// The catch-up's state is complete: make it durable.
    End,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Live => "live",
            Phase::Reset => "reset",
            Phase::Chunk => "chunk",
            Phase::End => "end",
        }
    }
}

/// `POST /internal/replicate`: from the primary of the root group to a
/// standby. The body is records in the log's own format (`wal::record`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replicate {
    pub epoch: u64,
    pub phase: Phase,
    /// Which catch-up a `reset`, `chunk` or `end` belongs to.
    pub catch_up: Option<String>,
    /// A live write forwarded under a request id: the fingerprint the
    /// primary remembers it by (in the request id header), for the standby
    /// to remember it too.
    pub write_id: Option<String>,
    pub records: Vec<u8>,
}

/// A standby's answer to [`Replicate`]: how many records it applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicated {
    pub applied: usize,
}

/// A standby's refusal of a replication request from an older epoch (or of
/// a catch-up it does not know), with its epoch, for the sender to learn
/// that it is fenced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub error: String,
    pub epoch: u64,
}

impl Replicate {
    pub fn request(&self) -> Request {
        let mut headers = vec![
            (EPOCH_HEADER, self.epoch.to_string()),
            (PHASE_HEADER, self.phase.name().to_string()),
        ];
        if let Some(id) = &self.catch_up {
            headers.push((CATCH_UP_HEADER, id.clone()));
        }
        if let Some(id) = &self.write_id {
            headers.push((REQUEST_ID_HEADER, id.clone()));
        }
        Request {
            method: "POST",
            path: REPLICATE_PATH.to_string(),
            headers,
            body: Some(self.records.clone()),
        }
    }

    /// Reads a replication request from its headers and body.
    pub fn decode(headers: &impl Headers, body: Vec<u8>) -> Result<Replicate, Malformed> {
        let epoch = headers
            .header(EPOCH_HEADER)
            .and_then(|e| e.parse().ok())
            .ok_or(Malformed::Epoch)?;
        let phase = match headers.header(PHASE_HEADER) {
            Some("live") => Phase::Live,
            Some("reset") => Phase::Reset,
            Some("chunk") => Phase::Chunk,
            Some("end") => Phase::End,
            _ => return Err(Malformed::Phase),
        };
        Ok(Replicate {
            epoch,
            phase,
            catch_up: headers.header(CATCH_UP_HEADER).map(str::to_string),
            write_id: headers.header(REQUEST_ID_HEADER).map(str::to_string),
            records: body,
        })
    }
}

/// One process of the root group, as `/nodes` shows it.
pub use treecache_common::nodes::{RootMember, ShardEntry};

/// The `/nodes` document and its entries, shared with the CLI.
pub use treecache_common::nodes::{NodeEntry, NodesDoc};

/// The node in `slot` of a `/nodes` document, if one has joined there.
pub fn peer_at(doc: &NodesDoc, slot: usize) -> Option<Peer> {
    doc.nodes.iter().find(|n| n.slot == slot).map(|n| Peer {
        name: n.name.clone(),
        address: n.address.clone(),
    })
}

/// `GET /nodes`, asked of the root.
pub fn nodes_request() -> Request {
    Request::get(NODES_PATH.to_string())
}

/// A child, as it introduces itself to its parent in a fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildId {
    pub slot: usize,
    pub name: String,
    pub address: String,
}

/// `GET /internal/fill/{key}`: a child asks its parent for a key it missed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FillRequest {
    pub key: String,
    pub child: ChildId,
}

impl FillRequest {
    pub fn request(&self) -> Request {
        Request {
            method: "GET",
            path: format!("{FILL_PREFIX}{}", input::percent_encode(&self.key)),
            headers: vec![
                (CHILD_SLOT_HEADER, self.child.slot.to_string()),
                (CHILD_NAME_HEADER, self.child.name.clone()),
                (CHILD_ADDRESS_HEADER, self.child.address.clone()),
            ],
            body: None,
        }
    }

    /// Reads a fill request for the already decoded `key`.
    pub fn decode(key: String, headers: &impl Headers) -> Result<FillRequest, Malformed> {
        let slot = headers
            .header(CHILD_SLOT_HEADER)
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or(Malformed::FillHeader(CHILD_SLOT_HEADER))?;
        let address = headers
            .header(CHILD_ADDRESS_HEADER)
            .ok_or(Malformed::FillHeader(CHILD_ADDRESS_HEADER))?;
        let name = headers.header(CHILD_NAME_HEADER).unwrap_or("a child");
        Ok(FillRequest {
            key,
            child: ChildId {
                slot,
                name: name.to_string(),
                address: address.to_string(),
            },
        })
    }
}

/// A parent's answer to a fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fill {
    Found {
        /// The value as compact JSON.
        value: Vec<u8>,
        /// The version of the write that produced it.
        version: u64,
        /// When it expires: the milliseconds it had left when answered.
        ttl_ms: Option<u64>,
        /// The asking child was recorded as a holder and may cache it.
        cacheable: bool,
        /// Requests that joined the child's fill must fill again (see
        /// `node::flight::Fetched::fenced`).
        fenced: bool,
    },
    /// The key exists nowhere.
    Absent { fenced: bool },
}

impl Fill {
    /// The answer as the parent sends it: the raw value with its version,
    /// or a 404 whose body `absent` makes (the key exists nowhere).
    pub fn answer(self, absent: impl FnOnce() -> Vec<u8>) -> Answer {
        let flag = |b: bool| if b { "1" } else { "0" };
        match self {
            Fill::Found {
                value,
                version,
                ttl_ms,
                cacheable,
                fenced,
            } => {
                let answer = Answer::new(200, value)
                    .with_header(VERSION_HEADER, version.to_string())
                    .with_header(CACHEABLE_HEADER, flag(cacheable))
                    .with_header(FENCED_HEADER, flag(fenced));
                match ttl_ms {
                    Some(ms) => answer.with_header(TTL_HEADER, ms.to_string()),
                    None => answer,
                }
            }
            Fill::Absent { fenced } => {
                Answer::new(404, absent()).with_header(FENCED_HEADER, flag(fenced))
            }
        }
    }

    /// Reads `from`'s answer to a fill. A 200 whose value is not JSON, or
    /// whose version is missing, or whose time left does not parse, or a
    /// flag that is neither `0` nor `1`, is `from`'s fault (502, and nothing
    /// of it is cached); statuses other than 200 and 404 are relayed as they
    /// came.
    pub fn decode(answer: Answer, from: &Peer) -> Result<Fill, UpstreamError> {
        let flag = |name: &str| match answer.header(name).map(str::trim) {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(UpstreamError::invalid(
                from,
                format!("its fill answer had {name}: {other:?}"),
            )),
        };
        let fenced = flag(FENCED_HEADER)?;
        match answer.status {
            200 => {
                let version = answer
                    .header(VERSION_HEADER)
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| {
                        UpstreamError::invalid(
                            from,
                            "its fill answer had no version, or one that is not a number".into(),
                        )
                    })?;
                let ttl_ms = answer
                    .header(TTL_HEADER)
                    .map(|ms| {
                        ms.trim().parse::<u64>().map_err(|_| {
                            UpstreamError::invalid(
                                from,
                                format!("its fill answer had an unreadable {TTL_HEADER}: {ms:?}"),
                            )
                        })
                    })
                    .transpose()?;
                let cacheable = flag(CACHEABLE_HEADER)?;
                if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&answer.body) {
                    return Err(UpstreamError::invalid(
                        from,
                        format!("its fill answer's value is not JSON ({e})"),
                    ));
                }
                Ok(Fill::Found {
                    value: answer.body,
                    version,
                    ttl_ms,
                    cacheable,
                    fenced,
                })
            }
            404 => Ok(Fill::Absent { fenced }),
            _ => Err(answer.relayed()),
        }
    }
}

/// A `PUT` or `DELETE` of a key, passed on to the root with the body it
/// came with (and its time to live), its condition (`If-Match`,
/// `If-None-Match`, checked by the root), and the id that makes a retry of
/// it harmless.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedWrite<'a> {
    pub method: &'static str,
    pub key: &'a str,
    pub body: &'a [u8],
    pub request_id: &'a str,
    pub condition: Option<&'a Condition>,
    /// The root shard the key is sent to as of (see [`SHARD_HEADER`]).
    pub shard: Option<u32>,
}

impl ForwardedWrite<'_> {
    pub fn request(&self) -> Request {
        let mut headers = match self.request_id {
            "" => Vec::new(),
            id => vec![(REQUEST_ID_HEADER, id.to_string())],
        };
        if let Some(condition) = self.condition {
            headers.extend(condition.headers());
        }
        if let Some(shard) = self.shard {
            headers.push((SHARD_HEADER, shard.to_string()));
        }
        Request {
            method: self.method,
            path: format!("{STORE_PREFIX}{}", input::percent_encode(self.key)),
            headers,
            body: Some(self.body.to_vec()).filter(|b| !b.is_empty()),
        }
    }
}

/// A value as the primary answers a standby's `GET /store/{key}`, passed
/// on as a client sent it: the client's body `{"key", "value", "ttl"?}`
/// with the version in its ETag.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreValue {
    /// The value as compact JSON.
    pub value: Vec<u8>,
    /// The version of the write that produced it.
    pub version: u64,
    /// When it expires: the milliseconds it had left when answered.
    pub ttl_ms: Option<u64>,
}

impl StoreValue {
    /// The `GET` of `key`, as a client sends it, to the primary of `shard`.
    pub fn request(key: &str, shard: Option<u32>) -> ForwardedWrite<'_> {
        ForwardedWrite {
            method: "GET",
            key,
            body: b"",
            request_id: "",
            condition: None,
            shard,
        }
    }

    /// Reads `from`'s answer: `None` when the key exists nowhere (404);
    /// other statuses are relayed as they came. A 200 without a single
    /// version in its ETag, or whose body is not a value's, is `from`'s
    /// fault.
    pub fn decode(answer: Answer, from: &Peer) -> Result<Option<StoreValue>, UpstreamError> {
        match answer.status {
            200 => {}
            404 => return Ok(None),
            _ => return Err(answer.relayed()),
        }
        let unusable =
            |what: String| UpstreamError::invalid(from, format!("its answer had {what}"));
        let version = answer
            .header(ETAG_HEADER)
            .and_then(|tag| match Tags::parse(tag) {
                Tags::Versions(v) if v.len() == 1 => Some(v[0]),
                _ => None,
            })
            .ok_or_else(|| unusable("no ETag".into()))?;
        #[derive(Deserialize)]
        struct Body {
            value: serde_json::Value,
            ttl: Option<serde_json::Value>,
        }
        let body: Body = serde_json::from_slice(&answer.body)
            .map_err(|e| unusable(format!("a body that is not a value's: {e}")))?;
        let ttl_ms = match body.ttl {
            None => None,
            Some(ttl) => {
                let seconds = ttl.as_f64().ok_or_else(|| unusable("a bad ttl".into()))?;
                Some((seconds * 1000.0) as u64)
            }
        };
        Ok(Some(StoreValue {
            value: serde_json::to_vec(&body.value).expect("JSON serializes"),
            version,
            ttl_ms,
        }))
    }
}

/// A page of `GET /keys`: keys in byte order, and the key to ask for the
/// next page after (`None` when no more follow).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysPage {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

/// `GET /keys` with the listing's parameters, asked of the root.
pub fn keys_request(listing: &Listing, shard: Option<u32>) -> Request {
    let mut path = format!("{KEYS_PATH}?limit={}", listing.limit);
    for (name, value) in [("prefix", &listing.prefix), ("after", &listing.after)] {
        if !value.is_empty() {
            path.push_str(&format!("&{name}={}", input::percent_encode(value)));
        }
    }
    let mut request = Request::get(path);
    if let Some(shard) = shard {
        request.headers.push((SHARD_HEADER, shard.to_string()));
    }
    request
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::node::failed::Error;

    /// Headers as a test writes them.
    pub(crate) struct Map(pub(crate) Vec<(&'static str, String)>);

    impl Headers for Map {
        fn header(&self, name: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn peer() -> Peer {
        Peer {
            name: "NODE-2".into(),
            address: "127.0.0.1:5002".into(),
        }
    }

    #[test]
    fn a_fill_request_round_trips_through_its_path_and_headers() {
        let asked = FillRequest {
            key: "a b?ü".into(),
            child: ChildId {
                slot: 3,
                name: "NODE-4".into(),
                address: "127.0.0.1:5004".into(),
            },
        };
        let request = asked.request();
        assert_eq!(request.path, "/internal/fill/a%20b%3F%C3%BC");
        let segment = request.path.strip_prefix(FILL_PREFIX).unwrap();
        let key = input::decode_key(segment).unwrap();
        let read = FillRequest::decode(key, &Map(request.headers)).unwrap();
        assert_eq!(read, asked);
    }

    #[test]
    fn a_fill_request_without_a_slot_is_refused() {
        let e = FillRequest::decode("k".into(), &Map(vec![])).unwrap_err();
        assert_eq!(Error::from(e).status(), 400);
    }

    #[test]
    fn fill_answers_round_trip() {
        for fill in [
            Fill::Found {
                value: b"[1,2]".to_vec(),
                version: 42,
                ttl_ms: None,
                cacheable: true,
                fenced: false,
            },
            Fill::Found {
                value: b"null".to_vec(),
                version: 7,
                ttl_ms: Some(2500),
                cacheable: false,
                fenced: true,
            },
            Fill::Found {
                value: b"1".to_vec(),
                version: 8,
                ttl_ms: Some(0),
                cacheable: true,
                fenced: false,
            },
            Fill::Absent { fenced: true },
            Fill::Absent { fenced: false },
        ] {
            let answer = fill.clone().answer(|| b"{}".to_vec());
            assert_eq!(Fill::decode(answer, &peer()).unwrap(), fill);
        }
    }

    #[test]
    fn a_fill_answer_without_a_version_is_the_parents_fault() {
        let e = Fill::decode(Answer::new(200, b"1".to_vec()), &peer()).unwrap_err();
        let e = Error::from(e);
        assert_eq!(e.status(), 502);
        assert!(e.to_string().contains("NODE-2 at 127.0.0.1:5002"), "{e}");
    }

    #[test]
    fn a_fill_answer_with_an_unreadable_time_left_is_the_parents_fault() {
        let answer = Answer::new(200, b"1".to_vec())
            .with_header(VERSION_HEADER, "3")
            .with_header(TTL_HEADER, "soon");
        let e = Error::from(Fill::decode(answer, &peer()).unwrap_err());
        assert_eq!(e.status(), 502);
        assert!(e.to_string().contains(TTL_HEADER), "{e}");
    }

    #[test]
    fn a_fill_answer_that_does_not_parse_is_the_parents_fault() {
        let found = |body: &[u8], headers: &[(&str, &str)]| {
            let mut a = Answer::new(200, body.to_vec());
            for (n, v) in headers {
                a = a.with_header(n, *v);
            }
            Fill::decode(a, &peer())
        };
        let good = [(VERSION_HEADER, "7"), (CACHEABLE_HEADER, "1")];
        assert!(found(b"{\"a\":1}", &good).is_ok());
        for (body, headers) in [
            (&b"{not json"[..], &good[..]),
            (b"", &good[..]),
            (b"1", &[(VERSION_HEADER, "x7"), (CACHEABLE_HEADER, "1")][..]),
            (
                b"1",
                &[(VERSION_HEADER, "7"), (CACHEABLE_HEADER, "yes")][..],
            ),
            (b"1", &[(VERSION_HEADER, "7"), (FENCED_HEADER, "2")][..]),
        ] {
            let e = Error::from(found(body, headers).unwrap_err());
            assert_eq!(e.status(), 502, "{body:?} {headers:?}");
            assert!(e.to_string().contains("NODE-2 at 127.0.0.1:5002"), "{e}");
        }
    }

    #[test]
    fn other_fill_statuses_are_relayed() {
        let e = Fill::decode(Answer::new(504, b"{}".to_vec()), &peer()).unwrap_err();
        assert_eq!(Error::from(e).status(), 504);
    }

    #[test]
    fn messages_round_trip() {
        let m = Invalidate {
            key: "k".into(),
            version: 9,
        };
        let request = m.request();
        assert_eq!(
            (request.method, request.path.as_str()),
            ("POST", INVALIDATE_PATH)
        );
        assert_eq!(Invalidate::decode(&request.body.unwrap()).unwrap(), m);
        let reply = Answer::json(&Invalidated {
            key: "k".into(),
            dropped: true,
        });
        let read: Invalidated = decode_reply(reply, &peer()).unwrap().unwrap();
        assert!(read.dropped);
        assert_eq!(Flush::decode(b"").unwrap(), Flush::default());
        let some = Flush {
            slots: Some(vec![[0, 5460]]),
        };
        let text = serde_json::to_vec(&some).unwrap();
        assert_eq!(text, br#"{"slots":[[0,5460]]}"#);
        assert_eq!(Flush::decode(&text).unwrap(), some);
        assert_eq!(Flush::decode(b"{}").unwrap(), Flush::default());
        assert!(Flush::decode(br#"{"slots":[[9,2]]}"#).is_err());
        assert!(Flush::decode(br#"{"slots":[[0,16384]]}"#).is_err());
        let misdirected = br#"{"error":"e","shard":2,"primary":"h:1"}"#;
        assert!(matches!(
            wrong_shard(misdirected),
            Some(UpstreamError::WrongShard { shard: 2, primary: Some(p), .. }) if p == "h:1"
        ));
        assert!(wrong_shard(br#"{"error":"not the root"}"#).is_none());
        let refused = Release::decode(b"{}").unwrap_err();
        assert_eq!(Error::from(refused).status(), 400);
    }

    #[test]
    fn an_invalidation_answers_done_or_still_working() {
        for progress in [
            Progress::Done(Invalidated {
                key: "k".into(),
                dropped: true,
            }),
            Progress::Working { key: "k".into() },
        ] {
            assert_eq!(
                Progress::decode(progress.answer(), &peer()).unwrap(),
                progress
            );
        }
        let failed = Progress::decode(Answer::new(504, b"{}".to_vec()), &peer());
        assert_eq!(Error::from(failed.unwrap_err()).status(), 504);
    }

    #[test]
    fn a_reply_that_is_not_understood_names_the_peer() {
        let e = decode_reply::<Joined>(Answer::new(200, b"{}".to_vec()), &peer()).unwrap_err();
        assert!(Error::from(e).to_string().contains("NODE-2"));
        let other = decode_reply::<Joined>(Answer::new(421, b"{}".to_vec()), &peer()).unwrap();
        assert_eq!(other.unwrap_err().status, 421);
    }

    #[test]
    fn a_value_read_at_the_primary_is_decoded_with_its_version_and_time_left() {
        let answer = Answer::new(200, br#"{"key":"k","value":{"a":[1]},"ttl":2.5}"#.to_vec())
            .with_header(ETAG_HEADER, "\"7\"");
        let read = StoreValue::decode(answer, &peer()).unwrap().unwrap();
        assert_eq!(read.value, br#"{"a":[1]}"#);
        assert_eq!((read.version, read.ttl_ms), (7, Some(2500)));
        let absent = StoreValue::decode(Answer::new(404, b"{}".to_vec()), &peer());
        assert_eq!(absent, Ok(None));
        let refused = StoreValue::decode(Answer::new(503, b"{}".to_vec()), &peer());
        assert_eq!(Error::from(refused.unwrap_err()).status(), 503);
        let request = StoreValue::request("a b", None);
        assert_eq!((request.method, request.key), ("GET", "a b"));
    }

    #[test]
    fn a_value_read_at_the_primary_without_its_version_is_the_primarys_fault() {
        for (body, etag) in [
            (&br#"{"key":"k","value":1}"#[..], None),
            (br#"{"key":"k","value":1}"#, Some("\"1\", \"2\"")),
            (br#"{"key":"k","value":1,"ttl":"soon"}"#, Some("\"1\"")),
            (b"not json", Some("\"1\"")),
        ] {
            let mut answer = Answer::new(200, body.to_vec());
            if let Some(etag) = etag {
                answer = answer.with_header(ETAG_HEADER, etag);
            }
            let e = Error::from(StoreValue::decode(answer, &peer()).unwrap_err());
            assert_eq!(e.status(), 502, "{body:?} {etag:?}");
            assert!(e.to_string().contains("NODE-2 at 127.0.0.1:5002"), "{e}");
        }
    }

    #[test]
    fn budgets_travel_in_a_header() {
        let d = Deadline::after(Duration::from_secs(2));
        let (name, value) = budget_header(d);
        let carried = budget(&Map(vec![(name, value)])).unwrap();
        assert!(carried > Duration::from_millis(1500) && carried < Duration::from_secs(2));
        assert_eq!(budget(&Map(vec![(BUDGET_HEADER, "junk".into())])), None);
    }

    #[test]
    fn forwarded_writes_keep_their_body() {
        let w = ForwardedWrite {
            method: "DELETE",
            key: "a?b",
            body: b"",
            request_id: "NODE-4-1",
            condition: None,
            shard: None,
        };
        let r = w.request();
        assert_eq!((r.path.as_str(), r.body), ("/store/a%3Fb", None));
        assert_eq!(r.headers, [(REQUEST_ID_HEADER, "NODE-4-1".to_string())]);
    }

    #[test]
    fn forwarded_writes_carry_their_condition_for_the_root_to_read_back() {
        let condition = Condition::parse(Some("\"7\""), Some("*")).unwrap();
        let w = ForwardedWrite {
            method: "PUT",
            key: "k",
            body: br#"{"value":1,"ttl":5}"#,
            request_id: "",
            condition: Some(&condition),
            shard: Some(2),
        };
        let r = w.request();
        let headers = Map(r.headers);
        let read = Condition::parse(headers.header("if-match"), headers.header("if-none-match"));
        assert_eq!(read, Some(condition));
        assert_eq!(meant_for_shard(&headers), Some(2));
        assert_eq!(r.body.as_deref(), Some(&br#"{"value":1,"ttl":5}"#[..]));
    }

    #[test]
    fn a_listing_asked_of_the_root_reads_back_as_it_was_asked() {
        let asked = Listing {
            prefix: "user: 1&".into(),
            after: "a+b".into(),
            limit: 7,
        };
        let r = keys_request(&asked, None);
        let (path, query) = r.path.split_once('?').unwrap();
        assert_eq!((r.method, path), ("GET", KEYS_PATH));
        assert_eq!(input::listing(query), Ok(asked));
        let first = keys_request(
            &Listing {
                prefix: String::new(),
                after: String::new(),
                limit: 1000,
            },
            None,
        );
        assert_eq!(first.path, "/keys?limit=1000");
    }

    #[test]
    fn answers_keep_the_protocols_headers_and_the_etag() {
        assert!(kept_header("X-Treecache-Version"));
        assert!(kept_header("x-treecache-ttl-ms"));
        assert!(kept_header("etag"));
        assert!(!kept_header("Content-Type"));
        assert!(!kept_header("x-treecache"));
    }
}
