//! What the node's policy refuses or fails at, in its own terms: which key,
//! which slot, which node. How a client is told (status and sentence) is
//! `http::api`'s failure table.

use crate::peer::UpstreamError;
use crate::precondition::Unmet;

/// Why the node did not do what a request asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// The key exists nowhere.
    NotFound { key: String },
    /// This node (`name`) has no slot yet.
    Joining { name: String },
    /// This node has no place in the tree yet, to judge a call from below.
    NotPlaced,
    /// A fill from `slot`, which is not below `name` (in slot `mine`).
    NotBelow {
        slot: usize,
        name: String,
        mine: usize,
    },
    /// A release notice from `slot`, which is not a child of slot `mine`.
    NotAChild { slot: usize, mine: usize },
    /// A standby of the root group asked for a fill.
    StandbyFill,
    /// `name` cannot vouch for its cache (no lease).
    Untrusted { name: String },
    /// `name` cannot vouch for its cache, and no node above answered.
    UntrustedAlone { name: String, above: UpstreamError },
    /// An invalidation sent to `name`, of the root group.
    InvalidateRoot { name: String },
    /// The node is stopping.
    Stopping,
    /// The node is stopping and takes no more writes.
    StoppingWrites,
    /// No thread could be started for an invalidation: why.
    NoThread(String),
    /// An invalidation's thread ended without an answer.
    InvalidationFailed,
    /// The tree could not be read from the root.
    NoTree,
    /// The condition of a write of `key` does not hold.
    Precondition { key: String, unmet: Unmet },
    /// The write of `key` could not be applied within its budget.
    NotAppliedInTime { key: String },
    /// The values of a `POST /mget` would take more than `max_mib` MiB.
    TooMuchAsked { max_mib: usize },
    /// A release notice arrived past its deadline.
    ReleaseLate,
    /// The fill a request waited for was abandoned.
    FillAbandoned,
    /// `name` is not in the root group (a replication request).
    NotInRootGroup { name: String },
    /// A join sent to `name`, which is not the root (`root` is).
    NotTheRoot { name: String, root: String },
    /// A join sent to a standby; the primary is at `primary`.
    JoinThePrimary { primary: String },
    /// The root group has no primary yet.
    NoPrimaryYet,
    /// A call from another node for `key`, which root shard `shard` owns,
    /// not this one; its primary is at `primary`, when known.
    WrongShard {
        key: String,
        shard: u32,
        primary: Option<String>,
    },
}
