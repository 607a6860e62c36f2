//! The seams between the policy and the network: what a node asks of other
//! nodes, as two small traits. `http::client` implements them over HTTP;
//! the in-process tests implement them with nodes in the same process.
//!
//! Every call names the node it goes to: choosing it (the parent, the root,
//! a moved parent) is policy, and lives in `node::route`.

use crate::deadline::Deadline;
use crate::error::UpstreamError;
use crate::wire::{
    Answer, Fill, FillRequest, ForwardedWrite, Invalidate, Join, Joined, Peer, Release,
};

/// Calls toward the parent and the root.
pub trait Upstream: Send + Sync {
    /// Asks `parent` for a key this node missed.
    fn fill(
        &self,
        parent: &Peer,
        request: &FillRequest,
        deadline: Deadline,
    ) -> Result<Fill, UpstreamError>;

    /// Tells `parent` this node no longer holds some keys.
    fn release(
        &self,
        parent: &Peer,
        release: &Release,
        deadline: Deadline,
    ) -> Result<(), UpstreamError>;

    /// Passes a write on to `root`; its answer comes back whatever its status.
    fn forward(
        &self,
        root: &Peer,
        write: &ForwardedWrite<'_>,
        deadline: Deadline,
    ) -> Result<Answer, UpstreamError>;

    /// Asks `root` for the `/nodes` document; the answer comes back whatever its status.
    fn nodes(&self, root: &Peer, deadline: Deadline) -> Result<Answer, UpstreamError>;

    /// Asks `root` for a slot: `Ok(Err(answer))` when the root refused.
    fn join(
        &self,
        root: &Peer,
        join: &Join,
        deadline: Deadline,
    ) -> Result<Result<Joined, Answer>, UpstreamError>;
}

/// Calls toward the children.
pub trait Downstream: Send + Sync {
    /// Tells `child` to drop a key (and pass it on); waits for its acknowledgement.
    fn invalidate(
        &self,
        child: &Peer,
        invalidate: &Invalidate,
        deadline: Deadline,
    ) -> Result<(), UpstreamError>;

    /// Tells `child` to drop everything it caches (and pass it on).
    fn flush(&self, child: &Peer, deadline: Deadline) -> Result<(), UpstreamError>;
}

/// Looks the root's address up again (in ZooKeeper) after it could not be reached.
pub type RootLocator = Box<dyn Fn() -> Option<String> + Send + Sync>;
