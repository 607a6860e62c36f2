//! Slot arithmetic of the binary tree: no I/O.
//!
//! The root keeps the tree as an array of `N = 2^depth - 1` slots. Slot 0 is
//! the root; the children of slot `s` are `2s+1` (left) and `2s+2` (right).

/// Which child of its parent a slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    /// The bit this side uses in a node's directory of holders.
    pub fn bit(self) -> u8 {
        match self {
            Side::Left => 1,
            Side::Right => 2,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }

    /// The sides whose bits are set in `bits`.
    pub fn from_bits(bits: u8) -> impl Iterator<Item = Side> {
        [Side::Left, Side::Right]
            .into_iter()
            .filter(move |s| bits & s.bit() != 0)
    }
}

/// The shape of a tree of a given depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tree {
    depth: u32,
}

impl Tree {
    pub const MAX_DEPTH: u32 = 10;

    pub fn new(depth: u32) -> Tree {
        assert!((1..=Self::MAX_DEPTH).contains(&depth), "depth {depth}");
        Tree { depth }
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Number of slots, which is also the number of node ids.
    pub fn capacity(&self) -> usize {
        (1usize << self.depth) - 1
    }

    pub fn contains_id(&self, id: u32) -> bool {
        id >= 1 && (id as usize) <= self.capacity()
    }

    pub fn contains_slot(&self, slot: usize) -> bool {
        slot < self.capacity()
    }

    /// The parent slot, or `None` for the root.
    pub fn parent(slot: usize) -> Option<usize> {
        (slot > 0).then(|| (slot - 1) / 2)
    }

    /// The child slot on one side, when it lies inside the tree.
    pub fn child(&self, slot: usize, side: Side) -> Option<usize> {
        let c = 2 * slot + 1 + side.index();
        self.contains_slot(c).then_some(c)
    }

    /// Which side of `parent` the slot `child` is on, if it is a child of it.
    pub fn side_of(parent: usize, child: usize) -> Option<Side> {
        if child == 2 * parent + 1 {
            Some(Side::Left)
        } else if child == 2 * parent + 2 {
            Some(Side::Right)
        } else {
            None
        }
    }

    /// Whether `slot` lies in the subtree below `ancestor` (not `ancestor` itself).
    pub fn is_below(slot: usize, ancestor: usize) -> bool {
        let mut s = slot;
        while let Some(p) = Tree::parent(s) {
            if p == ancestor {
                return true;
            }
            s = p;
        }
        false
    }

    /// Depth of a slot, the root being at depth 1.
    pub fn depth_of(slot: usize) -> u32 {
        usize::BITS - (slot + 1).leading_zeros()
    }

    /// The slots from the root down to `slot`, both included.
    pub fn path_to(slot: usize) -> Vec<usize> {
        let mut path = vec![slot];
        let mut s = slot;
        while let Some(p) = Tree::parent(s) {
            path.push(p);
            s = p;
        }
        path.reverse();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_by_depth() {
        assert_eq!(Tree::new(1).capacity(), 1);
        assert_eq!(Tree::new(3).capacity(), 7);
        assert_eq!(Tree::new(10).capacity(), 1023);
    }

    #[test]
    fn parents_children_and_depths() {
        let t = Tree::new(3);
        assert_eq!(Tree::parent(0), None);
        assert_eq!(Tree::parent(1), Some(0));
        assert_eq!(Tree::parent(2), Some(0));
        assert_eq!(Tree::parent(6), Some(2));
        assert_eq!(t.child(0, Side::Left), Some(1));
        assert_eq!(t.child(2, Side::Right), Some(6));
        assert_eq!(t.child(3, Side::Left), None);
        assert_eq!(Tree::side_of(1, 4), Some(Side::Right));
        assert_eq!(Tree::side_of(1, 5), None);
        let depths: Vec<u32> = (0..7).map(Tree::depth_of).collect();
        assert_eq!(depths, [1, 2, 2, 3, 3, 3, 3]);
    }

    #[test]
    fn slots_below_a_slot() {
        assert!(Tree::is_below(3, 1));
        assert!(Tree::is_below(9, 1));
        assert!(Tree::is_below(6, 0));
        assert!(!Tree::is_below(5, 1));
        assert!(!Tree::is_below(1, 1));
        assert!(!Tree::is_below(0, 1));
    }

    #[test]
    fn paths_from_the_root() {
        assert_eq!(Tree::path_to(0), [0]);
        assert_eq!(Tree::path_to(5), [0, 2, 5]);
        assert_eq!(Tree::path_to(9), [0, 1, 4, 9]);
    }

    #[test]
    fn ids_inside_the_tree() {
        let t = Tree::new(2);
        assert!(!t.contains_id(0));
        assert!(t.contains_id(3));
        assert!(!t.contains_id(4));
    }

    #[test]
    fn sides_from_bits() {
        assert_eq!(
            Side::from_bits(3).collect::<Vec<_>>(),
            [Side::Left, Side::Right]
        );
        assert_eq!(Side::from_bits(2).collect::<Vec<_>>(), [Side::Right]);
        assert_eq!(Side::from_bits(0).count(), 0);
    }
}
