//! The seams between the policy and the network: what a node asks of other
//! nodes, as two small traits. `http::client` implements them over HTTP;
//! the in-process tests implement them with nodes in the same process.
//!
//! Every call names the node it goes to: choosing it (the parent, an
//! ancestor around a dead parent, the root, a node that moved) is policy,
//! and lives in `node::route` and `node::invalidate`. Every call is bounded
//! by the deadline of the request it serves; calls that a dead or frozen
//! node must not hold up for long are also bounded by a hop timeout.

use std::time::Duration;

use crate::deadline::Deadline;
use crate::input::Listing;
use crate::peer::UpstreamError;
use crate::wire::{
    Answer, Fill, FillRequest, Flush, ForwardedWrite, Invalidate, Join, Joined, Peer, Progress,
    Release, Replicate, Replicated, StoreValue,
};

/// Calls toward the parent and the root.
pub trait Upstream: Send + Sync {
    /// Asks `parent` (or an ancestor) for a key this node missed, giving up
    /// after `hop`.
    fn fill(
        &self,
        parent: &Peer,
        request: &FillRequest,
        deadline: Deadline,
        hop: Duration,
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

    /// Reads `key` at `primary`, for a standby: `None` when it exists
    /// nowhere, another answer relayed as an error.
    fn read(
        &self,
        primary: &Peer,
        key: &str,
        shard: Option<u32>,
        deadline: Deadline,
    ) -> Result<Option<StoreValue>, UpstreamError> {
        let answer = self.forward(primary, &StoreValue::request(key, shard), deadline)?;
        StoreValue::decode(answer, primary)
    }

    /// Asks `root` for the `/nodes` document; the answer comes back whatever its status.
    fn nodes(&self, root: &Peer, deadline: Deadline) -> Result<Answer, UpstreamError>;

    /// Asks `root` for a page of `/keys` (with `shard`: a shard's primary
    /// for a page of its own keys); the answer comes back whatever its status.
    fn keys(
        &self,
        root: &Peer,
        listing: &Listing,
        shard: Option<u32>,
        deadline: Deadline,
    ) -> Result<Answer, UpstreamError>;

    /// Asks `root` for a slot: `Ok(Err(answer))` when the root refused.
    fn join(
        &self,
        root: &Peer,
        join: &Join,
        deadline: Deadline,
    ) -> Result<Result<Joined, Answer>, UpstreamError>;

    /// Whether `peer` answers `GET /` within `hop`.
    fn probe(&self, peer: &Peer, hop: Duration) -> bool;
}

/// Calls toward the children.
pub trait Downstream: Send + Sync {
    /// Tells `child` (or a descendant) to drop a key and pass it on; the
    /// call gives up after `hop`, and the child answers within it: done, or
    /// still working on it (then call again).
    fn invalidate(
        &self,
        child: &Peer,
        invalidate: &Invalidate,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Progress, UpstreamError>;

    /// Tells `child` to drop everything it caches (and pass it on).
    fn flush(&self, child: &Peer, flush: &Flush, deadline: Deadline) -> Result<(), UpstreamError>;

    /// Sends records to a standby of the root group (the primary's call);
    /// `Ok(Err(answer))` when the standby refused them.
    fn replicate(
        &self,
        standby: &Peer,
        message: &Replicate,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Result<Replicated, Answer>, UpstreamError>;
}

/// Looks the root's address up again (in ZooKeeper) after it could not be reached.
pub type RootLocator = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// The sessions seam lives below the node (the root group reads leases too).
pub use crate::lease::Sessions;
