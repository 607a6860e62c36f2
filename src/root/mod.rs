//! Everything only the root does, behind one handle ([`Root`]): the slot
//! table and joins (`membership`), the versions of writes, the per-key
//! serialization of writes, and the root's start-up (`bootstrap`: register
//! in ZooKeeper, rebuild the table, flush the caches below).
//!
//! Other modules reach the root's state only through [`Root`]'s methods;
//! `node` holds one on the root and none elsewhere.

pub mod bootstrap;
pub mod membership;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::error::Error;
use crate::tree::{Side, Tree};
use crate::wire::{Join, Joined, NodesDoc, Peer};

use membership::{JoinError, Membership};

/// Stripes of the write lock: writes of keys on different stripes run at once.
const WRITE_STRIPES: usize = 1024;

/// The root's own state. See the module documentation.
pub struct Root {
    tree: Tree,
    table: Mutex<Membership>,
    /// The table has been rebuilt from ZooKeeper; joins are accepted.
    loaded: AtomicBool,
    next_version: AtomicU64,
    write_locks: Box<[Mutex<()>]>,
}

impl Root {
    pub fn new(config: &Config) -> Root {
        // Versions start at the clock so that a restarted root keeps counting up.
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Root {
            tree: config.tree,
            table: Mutex::new(Membership::new(
                config.tree,
                config.root_id,
                config.advertise.clone(),
                &config.zk_prefix,
            )),
            loaded: AtomicBool::new(false),
            next_version: AtomicU64::new(start),
            write_locks: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn table(&self) -> MutexGuard<'_, Membership> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `/nodes` document.
    pub fn document(&self) -> NodesDoc {
        self.table().document()
    }

    /// Places a joining node (`POST /nodes/join`).
    pub fn join(&self, join: &Join) -> Result<Joined, Error> {
        crate::config::parse_host_port(&join.address).map_err(|_| {
            Error::BadRequest(format!("The address {:?} is not host:port.", join.address))
        })?;
        if !self.loaded.load(Ordering::Acquire) {
            return Err(Error::Unavailable(
                "The root is still loading the tree from ZooKeeper; try again shortly.".into(),
            ));
        }
        let joined = self
            .table()
            .join(&join.name, &join.address)
            .map_err(|e| match e {
                JoinError::BadName(m) => Error::BadRequest(m),
                JoinError::IsRoot(m) => Error::Conflict(m),
            })?;
        log::info!(
            "{} joined at slot {} from {}",
            join.name,
            joined.slot,
            join.address
        );
        Ok(joined)
    }

    /// Rebuilds the table from znodes read below the root's znode; returns
    /// the paths of those that do not fit this tree (see `Membership::restore`).
    pub fn restore(&self, records: &[(String, Vec<u8>)]) -> Vec<String> {
        self.table().restore(records)
    }

    /// Opens the root to joins, once the table is rebuilt.
    pub fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// The nodes in the root's two child slots.
    pub fn children(&self) -> Vec<Peer> {
        let table = self.table();
        [Side::Left, Side::Right]
            .into_iter()
            .filter_map(|side| self.tree.child(0, side))
            .filter_map(|slot| table.peer_at(slot).cloned())
            .collect()
    }

    /// The znode path of the root.
    pub fn znode_path(&self) -> String {
        self.table().path_of(0)
    }

    /// A new version, greater than every one handed out before.
    pub fn next_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }

    /// Serializes writes of one key (and of the keys sharing its stripe).
    pub fn lock_key(&self, key: &str) -> MutexGuard<'_, ()> {
        let stripe = (fixed_hash(key) as usize) % WRITE_STRIPES;
        self.write_locks[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// FNV-1a: a stable hash for choosing a write stripe.
fn fixed_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}
