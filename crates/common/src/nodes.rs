//! The `/nodes` document: the tree as the root knows it. The root builds it
//! from its slot table; the CLI and the cluster command read it.

use serde::{Deserialize, Serialize};

/// One node of the `/nodes` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    pub address: String,
    pub slot: usize,
    pub depth: u32,
    pub parent: Option<String>,
    pub left: Option<String>,
    pub right: Option<String>,
    /// Whether the node's ZooKeeper session is alive (its liveness znode
    /// exists); absent when the root cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
}

/// One process of the root group (the root's id): the primary or a standby.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootMember {
    pub address: String,
    /// `root` for the primary, `standby` for the others.
    pub role: String,
    /// Whether this process holds every acknowledged write (always true of
    /// the primary); only such a standby may take over.
    pub in_sync: bool,
}

/// One root shard: the hash slots it owns, where its primary is, and its
/// root group as ZooKeeper shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub shard: u32,
    /// `[from, to]` ranges of hash slots, both ends included.
    pub ranges: Vec<[u32; 2]>,
    /// The primary's address, when the shard has one.
    pub primary: Option<String>,
    pub root_group: Vec<RootMember>,
}

/// The `/nodes` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesDoc {
    pub depth: u32,
    pub capacity: usize,
    pub root: String,
    pub nodes: Vec<NodeEntry>,
    /// The root group, when the root knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_group: Option<Vec<RootMember>>,
    /// The root shards (shard 0, this root group, included), when the
    /// root knows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<ShardEntry>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> NodesDoc {
        let entry = |name: &str, slot, parent: Option<&str>, left: Option<&str>| NodeEntry {
            name: name.into(),
            address: format!("127.0.0.1:500{}", &name[5..]),
            slot,
            depth: if slot == 0 { 1 } else { 2 },
            parent: parent.map(Into::into),
            left: left.map(Into::into),
            right: None,
            live: None,
        };
        NodesDoc {
            depth: 2,
            capacity: 3,
            root: "NODE-1".into(),
            nodes: vec![
                entry("NODE-1", 0, None, Some("NODE-3")),
                entry("NODE-3", 1, Some("NODE-1"), None),
            ],
            root_group: None,
            shards: None,
        }
    }

    #[test]
    fn the_document_has_the_fields_the_api_documents() {
        let expected = json!({
            "depth": 2, "capacity": 3, "root": "NODE-1",
            "nodes": [
                {"name": "NODE-1", "address": "127.0.0.1:5001", "slot": 0, "depth": 1,
                 "parent": null, "left": "NODE-3", "right": null},
                {"name": "NODE-3", "address": "127.0.0.1:5003", "slot": 1, "depth": 2,
                 "parent": "NODE-1", "left": null, "right": null},
            ],
        });
        assert_eq!(serde_json::to_value(doc()).unwrap(), expected);
        assert_eq!(serde_json::from_value::<NodesDoc>(expected).unwrap(), doc());
    }

    #[test]
    fn a_document_without_its_fields_is_refused() {
        assert!(serde_json::from_value::<NodesDoc>(json!({"root": "NODE-1"})).is_err());
        let nameless = json!({"depth": 1, "capacity": 1, "root": "NODE-1", "nodes": [{"slot": 0}]});
        assert!(serde_json::from_value::<NodesDoc>(nameless).is_err());
    }
}
