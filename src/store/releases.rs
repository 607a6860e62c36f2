//! Release notices: a cache tells its parent which keys it dropped entirely,
//! so that the parent stops naming it as a holder of them.

use std::collections::HashSet;

use super::{Mode, Shard, Store};

/// A shard's release notices.
#[derive(Default)]
pub(super) struct Releases {
    /// Keys this cache dropped entirely whose release the parent has not yet
    /// acknowledged. Fills of these keys are not cached until it has, or the
    /// parent could forget us as a holder after we cached again.
    unacknowledged: HashSet<Box<str>>,
    /// Released keys not yet sent to the parent.
    outbox: Vec<Box<str>>,
}

impl Releases {
    /// Whether the parent has yet to acknowledge a release of `key`.
    pub(super) fn unacknowledged(&self, key: &str) -> bool {
        self.unacknowledged.contains(key)
    }
}

impl Store {
    /// A cache no longer holds `key` at all: the parent must be told.
    pub(super) fn note_release(&self, shard: &mut Shard, key: &str) {
        if matches!(self.mode, Mode::Cache { .. }) {
            shard.releases.unacknowledged.insert(key.into());
            shard.releases.outbox.push(key.into());
        }
    }

    /// Takes the keys released since the last call, to tell the parent.
    pub fn take_releases(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for mut shard in self.each_shard() {
            keys.extend(shard.releases.outbox.drain(..).map(String::from));
        }
        keys
    }

    /// The parent has acknowledged these releases: the keys may be cached again.
    pub fn releases_acknowledged(&self, keys: &[String]) {
        for key in keys {
            self.shard(key).releases.unacknowledged.remove(key.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{cache, fill, primary};

    fn release(store: &Store, key: &str) {
        store.note_release(&mut store.shard(key), key);
    }

    #[test]
    fn a_release_is_sent_once_and_blocks_caching_until_acknowledged() {
        let s = cache(1 << 20);
        release(&s, "a");
        release(&s, "b");
        let mut sent = s.take_releases();
        sent.sort();
        assert_eq!(sent, ["a", "b"]);
        assert!(s.take_releases().is_empty(), "the outbox was drained");
        assert!(!fill(&s, "a", b"1", 1));
        s.releases_acknowledged(&["a".to_string()]);
        assert!(fill(&s, "a", b"1", 1));
        assert!(!fill(&s, "b", b"1", 1), "b is still unacknowledged");
    }

    #[test]
    fn the_primary_has_no_parent_to_tell() {
        let s = primary();
        release(&s, "a");
        assert!(s.take_releases().is_empty());
        assert!(!s.shard("a").releases.unacknowledged("a"));
    }
}
