//! The one error type of the HTTP boundary, and the one place it becomes a status.

use std::fmt;

use crate::input::Invalid;

/// A failure talking to another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The node could not be reached, or broke the connection.
    Unreachable {
        name: String,
        address: String,
        detail: String,
    },
    /// The node did not answer within the time budget.
    TimedOut { name: String, address: String },
    /// The node answered something this node cannot use.
    Invalid {
        name: String,
        address: String,
        detail: String,
    },
    /// The node answered with an error of its own, relayed unchanged.
    Relayed { status: u16, body: Vec<u8> },
}

impl UpstreamError {
    /// `peer` answered something unusable: `detail` says what.
    pub fn invalid(peer: &crate::wire::Peer, detail: String) -> UpstreamError {
        UpstreamError::Invalid {
            name: peer.name.clone(),
            address: peer.address.clone(),
            detail,
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    BadRequest(String),
    NotFound(String),
    MethodNotAllowed {
        allow: &'static str,
    },
    /// Not authenticated (401): `challenge` is the `WWW-Authenticate` value.
    Unauthorized {
        message: String,
        challenge: &'static str,
    },
    /// Authenticated, but not allowed to do this (403).
    Forbidden(String),
    Conflict(String),
    /// A conditional write whose condition does not hold (412).
    PreconditionFailed(String),
    PayloadTooLarge(String),
    /// The node is not the root (421).
    NotRoot(String),
    /// The node cannot serve yet (503): joining, or loading the tree.
    Unavailable(String),
    /// The root's store, or its disk, is full (507).
    StoreFull(String),
    /// The node failed where it should not have (500).
    Internal(String),
    /// The request's time budget ran out here; nothing was changed (504).
    Expired(String),
    Upstream(UpstreamError),
}

impl Error {
    /// 404 for a key that exists nowhere.
    pub fn not_found(key: &str) -> Error {
        Error::NotFound(format!("The key {key:?} does not exist."))
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::Unauthorized { .. } => 401,
            Error::Forbidden(_) => 403,
            Error::Conflict(_) => 409,
            Error::PreconditionFailed(_) => 412,
            Error::PayloadTooLarge(_) => 413,
            Error::NotRoot(_) => 421,
            Error::Unavailable(_) => 503,
            Error::StoreFull(_) => 507,
            Error::Internal(_) => 500,
            Error::Expired(_) => 504,
            Error::Upstream(UpstreamError::Unreachable { .. }) => 502,
            Error::Upstream(UpstreamError::Invalid { .. }) => 502,
            Error::Upstream(UpstreamError::TimedOut { .. }) => 504,
            Error::Upstream(UpstreamError::Relayed { status, .. }) => *status,
        }
    }

    /// The JSON body `{"error": "..."}`, or a relayed body as it came.
    pub fn body(&self) -> Vec<u8> {
        if let Error::Upstream(UpstreamError::Relayed { body, .. }) = self {
            return body.clone();
        }
        serde_json::to_vec(&serde_json::json!({ "error": self.to_string() }))
            .expect("a JSON object serializes")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::PreconditionFailed(m)
            | Error::Forbidden(m)
            | Error::Unauthorized { message: m, .. }
            | Error::PayloadTooLarge(m)
            | Error::NotRoot(m)
            | Error::Unavailable(m)
            | Error::StoreFull(m)
            | Error::Internal(m)
            | Error::Expired(m) => f.write_str(m),
            Error::MethodNotAllowed { allow } => {
                write!(f, "Method not allowed here; allowed: {allow}.")
            }
            Error::Upstream(UpstreamError::Unreachable {
                name,
                address,
                detail,
            }) => write!(f, "{name} at {address} could not be reached: {detail}."),
            Error::Upstream(UpstreamError::Invalid {
                name,
                address,
                detail,
            }) => write!(
                f,
                "{name} at {address} answered what this node cannot use: {detail}."
            ),
            Error::Upstream(UpstreamError::TimedOut { name, address }) => {
                write!(f, "{name} at {address} did not answer in time.")
            }
            Error::Upstream(UpstreamError::Relayed { status, body }) => {
                write!(f, "{status} {}", String::from_utf8_lossy(body))
            }
        }
    }
}

impl From<Invalid> for Error {
    fn from(i: Invalid) -> Error {
        match i {
            Invalid::BadRequest(m) => Error::BadRequest(m),
            Invalid::TooLarge(m) => Error::PayloadTooLarge(m),
        }
    }
}

impl From<UpstreamError> for Error {
    fn from(e: UpstreamError) -> Error {
        Error::Upstream(e)
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
        assert_eq!(Error::StoreFull("full".into()).status(), 507);
    }
}
