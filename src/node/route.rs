//! Which node a call goes to: the parent for fills and release notices, the
//! root for writes and the tree. When the one we know cannot be reached, its
//! address is looked up again (the parent's at the root, the root's in
//! ZooKeeper) and the call is tried once more at the new address.

use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::{Error, UpstreamError};
use crate::tree::Tree;
use crate::wire::{self, Answer, Fill, FillRequest, Join, Joined, NodesDoc, Peer};

use super::Node;

impl Node {
    /// Asks the parent for `key`.
    pub(super) fn fill_from_parent(
        &self,
        key: &str,
        deadline: Deadline,
    ) -> Result<Fill, UpstreamError> {
        let child = self.position.as_child().ok_or_else(not_joined)?;
        let request = FillRequest {
            key: key.to_string(),
            child,
        };
        self.to_parent(deadline, |parent| {
            self.links.up.fill(parent, &request, deadline)
        })
    }

    /// `GET /nodes` on a node that is not the root: the root's answer.
    pub fn nodes(&self, deadline: Deadline) -> Result<Answer, Error> {
        self.to_root(|root| self.links.up.nodes(root, deadline))
            .map_err(Error::from)
    }

    /// Asks the root for a slot: `Ok(Err(answer))` when the root refused.
    pub fn join_root(
        &self,
        join: &Join,
        deadline: Deadline,
    ) -> Result<Result<Joined, Answer>, UpstreamError> {
        self.to_root(|root| self.links.up.join(root, join, deadline))
    }

    /// Calls the parent; when it cannot be reached, asks the root where the
    /// parent is now and, if it moved, follows it there.
    pub(super) fn to_parent<T>(
        &self,
        deadline: Deadline,
        call: impl Fn(&Peer) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        let parent = self.position.parent().ok_or_else(not_joined)?;
        match call(&parent) {
            Err(UpstreamError::Unreachable { .. }) if deadline.remaining() > Duration::ZERO => {
                match self.locate_parent(deadline) {
                    Some(moved) if moved.address != parent.address => {
                        log::info!("{} moved to {}; following it", moved.name, moved.address);
                        self.position.parent_moved(moved.clone());
                        call(&moved)
                    }
                    _ => call(&parent),
                }
            }
            other => other,
        }
    }

    /// Calls the root; when it cannot be reached, looks its address up again.
    pub(super) fn to_root<T>(
        &self,
        call: impl Fn(&Peer) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        let root = self
            .position
            .root()
            .ok_or_else(|| UpstreamError::Unreachable {
                name: self.position.root_name().to_string(),
                address: "(unknown)".into(),
                detail: "its address is not known yet (not registered in ZooKeeper)".into(),
            })?;
        match call(&root) {
            Err(UpstreamError::Unreachable { .. }) => match (self.links.locate_root)() {
                Some(address) if address != root.address => {
                    log::info!("{} moved to {address}; following it", root.name);
                    self.position.set_root_address(address.clone());
                    call(&Peer {
                        name: root.name,
                        address,
                    })
                }
                _ => call(&root),
            },
            other => other,
        }
    }

    /// Where the root says this node's parent is now.
    fn locate_parent(&self, deadline: Deadline) -> Option<Peer> {
        let slot = self.position.place()?.slot;
        let answer = self.nodes(deadline).ok()?;
        let doc: NodesDoc = wire::decode_reply(answer, &self.position.root()?)
            .ok()?
            .ok()?;
        wire::peer_at(&doc, Tree::parent(slot)?)
    }
}

fn not_joined() -> UpstreamError {
    UpstreamError::Relayed {
        status: 503,
        body: Error::Unavailable("This node is still joining the tree.".into()).body(),
    }
}
