//! The keys, in byte order, a page at a time (`GET /keys` on the root).
//!
//! Keys are kept by hash, not in order, so a page is chosen by looking at
//! every key: each shard in turn, under its lock for the time of one pass,
//! keeps the smallest keys after the last page in a heap no larger than the
//! page. A page thus costs one pass over the keys and memory for one page.
//! It is not a snapshot: a key written or deleted while a client pages
//! through may or may not be listed.

use std::collections::BinaryHeap;
use std::time::Instant;

use super::Store;

impl Store {
    /// Up to `limit` keys that hold a value that has not expired, begin
    /// with `prefix`, and come after `after` in byte order; in that order.
    pub fn list(&self, prefix: &str, after: &str, limit: usize) -> Vec<String> {
        if limit == 0 {
            return Vec::new();
        }
        // The largest key kept is on top, to be dropped for a smaller one.
        let mut smallest: BinaryHeap<Box<str>> = BinaryHeap::with_capacity(limit.min(1 << 16) + 1);
        for shard in self.each_shard() {
            let now = Instant::now();
            for (blob, meta) in shard.map.iter() {
                let key = blob.key();
                if !meta.has_value() || key <= after || !key.starts_with(prefix) {
                    continue;
                }
                if smallest.len() == limit && smallest.peek().is_some_and(|top| key >= &**top) {
                    continue;
                }
                if Store::deadline(&shard, key, meta).is_some_and(|at| at <= now) {
                    continue;
                }
                smallest.push(key.into());
                if smallest.len() > limit {
                    smallest.pop();
                }
            }
        }
        smallest
            .into_sorted_vec()
            .into_iter()
            .map(String::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::test_support::{far, primary};
    use crate::store::Mutation;

    #[test]
    fn keys_come_in_byte_order_after_the_last_page_with_the_prefix() {
        let s = primary();
        for key in ["b", "a", "ab", "é", "Z", "a b", "aa", "c"] {
            s.apply_now(key, Mutation::Put(b"1".to_vec()), 1);
        }
        assert_eq!(
            s.list("", "", 100),
            ["Z", "a", "a b", "aa", "ab", "b", "c", "é"]
        );
        assert_eq!(s.list("a", "", 2), ["a", "a b"]);
        assert_eq!(s.list("a", "a b", 2), ["aa", "ab"]);
        assert_eq!(s.list("a", "ab", 2), Vec::<String>::new());
        assert_eq!(s.list("", "b", 100), ["c", "é"]);
        assert_eq!(s.list("x", "", 100), Vec::<String>::new());
        assert_eq!(s.list("", "", 0), Vec::<String>::new());
    }

    #[test]
    fn paging_visits_every_key_once() {
        let s = primary();
        for i in 0..1000 {
            s.apply_now(&format!("key-{i:04}"), Mutation::Put(b"1".to_vec()), 1);
        }
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let page = s.list("key-", &after, 77);
            let Some(last) = page.last() else { break };
            after = last.clone();
            seen.extend(page);
        }
        let expected: Vec<String> = (0..1000).map(|i| format!("key-{i:04}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn deleted_expired_and_pending_absent_keys_are_not_listed() {
        let s = primary();
        s.apply_now("kept", Mutation::Put(b"1".to_vec()), 1);
        s.apply_now("deleted", Mutation::Put(b"1".to_vec()), 1);
        s.apply_now("deleted", Mutation::Delete, 2);
        let soon = std::time::Instant::now() + Duration::from_millis(20);
        s.apply_now_until("expiring", Mutation::Put(b"1".to_vec()), 3, Some(soon));
        s.begin_write("being-written", far()).unwrap();
        assert_eq!(s.list("", "", 10), ["expiring", "kept"]);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(s.list("", "", 10), ["kept"]);
    }
}
