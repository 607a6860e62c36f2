//! Draws the `/nodes` document as an indented tree: one row per node with its
//! name, address and slot, children under their parent, free slots marked.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// One node as `/nodes` lists it.
struct Member<'a> {
    name: &'a str,
    address: &'a str,
    slot: Option<u64>,
    left: Option<&'a str>,
    right: Option<&'a str>,
}

impl<'a> Member<'a> {
    fn from_json(node: &'a Value) -> Result<Member<'a>, String> {
        let text = |field: &str| node.get(field).and_then(Value::as_str);
        Ok(Member {
            name: text("name").ok_or("a node in the /nodes answer has no name")?,
            address: text("address").unwrap_or("?"),
            slot: node.get("slot").and_then(Value::as_u64),
            left: text("left"),
            right: text("right"),
        })
    }
}

/// A child position under a node: taken by a node, or free.
enum Child<'a> {
    Node(&'a str),
    Free(u64),
}

/// One line of the drawing before the columns are aligned.
struct Row {
    /// Branch lines and the name, e.g. `│   ├── NODE-4`.
    label: String,
    address: String,
    slot: String,
}

struct Drawing<'a> {
    members: HashMap<&'a str, &'a Member<'a>>,
    capacity: Option<u64>,
    drawn: HashSet<&'a str>,
    rows: Vec<Row>,
}

/// Renders the `/nodes` document; an error says what the document lacks.
pub fn render(doc: &Value) -> Result<String, String> {
    let root = doc
        .get("root")
        .and_then(Value::as_str)
        .ok_or("the /nodes answer names no root")?;
    let members = doc
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or("the /nodes answer has no list of nodes")?
        .iter()
        .map(Member::from_json)
        .collect::<Result<Vec<_>, String>>()?;
    let capacity = doc.get("capacity").and_then(Value::as_u64);

    let mut drawing = Drawing {
        members: members.iter().map(|member| (member.name, member)).collect(),
        capacity,
        drawn: HashSet::new(),
        rows: Vec::new(),
    };
    drawing.draw(root, "", "");
    // Nodes that no parent points to would otherwise vanish from the picture.
    let detached: Vec<&Member> = members
        .iter()
        .filter(|member| !drawing.drawn.contains(member.name))
        .collect();
    let attached_rows = drawing.rows.len();
    for member in &detached {
        drawing.rows.push(row(format!("  {}", member.name), member));
    }
    let mut lines = align(&drawing.rows);
    if !detached.is_empty() {
        lines.insert(attached_rows, "not attached to the tree:".to_string());
    }

    let header = match (doc.get("depth").and_then(Value::as_u64), capacity) {
        (Some(depth), Some(capacity)) => format!(
            "tree of depth {depth}: {} of {capacity} slots taken, root {root}",
            members.len()
        ),
        _ => format!("{} nodes, root {root}", members.len()),
    };
    Ok(format!("{header}\n{}", lines.join("\n")))
}

impl<'a> Drawing<'a> {
    /// Adds the row of `name` behind `lead`, then its children, indented by `indent`.
    fn draw(&mut self, name: &'a str, lead: &str, indent: &str) {
        self.drawn.insert(name);
        let Some(member) = self.members.get(name).copied() else {
            self.rows.push(Row {
                label: format!("{lead}{name}"),
                address: "(not in the node list)".to_string(),
                slot: String::new(),
            });
            return;
        };
        self.rows.push(row(format!("{lead}{name}"), member));

        let children = self.children(member);
        for (at, child) in children.iter().enumerate() {
            let last = at + 1 == children.len();
            let lead = format!("{indent}{}", if last { "└── " } else { "├── " });
            let deeper = format!("{indent}{}", if last { "    " } else { "│   " });
            match child {
                Child::Node(child) => self.draw(child, &lead, &deeper),
                Child::Free(slot) => self.rows.push(Row {
                    label: format!("{lead}(free)"),
                    address: String::new(),
                    slot: format!("slot {slot}"),
                }),
            }
        }
    }

    /// The left and right positions under `member`; a position beyond the tree's
    /// capacity is not shown, and a node already drawn is not drawn again.
    fn children(&self, member: &Member<'a>) -> Vec<Child<'a>> {
        let mut children = Vec::new();
        for (offset, name) in [(1, member.left), (2, member.right)] {
            let slot = member.slot.map(|slot| 2 * slot + offset);
            match name {
                Some(name) if !self.drawn.contains(name) => children.push(Child::Node(name)),
                Some(_) => {}
                None => {
                    if let (Some(slot), Some(capacity)) = (slot, self.capacity) {
                        if slot < capacity {
                            children.push(Child::Free(slot));
                        }
                    }
                }
            }
        }
        children
    }
}

fn row(label: String, member: &Member) -> Row {
    Row {
        label,
        address: member.address.to_string(),
        slot: member
            .slot
            .map_or_else(|| "slot ?".to_string(), |slot| format!("slot {slot}")),
    }
}

/// Lines up the address and slot columns.
fn align(rows: &[Row]) -> Vec<String> {
    let label_width = rows
        .iter()
        .map(|row| row.label.chars().count())
        .max()
        .unwrap_or(0);
    let address_width = rows
        .iter()
        .map(|row| row.address.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|row| {
            let line = format!(
                "{:label_width$}  {:address_width$}  {}",
                row.label, row.address, row.slot
            );
            line.trim_end().to_string()
        })
        .collect()
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
}
