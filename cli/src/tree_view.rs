//! Draws the `/nodes` document as an indented tree: one row per node with its
//! name, address and slot, children under their parent, free slots marked.
//! The drawing itself is the one `treecache cluster` prints too. A cluster of
//! several root shards gets a list of them below the tree.

use serde_json::Value;
use treecache_common::drawing::{draw_tree, Place};
use treecache_common::nodes::NodesDoc;

/// Renders the `/nodes` document; an error says what the document lacks.
pub fn render(doc_value: &Value) -> Result<String, String> {
    let doc = parse(doc_value)?;
    let lines = draw_tree(&doc, |place| match place {
        Place::Node(node) => vec![
            node.name.clone(),
            node.address.clone(),
            format!("slot {}", node.slot),
        ],
        Place::Missing(name) => vec![name.to_string(), "(not in the node list)".to_string()],
        Place::Free(slot) => vec!["(free)".to_string(), String::new(), format!("slot {slot}")],
    });
    let header = format!(
        "tree of depth {}: {} of {} slots taken, root {}",
        doc.depth,
        doc.nodes.len(),
        doc.capacity,
        doc.root
    );
    let mut out = format!("{header}\n{}", lines.join("\n"));
    // The root group, when the root has standbys.
    let group = doc.root_group.unwrap_or_default();
    if group.len() > 1 {
        out.push_str("\nroot group:");
        for member in &group {
            let role = match (member.role.as_str(), member.in_sync) {
                ("root", _) => "primary",
                (_, true) => "standby, in sync",
                (_, false) => "standby, catching up",
            };
            out.push_str(&format!("\n  {}  {role}", member.address));
        }
    }
    out.push_str(&shards(doc_value)?);
    Ok(out)
}

/// The shards of the document's `shards` list, one paragraph each: its slot
/// ranges, its primary, then the members of its root group. Empty when the
/// list is absent or has one shard (all slots in the root group above).
fn shards(doc: &Value) -> Result<String, String> {
    let Some(list) = doc.get("shards") else {
        return Ok(String::new());
    };
    let Some(list) = list.as_array() else {
        return Err("the shards of the /nodes answer are not a list".to_string());
    };
    if list.len() <= 1 {
        return Ok(String::new());
    }
    let mut out = format!("\nroot shards: {}", list.len());
    for entry in list {
        let number = entry
            .get("shard")
            .and_then(Value::as_u64)
            .ok_or("a shard in the /nodes answer has no number")?;
        let problem = |what: &str| format!("shard {number} in the /nodes answer has {what}");
        let ranges = entry
            .get("ranges")
            .and_then(Value::as_array)
            .ok_or_else(|| problem("no list of ranges"))?
            .iter()
            .map(|range| match range.as_array().map(Vec::as_slice) {
                Some([lo, hi]) => match (lo.as_u64(), hi.as_u64()) {
                    (Some(lo), Some(hi)) => Ok(format!("{lo}-{hi}")),
                    _ => Err(problem("a range that is not two slots")),
                },
                _ => Err(problem("a range that is not two slots")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let primary = match entry.get("primary") {
            None | Some(Value::Null) => "none",
            Some(Value::String(address)) => address,
            Some(_) => return Err(problem("a primary that is not an address")),
        };
        let slots = if ranges.is_empty() {
            "no slots".to_string()
        } else {
            format!("slots {}", ranges.join(", "))
        };
        out.push_str(&format!("\n  shard {number}  {slots}  primary {primary}"));
        let members = match entry.get("root_group") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(members)) => members.as_slice(),
            Some(_) => return Err(problem("a root group that is not a list")),
        };
        for member in members {
            let address = member
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| problem("a root group member without an address"))?;
            let in_sync = member.get("in_sync").and_then(Value::as_bool);
            let role = match (member.get("role").and_then(Value::as_str), in_sync) {
                (Some("root" | "primary"), _) => "primary",
                (_, Some(true)) => "standby, in sync",
                (_, Some(false)) => "standby, catching up",
                (_, None) => "standby",
            };
            out.push_str(&format!("\n    {address}  {role}"));
        }
    }
    Ok(out)
}

/// The document as [`NodesDoc`], with the most likely omissions named.
fn parse(doc: &Value) -> Result<NodesDoc, String> {
    if !doc.get("root").is_some_and(Value::is_string) {
        return Err("the /nodes answer names no root".to_string());
    }
    let Some(nodes) = doc.get("nodes").and_then(Value::as_array) else {
        return Err("the /nodes answer has no list of nodes".to_string());
    };
    if !nodes
        .iter()
        .all(|node| node.get("name").is_some_and(Value::is_string))
    {
        return Err("a node in the /nodes answer has no name".to_string());
    }
    serde_json::from_value(doc.clone())
        .map_err(|error| format!("the /nodes answer is not a /nodes document: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(
        name: &str,
        slot: u64,
        parent: Option<&str>,
        left: Option<&str>,
        right: Option<&str>,
    ) -> Value {
        let id = &name[5..];
        json!({
            "name": name, "address": format!("127.0.0.1:500{id}"), "slot": slot,
            "depth": 1, "parent": parent, "left": left, "right": right,
        })
    }

    #[test]
    fn a_full_tree_draws_every_node_under_its_parent() {
        let doc = json!({
            "depth": 2, "capacity": 3, "root": "NODE-1",
            "nodes": [
                node("NODE-3", 2, Some("NODE-1"), None, None),
                node("NODE-1", 0, None, Some("NODE-2"), Some("NODE-3")),
                node("NODE-2", 1, Some("NODE-1"), None, None),
            ],
        });
        let expected = "\
tree of depth 2: 3 of 3 slots taken, root NODE-1
NODE-1      127.0.0.1:5001  slot 0
├── NODE-2  127.0.0.1:5002  slot 1
└── NODE-3  127.0.0.1:5003  slot 2";
        assert_eq!(render(&doc).unwrap(), expected);
    }

    #[test]
    fn free_slots_are_marked_and_grandchildren_indented() {
        let doc = json!({
            "depth": 3, "capacity": 7, "root": "NODE-1",
            "nodes": [
                node("NODE-1", 0, None, Some("NODE-2"), Some("NODE-3")),
                node("NODE-2", 1, Some("NODE-1"), Some("NODE-4"), None),
                node("NODE-3", 2, Some("NODE-1"), None, Some("NODE-5")),
                node("NODE-4", 3, Some("NODE-2"), None, None),
                node("NODE-5", 6, Some("NODE-3"), None, None),
            ],
        });
        let expected = "\
tree of depth 3: 5 of 7 slots taken, root NODE-1
NODE-1          127.0.0.1:5001  slot 0
├── NODE-2      127.0.0.1:5002  slot 1
│   ├── NODE-4  127.0.0.1:5004  slot 3
│   └── (free)                  slot 4
└── NODE-3      127.0.0.1:5003  slot 2
    ├── (free)                  slot 5
    └── NODE-5  127.0.0.1:5005  slot 6";
        assert_eq!(render(&doc).unwrap(), expected);
    }

    #[test]
    fn a_lone_root_shows_its_two_free_children() {
        let doc = json!({
            "depth": 2, "capacity": 3, "root": "NODE-1",
            "nodes": [node("NODE-1", 0, None, None, None)],
        });
        let expected = "\
tree of depth 2: 1 of 3 slots taken, root NODE-1
NODE-1      127.0.0.1:5001  slot 0
├── (free)                  slot 1
└── (free)                  slot 2";
        assert_eq!(render(&doc).unwrap(), expected);
    }

    #[test]
    fn the_root_group_follows_the_tree_when_the_root_has_standbys() {
        let doc = json!({
            "depth": 1, "capacity": 1, "root": "NODE-1",
            "nodes": [node("NODE-1", 0, None, None, None)],
            "root_group": [
                {"address": "127.0.0.1:5001", "role": "root", "in_sync": true},
                {"address": "127.0.0.1:5008", "role": "standby", "in_sync": true},
                {"address": "127.0.0.1:5009", "role": "standby", "in_sync": false},
            ],
        });
        let expected = "\
tree of depth 1: 1 of 1 slots taken, root NODE-1
NODE-1  127.0.0.1:5001  slot 0
root group:
  127.0.0.1:5001  primary
  127.0.0.1:5008  standby, in sync
  127.0.0.1:5009  standby, catching up";
        assert_eq!(render(&doc).unwrap(), expected);
    }

    /// A sample of what a node answers with three root shards (the shards
    /// list of GET /nodes), the third one between primaries.
    const THREE_SHARDS: &str = r#"{
        "depth": 2, "capacity": 3, "root": "NODE-1",
        "nodes": [
            {"name": "NODE-1", "address": "10.0.1.11:5000", "slot": 0, "depth": 1,
             "parent": null, "left": "NODE-2", "right": null, "live": true},
            {"name": "NODE-2", "address": "10.0.1.12:5000", "slot": 1, "depth": 2,
             "parent": "NODE-1", "left": null, "right": null, "live": true}
        ],
        "root_group": [
            {"address": "10.0.1.11:5000", "role": "root", "in_sync": true},
            {"address": "10.0.1.10:5000", "role": "standby", "in_sync": true}
        ],
        "shards": [
            {"shard": 0, "ranges": [[0, 5460]], "primary": "10.0.1.11:5000",
             "root_group": [
                {"address": "10.0.1.11:5000", "role": "root", "in_sync": true},
                {"address": "10.0.1.10:5000", "role": "standby", "in_sync": true}
             ]},
            {"shard": 1, "ranges": [[5461, 10921]], "primary": "10.0.1.19:5000",
             "root_group": [
                {"address": "10.0.1.19:5000", "role": "root", "in_sync": true},
                {"address": "10.0.1.18:5000", "role": "standby", "in_sync": false}
             ]},
            {"shard": 2, "ranges": [[10922, 12000], [12001, 16383]], "primary": null,
             "root_group": [
                {"address": "10.0.1.20:5000", "role": "standby", "in_sync": true}
             ]}
        ]
    }"#;

    #[test]
    fn the_shards_follow_the_root_group_when_there_are_several() {
        let doc: Value = serde_json::from_str(THREE_SHARDS).unwrap();
        let expected = "\
tree of depth 2: 2 of 3 slots taken, root NODE-1
NODE-1      10.0.1.11:5000  slot 0
├── NODE-2  10.0.1.12:5000  slot 1
└── (free)                  slot 2
root group:
  10.0.1.11:5000  primary
  10.0.1.10:5000  standby, in sync
root shards: 3
  shard 0  slots 0-5460  primary 10.0.1.11:5000
    10.0.1.11:5000  primary
    10.0.1.10:5000  standby, in sync
  shard 1  slots 5461-10921  primary 10.0.1.19:5000
    10.0.1.19:5000  primary
    10.0.1.18:5000  standby, catching up
  shard 2  slots 10922-12000, 12001-16383  primary none
    10.0.1.20:5000  standby, in sync";
        assert_eq!(render(&doc).unwrap(), expected);
    }

    #[test]
    fn one_shard_or_none_leaves_the_drawing_as_it_was() {
        let mut doc: Value = serde_json::from_str(THREE_SHARDS).unwrap();
        let shards = doc.as_object_mut().unwrap().remove("shards").unwrap();
        let without = render(&doc).unwrap();
        assert!(!without.contains("shard"), "{without}");
        doc["shards"] = json!([shards[0].clone()]);
        assert_eq!(render(&doc).unwrap(), without);
    }

    #[test]
    fn malformed_shards_are_refused() {
        // The document's own type reads `shards` first: a malformed list
        // makes the whole answer unreadable, with serde's reason.
        let mut doc: Value = serde_json::from_str(THREE_SHARDS).unwrap();
        doc["shards"][1]["ranges"] = json!([[5461]]);
        let error = render(&doc).unwrap_err();
        assert!(error.contains("not a /nodes document"), "{error}");
        doc["shards"] = json!({"shard": 0});
        assert!(render(&doc).is_err());
    }

    #[test]
    fn inconsistent_documents_still_show_every_node_once() {
        let doc = json!({
            "depth": 2, "capacity": 3, "root": "NODE-1",
            "nodes": [
                // NODE-2 names the root as its child: drawn once, no endless loop.
                node("NODE-1", 0, None, Some("NODE-2"), Some("NODE-9")),
                node("NODE-2", 1, Some("NODE-1"), Some("NODE-1"), None),
                node("NODE-3", 2, None, None, None),
            ],
        });
        let drawing = render(&doc).unwrap();
        assert_eq!(drawing.matches("NODE-1").count(), 2, "{drawing}"); // header + row
        assert!(
            drawing.contains("└── NODE-9  (not in the node list)"),
            "{drawing}"
        );
        assert!(
            drawing.contains("not attached to the tree:\n  NODE-3"),
            "{drawing}"
        );
    }

    #[test]
    fn documents_without_a_root_or_node_list_are_refused() {
        assert!(render(&json!({"nodes": []}))
            .unwrap_err()
            .contains("no root"));
        assert!(render(&json!({"root": "NODE-1"}))
            .unwrap_err()
            .contains("list of nodes"));
        let nameless = json!({"root": "NODE-1", "nodes": [{"slot": 0}]});
        assert!(render(&nameless).unwrap_err().contains("no name"));
    }

    #[test]
    fn documents_missing_other_fields_are_refused_naming_the_field() {
        let doc = json!({
            "depth": 2, "capacity": 3, "root": "NODE-1",
            "nodes": [{"name": "NODE-1", "slot": 0, "depth": 1}],
        });
        let error = render(&doc).unwrap_err();
        assert!(error.contains("not a /nodes document"), "{error}");
        assert!(error.contains("address"), "{error}");
        let doc = json!({"root": "NODE-1", "nodes": []});
        assert!(render(&doc).unwrap_err().contains("depth"));
    }
}
