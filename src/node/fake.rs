//! An in-process network for the node's tests: every node of a tree in one
//! process, calling each other through the seams of `peers` without HTTP.
//!
//! A test can hold one message on its way ([`Net::hold`]): the sender stops
//! there until the test releases it, which is how the races of the tree of
//! caches are played in a fixed order rather than hoped for.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::config::Config;
use crate::deadline::Deadline;
use crate::input::{self, Listing};
use crate::lease::Lease;
use crate::metrics::Metrics;
use crate::node::failed::Error;
use crate::node::read::Found;
use crate::node::{Downstream, Links, Node, Place, Sessions, Upstream, Write};
use crate::peer::UpstreamError;
use crate::precondition::{self, Condition};
use crate::root::replication::Refusal;
use crate::store::Mutation;
use crate::wire::{
    Answer, Fill, FillRequest, ForwardedWrite, Invalidate, Join, Joined, Peer, Progress, Release,
    Replicate, Replicated, ETAG_HEADER,
};

/// A message a test may hold on its way.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Hop {
    /// A parent's answer to a fill of `key`, on its way back to `child`.
    FillAnswer { child: String, key: String },
    /// An invalidation of `key`, on its way to `child`.
    Invalidate { child: String, key: String },
}

/// A held message: the test waits for it to arrive, then lets it go.
pub struct Held {
    arrived: Receiver<()>,
    release: SyncSender<()>,
}

impl Held {
    /// Waits until the message has reached the point where it is held.
    pub fn arrived(&self) {
        self.arrived
            .recv_timeout(Duration::from_secs(10))
            .expect("the held message arrived");
    }

    /// Lets the message go on.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

/// A message held at one hop by [`Held`]: it waits here until the test
/// releases it (no relation to the `gate` locks of `wal` and `root`).
struct Gate {
    arrived: SyncSender<()>,
    release: Receiver<()>,
}

/// Every node of one tree, by address, and what ZooKeeper would say of them.
#[derive(Default)]
pub struct Net {
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    gates: Mutex<HashMap<Hop, Gate>>,
    /// Nodes whose sessions have ended, by name.
    ended: Mutex<std::collections::HashSet<String>>,
    /// Nodes that cannot confirm their sessions, by name.
    unconfirmed: Mutex<std::collections::HashSet<String>>,
}

/// A tree of in-process nodes: `nodes[slot]`.
pub struct Tree {
    pub net: Arc<Net>,
    pub nodes: Vec<Arc<Node>>,
}

impl Tree {
    /// A full tree of `depth`, NODE-{slot+1} in each slot, caches bounded
    /// by `cache_max_bytes`.
    pub fn new(depth: u32, cache_max_bytes: u64) -> Tree {
        let net = Arc::new(Net::default());
        let capacity = (1usize << depth) - 1;
        let mut nodes: Vec<Arc<Node>> = Vec::new();
        for slot in 0..capacity {
            let node = start(&net, depth, cache_max_bytes, slot, nodes.first());
            if slot > 0 {
                // No node is below it yet: its directory is complete.
                node.flush_after_join();
            }
            nodes.push(node);
        }
        Tree { net, nodes }
    }

    /// A new process of the node in `slot` in place of the old one: joined,
    /// but it has not flushed the children below it, nor seen them.
    pub fn restart(&mut self, slot: usize) {
        let depth = self.nodes[0].config().tree.depth();
        let max = self.nodes[0].config().cache_max_bytes;
        self.nodes[slot] = start(&self.net, depth, max, slot, self.nodes.first());
    }

    /// Reads `key` at the node in `slot` as a client would; `None` when absent.
    pub fn get(&self, slot: usize, key: &str) -> Option<String> {
        self.get_found(slot, key)
            .map(|f| String::from_utf8(f.value).unwrap())
    }

    /// Reads `key` at the node in `slot` as a client would, with its version
    /// and expiry; `None` when absent.
    pub fn get_found(&self, slot: usize, key: &str) -> Option<Found<Vec<u8>>> {
        let node = &self.nodes[slot];
        match node.read_now(key, false, <[u8]>::to_vec) {
            Ok(Some(found)) => Some(found),
            Ok(None) => node.read(key, deadline()).expect("read through"),
            Err(Error::Node(super::NodeError::NotFound { .. })) => None,
            Err(e) => panic!("read at slot {slot}: {e}"),
        }
    }

    /// What the node in `slot` holds itself (`?local=true`).
    pub fn local(&self, slot: usize, key: &str) -> Option<String> {
        self.local_found(slot, key)
            .map(|f| String::from_utf8(f.value).unwrap())
    }

    /// What the node in `slot` holds itself, with its version and expiry.
    pub fn local_found(&self, slot: usize, key: &str) -> Option<Found<Vec<u8>>> {
        self.nodes[slot]
            .read_now(key, true, <[u8]>::to_vec)
            .ok()
            .flatten()
    }

    /// Writes `key` = `value` (compact JSON) through the node in `slot`.
    pub fn put(&self, slot: usize, key: &str, value: &str) {
        let body = format!("{{\"value\":{value}}}");
        let answer = write(&self.nodes[slot], key, "PUT", body.as_bytes(), None);
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }

    /// Writes `key` = `value` through the node in `slot` within `deadline`:
    /// the status of the answer.
    pub fn put_within(&self, slot: usize, key: &str, value: &str, deadline: Deadline) -> u16 {
        let body = format!("{{\"value\":{value}}}");
        write_within(
            &self.nodes[slot],
            key,
            "PUT",
            body.as_bytes(),
            None,
            deadline,
        )
        .status
    }

    /// A `PUT` through the node in `slot` with this body and condition, as
    /// the HTTP layer would make it: its status, and the version it got.
    pub fn put_body(
        &self,
        slot: usize,
        key: &str,
        body: &str,
        condition: Option<Condition>,
    ) -> (u16, Option<String>) {
        let answer = write(&self.nodes[slot], key, "PUT", body.as_bytes(), condition);
        let etag = crate::wire::Headers::header(&answer, ETAG_HEADER).map(str::to_string);
        (answer.status, etag)
    }

    /// The test's handle on one message, held when it gets there.
    pub fn hold(&self, hop: Hop) -> Held {
        let (arrived_tx, arrived) = sync_channel(1);
        let (release, release_rx) = sync_channel(1);
        self.net.gates.lock().unwrap().insert(
            hop,
            Gate {
                arrived: arrived_tx,
                release: release_rx,
            },
        );
        Held { arrived, release }
    }
}

/// A generous deadline: the tests hold messages, never lose them.
/// The node of `slot` of a tree of `depth`, NODE-{slot+1}, joined at `root`
/// (the root itself when there is none yet), and in the network.
fn start(
    net: &Arc<Net>,
    depth: u32,
    cache_max_bytes: u64,
    slot: usize,
    root: Option<&Arc<Node>>,
) -> Arc<Node> {
    let id = slot + 1;
    let args: Vec<std::ffi::OsString> = [
        "--id".to_string(),
        id.to_string(),
        "--depth".into(),
        depth.to_string(),
        "--advertise".into(),
        address(id),
        "--cache-max-bytes".into(),
        cache_max_bytes.to_string(),
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    let config = Config::parse(pico_args::Arguments::from_vec(args), &|_| None)
        .expect("a valid test configuration");
    let links = Arc::new(FakeLinks {
        net: Arc::downgrade(net),
        name: format!("NODE-{id}"),
    });
    let node = Node::new(
        config,
        Links {
            up: links.clone(),
            down: links.clone(),
            sessions: links,
            locate_root: Box::new(|| Some(address(1))),
            locate_shard: Box::new(|_| None),
            slot_map: Box::new(|| None),
        },
        Arc::new(Metrics::default()),
    )
    .expect("a node without a data directory starts");
    node.session_changed(1);
    match root {
        None => {
            node.root().unwrap().group().assume_primary(1, 1);
            node.became_primary();
            node.root().unwrap().set_open();
        }
        Some(root) => {
            node.position().set_root_address(address(1));
            let joined = root
                .join(&Join {
                    name: format!("NODE-{id}"),
                    address: address(id),
                })
                .unwrap();
            assert_eq!(joined.slot, slot);
            node.position().set_place(Place {
                slot,
                depth: joined.depth,
                parent: joined.parent,
            });
        }
    }
    net.nodes.lock().unwrap().insert(address(id), node.clone());
    node
}

pub fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(20))
}

pub fn address(id: usize) -> String {
    format!("node-{id}.test:5000")
}

/// A `PUT` or `DELETE` at `node` as the HTTP layer would make it.
fn write(
    node: &Node,
    key: &str,
    method: &str,
    body: &[u8],
    condition: Option<Condition>,
) -> Answer {
    write_within(node, key, method, body, condition, deadline())
}

fn write_within(
    node: &Node,
    key: &str,
    method: &str,
    body: &[u8],
    condition: Option<Condition>,
    deadline: Deadline,
) -> Answer {
    let write = match method {
        "PUT" => {
            let put = input::put_body(body).expect("a valid body");
            Write {
                mutation: Mutation::Put(put.value),
                ttl: put.ttl,
                condition,
            }
        }
        _ => Write {
            mutation: Mutation::Delete,
            ttl: None,
            condition,
        },
    };
    match node.write(key, write, body, None, deadline, |_, version| {
        Answer::new(200, b"{}".to_vec()).with_header(ETAG_HEADER, precondition::etag(version))
    }) {
        Ok(answer) => answer,
        Err(e) => Answer::new(e.status(), e.body()),
    }
}

impl Net {
    fn node(&self, peer: &Peer) -> Result<Arc<Node>, UpstreamError> {
        self.nodes
            .lock()
            .unwrap()
            .get(&peer.address)
            .cloned()
            .ok_or_else(|| UpstreamError::Unreachable {
                name: peer.name.clone(),
                address: peer.address.clone(),
                detail: "no such node in this test".into(),
            })
    }

    /// Stops here while the test holds `hop`.
    fn pass(&self, hop: Hop) {
        let gate = self.gates.lock().unwrap().remove(&hop);
        if let Some(gate) = gate {
            let _ = gate.arrived.send(());
            let _ = gate.release.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Takes the node at `address` out of the network (it refuses every call).
    pub fn remove(&self, address: &str) -> Arc<Node> {
        self.nodes
            .lock()
            .unwrap()
            .remove(address)
            .expect("a node at that address")
    }

    /// ZooKeeper says the session of `name` has ended.
    pub fn end_session(&self, name: &str) {
        self.ended.lock().unwrap().insert(name.to_string());
    }

    /// `name` can (or cannot) confirm its session.
    pub fn confirm(&self, name: &str, confirmed: bool) {
        let mut unconfirmed = self.unconfirmed.lock().unwrap();
        if confirmed {
            unconfirmed.remove(name);
        } else {
            unconfirmed.insert(name.to_string());
        }
    }

    /// Moves the node at `from` to the address `to`.
    pub fn move_node(&self, from: &str, to: &str) {
        let mut nodes = self.nodes.lock().unwrap();
        let node = nodes.remove(from).expect("a node at that address");
        nodes.insert(to.to_string(), node);
    }
}

/// The seams, served by the nodes of a [`Net`], for the node `name`.
struct FakeLinks {
    net: Weak<Net>,
    name: String,
}

impl FakeLinks {
    fn net(&self) -> Arc<Net> {
        self.net.upgrade().expect("the test's network is alive")
    }
}

fn relayed(e: Error) -> UpstreamError {
    UpstreamError::Relayed {
        status: e.status(),
        body: e.body(),
    }
}

impl Upstream for FakeLinks {
    fn fill(
        &self,
        parent: &Peer,
        request: &FillRequest,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Fill, UpstreamError> {
        let net = self.net();
        let node = net.node(parent)?;
        let answer = match node.serve_fill_now(request, deadline) {
            Ok(Some(fill)) => Ok(fill),
            Ok(None) => node.serve_fill(request, deadline, hop),
            Err(e) => Err(e),
        };
        net.pass(Hop::FillAnswer {
            child: request.child.name.clone(),
            key: request.key.clone(),
        });
        answer.map_err(relayed)
    }

    fn release(
        &self,
        parent: &Peer,
        release: &Release,
        deadline: Deadline,
    ) -> Result<(), UpstreamError> {
        self.net()
            .node(parent)?
            .release(release, deadline)
            .map(drop)
            .map_err(relayed)
    }

    fn forward(
        &self,
        root: &Peer,
        w: &ForwardedWrite<'_>,
        _: Deadline,
    ) -> Result<Answer, UpstreamError> {
        let root = self.net().node(root)?;
        Ok(write(&root, w.key, w.method, w.body, w.condition.cloned()))
    }

    fn keys(
        &self,
        root: &Peer,
        listing: &Listing,
        shard: Option<u32>,
        _: Deadline,
    ) -> Result<Answer, UpstreamError> {
        let page = self
            .net()
            .node(root)?
            .keys_here(listing, shard.is_some())
            .expect("asked of the root")
            .map_err(relayed)?;
        Ok(Answer::json(&page))
    }

    fn nodes(&self, root: &Peer, _: Deadline) -> Result<Answer, UpstreamError> {
        let doc = self
            .net()
            .node(root)?
            .nodes_here()
            .expect("asked of the root");
        Ok(Answer::json(&doc))
    }

    fn join(
        &self,
        root: &Peer,
        join: &Join,
        _: Deadline,
    ) -> Result<Result<Joined, Answer>, UpstreamError> {
        Ok(self
            .net()
            .node(root)?
            .join(join)
            .map_err(|e| Answer::new(e.status(), e.body())))
    }

    fn probe(&self, peer: &Peer, _: Duration) -> bool {
        self.net().node(peer).is_ok()
    }
}

impl Sessions for FakeLinks {
    fn lease(&self) -> Lease {
        let net = self.net();
        Lease {
            generation: 1,
            valid: !net.unconfirmed.lock().unwrap().contains(&self.name)
                && !net.ended.lock().unwrap().contains(&self.name),
        }
    }

    fn ended(&self, name: &str) -> Result<bool, String> {
        Ok(self.net().ended.lock().unwrap().contains(name))
    }

    fn live(&self) -> Option<Vec<String>> {
        None
    }
}

impl Downstream for FakeLinks {
    fn invalidate(
        &self,
        child: &Peer,
        invalidate: &Invalidate,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Progress, UpstreamError> {
        let net = self.net();
        let node = net.node(child)?;
        net.pass(Hop::Invalidate {
            child: child.name.clone(),
            key: invalidate.key.clone(),
        });
        node.invalidate(
            invalidate,
            deadline,
            std::time::Instant::now() + hop * 8 / 9,
        )
        .map_err(relayed)
    }

    fn flush(
        &self,
        child: &Peer,
        flush: &crate::wire::Flush,
        _: Deadline,
    ) -> Result<(), UpstreamError> {
        self.net().node(child)?.flush(flush.clone());
        Ok(())
    }

    fn replicate(
        &self,
        standby: &Peer,
        message: &Replicate,
        _: Deadline,
        _: Duration,
    ) -> Result<Result<Replicated, Answer>, UpstreamError> {
        // The in-process trees have one member in the root group; a standby
        // here is a node like any other, and refuses as a real one would.
        let node = self.net().node(standby)?;
        let refused = |e: Error| Answer::new(e.status(), e.body());
        Ok(match node.receive_replication(message) {
            Ok(Ok(replicated)) => Ok(replicated),
            Ok(Err(Refusal::Stale(epoch))) => Err(Answer::new(
                409,
                serde_json::to_vec(&serde_json::json!({
                    "error": format!("stale; epoch {epoch}")
                }))
                .expect("JSON serializes"),
            )),
            Ok(Err(Refusal::Other(e))) => Err(refused(e.into())),
            Err(e) => Err(refused(e)),
        })
    }
}
