//! Root shards: the key space cut into hash slots, and which root group
//! (shard) owns each slot. Pure arithmetic and the map's JSON; no I/O.
//!
//! A key's slot is the CRC-32 (IEEE) of its bytes modulo [`SLOTS`]. The
//! map of a cluster of `K` shards, written into ZooKeeper by the first root
//! to start, gives shard `s` the contiguous range
//! `[s * SLOTS / K, (s + 1) * SLOTS / K - 1]`. The map's `version` is there
//! for moving ranges while serving (not done yet): a node reloads the map
//! when a shard says a key is not its own.

use serde::{Deserialize, Serialize};

/// Hash slots of the key space.
pub const SLOTS: u32 = 16_384;

/// Most root shards a cluster may have.
pub const MAX_SHARDS: u32 = 64;

/// The hash slot of `key`.
pub fn slot(key: &str) -> u32 {
    crc32fast::hash(key.as_bytes()) % SLOTS
}

/// One range of slots, both ends included, and its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub shard: u32,
    pub from: u32,
    pub to: u32,
}

/// Which shard owns each slot (the JSON of `ZK_PREFIX/slots`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotMap {
    pub version: u64,
    pub shards: u32,
    pub ranges: Vec<Range>,
}

impl SlotMap {
    /// The map of a new cluster of `shards` root groups (1 to
    /// [`MAX_SHARDS`]): contiguous ranges of nearly equal size, in order.
    pub fn initial(shards: u32) -> SlotMap {
        assert!((1..=MAX_SHARDS).contains(&shards), "1 to 64 shards");
        let ranges = (0..shards)
            .map(|s| Range {
                shard: s,
                from: s * SLOTS / shards,
                to: (s + 1) * SLOTS / shards - 1,
            })
            .collect();
        SlotMap {
            version: 1,
            shards,
            ranges,
        }
    }

    /// The shard that owns `key`.
    pub fn shard_of(&self, key: &str) -> u32 {
        self.shard_of_slot(slot(key))
    }

    /// The shard that owns `slot` (0 for a slot no range names, which a
    /// valid map never leaves).
    pub fn shard_of_slot(&self, slot: u32) -> u32 {
        self.ranges
            .iter()
            .find(|r| (r.from..=r.to).contains(&slot))
            .map_or(0, |r| r.shard)
    }

    /// The ranges of `shard`, as `[from, to]` pairs.
    pub fn ranges_of(&self, shard: u32) -> Vec<[u32; 2]> {
        self.ranges
            .iter()
            .filter(|r| r.shard == shard)
            .map(|r| [r.from, r.to])
            .collect()
    }

    /// Why this map cannot be used, if it cannot: every slot must belong to
    /// exactly one shard below `shards`.
    pub fn problem(&self) -> Option<String> {
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return Some(format!("it has {} shards (1 to {MAX_SHARDS})", self.shards));
        }
        let mut ranges = self.ranges.clone();
        ranges.sort_by_key(|r| r.from);
        let mut next = 0;
        for r in &ranges {
            if r.from != next || r.to < r.from || r.shard >= self.shards {
                return Some(format!(
                    "its ranges do not cover the slots once each at {next}"
                ));
            }
            next = r.to + 1;
        }
        (next != SLOTS).then(|| format!("its ranges end at slot {next}, not {SLOTS}"))
    }
}

/// Why `ranges` are not slot ranges (each `[from, to]` with from <= to <
/// [`SLOTS`]), if they are not.
pub fn ranges_problem(ranges: &[[u32; 2]]) -> Option<String> {
    let bad = ranges.iter().find(|[from, to]| from > to || *to >= SLOTS)?;
    Some(format!(
        "the slot range {bad:?} is not [from, to] with from <= to < {SLOTS}"
    ))
}

/// A set of slots, for asking of many keys whether theirs is in it: one
/// bit per slot, whatever the number of ranges it was made of.
pub struct SlotSet([u64; (SLOTS / 64) as usize]);

impl SlotSet {
    /// The slots of `ranges` (those past [`SLOTS`] left out).
    pub fn of(ranges: &[[u32; 2]]) -> SlotSet {
        let mut bits = [0u64; (SLOTS / 64) as usize];
        for &[from, to] in ranges {
            for slot in from..=to.min(SLOTS - 1) {
                bits[(slot / 64) as usize] |= 1 << (slot % 64);
            }
        }
        SlotSet(bits)
    }

    /// Whether `key`'s slot is in the set.
    pub fn holds(&self, key: &str) -> bool {
        let s = slot(key);
        self.0[(s / 64) as usize] & (1 << (s % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_the_crc32_of_the_key_mod_16384() {
        // CRC-32 (IEEE) of "123456789" is 0xCBF43926.
        assert_eq!(slot("123456789"), 0xCBF4_3926 % 16_384);
        assert_eq!(slot(""), 0);
    }

    #[test]
    fn the_initial_map_cuts_the_slots_in_contiguous_ranges() {
        let map = SlotMap::initial(3);
        let ranges: Vec<(u32, u32, u32)> =
            map.ranges.iter().map(|r| (r.shard, r.from, r.to)).collect();
        assert_eq!(ranges, [(0, 0, 5460), (1, 5461, 10921), (2, 10922, 16383)]);
        assert_eq!(map.problem(), None);
        assert_eq!(SlotMap::initial(1).ranges_of(0), [[0, 16383]]);
        for k in 1..=MAX_SHARDS {
            assert_eq!(SlotMap::initial(k).problem(), None, "{k} shards");
        }
        assert_eq!(map.shard_of_slot(5460), 0);
        assert_eq!(map.shard_of_slot(5461), 1);
        assert_eq!(map.shard_of_slot(16383), 2);
    }

    #[test]
    fn the_map_is_the_documented_json() {
        let text = serde_json::to_string(&SlotMap::initial(2)).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"shards":2,"ranges":[{"shard":0,"from":0,"to":8191},{"shard":1,"from":8192,"to":16383}]}"#
        );
    }

    #[test]
    fn a_slot_set_holds_the_keys_of_its_ranges_alone() {
        let map = SlotMap::initial(3);
        let ranges = map.ranges_of(1);
        let set = SlotSet::of(&ranges);
        for n in 0..2000 {
            let key = format!("k{n}");
            assert_eq!(set.holds(&key), map.shard_of(&key) == 1, "{key}");
        }
        assert_eq!(ranges_problem(&ranges), None);
        assert!(ranges_problem(&[[5, 1]]).is_some());
        assert!(ranges_problem(&[[0, SLOTS]]).is_some());
    }

    #[test]
    fn a_map_with_a_gap_or_an_overlap_is_refused() {
        let mut map = SlotMap::initial(2);
        map.ranges[1].from = 8193;
        assert!(map.problem().is_some());
        map.ranges[1].from = 8191;
        assert!(map.problem().is_some());
        map.ranges[1].from = 8192;
        map.ranges[1].shard = 2;
        assert!(map.problem().is_some());
    }
}
