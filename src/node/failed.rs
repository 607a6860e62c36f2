//! What a request can fail with: one variant per layer, each holding that
//! layer's own error, so that a layer says *what* went wrong and never how
//! a client is told. The statuses and sentences are made in one place, the
//! failure table of `http::api` (`http/api/failure.rs`), which is also where
//! these errors are displayed.
//!
//! The layers and their errors:
//! - `input` and `wire`: what the client or another node sent does not
//!   parse ([`Invalid`], [`Malformed`]);
//! - `auth`: the request did not pass ([`AuthError`]);
//! - `node`: the node's policy ([`NodeError`]);
//! - `root`: the root group ([`RootError`]);
//! - `store` and `wal`: the root's store and its log ([`StoreError`],
//!   [`WalError`]);
//! - `peer`: calls to other nodes ([`UpstreamError`]).

pub use super::error::NodeError;
pub use crate::auth::AuthError;
pub use crate::input::Invalid;
pub use crate::peer::UpstreamError;
pub use crate::root::RootError;
pub use crate::store::StoreError;
pub use crate::wal::WalError;
pub use crate::wire::Malformed;

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// What the client sent is not valid.
    Input(Invalid),
    /// A node-to-node request that does not parse.
    Malformed(Malformed),
    Auth(AuthError),
    /// No route has this path.
    NoResource {
        path: String,
    },
    /// The route does not take this method; `allow`: the ones it takes.
    MethodNotAllowed {
        allow: &'static str,
    },
    /// As many `POST /mget` answers are being made as may be at once.
    MgetsBusy,
    Node(NodeError),
    Root(RootError),
    Store(StoreError),
    Log(WalError),
    Upstream(UpstreamError),
}

impl From<crate::flight::FillError> for Error {
    fn from(e: crate::flight::FillError) -> Error {
        match e {
            crate::flight::FillError::Upstream(u) => Error::Upstream(u),
            crate::flight::FillError::Abandoned => Error::Node(NodeError::FillAbandoned),
        }
    }
}

impl Error {
    /// A key that exists nowhere.
    pub fn not_found(key: &str) -> Error {
        Error::Node(NodeError::NotFound {
            key: key.to_string(),
        })
    }
}

macro_rules! from_layer {
    ($($layer:ident => $variant:ident),* $(,)?) => {
        $(impl From<$layer> for Error {
            fn from(e: $layer) -> Error {
                Error::$variant(e)
            }
        })*
    };
}

from_layer! {
    Invalid => Input,
    Malformed => Malformed,
    AuthError => Auth,
    NodeError => Node,
    RootError => Root,
    StoreError => Store,
    WalError => Log,
    UpstreamError => Upstream,
}
