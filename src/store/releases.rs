//! Release notices: a cache tells its parent which keys it dropped entirely,
//! so that the parent stops naming it as a holder of them.
//!
//! The danger is a notice that reaches the parent *after* this node cached
//! the key again: the parent would forget a holder that holds the key, and
//! the next write would not reach it. So:
//! - a notice not yet sent is simply withdrawn when the key is cached again
//!   (the parent never learned of it, and still names this node);
//! - a notice that was sent blocks caching the key until the parent has
//!   acknowledged it, or until its deadline has passed: the parent applies a
//!   notice only before the deadline it carries (checked under its lock), so
//!   after that it can no longer arrive late. Nothing blocks a key for good.
//! - a notice that surely did not arrive (the connection was refused) goes
//!   back to be sent again.

use std::collections::HashMap;
use std::time::Instant;

use super::{Mode, Shard, Store};

/// Where the release notice of one key stands.
#[derive(Debug, Default)]
struct Notice {
    /// Sent in batch `.0`; may still be applied by the parent until `.1`.
    sent: Option<(u64, Instant)>,
    /// Released (again) since, and not yet sent.
    unsent: bool,
}

/// A shard's release notices.
#[derive(Default)]
pub(super) struct Releases {
    notices: HashMap<Box<str>, Notice>,
}

impl Releases {
    /// Whether caching `key` now could be undone by a notice the parent may
    /// still apply. A notice not yet sent is withdrawn instead.
    pub(super) fn blocks_caching(&mut self, key: &str) -> bool {
        let Some(notice) = self.notices.get_mut(key) else {
            return false;
        };
        if notice
            .sent
            .is_some_and(|(_, until)| until <= Instant::now())
        {
            notice.sent = None;
        }
        if notice.sent.is_some() {
            return true;
        }
        self.notices.remove(key);
        false
    }

    /// Forgets every notice: the parent's directory is gone (it restarted,
    /// or this node starts over), so none of them matters any more.
    pub(super) fn clear(&mut self) {
        self.notices.clear();
    }
}

impl Store {
    /// A cache no longer holds `key` at all: the parent must be told.
    pub(super) fn note_release(&self, shard: &mut Shard, key: &str) {
        if matches!(self.mode, Mode::Cache { .. }) {
            shard.releases.notices.entry(key.into()).or_default().unsent = true;
        }
    }

    /// Takes up to `limit` keys released and not yet sent, as batch `batch`
    /// whose deadline is `until`.
    pub fn take_releases(&self, limit: usize, batch: u64, until: Instant) -> Vec<String> {
        let mut keys = Vec::new();
        for mut shard in self.each_shard() {
            for (key, notice) in shard.releases.notices.iter_mut() {
                if keys.len() >= limit {
                    return keys;
                }
                if notice.unsent {
                    notice.unsent = false;
                    notice.sent = Some((batch, until));
                    keys.push(key.to_string());
                }
            }
        }
        keys
    }

    /// The parent acknowledged batch `batch`: those keys may be cached again.
    pub fn releases_acknowledged(&self, keys: &[String], batch: u64) {
        for key in keys {
            let mut shard = self.shard(key);
            let releases = &mut shard.releases.notices;
            if let Some(notice) = releases.get_mut(key.as_str()) {
                if notice.sent.is_some_and(|(b, _)| b == batch) {
                    notice.sent = None;
                }
                if notice.sent.is_none() && !notice.unsent {
                    releases.remove(key.as_str());
                }
            }
        }
    }

    /// Batch `batch` surely did not reach the parent: send it again.
    pub fn releases_undelivered(&self, keys: &[String], batch: u64) {
        for key in keys {
            let mut shard = self.shard(key);
            if let Some(notice) = shard.releases.notices.get_mut(key.as_str()) {
                if notice.sent.is_some_and(|(b, _)| b == batch) {
                    notice.sent = None;
                    notice.unsent = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::test_support::{cache, fill, primary};

    fn release(store: &Store, key: &str) {
        store.note_release(&mut store.shard(key), key);
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_sent_release_blocks_caching_until_acknowledged() {
        let s = cache(1 << 20);
        release(&s, "a");
        release(&s, "b");
        let mut sent = s.take_releases(100, 1, later());
        sent.sort();
        assert_eq!(sent, ["a", "b"]);
        assert!(s.take_releases(100, 2, later()).is_empty(), "sent once");
        assert!(!fill(&s, "a", b"1", 1));
        s.releases_acknowledged(&["a".to_string()], 1);
        assert!(fill(&s, "a", b"1", 1));
        assert!(!fill(&s, "b", b"1", 1), "b is still unacknowledged");
    }

    #[test]
    fn an_unsent_release_is_withdrawn_when_the_key_is_cached_again() {
        let s = cache(1 << 20);
        release(&s, "a");
        assert!(fill(&s, "a", b"1", 1), "the parent never learned of it");
        assert!(s.take_releases(100, 1, later()).is_empty(), "withdrawn");
    }

    #[test]
    fn a_release_past_its_deadline_blocks_nothing() {
        let s = cache(1 << 20);
        release(&s, "a");
        s.take_releases(100, 1, Instant::now() - Duration::from_millis(1));
        assert!(fill(&s, "a", b"1", 1), "the parent can no longer apply it");
    }

    #[test]
    fn an_acknowledgement_of_an_older_batch_does_not_free_a_newer_release() {
        let s = cache(1 << 20);
        release(&s, "a");
        s.take_releases(100, 1, later());
        release(&s, "a");
        s.take_releases(100, 2, later());
        s.releases_acknowledged(&["a".to_string()], 1);
        assert!(!fill(&s, "a", b"1", 1), "batch 2 may still be applied");
        s.releases_acknowledged(&["a".to_string()], 2);
        assert!(fill(&s, "a", b"1", 1));
    }

    #[test]
    fn an_undelivered_batch_is_sent_again() {
        let s = cache(1 << 20);
        release(&s, "a");
        let sent = s.take_releases(100, 1, later());
        s.releases_undelivered(&sent, 1);
        assert_eq!(s.take_releases(100, 2, later()), ["a"]);
    }

    #[test]
    fn the_primary_has_no_parent_to_tell() {
        let s = primary();
        release(&s, "a");
        assert!(s.take_releases(100, 1, later()).is_empty());
    }
}
