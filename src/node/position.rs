//! Where this node sits in the tree: its slot, depth and parent once it has
//! joined, the children that have filled from it, and where the root is.
//!
//! This is the one owner of those facts. Everything that reads them (`GET /`,
//! the routing of calls, the policy) asks here, and everything that changes
//! them (a join, a parent that moved, a child that introduced itself, a root
//! found at a new address) goes through here.

use std::sync::RwLock;

use crate::tree::{Side, Tree};
use crate::wire::{ChildId, Peer};

/// This node's place once it has joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub slot: usize,
    pub depth: u32,
    /// `None` for the root.
    pub parent: Option<Peer>,
}

/// See the module documentation.
pub struct Position {
    me: Peer,
    root_name: String,
    place: RwLock<Option<Place>>,
    /// The children that have filled from this node, by side: the nodes its
    /// invalidations and flushes go to.
    children: [RwLock<Option<Peer>>; 2],
    root_address: RwLock<Option<String>>,
}

impl Position {
    /// A node named `me`, not yet placed unless `place` is given (the root is
    /// placed from the start).
    pub fn new(
        me: Peer,
        root_name: String,
        root_address: Option<String>,
        place: Option<Place>,
    ) -> Position {
        Position {
            me,
            root_name,
            place: RwLock::new(place),
            children: Default::default(),
            root_address: RwLock::new(root_address),
        }
    }

    pub fn place(&self) -> Option<Place> {
        self.place.read().unwrap().clone()
    }

    pub fn joined(&self) -> bool {
        self.place.read().unwrap().is_some()
    }

    pub fn set_place(&self, place: Place) {
        *self.place.write().unwrap() = Some(place);
    }

    pub fn parent(&self) -> Option<Peer> {
        self.place.read().unwrap().as_ref()?.parent.clone()
    }

    /// The parent is now at `to` (it rejoined from another address).
    pub fn parent_moved(&self, to: Peer) {
        if let Some(place) = self.place.write().unwrap().as_mut() {
            place.parent = Some(to);
        }
    }

    /// This node as it introduces itself to its parent in a fill.
    pub fn as_child(&self) -> Option<ChildId> {
        let slot = self.place.read().unwrap().as_ref()?.slot;
        Some(ChildId {
            slot,
            name: self.me.name.clone(),
            address: self.me.address.clone(),
        })
    }

    /// Which of this node's children `child` is, by its slot; records its
    /// address, which is where invalidations of what it caches will go.
    pub fn child_at(&self, child: &ChildId) -> Result<Side, NotAChild> {
        let side = self.side_of_child(child.slot)?;
        let peer = Peer {
            name: child.name.clone(),
            address: child.address.clone(),
        };
        let known = self.children[side.index()].read().unwrap().clone();
        if known.as_ref() != Some(&peer) {
            *self.children[side.index()].write().unwrap() = Some(peer);
        }
        Ok(side)
    }

    /// Where the node asking for a fill sits below this one: a child (its
    /// address recorded, as by `child_at`), or further below (a node reading
    /// around its dead parent).
    pub fn below(&self, asking: &ChildId) -> Result<Below, NotAChild> {
        if let Ok(side) = self.child_at(asking) {
            return Ok(Below::Child(side));
        }
        let mine = self.place.read().unwrap().as_ref().map(|p| p.slot);
        match mine {
            Some(m) if Tree::is_below(asking.slot, m) => Ok(Below::Descendant),
            _ => Err(NotAChild { mine }),
        }
    }

    /// Which side of this node the slot `slot` is on, if it is a child of it.
    pub fn side_of_child(&self, slot: usize) -> Result<Side, NotAChild> {
        let mine = self.place.read().unwrap().as_ref().map(|p| p.slot);
        mine.and_then(|m| Tree::side_of(m, slot))
            .ok_or(NotAChild { mine })
    }

    /// Records `child` on `side` (from the root's table, before it fills).
    pub fn note_child(&self, side: Side, child: Peer) {
        *self.children[side.index()].write().unwrap() = Some(child);
    }

    /// The child on `side`, if it has ever filled from this node.
    pub fn child(&self, side: Side) -> Option<Peer> {
        self.children[side.index()].read().unwrap().clone()
    }

    /// Every child that has filled from this node.
    pub fn children(&self) -> Vec<Peer> {
        [Side::Left, Side::Right]
            .into_iter()
            .filter_map(|s| self.child(s))
            .collect()
    }

    /// The root, once its address is known.
    pub fn root(&self) -> Option<Peer> {
        Some(Peer {
            name: self.root_name.clone(),
            address: self.root_address.read().unwrap().clone()?,
        })
    }

    pub fn root_name(&self) -> &str {
        &self.root_name
    }

    pub fn set_root_address(&self, address: String) {
        *self.root_address.write().unwrap() = Some(address);
    }
}

/// Where a node asking for a fill sits below this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Below {
    /// A child, on this side.
    Child(Side),
    /// Further below: this node does not track it as a holder.
    Descendant,
}

/// A fill that names a slot which is not a child of this node; `mine` is
/// this node's slot, `None` before it has joined.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAChild {
    pub mine: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, address: &str) -> Peer {
        Peer {
            name: name.into(),
            address: address.into(),
        }
    }

    fn child(slot: usize, address: &str) -> ChildId {
        ChildId {
            slot,
            name: format!("NODE-{}", slot + 1),
            address: address.into(),
        }
    }

    #[test]
    fn a_moved_parent_is_what_every_reader_sees() {
        let p = Position::new(peer("NODE-4", "h:4"), "NODE-1".into(), None, None);
        assert!(!p.joined());
        assert_eq!(p.as_child(), None);
        p.set_place(Place {
            slot: 3,
            depth: 3,
            parent: Some(peer("NODE-2", "h:2")),
        });
        p.parent_moved(peer("NODE-2", "h:22"));
        assert_eq!(p.parent().unwrap().address, "h:22");
        assert_eq!(p.place().unwrap().parent.unwrap().address, "h:22");
        assert_eq!(p.as_child().unwrap().slot, 3);
    }

    #[test]
    fn children_are_known_by_slot_and_follow_new_addresses() {
        let p = Position::new(
            peer("NODE-2", "h:2"),
            "NODE-1".into(),
            Some("h:1".into()),
            Some(Place {
                slot: 1,
                depth: 2,
                parent: Some(peer("NODE-1", "h:1")),
            }),
        );
        assert_eq!(p.child_at(&child(4, "h:5")), Ok(Side::Right));
        assert_eq!(p.child_at(&child(3, "h:4")), Ok(Side::Left));
        assert_eq!(p.child_at(&child(3, "h:44")), Ok(Side::Left));
        assert_eq!(p.child(Side::Left).unwrap().address, "h:44");
        assert_eq!(p.children().len(), 2);
        assert_eq!(
            p.child_at(&child(5, "h:6")),
            Err(NotAChild { mine: Some(1) })
        );
        assert_eq!(p.root().unwrap().address, "h:1");
    }
}
