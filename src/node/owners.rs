//! Which root group (shard) owns a key, and calls to that group's primary.
//!
//! With `--root-shards K` above 1, every key belongs to one of K root
//! groups by its hash slot (`crate::shards`). Whatever a node would send to
//! the root for a key, it sends to the primary of the key's shard instead:
//! the root's children their fills, every node its forwarded writes, a
//! standby or a shard's primary what clients sent it for another shard's
//! key. Deeper nodes fill from their parent as before.
//!
//! A shard's primary is where its znode (`layout::group`) says; the address
//! is kept and looked up again when a call cannot reach it, when it answers
//! as a process that is no longer primary (503), or when it says the key is
//! not its own (421): then the slot map is read again too, and the call is
//! made once more, within the request's budget.

use std::sync::{Mutex, RwLock};

use crate::peer::{Peer, UpstreamError};
use crate::shards::SlotMap;

use super::Node;

/// Looks the primary of a shard up (in ZooKeeper): its address, if known.
pub type ShardLocator = Box<dyn Fn(u32) -> Option<String> + Send + Sync>;
/// Reads the cluster's slot map again (from ZooKeeper), if it can.
pub type MapLoader = Box<dyn Fn() -> Option<SlotMap> + Send + Sync>;

/// What a node knows of the shards.
pub(super) struct Owners {
    map: RwLock<SlotMap>,
    /// The last address found of each shard's primary.
    primaries: Mutex<Vec<Option<String>>>,
}

impl Owners {
    pub(super) fn new(shards: u32) -> Owners {
        Owners {
            map: RwLock::new(SlotMap::initial(shards)),
            primaries: Mutex::new(vec![None; shards as usize]),
        }
    }
}

impl Node {
    /// Takes the cluster's slot map (read at start, or again).
    pub fn set_slot_map(&self, map: SlotMap) {
        *self.owners.map.write().unwrap() = map;
    }

    /// The slot map in use.
    pub fn slot_map(&self) -> SlotMap {
        self.owners.map.read().unwrap().clone()
    }

    /// The root shard that owns `key`.
    pub fn shard_of(&self, key: &str) -> u32 {
        if self.config.root_shards == 1 {
            return 0;
        }
        self.owners.map.read().unwrap().shard_of(key)
    }

    /// The shard this process reaches as "the root": its own root group's
    /// on a process of one, shard 0's on a cache.
    pub(super) fn home_shard(&self) -> u32 {
        self.config.shard
    }

    /// Whether this process is the primary of `key`'s shard.
    pub(super) fn owns(&self, key: &str) -> bool {
        self.is_root() && self.shard_of(key) == self.home_shard()
    }

    /// Whether this is a process of a root group that does not own `key`
    /// (it passes what clients send it for the key on to its shard).
    pub(super) fn foreign_root(&self, key: &str) -> bool {
        self.root.is_some() && self.shard_of(key) != self.home_shard()
    }

    /// The primary of `shard` as last found, or looked up now (`fresh`: looked up again).
    pub(super) fn shard_primary(&self, shard: u32, fresh: bool) -> Option<Peer> {
        let known = self.owners.primaries.lock().unwrap()[shard as usize].clone();
        let address = match known {
            Some(address) if !fresh => address,
            _ => {
                let found = (self.links.locate_shard)(shard)?;
                self.owners.primaries.lock().unwrap()[shard as usize] = Some(found.clone());
                found
            }
        };
        Some(Peer {
            name: shard_name(self.position.root_name(), shard),
            address,
        })
    }

    /// Calls the primary of `shard` (see the module documentation); the
    /// root of this process's own group through `to_root`.
    pub(super) fn to_shard<T>(
        &self,
        shard: u32,
        call: impl Fn(&Peer) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        if shard == self.home_shard() {
            return self.to_root(call);
        }
        let peer = self
            .shard_primary(shard, false)
            .ok_or_else(|| no_primary(self.position.root_name(), shard))?;
        let failed = match call(&peer) {
            Err(e @ UpstreamError::WrongShard { .. }) => {
                if let Some(map) = (self.links.slot_map)() {
                    self.set_slot_map(map);
                }
                e
            }
            Err(
                e @ (UpstreamError::Unreachable { .. }
                | UpstreamError::TimedOut { .. }
                | UpstreamError::Relayed { status: 503, .. }),
            ) => e,
            other => return other,
        };
        match self.shard_primary(shard, true) {
            Some(again) if again.address != peer.address => {
                log::info!("the primary of root shard {shard} is at {}", again.address);
                call(&again)
            }
            // Refused at once: a pooled connection to a restarted process.
            Some(again) if matches!(failed, UpstreamError::Unreachable { .. }) => call(&again),
            _ => Err(failed),
        }
    }
}

/// How a shard's primary is named in errors: `NODE-1 (shard 2)`.
fn shard_name(root_name: &str, shard: u32) -> String {
    format!("{root_name} (shard {shard})")
}

fn no_primary(root_name: &str, shard: u32) -> UpstreamError {
    UpstreamError::Unreachable {
        name: shard_name(root_name, shard),
        address: "(unknown)".into(),
        detail: "no primary of the shard is registered in ZooKeeper yet".into(),
    }
}

impl Node {
    /// The flush a new primary of this root group sends the caches below:
    /// of its own slots, when there are several shards (the others' keys
    /// are not its to lose track of), else of everything.
    pub fn flush_of_own_slots(&self) -> crate::wire::Flush {
        crate::wire::Flush {
            slots: (self.config.root_shards > 1)
                .then(|| self.slot_map().ranges_of(self.home_shard())),
        }
    }

    /// 421 for a call from another node about `key` that this root group
    /// does not own (a fill, or a call naming the shard it meant): the
    /// caller looks the key's shard up again and retries there.
    pub fn refuse_foreign(&self, key: &str) -> Result<(), crate::node::failed::Error> {
        if !self.foreign_root(key) {
            return Ok(());
        }
        let shard = self.shard_of(key);
        Err(super::NodeError::WrongShard {
            key: key.to_string(),
            shard,
            primary: self.shard_primary(shard, false).map(|p| p.address),
        }
        .into())
    }
}
