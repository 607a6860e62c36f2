//! The failure table: every error a request can end with, as the status,
//! the sentence and the headers its client gets. This is the one place
//! where an error becomes what a client reads; the layers below say only
//! what went wrong (`node::failed`). A change of wording or status is a
//! change here.
//!
//! The body is `{"error": sentence}`, except for an error another node
//! answered, which is relayed as it came.

use std::fmt;

use crate::auth::tokens::NoToken;
use crate::auth::{AuthError, Refused, CLUSTER_CHALLENGE, VERSION, WINDOW};
use crate::node::failed::{Error, Invalid, Malformed, NodeError, RootError, StoreError, WalError};
use crate::peer::UpstreamError;
use crate::precondition::Unmet;
use crate::root::membership::{BadName, JoinError};
use crate::wire;

/// What a client is told of an error.
pub struct Failure {
    pub status: u16,
    /// The `{"error": ...}` sentence, or the body of an error relayed as it came.
    pub said: Said,
    /// `Allow` or `WWW-Authenticate`, when the status calls for one.
    pub header: Option<(&'static str, String)>,
}

impl Failure {
    /// The body: `{"error": sentence}`, or a relayed body as it came.
    pub fn body(self) -> Vec<u8> {
        match self.said {
            Said::Relayed(body) => body,
            Said::Sentence(sentence) => {
                serde_json::to_vec(&serde_json::json!({ "error": sentence }))
                    .expect("a JSON object serializes")
            }
        }
    }
}

/// The body of a [`Failure`].
pub enum Said {
    Sentence(String),
    Relayed(Vec<u8>),
}

/// The table: `e` as its client is told it.
pub fn failure(e: &Error) -> Failure {
    let header = match e {
        Error::MethodNotAllowed { allow } => Some(("Allow", allow.to_string())),
        Error::Auth(AuthError::Signature(_)) => {
            Some(("WWW-Authenticate", CLUSTER_CHALLENGE.to_string()))
        }
        Error::Auth(AuthError::Token(_)) => Some(("WWW-Authenticate", "Bearer".to_string())),
        _ => None,
    };
    let (status, sentence) = match e {
        Error::Input(Invalid::BadRequest(m)) => (400, m.clone()),
        Error::Input(Invalid::TooLarge(m)) => (413, m.clone()),
        Error::Malformed(m) => (400, malformed(m)),
        Error::Auth(a) => auth(a),
        Error::NoResource { path } => (404, format!("There is no resource at {path}.")),
        Error::MethodNotAllowed { allow } => {
            (405, format!("Method not allowed here; allowed: {allow}."))
        }
        Error::MgetsBusy => (
            503,
            "This node is making as many mget answers as it may at once; try again.".into(),
        ),
        Error::Node(NodeError::WrongShard {
            key,
            shard,
            primary,
        }) => return misdirected(key, *shard, primary.as_deref()),
        Error::Upstream(UpstreamError::WrongShard { body, .. }) => {
            return Failure {
                status: 421,
                said: Said::Relayed(body.clone()),
                header,
            }
        }
        Error::Node(n) => node(n),
        // An answer of another member the root passes on goes as it came.
        Error::Root(RootError::Upstream(u)) => return failure(&Error::Upstream(u.clone())),
        Error::Root(r) => root(r),
        Error::Store(s) => store(s),
        Error::Log(w) => log(w),
        Error::Upstream(UpstreamError::Relayed { status, body }) => {
            return Failure {
                status: *status,
                said: Said::Relayed(body.clone()),
                header,
            }
        }
        Error::Upstream(u) => upstream(u),
    };
    Failure {
        status,
        said: Said::Sentence(sentence),
        header,
    }
}

/// 421 for a key of another root shard: `{"error", "shard", "primary"}`.
fn misdirected(key: &str, shard: u32, primary: Option<&str>) -> Failure {
    let sentence = format!(
        "The key {key:?} belongs to root shard {shard}, not this one; send it to that \
         shard's primary."
    );
    let body = serde_json::json!({ "error": sentence, "shard": shard, "primary": primary });
    Failure {
        status: 421,
        said: Said::Relayed(serde_json::to_vec(&body).expect("JSON serializes")),
        header: None,
    }
}

fn malformed(m: &Malformed) -> String {
    match m {
        Malformed::Body(why) => {
            format!("The request body is not what this endpoint takes: {why}.")
        }
        Malformed::FillHeader(name) => format!("A fill needs the {name} header."),
        Malformed::Epoch => "A replication request needs its epoch.".into(),
        Malformed::Phase => "A replication request needs its phase.".into(),
    }
}

fn auth(a: &AuthError) -> (u16, String) {
    match a {
        AuthError::Signature(refused) => (401, signature(refused)),
        AuthError::Token(why) => (401, token(*why).to_string()),
        AuthError::ReadOnly => (403, "This token may read, not write.".into()),
        AuthError::LiveElsewhere { name, session } => (
            409,
            format!(
                "{name} is live in another ZooKeeper session (0x{session}): another process \
                 with this id runs, or the session of an earlier one has not ended yet."
            ),
        ),
    }
}

fn signature(refused: &Refused) -> String {
    match refused {
        Refused::Missing => format!(
            "This endpoint takes node-to-node calls only, signed with the cluster key ({} \
             header missing).",
            wire::AUTH_HEADER
        ),
        Refused::Malformed => format!(
            "The {} header is not understood (this node takes `{VERSION} t=<ms> \
             to=<host:port> mac=<hex>`).",
            wire::AUTH_HEADER
        ),
        Refused::OutOfWindow(d) => format!(
            "The signed request's time is {} s away from this node's clock (at most {} s are \
             accepted).",
            d.as_secs(),
            WINDOW.as_secs()
        ),
        Refused::BadMac => "The request's signature is not valid.".into(),
        Refused::Replayed => "This signed request was already received once.".into(),
        Refused::ForAnother { to, here } => format!(
            "This call is signed for {to}, not for this node ({here}): a signed call is taken \
             only by the node it was sent to."
        ),
    }
}

fn token(why: NoToken) -> &'static str {
    match why {
        NoToken::Missing => "This endpoint needs a token: Authorization: Bearer TOKEN.",
        NoToken::NotBearer => "The Authorization header is not `Bearer TOKEN`.",
        NoToken::Unknown => "The token is not valid here.",
    }
}

fn node(n: &NodeError) -> (u16, String) {
    let untrusted = |name: &str| {
        format!("{name} cannot confirm its ZooKeeper session, so it does not answer from its cache")
    };
    match n {
        NodeError::NotFound { key } => (404, format!("The key {key:?} does not exist.")),
        NodeError::Joining { name } => (
            503,
            format!("{name} is still joining the tree; try again shortly."),
        ),
        NodeError::NotPlaced => (503, "This node is still joining the tree.".into()),
        NodeError::NotBelow { slot, name, mine } => (
            409,
            format!("Slot {slot} is not below {name} (slot {mine})."),
        ),
        NodeError::NotAChild { slot, mine } => {
            (409, format!("Slot {slot} is not a child of slot {mine}."))
        }
        NodeError::StandbyFill => (
            503,
            "This process is a standby of the root group: fills go to its primary.".into(),
        ),
        NodeError::Untrusted { name } => (503, format!("{}.", untrusted(name))),
        NodeError::UntrustedAlone { name, above } => (
            503,
            format!(
                "{}, and no node above it answered: {}",
                untrusted(name),
                Error::Upstream(above.clone())
            ),
        ),
        NodeError::InvalidateRoot { name } => (
            409,
            format!("{name} is of the root group: an invalidation never removes the primary copy."),
        ),
        NodeError::Stopping => (503, "This node is stopping.".into()),
        NodeError::StoppingWrites => (
            503,
            "This node is stopping and takes no more writes.".into(),
        ),
        NodeError::NoThread(why) => (
            500,
            format!("cannot start a thread for an invalidation: {why}"),
        ),
        NodeError::InvalidationFailed => (500, "an invalidation failed unexpectedly".into()),
        NodeError::NoTree => (503, "The tree could not be read from the root.".into()),
        NodeError::Precondition { key, unmet } => (412, precondition(key, unmet)),
        NodeError::NotAppliedInTime { key } => (
            504,
            format!(
                "The write of {key:?} could not be applied within its time budget; it was not \
                 applied."
            ),
        ),
        NodeError::TooMuchAsked { max_mib } => (
            413,
            format!(
                "The values asked for take more than {max_mib} MiB; ask for fewer keys at once."
            ),
        ),
        NodeError::ReleaseLate => (
            504,
            "The release notice arrived too late and was not (wholly) applied.".into(),
        ),
        NodeError::FillAbandoned => (
            503,
            "The fill this request was waiting for was abandoned.".into(),
        ),
        NodeError::NotInRootGroup { name } => (421, format!("{name} is not in the root group.")),
        NodeError::NotTheRoot { name, root } => {
            (421, format!("{name} is not the root; join {root}."))
        }
        NodeError::JoinThePrimary { primary } => (
            421,
            format!("This process is a standby of the root group; join the primary at {primary}."),
        ),
        NodeError::NoPrimaryYet => (503, no_primary_yet()),
        NodeError::WrongShard { .. } => unreachable!("answered with its fields in `failure`"),
    }
}

fn precondition(key: &str, unmet: &Unmet) -> String {
    let now = match unmet.current {
        Some(v) => format!("its version is {v}"),
        None => "it does not exist".to_string(),
    };
    let verb = match unmet.matched {
        true => "matches",
        false => "does not match",
    };
    format!(
        "The key {key:?} {verb} {}: {now}; nothing was changed.",
        unmet.condition
    )
}

/// A write that failed with `cause` after `what` happened to it.
fn store(s: &StoreError) -> (u16, String) {
    match s {
        StoreError::Full => (
            507,
            "The root's store is full (MAX_STORE_BYTES); the value was not stored.".into(),
        ),
    }
}

fn uncertain(cause: &RootError, key: &str, what: &str) -> String {
    let cause = Error::Root(cause.clone());
    format!("{cause} The write of \"{key}\" {what}: it may or may not take effect.")
}

fn no_primary_yet() -> String {
    "The root group has no primary yet; try again shortly.".into()
}

fn root(r: &RootError) -> (u16, String) {
    let plain = |status: u16, sentence: &str| (status, sentence.to_string());
    match r {
        RootError::Standby => plain(
            503,
            "This process is a standby of the root group, not its primary.",
        ),
        RootError::Unconfirmed => plain(
            503,
            "The root cannot confirm its ZooKeeper session, so it does not answer: another \
             member of the root group may have taken over.",
        ),
        RootError::NoLease => plain(
            503,
            "The root cannot confirm its ZooKeeper session, so it acknowledges no write; try \
             again shortly.",
        ),
        RootError::NotPrimary => plain(503, "This process is not the primary of the root group."),
        RootError::NotRunning => plain(503, "The root group is not running yet."),
        RootError::Deposed => plain(503, "This process is no longer the primary."),
        RootError::Superseded => plain(
            503,
            "This process is no longer the primary of the root group.",
        ),
        RootError::ZooKeeper(e) => (503, format!("ZooKeeper: {e}")),
        RootError::StateGone => plain(503, "The root's state is gone from ZooKeeper."),
        RootError::StateUnreadable(e) => (500, format!("the root's state does not parse: {e}")),
        RootError::StateContended => plain(503, "The root's state keeps changing."),
        RootError::RefusedByStandby { address } => (
            503,
            format!("Standby {address} refused the write: this process is no longer the primary."),
        ),
        RootError::CatchUpNotPrimary => plain(503, "not the primary"),
        RootError::StandbyAnswered { status, body } => (
            503,
            format!("it answered {status} {}", String::from_utf8_lossy(body)),
        ),
        RootError::StandbyDropped => plain(503, "a write to it failed meanwhile"),
        RootError::IsPrimary => plain(409, "This process is the primary of the root group."),
        RootError::NoSuchCatchUp => plain(409, "No such catch-up is under way here."),
        RootError::DamagedRecord(d) => (400, format!("a record is damaged: {d}")),
        RootError::BadAddress(a) => (400, format!("The address {a:?} is not host:port.")),
        RootError::Join(JoinError::BadName { name, why }) => (400, bad_name(name, why)),
        RootError::Join(JoinError::IsRoot { name }) => (
            409,
            format!("{name} is the root of this tree and cannot join it."),
        ),
        RootError::Starting => plain(
            503,
            "The root is still starting (rebuilding the tree from ZooKeeper and flushing the \
             caches below it); try again shortly.",
        ),
        RootError::MayHaveReplicated { key, cause } => {
            (503, uncertain(cause, key, "may have reached a standby"))
        }
        RootError::NotAcknowledged { key, cause } => (
            503,
            uncertain(cause, key, "was logged here but not acknowledged"),
        ),
        RootError::Internal(e) => (500, e.clone()),
        // What the root passes on from the layers below it is told as
        // those layers' own.
        RootError::Log(w) => log(w),
        RootError::Store(s) => store(s),
        RootError::Upstream(u) => upstream(u),
    }
}

fn bad_name(name: &str, why: &BadName) -> String {
    match why {
        BadName::NotANodeName => format!("{name:?} is not a node name such as NODE-4."),
        BadName::Outside { capacity } => {
            format!("{name} is outside the tree: ids run from 1 to {capacity}.")
        }
        BadName::NoFreeSlot => format!("The tree has no free slot for {name}."),
    }
}

fn log(w: &WalError) -> (u16, String) {
    match w {
        WalError::DiskFull(m) => (
            507,
            format!("The root's disk is full ({m}); the write was not applied."),
        ),
        WalError::Io(m) => (
            500,
            format!("The root could not write its log ({m}); the write was not applied."),
        ),
        WalError::Poisoned(m) => (
            503,
            format!("The root takes no writes until it is restarted: {m}."),
        ),
        WalError::Closed => (503, "The root is stopping.".into()),
    }
}

fn upstream(u: &UpstreamError) -> (u16, String) {
    match u {
        UpstreamError::Unreachable {
            name,
            address,
            detail,
        } => (
            502,
            format!("{name} at {address} could not be reached: {detail}."),
        ),
        UpstreamError::Invalid {
            name,
            address,
            detail,
        } => (
            502,
            format!("{name} at {address} answered what this node cannot use: {detail}."),
        ),
        UpstreamError::TimedOut { name, address } => {
            (504, format!("{name} at {address} did not answer in time."))
        }
        UpstreamError::Relayed { status, body } => (
            *status,
            format!("{status} {}", String::from_utf8_lossy(body)),
        ),
        UpstreamError::NotJoined => (503, "This node is still joining the tree.".into()),
        UpstreamError::NoPrimary => (503, no_primary_yet()),
        UpstreamError::WrongShard { shard, .. } => (
            421,
            format!("The key belongs to root shard {shard}, which the node asked does not own."),
        ),
    }
}

impl Error {
    /// The status its client gets (see [`failure`]), for the tests.
    #[cfg(test)]
    pub fn status(&self) -> u16 {
        failure(self).status
    }

    /// The body its client gets: `{"error": "..."}`, or a relayed body as it came.
    pub fn body(&self) -> Vec<u8> {
        failure(self).body()
    }
}

/// The sentence its client reads (a relayed error: its status and body).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Error::Upstream(u @ UpstreamError::Relayed { .. }) = self {
            return f.write_str(&upstream(u).1);
        }
        match failure(self).said {
            Said::Sentence(s) => f.write_str(&s),
            Said::Relayed(body) => f.write_str(&String::from_utf8_lossy(&body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let e = Error::Upstream(UpstreamError::Unreachable {
            name: "NODE-2".into(),
            address: "127.0.0.1:5002".into(),
            detail: "connection refused".into(),
        });
        assert_eq!(e.status(), 502);
        let body: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("NODE-2 at 127.0.0.1:5002"));

        let relayed = Error::Upstream(UpstreamError::Relayed {
            status: 504,
            body: b"{\"error\":\"x\"}".to_vec(),
        });
        assert_eq!(relayed.status(), 504);
        assert_eq!(relayed.body(), b"{\"error\":\"x\"}");
        assert_eq!(Error::Store(StoreError::Full).status(), 507);
    }

    #[test]
    fn a_refusal_carries_the_header_its_status_calls_for() {
        let refused = failure(&Error::MethodNotAllowed { allow: "GET" });
        assert_eq!(refused.status, 405);
        assert_eq!(refused.header, Some(("Allow", "GET".to_string())));
        let unsigned = failure(&Error::Auth(AuthError::Signature(Refused::BadMac)));
        assert_eq!(unsigned.status, 401);
        assert_eq!(
            unsigned.header,
            Some(("WWW-Authenticate", CLUSTER_CHALLENGE.to_string()))
        );
        let no_token = failure(&Error::Auth(AuthError::Token(NoToken::Missing)));
        assert_eq!(
            no_token.header,
            Some(("WWW-Authenticate", "Bearer".to_string()))
        );
        assert_eq!(failure(&Error::not_found("k")).header, None);
    }

    #[test]
    fn an_uncertain_write_says_why_and_what_may_have_happened() {
        let e = Error::Root(RootError::NotAcknowledged {
            key: "k".into(),
            cause: Box::new(RootError::NoLease),
        });
        assert_eq!(e.status(), 503);
        assert_eq!(
            e.to_string(),
            "The root cannot confirm its ZooKeeper session, so it acknowledges no write; try \
             again shortly. The write of \"k\" was logged here but not acknowledged: it may \
             or may not take effect."
        );
    }

    #[test]
    fn an_unmet_condition_names_the_key_its_header_and_its_version() {
        let e = Error::Node(NodeError::Precondition {
            key: "k".into(),
            unmet: Unmet {
                condition: "If-Match: \"5\"".into(),
                matched: false,
                current: None,
            },
        });
        assert_eq!(e.status(), 412);
        assert_eq!(
            e.to_string(),
            "The key \"k\" does not match If-Match: \"5\": it does not exist; nothing was \
             changed."
        );
    }
}
