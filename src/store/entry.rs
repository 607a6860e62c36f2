//! How the store keeps one key: its bytes in a [`Blob`] and the bits every
//! concern keeps about it in a [`Meta`].
//!
//! One entry serves the values, the root's writes and the holder directory
//! at once. A map per concern would copy every key once more, and keeping
//! the key and the value in one allocation is what keeps the root near 100
//! bytes per small key.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use super::{Shard, Store};

/// `Meta::lru` of an entry outside the LRU order: everything on the root
/// (which never evicts) and placeholders on caches.
pub(super) const NO_LRU: u32 = u32::MAX;

/// In `Meta::flags`: the entry holds a value. Without it the entry is a
/// placeholder, kept only for its directory bits or its pending mark.
pub(super) const HAS_VALUE: u8 = 1;
/// In `Meta::flags` (root only): a write of the key is under way, so
/// answers given meanwhile may be superseded before they arrive.
pub(super) const PENDING: u8 = 2;
/// In `Meta::flags`: the value expires; its deadline is in the shard's
/// `Expiries` (so that keys without one pay nothing for it).
pub(super) const EXPIRES: u8 = 4;

/// A key and its value in one allocation: `[key length: u16][key][value]`.
/// Keeping both in one block is what keeps the root near 100 bytes per small key.
pub(super) struct Blob(Box<[u8]>);

impl Blob {
    pub(super) fn new(key: &str, value: &[u8]) -> Blob {
        let mut b = Vec::with_capacity(2 + key.len() + value.len());
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(value);
        Blob(b.into_boxed_slice())
    }

    fn key_len(&self) -> usize {
        u16::from_le_bytes([self.0[0], self.0[1]]) as usize
    }

    pub(super) fn key(&self) -> &str {
        let bytes = &self.0[2..2 + self.key_len()];
        // SAFETY: the bytes were copied from a `&str` in `Blob::new` and never change.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.0[2 + self.key_len()..]
    }
}

// The map is keyed by the blob but looked up by `&str`: borrowing, hashing
// and comparing must all go through the key alone.
impl Borrow<str> for Blob {
    fn borrow(&self) -> &str {
        self.key()
    }
}

impl Hash for Blob {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Blob {}

pub(super) struct Meta {
    pub(super) version: u64,
    /// Handle in the shard's LRU order, or [`NO_LRU`].
    pub(super) lru: u32,
    /// Directory: `Side::bit`s of the children that hold this key.
    pub(super) holders: u8,
    pub(super) flags: u8,
}

impl Meta {
    pub(super) fn has_value(&self) -> bool {
        self.flags & HAS_VALUE != 0
    }
    pub(super) fn pending(&self) -> bool {
        self.flags & PENDING != 0
    }
    pub(super) fn expires(&self) -> bool {
        self.flags & EXPIRES != 0
    }
}

impl Store {
    /// Inserts an entry without a value for `key`, which must have no entry.
    /// A placeholder lives for what it carries besides a value: directory
    /// bits of children that may still hold the key (a tombstone left by
    /// eviction, bits put back after a failed invalidation), or the pending
    /// mark of a write, so that fills answered meanwhile (404s) are marked
    /// pending too. It is charged for its key but is not counted as a key,
    /// and is never in the LRU order, so eviction cannot drop the bits.
    pub(super) fn insert_placeholder(
        &self,
        shard: &mut Shard,
        key: &str,
        version: u64,
        holders: u8,
        flags: u8,
    ) {
        shard.map.insert(
            Blob::new(key, b""),
            Meta {
                version,
                lru: NO_LRU,
                holders,
                flags: flags & !(HAS_VALUE | EXPIRES),
            },
        );
        let cost = self.entry_cost(key, 0);
        self.charge(shard, cost as i64, 0);
    }

    /// Removes an entry with its LRU link, its deadline and its byte charge.
    pub(super) fn remove_entry(&self, shard: &mut Shard, key: &str) -> Option<Meta> {
        let (blob, meta) = shard.map.remove_entry(key)?;
        if meta.lru != NO_LRU {
            shard.lru.remove(meta.lru);
        }
        if meta.expires() {
            self.forget_deadline(shard, key);
        }
        let cost = self.entry_cost(key, blob.value().len());
        let keys = if meta.has_value() { -1 } else { 0 };
        self.charge(shard, -(cost as i64), keys);
        Some(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{cache, value};
    use crate::tree::Side;

    #[test]
    fn a_blob_gives_back_its_key_and_its_value() {
        let b = Blob::new("key", b"value");
        assert_eq!((b.key(), b.value()), ("key", &b"value"[..]));
        let empty = Blob::new("k", b"");
        assert_eq!((empty.key(), empty.value()), ("k", &b""[..]));
        let k: &str = b.borrow();
        assert_eq!(k, "key");
    }

    #[test]
    fn a_placeholder_holds_no_value_and_is_charged_for_its_key_only() {
        let s = cache(1 << 20);
        {
            let mut shard = s.shard("k");
            s.insert_placeholder(&mut shard, "k", 3, Side::Left.bit(), HAS_VALUE | PENDING);
            let meta = shard.map.get("k").unwrap();
            assert!(!meta.has_value());
            assert!(meta.pending());
            assert_eq!(
                (meta.version, meta.lru, meta.holders),
                (3, NO_LRU, Side::Left.bit())
            );
            assert!(shard.lru.is_empty());
        }
        assert_eq!((s.keys(), s.bytes()), (0, s.entry_cost("k", 0)));
        assert_eq!(value(&s, "k"), None);
        // Removing it gives back exactly what it was charged.
        let meta = s.remove_entry(&mut s.shard("k"), "k").unwrap();
        assert_eq!(meta.holders, Side::Left.bit());
        assert_eq!((s.keys(), s.bytes()), (0, 0));
    }
}
