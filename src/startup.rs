//! Bringing a node up: registration in ZooKeeper, the root's table, joining.
//!
//! - The root registers itself and serves at once; in the background it
//!   rebuilds its table from the znodes of an earlier run, deletes the ones
//!   that no longer fit, and then accepts joins.
//! - Any other node waits `STARTUP_DELAY`, finds the root (in ZooKeeper, unless
//!   `--root` names it), joins it, and registers itself under its parent.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::node_name;
use crate::membership::ZnodeData;
use crate::node::{Node, Position};
use crate::registry::{Registry, Znode};
use crate::upstream::{Deadline, Me, Peer};

/// How long the root waits for ZooKeeper before it starts with an empty table.
const TREE_LOAD_WAIT: Duration = Duration::from_secs(15);

/// The root's znode path.
pub fn root_path(prefix: &str, root_id: u32) -> String {
    format!("{prefix}/{}", node_name(root_id))
}

/// Where a node's liveness (ephemeral) znode lives.
pub fn live_path(prefix: &str, id: u32) -> String {
    format!("{prefix}/live/{}", node_name(id))
}

/// Looks the root's advertised address up in ZooKeeper.
pub fn find_root(registry: &Registry, prefix: &str, root_id: u32) -> Option<String> {
    let data = registry.get(&root_path(prefix, root_id)).ok()??;
    let d: ZnodeData = serde_json::from_slice(&data).ok()?;
    Some(d.address)
}

fn keep_live(node: &Node) {
    let c = &node.config;
    node.registry.keep(Znode {
        path: live_path(&c.zk_prefix, c.id),
        data: c.advertise.clone().into_bytes(),
        ephemeral: true,
    });
}

/// Starts the work that brings the node into the tree, in the background.
pub fn start(node: Arc<Node>) {
    let name = if node.is_root() {
        "root-startup"
    } else {
        "join"
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if node.is_root() {
                start_root(&node)
            } else {
                join_tree(&node);
                send_releases_forever(&node);
            }
        })
        .expect("spawn the start-up thread");
}

fn start_root(node: &Node) {
    let c = &node.config;
    let path = root_path(&c.zk_prefix, c.root_id);
    let data = ZnodeData {
        name: c.name(),
        address: c.advertise.clone(),
        slot: 0,
        depth: 1,
        parent: None,
    };
    node.registry.keep(Znode {
        path: path.clone(),
        data: serde_json::to_vec(&data).expect("znode data serializes"),
        ephemeral: false,
    });
    keep_live(node);
    load_tree(node, &path);
    node.tree_loaded.store(true, Ordering::Release);
    let children: Vec<Peer> = {
        let table = node
            .membership
            .as_ref()
            .expect("the root has a table")
            .lock()
            .unwrap();
        [1, 2]
            .iter()
            .filter_map(|&s| table.peer_at(s).cloned())
            .collect()
    };
    flush_below(node, &children);
}

/// A node that (re)starts has an empty directory: caches below it may hold
/// values it no longer tracks, which later writes would not reach. Tell them
/// to drop everything.
fn flush_below(node: &Node, children: &[Peer]) {
    if children.is_empty() {
        return;
    }
    let flushed = node.flush_children(children, Deadline::after(node.config.upstream_timeout));
    log::info!(
        "told {flushed} of {} children to drop what they cached from an earlier run",
        children.len()
    );
}

/// The children of `slot` in the root's `/nodes` document.
fn children_in_tree(doc: &[u8], slot: usize) -> Vec<Peer> {
    let Ok(doc) = serde_json::from_slice::<crate::membership::NodesDoc>(doc) else {
        return Vec::new();
    };
    doc.nodes
        .into_iter()
        .filter(|n| n.slot == 2 * slot + 1 || n.slot == 2 * slot + 2)
        .map(|n| Peer {
            name: n.name,
            address: n.address,
        })
        .collect()
}

/// Rebuilds the root's table from ZooKeeper, waiting for it a while.
fn load_tree(node: &Node, root_path: &str) {
    let c = &node.config;
    let until = std::time::Instant::now() + TREE_LOAD_WAIT;
    let records = loop {
        match node.registry.read_subtree(root_path) {
            Ok(records) => break records,
            Err(e) if std::time::Instant::now() < until => {
                log::debug!("reading the tree from ZooKeeper: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                log::warn!(
                    "could not read the tree from ZooKeeper ({e}); starting with an empty tree"
                );
                return;
            }
        }
    };
    let records: Vec<(String, Vec<u8>)> = records.into_iter().map(|r| (r.path, r.data)).collect();
    let membership = node.membership.as_ref().expect("the root has a table");
    let stale = membership.lock().unwrap().restore(&records);
    let restored = membership.lock().unwrap().document().nodes.len() - 1;
    if restored > 0 {
        log::info!("rebuilt the tree from ZooKeeper: {restored} nodes keep their slots");
    }
    for path in stale {
        log::info!("removing stale znode {path}");
        let _ = node.registry.delete_subtree(&path);
    }
    // Trees of an earlier run under another root id.
    if let Ok(children) = node.registry.children(&c.zk_prefix) {
        for child in children {
            if child != "live" && child != c.name() {
                log::info!("removing stale znode {}/{child}", c.zk_prefix);
                let _ = node
                    .registry
                    .delete_subtree(&format!("{}/{child}", c.zk_prefix));
            }
        }
    }
}

/// Finds the root, joins it, and registers in ZooKeeper. Retries until it has joined.
fn join_tree(node: &Node) {
    let c = &node.config;
    if !c.startup_delay.is_zero() {
        log::info!("waiting {:?} before joining", c.startup_delay);
        std::thread::sleep(c.startup_delay);
    }
    let me = Peer {
        name: c.name(),
        address: c.advertise.clone(),
    };
    let mut said_waiting = false;
    let mut said_failing = false;
    loop {
        if c.root.is_none() {
            match find_root(&node.registry, &c.zk_prefix, c.root_id) {
                Some(address) => node.upstream.set_root_address(address),
                None => {
                    if !said_waiting {
                        log::info!(
                            "waiting for the root {} to register in ZooKeeper at {}",
                            node_name(c.root_id),
                            c.zookeeper
                        );
                        said_waiting = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
            }
        }
        match node.upstream.join(&me, Deadline::after(c.upstream_timeout)) {
            Ok(Ok(joined)) => {
                let position = Position {
                    slot: joined.slot,
                    depth: joined.depth,
                    parent: joined.parent.clone(),
                };
                node.upstream.set_position(
                    Me {
                        name: me.name.clone(),
                        address: me.address.clone(),
                        slot: joined.slot,
                    },
                    joined.parent.clone(),
                );
                node.set_position(position);
                let data = ZnodeData {
                    name: me.name.clone(),
                    address: me.address.clone(),
                    slot: joined.slot,
                    depth: joined.depth,
                    parent: joined.parent.as_ref().map(|p| p.name.clone()),
                };
                node.registry.keep(Znode {
                    path: joined.path.clone(),
                    data: serde_json::to_vec(&data).expect("znode data serializes"),
                    ephemeral: false,
                });
                keep_live(node);
                if let Ok((200, doc)) = node
                    .upstream
                    .get_from_root("/nodes", Deadline::after(c.upstream_timeout))
                {
                    flush_below(node, &children_in_tree(&doc, joined.slot));
                }
                log::info!(
                    "joined the tree at slot {} (depth {}) under {}; znode {}",
                    joined.slot,
                    joined.depth,
                    joined
                        .parent
                        .map_or("nobody".into(), |p| format!("{} at {}", p.name, p.address)),
                    joined.path
                );
                return;
            }
            Ok(Err((status, body))) => {
                if status < 500 {
                    log::error!(
                        "the root refused the join: {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                    std::process::exit(2);
                }
                if !said_failing {
                    log::warn!("the root cannot take the join yet ({status}); retrying");
                    said_failing = true;
                }
            }
            Err(e) => {
                if !said_failing {
                    log::warn!("joining failed ({e:?}); retrying");
                    said_failing = true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Tells the parent, every 100 ms, which keys this node dropped.
fn send_releases_forever(node: &Node) {
    let mut backlog = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        node.send_releases(&mut backlog);
    }
}
