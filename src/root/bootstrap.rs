//! Becoming the serving primary (see `election` for when): the process
//! registers itself as the root in ZooKeeper and serves reads at once; it
//! rebuilds its table from the znodes of an earlier run (waiting for
//! ZooKeeper as long as it takes: a table started empty would hand out
//! slots that are taken), deletes the znodes that no longer fit, has its
//! host flush the caches below it (they may hold what it no longer tracks),
//! and only then takes joins and writes. A write taken before that flush
//! could leave an older value in a cache that the root's (empty) directory
//! does not know of.

use std::time::{Duration, Instant};

use crate::lease::Sessions;
use crate::registry::{layout, Registry, Znode, ZnodeData};

use super::{Event, Host, Root};

/// Makes this process the serving primary, once the group made it primary.
pub fn run(root: &Root, registry: &Registry, host: &dyn Host) {
    root.set_closed();
    host.tell(Event::BecamePrimary);
    let path = root.znode_path();
    // Written once, not kept: a process that stopped being the primary must
    // not write its address there again in a later session.
    while registry.put(&path, znode_data(root)).is_err() {
        if !root.is_primary() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    registry.keep(Znode {
        path: root.live_path(),
        data: root.settings.advertise.clone().into_bytes(),
        ephemeral: true,
    });
    match root.settings.shard {
        0 => load_tree(root, registry, &path),
        // Another shard's primary holds no table: the tree's is shard 0's.
        // Its caches are the root's children, whose znodes say where they are.
        _ => {
            root.restore(&tree_children(root, registry));
        }
    }
    // Each child acknowledges, or its session ends (then it drops its cache
    // itself when it comes back).
    host.tell(Event::FlushBelow(&root.children()));
    // Writes are acknowledged only under a confirmed lease: open once the
    // session is confirmed with the root's liveness znode its own.
    while !registry.lease().valid {
        if !root.is_primary() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    root.set_open();
}

/// Makes sure the root's znode names this process (the primary): a
/// process that was primary before could have written its own address
/// there in a later session, before it learned that it no longer is.
pub(super) fn keep_root_znode(root: &Root, registry: &Registry) {
    let s = &root.settings;
    let path = root.znode_path();
    if registry.find_root(&s.group_prefix, s.root_id).as_deref() != Some(s.advertise.as_str()) {
        log::info!("the root's znode {path} names this process again");
        let _ = registry.put(&path, znode_data(root));
    }
}

/// What the root's znode holds: the primary's name and address.
fn znode_data(root: &Root) -> Vec<u8> {
    let data = ZnodeData {
        name: root.settings.name.clone(),
        address: root.settings.advertise.clone(),
        slot: 0,
        depth: 1,
        parent: None,
    };
    serde_json::to_vec(&data).expect("znode data serializes")
}

/// The znodes of the root's children (the caches a shard's primary serves),
/// read from the tree shard 0 keeps, waiting for ZooKeeper as long as it
/// takes: a new primary must flush them before it takes writes.
fn tree_children(root: &Root, registry: &Registry) -> Vec<(String, Vec<u8>)> {
    let top = root.table().path_of(0);
    loop {
        let read = registry.children(&top).and_then(|names| {
            names
                .into_iter()
                .map(|name| {
                    let path = format!("{top}/{name}");
                    Ok(registry.get(&path)?.map(|data| (path, data)))
                })
                .collect::<Result<Vec<_>, _>>()
        });
        match read {
            Ok(records) => return records.into_iter().flatten().collect(),
            Err(e) => log::debug!("cannot read the root's children yet ({e})"),
        }
        if !root.is_primary() {
            return Vec::new();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rebuilds the root's table from ZooKeeper, waiting for it as long as it takes.
fn load_tree(root: &Root, registry: &Registry, root_path: &str) {
    let prefix = &root.settings.zk_prefix;
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
        layout::slots(prefix),
        layout::shards_dir(prefix),
        layout::live_dir(prefix),
        layout::sessions(prefix),
        layout::election(prefix),
        layout::root_state(prefix),
        root_path.to_string(),
    ];
    if let Ok(children) = registry.children(prefix) {
        for child in children {
            let path = format!("{prefix}/{child}");
            if !keep.contains(&path) {
                log::info!("removing stale znode {path}");
                let _ = registry.delete_subtree(&path);
            }
        }
    }
}
