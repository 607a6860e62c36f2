//! A process's ZooKeeper session as a lease, and what a process learns from
//! ZooKeeper about sessions. Below the node, the root and the registry: the
//! registry implements [`Sessions`], the node reads its cache's lease through
//! it, and the root group acknowledges writes only under one.

/// This node's ZooKeeper session, as a lease on answering from its cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Counts this node's sessions: a new one gets a new number.
    pub generation: u64,
    /// The session was confirmed within 2/3 of its timeout: while this
    /// holds, the session has not ended, so no parent has given up on
    /// this node.
    pub valid: bool,
}

/// What the node learns from ZooKeeper about sessions: its own lease, and
/// whether another node's session has ended. `registry::Registry` is the
/// real implementation; the in-process tests have their own.
pub trait Sessions: Send + Sync {
    /// This node's lease, as of now.
    fn lease(&self) -> Lease;

    /// Whether the session of the node `name` has ended (its liveness
    /// znode is gone). An error when ZooKeeper cannot tell right now.
    fn ended(&self, name: &str) -> Result<bool, String>;

    /// The names of the nodes whose sessions are alive, as last seen (at
    /// most about a second old); `None` when not known.
    fn live(&self) -> Option<Vec<String>>;
}
