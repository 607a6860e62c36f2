//! Which node a call goes to.
//!
//! - Fills go to the parent. When the parent refuses the connection or does
//!   not answer within the hop timeout, the fill goes on to the nearest
//!   ancestor that answers, up to the root, and the parent is skipped from
//!   then on until a probe finds it answering again. An ancestor that is not
//!   the parent answers without recording this node as a holder, so what
//!   comes back that way is returned but not cached (and requests that
//!   joined the fill fill again): the ancestor's directory could not reach
//!   this node with the next invalidation.
//! - A parent that rejoined from another address is followed there.
//! - Writes and tree queries go to the root; when it cannot be reached, its
//!   address is looked up again (in ZooKeeper).
//! - With root shards, the root's children fill a key of a shard other than
//!   0 from that shard's primary, and every node sends a write of such a key
//!   there (`owners`); a node reading around its dead parent up to slot 0
//!   reads the key's shard's primary.
//!
//! The ancestors' addresses come from the root's `/nodes` document, kept
//! for a moment and fetched again when a parent fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::node::failed::Error;
use crate::peer::UpstreamError;
use crate::tree::Tree;
use crate::wire::{self, Answer, Fill, FillRequest, Join, Joined, NodesDoc, Peer};

use super::Node;

/// How long a fetched `/nodes` document is used without fetching it again.
const TREE_FRESH: Duration = Duration::from_secs(2);
/// How often a skipped parent is probed.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// What routing remembers between calls.
#[derive(Default)]
pub(super) struct Routes {
    /// The root's `/nodes` document and when it was fetched.
    tree: Mutex<Option<(Instant, NodesDoc)>>,
    /// The parent address being skipped, if any.
    skipped: Mutex<Option<String>>,
    probing: AtomicBool,
}

impl Node {
    /// Asks the parent for `key`, or around it (see the module
    /// documentation). Each call gives up after `hop`.
    pub(super) fn fill_from_above(
        &self,
        key: &str,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Fill, UpstreamError> {
        let child = self.position.as_child().ok_or_else(not_joined)?;
        let slot = child.slot;
        let request = FillRequest {
            key: key.to_string(),
            child,
        };
        let shard = self.shard_of(key);
        if shard != 0 && self.position.place().is_some_and(|p| p.depth == 2) {
            // The key's shard's primary is this node's parent for the key.
            return self.to_shard(shard, |primary| {
                self.links.up.fill(primary, &request, deadline, hop)
            });
        }
        let parent = self.position.parent().ok_or_else(not_joined)?;
        let mut failure = None;
        if !self.skipping(&parent) {
            match self.links.up.fill(&parent, &request, deadline, hop) {
                Err(e @ (UpstreamError::Unreachable { .. } | UpstreamError::TimedOut { .. })) => {
                    self.skip_parent(&parent);
                    failure = Some(e);
                }
                answered => return answered,
            }
        }
        // Just failed: fetch the tree again (the parent may have moved);
        // skipped for a while: the recent one will do.
        let doc = match failure {
            Some(_) => self.tree_document_fresh(deadline),
            None => self.tree_document(deadline),
        };
        let Some(doc) = doc else {
            return Err(failure.unwrap_or_else(|| unreachable_peer(&parent, "it is being skipped")));
        };
        let parent_slot = Tree::parent(slot).expect("a non-root node has a parent");
        if let Some(moved) =
            wire::peer_at(&doc, parent_slot).filter(|p| p.address != parent.address)
        {
            log::info!("{} moved to {}; following it", moved.name, moved.address);
            self.position.parent_moved(moved.clone());
            self.unskip();
            match self.links.up.fill(&moved, &request, deadline, hop) {
                Err(e @ (UpstreamError::Unreachable { .. } | UpstreamError::TimedOut { .. })) => {
                    self.skip_parent(&moved);
                    failure = Some(e);
                }
                answered => return answered,
            }
        }
        // Around the parent: the nearest ancestor that answers.
        let mut above = Tree::parent(parent_slot);
        while let Some(s) = above {
            let ancestor = match s {
                0 if shard != 0 => self.shard_primary(shard, false),
                0 => self.position.root(),
                s => wire::peer_at(&doc, s),
            };
            if let Some(ancestor) = ancestor {
                match self.links.up.fill(&ancestor, &request, deadline, hop) {
                    Err(
                        e @ (UpstreamError::Unreachable { .. } | UpstreamError::TimedOut { .. }),
                    ) => {
                        failure = Some(e);
                    }
                    Ok(fill) => return Ok(not_cacheable(fill)),
                    Err(e) => return Err(e),
                }
            }
            above = Tree::parent(s);
        }
        Err(failure.unwrap_or_else(|| unreachable_peer(&parent, "no node above answers")))
    }

    /// Whether fills skip `parent` (it failed, and no probe has found it
    /// answering since).
    fn skipping(&self, parent: &Peer) -> bool {
        self.routes.skipped.lock().unwrap().as_deref() == Some(parent.address.as_str())
    }

    fn unskip(&self) {
        *self.routes.skipped.lock().unwrap() = None;
    }

    /// Skips `parent` until a probe finds it answering again; the root is
    /// never skipped: nothing is above it.
    fn skip_parent(&self, parent: &Peer) {
        if self.position.place().is_some_and(|p| p.depth <= 2) {
            return;
        }
        *self.routes.skipped.lock().unwrap() = Some(parent.address.clone());
        if self.routes.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        log::warn!(
            "{} at {} does not answer; reading around it until it does",
            parent.name,
            parent.address
        );
        let Some(node) = self.me.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("probe-parent".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(PROBE_EVERY);
                    let skipped = node.routes.skipped.lock().unwrap().clone();
                    let Some(address) = skipped else { break };
                    let Some(parent) = node.position.parent() else {
                        break;
                    };
                    if parent.address != address
                        || node.links.up.probe(&parent, node.config.hop_timeout)
                    {
                        log::info!("{} answers again; reading through it", parent.name);
                        node.unskip();
                        break;
                    }
                }
                node.routes.probing.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.routes.probing.store(false, Ordering::SeqCst);
            self.unskip();
        }
    }

    /// The root's `/nodes` document, fetched again if it is not fresh.
    pub(super) fn tree_document(&self, deadline: Deadline) -> Option<NodesDoc> {
        if let Some(doc) = self.nodes_here() {
            return Some(doc);
        }
        {
            let cached = self.routes.tree.lock().unwrap();
            if let Some((at, doc)) = cached.as_ref() {
                if at.elapsed() < TREE_FRESH {
                    return Some(doc.clone());
                }
            }
        }
        self.tree_document_fresh(deadline)
    }

    /// The root's `/nodes` document, fetched now (or the last one, if the
    /// root cannot be asked).
    fn tree_document_fresh(&self, deadline: Deadline) -> Option<NodesDoc> {
        if let Some(doc) = self.nodes_here() {
            return Some(doc);
        }
        let fetched = self.nodes(deadline).ok().and_then(|answer| {
            let root = self.position.root()?;
            wire::decode_reply::<NodesDoc>(answer, &root).ok()?.ok()
        });
        let mut cached = self.routes.tree.lock().unwrap();
        match fetched {
            Some(doc) => {
                *cached = Some((Instant::now(), doc.clone()));
                Some(doc)
            }
            None => cached.as_ref().map(|(_, doc)| doc.clone()),
        }
    }

    /// `GET /nodes` on a node that is not the root: the root's answer (the
    /// primary of shard 0, which keeps the tree).
    pub fn nodes(&self, deadline: Deadline) -> Result<Answer, Error> {
        self.to_shard(0, |root| self.links.up.nodes(root, deadline))
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

    /// Calls the parent for upkeep (release notices); when it cannot be
    /// reached, asks the root where the parent is now and, if it moved,
    /// follows it there.
    pub(super) fn to_parent<T>(
        &self,
        deadline: Deadline,
        call: impl Fn(&Peer) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        let parent = self.position.parent().ok_or_else(not_joined)?;
        match call(&parent) {
            Err(UpstreamError::Unreachable { .. }) if !deadline.passed() => {
                let slot = self.position.place().map(|p| p.slot);
                let moved = self
                    .tree_document_fresh(deadline)
                    .zip(slot.and_then(Tree::parent))
                    .and_then(|(doc, s)| wire::peer_at(&doc, s))
                    .filter(|p| p.address != parent.address);
                match moved {
                    Some(moved) => {
                        log::info!("{} moved to {}; following it", moved.name, moved.address);
                        self.position.parent_moved(moved.clone());
                        call(&moved)
                    }
                    None => call(&parent),
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
        let root = match self.position.root() {
            Some(root) => root,
            // A member of the root group before any primary is known.
            None if self.root.is_some() => return Err(UpstreamError::NoPrimary),
            None => {
                return Err(UpstreamError::Unreachable {
                    name: self.position.root_name().to_string(),
                    address: "(unknown)".into(),
                    detail: "its address is not known yet (not registered in ZooKeeper)".into(),
                })
            }
        };
        match call(&root) {
            // Refused, or frozen: the root may have moved (a restart, or
            // another member of the root group took over).
            Err(e @ (UpstreamError::Unreachable { .. } | UpstreamError::TimedOut { .. })) => {
                match (self.links.locate_root)() {
                    Some(address) if address != root.address => {
                        log::info!("{} moved to {address}; following it", root.name);
                        self.follow_root(address.clone());
                        call(&Peer {
                            name: root.name,
                            address,
                        })
                    }
                    _ if matches!(e, UpstreamError::Unreachable { .. }) => call(&root),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }
}

impl Node {
    /// The root is now at `address`: calls to the root go there, and so do
    /// fills, when the root is this node's parent.
    pub fn follow_root(&self, address: String) {
        self.position.set_root_address(address);
        if self.position.place().is_some_and(|p| p.depth == 2) {
            if let Some(root) = self.position.root() {
                self.position.parent_moved(root);
                self.unskip();
            }
        }
    }

    /// Looks the root's address up (in ZooKeeper) and follows it if it
    /// moved; run every so often by cache nodes, so that they follow a
    /// failover in the root group even while idle.
    pub fn look_for_root(&self) {
        let Some(address) = (self.links.locate_root)() else {
            return;
        };
        if self.position.root().map(|r| r.address) != Some(address.clone()) {
            log::info!("the root is at {address} now; following it");
            self.follow_root(address);
        }
    }
}

/// What an ancestor other than the parent answered: never cached here, and
/// requests that joined the fill must fill again. (The ancestor answers so
/// itself; this makes it so whatever it answered.)
fn not_cacheable(fill: Fill) -> Fill {
    match fill {
        Fill::Found {
            value,
            version,
            ttl_ms,
            ..
        } => Fill::Found {
            value,
            version,
            ttl_ms,
            cacheable: false,
            fenced: true,
        },
        Fill::Absent { .. } => Fill::Absent { fenced: true },
    }
}

fn unreachable_peer(peer: &Peer, detail: &str) -> UpstreamError {
    UpstreamError::Unreachable {
        name: peer.name.clone(),
        address: peer.address.clone(),
        detail: detail.to_string(),
    }
}

fn not_joined() -> UpstreamError {
    UpstreamError::NotJoined
}
