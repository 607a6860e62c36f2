//! Where a cluster's znodes live under its prefix, and what a node's
//! persistent znode holds.

use serde::{Deserialize, Serialize};

use crate::config::node_name;

/// The root's znode, where other nodes find its address; every other
/// node's znode is nested below it along the node's path from the root.
pub fn root(prefix: &str, root_id: u32) -> String {
    format!("{prefix}/{}", node_name(root_id))
}

/// Where the nodes' liveness (ephemeral) znodes live.
pub fn live_dir(prefix: &str) -> String {
    format!("{prefix}/live")
}

/// A node's liveness (ephemeral) znode: present while a session of the
/// node is alive.
pub fn live(prefix: &str, id: u32) -> String {
    live_named(prefix, &node_name(id))
}

/// The liveness znode of the node called `name` (`NODE-4`).
pub fn live_named(prefix: &str, name: &str) -> String {
    format!("{}/{name}", live_dir(prefix))
}

/// Where the processes of the root group (the primary and its standbys)
/// keep their election znodes (ephemeral, sequential).
pub fn election(prefix: &str) -> String {
    format!("{prefix}/election")
}

/// Where a session creates a short-lived ephemeral znode, whose owner
/// tells the session its own id.
pub fn sessions(prefix: &str) -> String {
    format!("{prefix}/sessions")
}

/// The root group's state: epoch, primary, and the standbys in sync.
pub fn root_state(prefix: &str) -> String {
    format!("{prefix}/root-state")
}

/// The slot map: which root group (shard) owns each hash slot
/// (`crate::shards::SlotMap` as JSON), written by the first root to start.
pub fn slots(prefix: &str) -> String {
    format!("{prefix}/slots")
}

/// Where the root groups of shards 1 and up keep their znodes.
pub fn shards_dir(prefix: &str) -> String {
    format!("{prefix}/shards")
}

/// The base znode of root group (shard) `shard`: the cluster's prefix for
/// shard 0 (today's root group), `{prefix}/shards/{shard}` for the others.
/// Below it: `election`, `root-state`, and the primary's znode named as the
/// root (`NODE-1`), holding where that primary is.
pub fn group(prefix: &str, shard: u32) -> String {
    match shard {
        0 => prefix.to_string(),
        s => format!("{}/{s}", shards_dir(prefix)),
    }
}

/// The name of the liveness znode a shard's primary keeps: the root's own
/// name for shard 0, `NODE-1-shard-2` for shard 2 (every shard's processes
/// have the root's id).
pub fn primary_live_name(root_id: u32, shard: u32) -> String {
    match shard {
        0 => node_name(root_id),
        s => format!("{}-shard-{s}", node_name(root_id)),
    }
}

/// What a node's persistent znode holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZnodeData {
    pub name: String,
    pub address: String,
    pub slot: usize,
    pub depth: u32,
    #[serde(default)]
    pub parent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(root("/tc", 1), "/tc/NODE-1");
        assert_eq!(live_dir("/tc"), "/tc/live");
        assert_eq!(live("/tc", 4), "/tc/live/NODE-4");
        assert_eq!(live_named("/tc", "NODE-4"), live("/tc", 4));
        assert_eq!(election("/tc"), "/tc/election");
        assert_eq!(root_state("/tc"), "/tc/root-state");
        assert_eq!(sessions("/tc"), "/tc/sessions");
        assert_eq!(slots("/tc"), "/tc/slots");
        assert_eq!(group("/tc", 0), "/tc");
        assert_eq!(election(&group("/tc", 2)), "/tc/shards/2/election");
        assert_eq!(root_state(&group("/tc", 2)), "/tc/shards/2/root-state");
        assert_eq!(primary_live_name(1, 0), "NODE-1");
        assert_eq!(primary_live_name(1, 3), "NODE-1-shard-3");
    }
}
