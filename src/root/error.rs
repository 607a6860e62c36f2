//! What the root group refuses or fails at, in its own terms. How a client
//! is told (status and sentence) is `http::api`'s failure table.

use super::membership::JoinError;
use crate::peer::UpstreamError;
use crate::store::StoreError;
use crate::wal::WalError;

/// Why the root group did not do what a request asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootError {
    /// This process is a standby of the root group, not its primary.
    Standby,
    /// The root cannot confirm its ZooKeeper session, so it answers nothing.
    Unconfirmed,
    /// The root cannot confirm its ZooKeeper session, so it acknowledges no write.
    NoLease,
    /// This process is not the primary of the root group.
    NotPrimary,
    /// The root group is not running yet.
    NotRunning,
    /// This process was the primary and is no longer.
    Deposed,
    /// The root's state in ZooKeeper names another primary.
    Superseded,
    /// ZooKeeper failed: how.
    ZooKeeper(String),
    /// The root's state is gone from ZooKeeper.
    StateGone,
    /// The root's state does not parse: why not.
    StateUnreadable(String),
    /// The root's state kept changing under every attempt to change it.
    StateContended,
    /// The standby at `address` refused a write from an older epoch.
    RefusedByStandby { address: String },
    /// A catch-up started by a process that is not the primary.
    CatchUpNotPrimary,
    /// A standby refused a catch-up with this answer.
    StandbyAnswered { status: u16, body: Vec<u8> },
    /// A write to the standby being caught up failed meanwhile.
    StandbyDropped,
    /// A replication request sent to the primary itself.
    IsPrimary,
    /// A catch-up's phase for a catch-up that is not under way.
    NoSuchCatchUp,
    /// A replicated record is damaged: how.
    DamagedRecord(String),
    /// A join whose address is not `host:port`.
    BadAddress(String),
    /// A join refused by the slot table.
    Join(JoinError),
    /// The root is still starting.
    Starting,
    /// The write of `key` failed with `cause` after standbys were sent it.
    MayHaveReplicated { key: String, cause: Box<RootError> },
    /// The write of `key` was logged here, then `cause` kept it from being
    /// acknowledged.
    NotAcknowledged { key: String, cause: Box<RootError> },
    /// The root failed where it should not have: how.
    Internal(String),
    /// The root's log failed.
    Log(WalError),
    /// The root's store did not take a write.
    Store(StoreError),
    /// A call to another member of the group failed.
    Upstream(UpstreamError),
}

/// What the layers below the root tell it, passed on as they said it.
macro_rules! passed_on {
    ($($layer:ty => $variant:ident),* $(,)?) => {
        $(impl From<$layer> for RootError {
            fn from(e: $layer) -> RootError {
                RootError::$variant(e)
            }
        })*
    };
}

passed_on! {
    WalError => Log,
    StoreError => Store,
    UpstreamError => Upstream,
}
