//! The root's table of the tree: who holds which slot. No I/O.
//!
//! Slots are given in order of arrival; a node that joins again under the
//! same name keeps its slot and only its address changes. A restarted root
//! rebuilds the table from the znodes the nodes registered.

use crate::config::node_name;
use crate::registry::ZnodeData;
use crate::tree::{Side, Tree};
use crate::wire::{Joined, NodeEntry, NodesDoc, Peer};

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// `name` cannot join this tree (400): why not.
    BadName { name: String, why: BadName },
    /// `name` is the root's own (409).
    IsRoot { name: String },
}

/// Why a name cannot join the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadName {
    /// Not of the form NODE-i.
    NotANodeName,
    /// Its id is outside the tree, whose ids run from 1 to `capacity`.
    Outside { capacity: usize },
    /// The tree has no free slot left.
    NoFreeSlot,
}

/// The slot table.
pub struct Membership {
    tree: Tree,
    root_id: u32,
    prefix: String,
    slots: Vec<Option<Peer>>,
}

impl Membership {
    /// A table holding only the root, in slot 0.
    pub fn new(tree: Tree, root_id: u32, root_address: String, prefix: &str) -> Membership {
        let mut slots = vec![None; tree.capacity()];
        slots[0] = Some(Peer {
            name: node_name(root_id),
            address: root_address,
        });
        Membership {
            tree,
            root_id,
            prefix: prefix.to_string(),
            slots,
        }
    }

    /// Checks a joining name: `NODE-i`, i inside the tree, not the root.
    pub fn parse_name(&self, name: &str) -> Result<u32, JoinError> {
        // Exactly NODE-{id}: "NODE-02" would be a second name for node 2.
        let bad = |why| JoinError::BadName {
            name: name.to_string(),
            why,
        };
        let id = treecache_common::names::parse_node_name(name)
            .ok_or_else(|| bad(BadName::NotANodeName))?;
        if !self.tree.contains_id(id) {
            return Err(bad(BadName::Outside {
                capacity: self.tree.capacity(),
            }));
        }
        if id == self.root_id {
            return Err(JoinError::IsRoot {
                name: name.to_string(),
            });
        }
        Ok(id)
    }

    /// Places a joining node: its old slot if it had one, else the first free slot.
    pub fn join(&mut self, name: &str, address: &str) -> Result<Joined, JoinError> {
        self.parse_name(name)?;
        let free = || self.slots.iter().position(Option::is_none);
        // With one name per id, N slots always have room for the N-1 other
        // ids; a table restored from damaged znodes is the only way to fill up.
        let slot = self
            .slot_of(name)
            .or_else(free)
            .ok_or_else(|| JoinError::BadName {
                name: name.to_string(),
                why: BadName::NoFreeSlot,
            })?;
        self.slots[slot] = Some(Peer {
            name: name.to_string(),
            address: address.to_string(),
        });
        Ok(self.placement(slot))
    }

    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.name == name))
    }

    pub fn peer_at(&self, slot: usize) -> Option<&Peer> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// Where a slot's node sits: depth, parent and znode path.
    pub fn placement(&self, slot: usize) -> Joined {
        Joined {
            slot,
            depth: Tree::depth_of(slot),
            parent: Tree::parent(slot).and_then(|p| self.peer_at(p).cloned()),
            path: self.path_of(slot),
        }
    }

    /// The znode path of a slot: the chain of names from the root.
    pub fn path_of(&self, slot: usize) -> String {
        let mut path = self.prefix.clone();
        for s in Tree::path_to(slot) {
            path.push('/');
            match self.peer_at(s) {
                Some(p) => path.push_str(&p.name),
                None => path.push_str(&format!("slot-{s}")),
            }
        }
        path
    }

    /// The data a slot's znode holds (the node registers it itself).
    #[cfg(test)]
    pub fn znode_data(&self, slot: usize) -> Option<ZnodeData> {
        let peer = self.peer_at(slot)?;
        Some(ZnodeData {
            name: peer.name.clone(),
            address: peer.address.clone(),
            slot,
            depth: Tree::depth_of(slot),
            parent: Tree::parent(slot).and_then(|p| self.peer_at(p).map(|p| p.name.clone())),
        })
    }

    /// The `/nodes` document.
    pub fn document(&self) -> NodesDoc {
        let name_at = |s: Option<usize>| s.and_then(|s| self.peer_at(s)).map(|p| p.name.clone());
        let nodes = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, p)| {
                let p = p.as_ref()?;
                Some(NodeEntry {
                    name: p.name.clone(),
                    address: p.address.clone(),
                    slot,
                    depth: Tree::depth_of(slot),
                    parent: name_at(Tree::parent(slot)),
                    left: name_at(self.tree.child(slot, Side::Left)),
                    right: name_at(self.tree.child(slot, Side::Right)),
                    live: None,
                })
            })
            .collect();
        NodesDoc {
            depth: self.tree.depth(),
            capacity: self.tree.capacity(),
            root: node_name(self.root_id),
            nodes,
            root_group: None,
            shards: None,
        }
    }

    /// Rebuilds the table from znodes read below the root's znode (parents
    /// first). Returns the paths of znodes that do not fit this tree (stale
    /// state of an earlier run with another shape), to be deleted.
    pub fn restore(&mut self, records: &[(String, Vec<u8>)]) -> Vec<String> {
        let root_path = self.path_of(0);
        let mut stale = Vec::new();
        for (path, data) in records {
            if *path == root_path {
                continue;
            }
            let Some(rest) = path.strip_prefix(&format!("{root_path}/")) else {
                continue;
            };
            let parsed: Option<ZnodeData> = serde_json::from_slice(data).ok();
            let fits = parsed.as_ref().is_some_and(|d| {
                let parent_ok = Tree::parent(d.slot).is_some_and(|p| {
                    let expected = self.path_of(p);
                    self.peer_at(p).is_some()
                        && path.strip_suffix(&format!("/{}", d.name)) == Some(&expected)
                });
                self.tree.contains_slot(d.slot)
                    && d.slot > 0
                    && rest.rsplit('/').next() == Some(d.name.as_str())
                    && self.parse_name(&d.name).is_ok()
                    && self.slot_of(&d.name).is_none()
                    && self.peer_at(d.slot).is_none()
                    && parent_ok
            });
            match parsed {
                Some(d) if fits => {
                    self.slots[d.slot] = Some(Peer {
                        name: d.name,
                        address: d.address,
                    })
                }
                _ => {
                    // A placeholder parent created before its node registered
                    // has empty data; its children are judged on their own.
                    if !(data.is_empty()
                        && records
                            .iter()
                            .any(|(p, _)| p.starts_with(&format!("{path}/"))))
                    {
                        stale.push(path.clone());
                    }
                }
            }
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Membership {
        Membership::new(Tree::new(3), 1, "h:5001".into(), "/treecache")
    }

    #[test]
    fn slots_are_given_in_order_of_arrival() {
        let mut m = table();
        let order = ["NODE-5", "NODE-2", "NODE-7", "NODE-3"];
        let slots: Vec<usize> = order
            .iter()
            .map(|n| m.join(n, "h:1").unwrap().slot)
            .collect();
        assert_eq!(slots, [1, 2, 3, 4]);
        let j = m.placement(4);
        assert_eq!(j.parent.unwrap().name, "NODE-5");
        assert_eq!(j.depth, 3);
        assert_eq!(j.path, "/treecache/NODE-1/NODE-5/NODE-3");
    }

    #[test]
    fn a_node_that_joins_again_keeps_its_slot() {
        let mut m = table();
        m.join("NODE-2", "h:1").unwrap();
        m.join("NODE-3", "h:2").unwrap();
        let again = m.join("NODE-2", "h:9").unwrap();
        assert_eq!(again.slot, 1);
        assert_eq!(m.peer_at(1).unwrap().address, "h:9");
        // Its child follows: the placement of slot 3 names the new address.
        m.join("NODE-4", "h:3").unwrap();
        assert_eq!(m.placement(3).parent.unwrap().address, "h:9");
    }

    #[test]
    fn bad_names_are_refused() {
        let mut m = table();
        for name in [
            "NODE-8", "NODE-0", "node-2", "NODE-", "NODE-x", "2", "NODE-+2", "NODE-02",
        ] {
            assert!(
                matches!(m.join(name, "h:1"), Err(JoinError::BadName { .. })),
                "{name}"
            );
        }
        assert!(matches!(
            m.join("NODE-1", "h:1"),
            Err(JoinError::IsRoot { .. })
        ));
    }

    #[test]
    fn the_document_lists_parents_and_children() {
        let mut m = table();
        m.join("NODE-3", "h:3").unwrap();
        m.join("NODE-2", "h:2").unwrap();
        let doc = m.document();
        assert_eq!(
            (doc.depth, doc.capacity, doc.root.as_str()),
            (3, 7, "NODE-1")
        );
        let root = &doc.nodes[0];
        assert_eq!(root.left.as_deref(), Some("NODE-3"));
        assert_eq!(root.right.as_deref(), Some("NODE-2"));
        assert_eq!(doc.nodes[1].parent.as_deref(), Some("NODE-1"));
    }

    #[test]
    fn a_restarted_root_rebuilds_the_same_tree() {
        let mut before = table();
        for n in ["NODE-4", "NODE-2", "NODE-6", "NODE-3"] {
            before.join(n, &format!("h:{n}")).unwrap();
        }
        let mut records: Vec<(String, Vec<u8>)> = (1..5)
            .map(|s| {
                let data = serde_json::to_vec(&before.znode_data(s).unwrap()).unwrap();
                (before.path_of(s), data)
            })
            .collect();
        records.insert(0, (before.path_of(0), b"{}".to_vec()));
        // An entry that does not fit a depth-3 tree, and garbage.
        records.push((
            "/treecache/NODE-1/NODE-4/NODE-9".into(),
            br#"{"name":"NODE-9","address":"x:1","slot":9,"depth":4}"#.to_vec(),
        ));
        records.push(("/treecache/NODE-1/NODE-5".into(), b"not json".to_vec()));
        let mut after = table();
        let stale = after.restore(&records);
        assert_eq!(after.document().nodes, before.document().nodes);
        assert_eq!(stale.len(), 2, "{stale:?}");
        assert_eq!(after.join("NODE-7", "h:7").unwrap().slot, 5);
    }
}
