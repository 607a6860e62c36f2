//! Which root shard a key belongs to, computed here on its own (not with
//! the node's code) so that tests can pick keys of each shard and check
//! where the node puts them.
//!
//! A key's hash slot is the CRC-32 (IEEE) of its bytes modulo [`SLOTS`];
//! of `k` shards, shard `s` owns the slots from `s * SLOTS / k` to
//! `(s + 1) * SLOTS / k - 1`.

/// Hash slots of the key space.
pub const SLOTS: u32 = 16_384;

/// The hash slot of `key`.
pub fn hash_slot(key: &str) -> u32 {
    crc32fast::hash(key.as_bytes()) % SLOTS
}

/// The slots shard `shard` of `shards` owns at the start, both ends included.
pub fn range(shard: u32, shards: u32) -> [u32; 2] {
    assert!(shard < shards, "shard {shard} of {shards}");
    [shard * SLOTS / shards, (shard + 1) * SLOTS / shards - 1]
}

/// The shard of `shards` that owns `key`.
pub fn shard_of(key: &str, shards: u32) -> u32 {
    let slot = hash_slot(key);
    (0..shards)
        .find(|&s| {
            let [from, to] = range(s, shards);
            (from..=to).contains(&slot)
        })
        .expect("the ranges cover every slot")
}

/// The first `n` keys `{prefix}-0`, `{prefix}-1`, ... that belong to
/// shard `shard` of `shards`.
pub fn keys_of_shard(prefix: &str, shard: u32, shards: u32, n: usize) -> Vec<String> {
    (0u64..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|key| shard_of(key, shards) == shard)
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_ranges_are_the_documented_ones() {
        // The CRC-32 (IEEE) check value: "123456789" is 0xCBF43926.
        assert_eq!(hash_slot("123456789"), 0xCBF4_3926 % SLOTS);
        assert_eq!(hash_slot(""), 0);
        let three: Vec<[u32; 2]> = (0..3).map(|s| range(s, 3)).collect();
        assert_eq!(three, [[0, 5460], [5461, 10921], [10922, 16383]]);
        assert_eq!(range(0, 1), [0, 16383]);
        assert_eq!(range(63, 64), [16128, 16383]);
    }

    #[test]
    fn keys_of_a_shard_belong_to_it() {
        for shard in 0..3 {
            let keys = keys_of_shard("k", shard, 3, 5);
            assert_eq!(keys.len(), 5);
            for key in &keys {
                let [from, to] = range(shard, 3);
                assert!((from..=to).contains(&hash_slot(key)), "{key}");
                assert_eq!(shard_of(key, 3), shard);
            }
        }
        assert_eq!(shard_of("anything", 1), 0);
    }
}
