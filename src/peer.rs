//! Another node, as this one calls it, and what can go wrong on the way:
//! the network layer's vocabulary, below both `wire` (which reads answers
//! into it) and `error` (which carries it to the client).

use serde::{Deserialize, Serialize};

/// Another node: its name and `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub address: String,
}

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
    /// There is no node to call yet: this node has not joined the tree.
    NotJoined,
    /// There is no node to call yet: the root group has no primary.
    NoPrimary,
    /// The node owns another root shard than the key's (421): the key's
    /// shard and its primary as that node knows them, and its body.
    WrongShard {
        shard: u32,
        primary: Option<String>,
        body: Vec<u8>,
    },
}

impl UpstreamError {
    /// `peer` answered something unusable: `detail` says what.
    pub fn invalid(peer: &Peer, detail: String) -> UpstreamError {
        UpstreamError::Invalid {
            name: peer.name.clone(),
            address: peer.address.clone(),
            detail,
        }
    }
}
