//! The `/nodes` document drawn as an indented tree: the root first, each
//! node's children under it (left, then right), with branch lines.
//!
//! The caller says what a line shows, as cells that are lined up in columns:
//! the first cell follows the branch lines, the others are aligned. The
//! drawing tolerates documents that do not describe a proper tree: a name
//! that is not in the node list gets a line of its own, a child that is
//! already drawn is left out (so a cycle ends), and nodes that no parent
//! points to are listed after the tree, under `not attached to the tree:`.

use std::collections::{HashMap, HashSet};

use crate::nodes::{NodeEntry, NodesDoc};

/// What one line of the drawing stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// A node of the document.
    Node(&'a NodeEntry),
    /// A name that a parent (or `root`) points to, missing from the node list.
    Missing(&'a str),
    /// A child slot inside the tree's capacity that no node holds.
    Free(usize),
}

/// Draws `doc`, one line per place; `cells` gives the cells of a line.
///
/// ```
/// use treecache_common::drawing::{draw_tree, Place};
/// use treecache_common::nodes::{NodeEntry, NodesDoc};
///
/// let root = NodeEntry {
///     name: "NODE-1".into(),
///     address: "127.0.0.1:5001".into(),
///     slot: 0,
///     depth: 1,
///     parent: None,
///     left: None,
///     right: None,
///     live: None,
/// };
/// let doc = NodesDoc { depth: 2, capacity: 3, root: "NODE-1".into(), nodes: vec![root], root_group: None, shards: None };
/// let lines = draw_tree(&doc, |place| match place {
///     Place::Node(node) => vec![node.name.clone(), format!("slot {}", node.slot)],
///     Place::Missing(name) => vec![name.to_string()],
///     Place::Free(slot) => vec!["(free)".to_string(), format!("slot {slot}")],
/// });
/// assert_eq!(lines, ["NODE-1      slot 0", "├── (free)  slot 1", "└── (free)  slot 2"]);
/// ```
pub fn draw_tree<'a>(doc: &'a NodesDoc, cells: impl Fn(Place<'a>) -> Vec<String>) -> Vec<String> {
    let mut drawing = Drawing {
        members: doc
            .nodes
            .iter()
            .map(|node| (node.name.as_str(), node))
            .collect(),
        capacity: doc.capacity,
        cells: &cells,
        drawn: HashSet::new(),
        rows: Vec::new(),
    };
    drawing.draw(&doc.root, "", "");
    let attached = drawing.rows.len();
    let detached: Vec<&NodeEntry> = doc
        .nodes
        .iter()
        .filter(|node| !drawing.drawn.contains(node.name.as_str()))
        .collect();
    for node in &detached {
        drawing.push("  ", Place::Node(node));
    }
    let mut lines = align(&drawing.rows);
    if !detached.is_empty() {
        lines.insert(attached, "not attached to the tree:".to_string());
    }
    lines
}

struct Drawing<'a, 'c> {
    members: HashMap<&'a str, &'a NodeEntry>,
    capacity: usize,
    cells: &'c dyn Fn(Place<'a>) -> Vec<String>,
    drawn: HashSet<&'a str>,
    /// The cells of each line, the branch lines put before the first.
    rows: Vec<Vec<String>>,
}

impl<'a> Drawing<'a, '_> {
    fn push(&mut self, lead: &str, place: Place<'a>) {
        let mut row = (self.cells)(place);
        match row.first_mut() {
            Some(first) => first.insert_str(0, lead),
            None => row.push(lead.to_string()),
        }
        self.rows.push(row);
    }

    /// Adds the line of `name` behind `lead`, then its children, indented by `indent`.
    fn draw(&mut self, name: &'a str, lead: &str, indent: &str) {
        self.drawn.insert(name);
        let Some(node) = self.members.get(name).copied() else {
            self.push(lead, Place::Missing(name));
            return;
        };
        self.push(lead, Place::Node(node));

        let children = self.children(node);
        for (at, child) in children.iter().enumerate() {
            let last = at + 1 == children.len();
            let lead = format!("{indent}{}", if last { "└── " } else { "├── " });
            let deeper = format!("{indent}{}", if last { "    " } else { "│   " });
            match *child {
                Place::Node(child) => self.draw(&child.name, &lead, &deeper),
                Place::Missing(child) => self.draw(child, &lead, &deeper),
                Place::Free(_) => self.push(&lead, *child),
            }
        }
    }

    /// The left and right positions under `node`: a free position beyond the
    /// tree's capacity is not shown, and a node already drawn is not drawn again.
    fn children(&self, node: &'a NodeEntry) -> Vec<Place<'a>> {
        let mut children = Vec::new();
        for (offset, name) in [(1, &node.left), (2, &node.right)] {
            match name.as_deref() {
                Some(name) if self.drawn.contains(name) => {}
                Some(name) => children.push(match self.members.get(name) {
                    Some(child) => Place::Node(child),
                    None => Place::Missing(name),
                }),
                None => {
                    let slot = node.slot.checked_mul(2).and_then(|s| s.checked_add(offset));
                    if let Some(slot) = slot.filter(|&slot| slot < self.capacity) {
                        children.push(Place::Free(slot));
                    }
                }
            }
        }
        children
    }
}

/// Lines up the cells of all rows in columns two spaces apart; the last
/// cell of a line is not padded.
fn align(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (column, width) in widths.iter().enumerate() {
                let cell = row.get(column).map_or("", String::as_str);
                if column > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let padding = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', padding));
            }
            line.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, slot: usize, left: Option<&str>, right: Option<&str>) -> NodeEntry {
        NodeEntry {
            name: name.into(),
            address: format!("h:{}", &name[5..]),
            slot,
            depth: 1,
            parent: None,
            left: left.map(Into::into),
            right: right.map(Into::into),
            live: None,
        }
    }

    fn doc(capacity: usize, nodes: Vec<NodeEntry>) -> NodesDoc {
        NodesDoc {
            depth: 3,
            capacity,
            root: "NODE-1".into(),
            nodes,
            root_group: None,
            shards: None,
        }
    }

    fn cells(place: Place) -> Vec<String> {
        match place {
            Place::Node(node) => vec![node.name.clone(), node.address.clone()],
            Place::Missing(name) => vec![name.to_string(), "?".into()],
            Place::Free(slot) => vec!["(free)".into(), format!("slot {slot}")],
        }
    }

    #[test]
    fn children_go_under_their_parent_left_first() {
        let doc = doc(
            7,
            vec![
                node("NODE-3", 2, None, None),
                node("NODE-1", 0, Some("NODE-2"), Some("NODE-3")),
                node("NODE-2", 1, Some("NODE-4"), Some("NODE-5")),
                node("NODE-4", 3, None, None),
                node("NODE-5", 4, None, None),
            ],
        );
        let expected = [
            "NODE-1          h:1",
            "├── NODE-2      h:2",
            "│   ├── NODE-4  h:4",
            "│   └── NODE-5  h:5",
            "└── NODE-3      h:3",
            "    ├── (free)  slot 5",
            "    └── (free)  slot 6",
        ];
        assert_eq!(draw_tree(&doc, cells), expected);
    }

    #[test]
    fn leaves_have_no_free_children_beyond_the_capacity() {
        let doc = doc(
            3,
            vec![
                node("NODE-1", 0, None, Some("NODE-2")),
                node("NODE-2", 2, None, None),
            ],
        );
        assert_eq!(
            draw_tree(&doc, cells),
            ["NODE-1      h:1", "├── (free)  slot 1", "└── NODE-2  h:2"]
        );
    }

    #[test]
    fn inconsistent_documents_draw_every_node_once() {
        let doc = doc(
            3,
            vec![
                node("NODE-1", 0, Some("NODE-2"), Some("NODE-9")),
                node("NODE-2", 1, Some("NODE-1"), Some("NODE-2")),
                node("NODE-3", 2, None, None),
            ],
        );
        let expected = [
            "NODE-1      h:1",
            "├── NODE-2  h:2",
            "└── NODE-9  ?",
            "not attached to the tree:",
            "  NODE-3    h:3",
        ];
        assert_eq!(draw_tree(&doc, cells), expected);
    }

    #[test]
    fn a_root_missing_from_the_list_leaves_every_node_detached() {
        let doc = doc(3, vec![node("NODE-2", 1, None, None)]);
        assert_eq!(
            draw_tree(&doc, cells),
            ["NODE-1    ?", "not attached to the tree:", "  NODE-2  h:2"]
        );
    }

    #[test]
    fn rows_may_have_fewer_cells_than_others() {
        let doc = doc(3, vec![node("NODE-1", 0, None, None)]);
        let lines = draw_tree(&doc, |place| match place {
            Place::Node(node) => vec![node.name.clone(), "a".into(), "b".into()],
            _ => Vec::new(),
        });
        assert_eq!(lines, ["NODE-1  a  b", "├──", "└──"]);
    }
}
