//! Becoming the serving primary (see `group` for when): the process
//! registers itself as the root in ZooKeeper and serves reads at once; it
//! rebuilds its table from the znodes of an earlier run (waiting for ZooKeeper as long as it takes: a table started
//! empty would hand out slots that are taken), deletes the znodes that no
//! longer fit, tells the caches below it to drop what it no longer tracks,
//! and only then takes joins and writes. A write taken before that flush
//! could leave an older value in a cache that the root's (empty) directory
//! does not know of.

use std::time::{Duration, Instant};

use crate::node::Node;
use crate::registry::{layout, Registry, ZnodeData};

/// Makes this process the serving primary, once the group made it primary.
pub fn run(node: &Node, registry: &Registry) {
    let c = node.config();
    let root = node.root().expect("bootstrap runs on the root");
    root.set_closed();
    node.became_primary();
    let path = root.znode_path();
    // Written once, not kept: a process that stopped being the primary must
    // not write its address there again in a later session.
    while registry.put(&path, root_znode_data(c)).is_err() {
        if !root.is_primary() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    crate::startup::keep_live(node, registry);
    load_tree(node, registry, &path);
    // Each child acknowledges, or its session ends (then it drops its cache
    // itself when it comes back).
    node.flush_all(&root.children());
    // Writes are acknowledged only under a confirmed lease: open once the
    // session is confirmed with the root's liveness znode its own.
    while !node.lease_confirmed() {
        if !root.is_primary() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    root.set_open();
}

/// What the root's znode holds: the primary's name and address.
pub fn root_znode_data(c: &crate::config::Config) -> Vec<u8> {
    let data = ZnodeData {
        name: c.name(),
        address: c.advertise.clone(),
        slot: 0,
        depth: 1,
        parent: None,
    };
    serde_json::to_vec(&data).expect("znode data serializes")
}

/// Rebuilds the root's table from ZooKeeper, waiting for it as long as it takes.
fn load_tree(node: &Node, registry: &Registry, root_path: &str) {
    let c = node.config();
    let root = node.root().expect("bootstrap runs on the root");
    let started = Instant::now();
    let mut said_waiting = false;
    let records = loop {
        match registry.read_subtree(root_path) {
            Ok(records) => break records,
            Err(e) => {
                if !said_waiting && started.elapsed() > Duration::from_secs(2) {
                    log::warn!(
                        "cannot read the tree from ZooKeeper yet ({e}); joins and writes \
                         wait for it"
                    );
                    said_waiting = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let records: Vec<(String, Vec<u8>)> = records.into_iter().map(|r| (r.path, r.data)).collect();
    let stale = root.restore(&records);
    let restored = root.document().nodes.len() - 1;
    if restored > 0 {
        log::info!("rebuilt the tree from ZooKeeper: {restored} nodes keep their slots");
    }
    for path in stale {
        log::info!("removing stale znode {path}");
        let _ = registry.delete_subtree(&path);
    }
    // Trees of an earlier run under another root id.
    let keep = [
        layout::live_dir(&c.zk_prefix),
        layout::sessions(&c.zk_prefix),
        layout::election(&c.zk_prefix),
        layout::root_state(&c.zk_prefix),
        root_path.to_string(),
    ];
    if let Ok(children) = registry.children(&c.zk_prefix) {
        for child in children {
            let path = format!("{}/{child}", c.zk_prefix);
            if !keep.contains(&path) {
                log::info!("removing stale znode {path}");
                let _ = registry.delete_subtree(&path);
            }
        }
    }
}
