//! Requests about many keys at once.
//!
//! - `POST /mget`: each key is read as a `GET` of it on this node would be,
//!   through the same read path, so with the same caching and coherence:
//!   hits are answered from this node's copy (on the receiving thread, when
//!   every key hits), and misses go up through the parent, several at once.
//!   A key that cannot be read (its upstream failed) fails the request with
//!   that error: an answer never calls a key missing that may exist. The
//!   values of one answer take at most the bound the caller gives (413
//!   past it), so that a small request cannot make the node build an
//!   answer of a thousand values of 1 MiB.
//! - `GET /keys`: a page of keys from the primary copy, on the root; every
//!   other node (a standby of the root group too) asks the root. With root
//!   shards, the node asks every shard's primary for a page of its own keys
//!   after the same key, and answers the first `limit` of them all in byte
//!   order: a key a shard did not send sorts after its page's last, so none
//!   is skipped, and `next` is the last key answered whenever any shard had
//!   more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::deadline::Deadline;
use crate::input::Listing;
use crate::node::failed::Error;
use crate::wire::{Answer, KeysPage};

use super::{Node, NodeError};

/// Most misses of one `POST /mget` read upstream at the same time.
const MGET_PARALLEL: usize = 8;

/// What a `POST /mget` has found so far: per key asked, in order, its value
/// (compact JSON), `None` when it exists nowhere; keys not yet read are
/// listed in `unread`.
pub struct Gathered {
    pub keys: Vec<String>,
    pub values: Vec<Option<Vec<u8>>>,
    unread: Vec<usize>,
    /// The values' bytes so far, and the most they may take.
    bytes: usize,
    max_bytes: usize,
}

/// 413 for an answer whose values would pass `max` bytes.
fn too_large(max: usize) -> Error {
    Error::from(NodeError::TooMuchAsked { max_mib: max >> 20 })
}

impl Gathered {
    /// Whether some keys must still be read through the parent.
    pub fn incomplete(&self) -> bool {
        !self.unread.is_empty()
    }
}

impl Node {
    /// `POST /mget`, the part answered from this node's own copy: every key
    /// is looked up here; those that must go upstream are left unread
    /// (`Node::read_many`). The values found take at most `max_bytes`.
    pub fn read_many_now(&self, keys: Vec<String>, max_bytes: usize) -> Result<Gathered, Error> {
        let mut values = Vec::with_capacity(keys.len());
        let mut unread = Vec::new();
        let mut bytes = 0;
        for (i, key) in keys.iter().enumerate() {
            match self.read_now(key, false, <[u8]>::to_vec) {
                Ok(Some(found)) => {
                    bytes += found.value.len();
                    if bytes > max_bytes {
                        return Err(too_large(max_bytes));
                    }
                    values.push(Some(found.value));
                }
                Ok(None) => {
                    values.push(None);
                    unread.push(i);
                }
                Err(Error::Node(NodeError::NotFound { .. })) => values.push(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Gathered {
            keys,
            values,
            unread,
            bytes,
            max_bytes,
        })
    }

    /// `POST /mget`, the rest: reads the keys left unread through the
    /// parent, up to `MGET_PARALLEL` at a time.
    pub fn read_many(&self, gathered: &mut Gathered, deadline: Deadline) -> Result<(), Error> {
        let unread = std::mem::take(&mut gathered.unread);
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let read: Mutex<Vec<(usize, Option<Vec<u8>>)>> = Mutex::new(Vec::new());
        let bytes = AtomicUsize::new(gathered.bytes);
        let max_bytes = gathered.max_bytes;
        let keys = &gathered.keys;
        let work = || loop {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = unread.get(n) else { return };
            if failure.lock().unwrap().is_some() {
                return;
            }
            match self.read(&keys[i], deadline) {
                Ok(found) => {
                    let size = found.as_ref().map_or(0, |f| f.value.len());
                    if bytes.fetch_add(size, Ordering::Relaxed) + size > max_bytes {
                        failure.lock().unwrap().get_or_insert(too_large(max_bytes));
                        return;
                    }
                    read.lock().unwrap().push((i, found.map(|f| f.value)));
                }
                Err(e) => {
                    failure.lock().unwrap().get_or_insert(e);
                    return;
                }
            }
        };
        let helpers = unread.len().min(MGET_PARALLEL) - 1;
        std::thread::scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(work);
            }
            work();
        });
        if let Some(e) = failure.into_inner().unwrap() {
            return Err(e);
        }
        for (i, value) in read.into_inner().unwrap() {
            gathered.values[i] = value;
        }
        gathered.bytes = bytes.into_inner();
        Ok(())
    }

    /// `GET /keys` on the root (the primary of the root group): the page
    /// from its copy. `None` on any other node, which asks the root
    /// (`Node::keys`); with root shards, `None` unless `own` (a node asks
    /// for this shard's keys alone), since every shard must be asked.
    pub fn keys_here(&self, listing: &Listing, own: bool) -> Option<Result<KeysPage, Error>> {
        self.root.as_ref().filter(|r| r.is_primary())?;
        if self.config.root_shards > 1 && !own {
            return None;
        }
        Some(self.own_keys(listing))
    }

    /// A page of this primary's own keys.
    fn own_keys(&self, listing: &Listing) -> Result<KeysPage, Error> {
        if !self.cache_trusted() {
            return Err(self.untrusted_root());
        }
        // One key more than asked for tells whether more follow.
        let mut keys = self
            .store
            .list(&listing.prefix, &listing.after, listing.limit + 1);
        let next = match keys.len() > listing.limit {
            true => {
                keys.truncate(listing.limit);
                keys.last().cloned()
            }
            false => None,
        };
        Ok(KeysPage { keys, next })
    }

    /// `GET /keys` on a node that is not the root: the root's answer; with
    /// root shards, every shard's pages merged (see the module documentation).
    pub fn keys(&self, listing: &Listing, deadline: Deadline) -> Result<Answer, Error> {
        if self.config.root_shards == 1 {
            return self
                .to_root(|root| self.links.up.keys(root, listing, None, deadline))
                .map_err(Error::from);
        }
        let mut pages = Vec::new();
        for shard in 0..self.config.root_shards {
            pages.push(self.shard_keys(shard, listing, deadline)?);
        }
        Ok(Answer::json(&merge_pages(pages, listing.limit)))
    }

    /// A page of the keys of `shard`, from its primary (this process, if it is).
    fn shard_keys(
        &self,
        shard: u32,
        listing: &Listing,
        deadline: Deadline,
    ) -> Result<KeysPage, Error> {
        if shard == self.home_shard() && self.is_root() {
            return self.own_keys(listing);
        }
        let answer = self.to_shard(shard, |primary| {
            self.links.up.keys(primary, listing, Some(shard), deadline)
        })?;
        if answer.status != 200 {
            return Err(Error::Upstream(answer.relayed()));
        }
        serde_json::from_slice(&answer.body).map_err(|e| {
            Error::Upstream(crate::peer::UpstreamError::Invalid {
                name: format!("the primary of root shard {shard}"),
                address: "(as found in ZooKeeper)".into(),
                detail: format!("its page of keys does not parse: {e}"),
            })
        })
    }
}

/// The first `limit` keys of every shard's page, in byte order; `next` when
/// any shard has more than it answered, or more were answered than fit.
fn merge_pages(pages: Vec<KeysPage>, limit: usize) -> KeysPage {
    let more = pages.iter().any(|p| p.next.is_some());
    let mut keys: Vec<String> = pages.into_iter().flat_map(|p| p.keys).collect();
    keys.sort_unstable();
    let cut = keys.len() > limit;
    keys.truncate(limit);
    let next = match more || cut {
        true => keys.last().cloned(),
        false => None,
    };
    KeysPage { keys, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&str], next: bool) -> KeysPage {
        KeysPage {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            next: next.then(|| keys.last().unwrap().to_string()),
        }
    }

    #[test]
    fn pages_of_shards_merge_in_byte_order_and_skip_no_key() {
        let merged = merge_pages(vec![page(&["a", "d"], true), page(&["b", "c"], false)], 2);
        assert_eq!(merged.keys, ["a", "b"]);
        assert_eq!(merged.next.as_deref(), Some("b"));
        let merged = merge_pages(vec![page(&["a"], false), page(&["b"], false)], 5);
        assert_eq!((merged.keys.len(), merged.next), (2, None));
        // A shard with more than it sent: next names the last key answered.
        let merged = merge_pages(vec![page(&["x", "y"], true), page(&[], false)], 3);
        assert_eq!(merged.next.as_deref(), Some("y"));
    }
}
