//! How the store keeps one key: its bytes in a [`Blob`] and the bits every
//! concern keeps about it in a [`Meta`].
//!
//! One entry serves the values, the root's writes and the holder directory
//! at once. A map per concern would copy every key once more, and keeping
//! the key and the value in one allocation is what keeps the root near 100
//! bytes per small key.

use std::alloc::Layout;
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ptr::NonNull;

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

/// A key and its value in one allocation, reached through a thin pointer:
/// `[length of the rest: u32][key length: u16][key][value]`.
///
/// Keeping both in one block, and the pointer to it one word (not the two
/// of a `Box<[u8]>`), is what keeps the root near 100 bytes per small key:
/// the map's table has about two slots per key just after it grew, so each
/// word of an entry costs some 16 bytes a key. The length's four bytes fit
/// in what the allocator rounds a small block up to anyway.
pub(super) struct Blob(NonNull<u8>);

/// Bytes before the key length: the length of the rest.
const HEADER: usize = 4;

// SAFETY: a `Blob` owns its block alone (as a `Box<[u8]>` would) and never
// changes it after `Blob::new`, so it may move to, and be read from, any
// thread.
unsafe impl Send for Blob {}
unsafe impl Sync for Blob {}

impl Blob {
    pub(super) fn new(key: &str, value: &[u8]) -> Blob {
        let key_len = u16::try_from(key.len()).expect("keys are shorter than 64 KiB");
        let rest = 2 + key.len() + value.len();
        let length = u32::try_from(rest).expect("a key and value under 4 GiB");
        let layout = Blob::layout(rest);
        // SAFETY: the layout's size is at least HEADER + 2, never zero.
        let block = unsafe { std::alloc::alloc(layout) };
        let Some(block) = NonNull::new(block) else {
            std::alloc::handle_alloc_error(layout)
        };
        let parts: [&[u8]; 4] = [
            &length.to_le_bytes(),
            &key_len.to_le_bytes(),
            key.as_bytes(),
            value,
        ];
        let mut at = 0;
        for part in parts {
            // SAFETY: the parts add up to the block's size, so each copy
            // stays inside it; a fresh block overlaps nothing.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), block.as_ptr().add(at), part.len())
            };
            at += part.len();
        }
        debug_assert_eq!(at, layout.size());
        Blob(block)
    }

    fn layout(rest: usize) -> Layout {
        Layout::from_size_align(HEADER + rest, 1).expect("a block under 4 GiB")
    }

    /// Everything after the length: the key length, the key, the value.
    fn rest(&self) -> &[u8] {
        let mut length = [0; HEADER];
        // SAFETY: every block starts with its HEADER bytes of length, and the
        // `rest` bytes after them were written by `Blob::new`; the block
        // lives as long as `self`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.0.as_ptr(), length.as_mut_ptr(), HEADER);
            let rest = u32::from_le_bytes(length) as usize;
            std::slice::from_raw_parts(self.0.as_ptr().add(HEADER), rest)
        }
    }

    fn key_len(&self) -> usize {
        let rest = self.rest();
        u16::from_le_bytes([rest[0], rest[1]]) as usize
    }

    pub(super) fn key(&self) -> &str {
        let bytes = &self.rest()[2..2 + self.key_len()];
        // SAFETY: the bytes were copied from a `&str` in `Blob::new` and never change.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.rest()[2 + self.key_len()..]
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        let layout = Blob::layout(self.rest().len());
        // SAFETY: the block was allocated in `Blob::new` with this layout
        // (the same length), and is freed only here, once.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), layout) }
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
        // Long keys and values, and keys beyond ASCII, come back whole; the
        // blob is one word.
        let key = "ключ/".repeat(1000);
        let value = vec![7u8; 300_000];
        let long = Blob::new(&key, &value);
        assert_eq!((long.key(), long.value()), (&key[..], &value[..]));
        assert_eq!(std::mem::size_of::<Blob>(), std::mem::size_of::<usize>());
        // Moved between threads, read there, and dropped there.
        let back = std::thread::spawn(move || (long.key().len(), long.value().len()));
        assert_eq!(back.join().unwrap(), (key.len(), value.len()));
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
