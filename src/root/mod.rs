//! Everything only the root does, behind one handle ([`Root`]), held by
//! every process started with the root's id (the root group):
//! - `membership`: the slot table and joins;
//! - `group`: the election of the primary among the root group, its epochs
//!   and the in-sync standbys, kept in ZooKeeper;
//! - `replication`: the primary's writes, sent to its standbys;
//! - `bootstrap`: becoming the serving primary (register in ZooKeeper,
//!   rebuild the table, flush the caches below);
//! - `dedup`: writes applied at most once per request id;
//! - `error`: what the root group refuses or fails at ([`RootError`]);
//! - versions, and the data directory's log (`wal`).
//!
//! Other modules reach the root's state only through [`Root`]'s methods;
//! `node` holds one on the root's id and none elsewhere.

pub mod bootstrap;
pub mod dedup;
mod error;
pub mod group;
pub mod membership;
pub mod replication;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::error::Error;
use crate::expiry::{self, Kept};
use crate::store::{Mutation, Store};
use crate::tree::{Side, Tree};
use crate::wal::{Change, Edit, Identity, Logged, OpenError, Wal};
use crate::wire::{Join, Joined, NodesDoc, Peer};

pub use error::RootError;
use membership::Membership;

/// The root's own state. See the module documentation.
pub struct Root {
    tree: Tree,
    table: Mutex<Membership>,
    /// The table has been rebuilt from ZooKeeper and the caches below have
    /// been told to drop what an earlier run served: joins and writes are
    /// taken from then on.
    open: AtomicBool,
    next_version: AtomicU64,
    /// The writes applied under a request id, for retries.
    dedup: dedup::Dedup,
    /// The data directory's log, with `--data-dir`.
    wal: Option<Arc<Wal>>,
    group: group::Group,
    replication: Arc<replication::Replication>,
}

impl Root {
    /// The root's state; with `--data-dir`, what the directory holds is
    /// loaded into `store` first, and the log is kept from then on.
    pub fn open(config: &Config, store: &Arc<Store>) -> Result<Root, OpenError> {
        let Some(path) = &config.data_dir else {
            log::warn!(
                "no --data-dir: the root keeps its data in memory only, and a restart loses it"
            );
            let id = crate::wal::dir::random_id().map_err(|e| OpenError::Io(e.to_string()))?;
            return Ok(Root::new(config, format!("memory-{id}"), true));
        };
        let identity = Identity {
            zk_prefix: config.zk_prefix.clone(),
            root_id: config.root_id,
            depth: config.tree.depth(),
        };
        // A key kept with a time of expiry gets back the time it has left;
        // one whose time ran out while the root was down is dropped.
        let (now_ms, now) = (expiry::unix_now_ms(), Instant::now());
        let (wal, recovered) = Wal::open(path, &identity, config.fsync, &mut |r| {
            let kept = expiry::from_unix_ms(r.expires_ms, now_ms, now);
            match (r.change, kept) {
                (Change::Put(v), Kept::Forever) => store.restore(&r.key, Some(&v), r.version, None),
                (Change::Put(v), Kept::Until(at)) => {
                    store.restore(&r.key, Some(&v), r.version, Some(at))
                }
                (Change::Put(_), Kept::Expired) | (Change::Delete, _) => {
                    store.restore(&r.key, None, r.version, None)
                }
                (Change::End(_), _) => {}
            }
        })?;
        log::info!(
            "recovered {} keys from {} records in {} in {:.2} s (--fsync {})",
            store.keys(),
            recovered.records,
            path.display(),
            recovered.took.as_secs_f64(),
            config.fsync.name()
        );
        let mut root = Root::new(config, wal.id().to_string(), false);
        // Versions go on above every version the directory has seen.
        root.note_version(recovered.max_version);
        let wal = Arc::new(wal);
        wal.compact_in_background(store.clone());
        root.wal = Some(wal);
        Ok(root)
    }

    /// The root's state, for the member `id` of the root group (`memory`:
    /// without a data directory).
    pub fn new(config: &Config, id: String, memory: bool) -> Root {
        // Versions start at the clock so that a restarted root keeps counting up.
        let start = unix_micros().max(1);
        Root {
            tree: config.tree,
            table: Mutex::new(Membership::new(
                config.tree,
                config.root_id,
                config.advertise.clone(),
                &config.zk_prefix,
            )),
            open: AtomicBool::new(false),
            next_version: AtomicU64::new(start),
            dedup: dedup::Dedup::default(),
            wal: None,
            group: group::Group::new(
                group::Member {
                    id,
                    address: config.advertise.clone(),
                },
                memory,
            ),
            replication: Arc::default(),
        }
    }

    /// The root group, and this process's part in it.
    pub fn group(&self) -> &group::Group {
        &self.group
    }

    pub fn replication(&self) -> &Arc<replication::Replication> {
        &self.replication
    }

    /// Whether this process is the primary of the root group.
    pub fn is_primary(&self) -> bool {
        self.group.is_primary()
    }

    /// Versions go on above `version` (seen in the log, or from the primary).
    pub fn note_version(&self, version: u64) {
        self.next_version.fetch_max(version + 1, Ordering::Relaxed);
    }

    /// Closes the root to joins and writes until `set_open` (a new primary
    /// has work to do first).
    pub fn set_closed(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// Logs a write with `--data-dir` (a put's expiry as a Unix time in
    /// milliseconds, 0 for none): apply it in memory while holding what this
    /// returns, and not at all when it fails (507 disk full, 500 another I/O
    /// error, 503 after a failed sync or while stopping).
    pub fn log(
        &self,
        key: &str,
        version: u64,
        expires_ms: u64,
        mutation: &Mutation,
    ) -> Result<Option<Logged<'_>>, Error> {
        self.log_then(key, version, expires_ms, mutation, || ()).0
    }

    /// As [`Root::log`], and runs `during` once the write is in the log's
    /// file (at once without `--data-dir`; not at all when writing it
    /// failed), while the log is synced: the primary replicates a write
    /// alongside its own sync. Returns what `during` returned, if it ran.
    pub fn log_then<R>(
        &self,
        key: &str,
        version: u64,
        expires_ms: u64,
        mutation: &Mutation,
        during: impl FnOnce() -> R,
    ) -> (Result<Option<Logged<'_>>, Error>, Option<R>) {
        let Some(wal) = &self.wal else {
            return (Ok(None), Some(during()));
        };
        let edit = match mutation {
            Mutation::Put(v) => Edit::Put(v),
            Mutation::Delete => Edit::Delete,
        };
        let (logged, ran) = wal.log_then(key, version, expires_ms, edit, during);
        let logged = logged.map(Some).map_err(Error::Log);
        (logged, ran)
    }

    /// The log, with `--data-dir`.
    pub fn wal(&self) -> Option<&Wal> {
        self.wal.as_deref()
    }

    /// Syncs and closes the log (at shutdown), after waiting up to `wait`
    /// for the writes under way.
    pub fn close(&self, wait: Duration) {
        if let Some(wal) = &self.wal {
            match wal.close(wait) {
                Ok(()) => log::info!("the log is synced and closed"),
                Err(e) => log::error!("closing the log failed: {e}"),
            }
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
        crate::config::parse_host_port(&join.address)
            .map_err(|_| RootError::BadAddress(join.address.clone()))?;
        self.require_open()?;
        let joined = self
            .table()
            .join(&join.name, &join.address)
            .map_err(RootError::Join)?;
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

    /// Opens the root to joins and writes (see `open`).
    pub fn set_open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// 503 until the root is open (and while it is not the primary).
    pub fn require_open(&self) -> Result<(), Error> {
        if !self.group.is_primary() {
            return Err(RootError::Standby.into());
        }
        if self.open.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(RootError::Starting.into())
        }
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

    /// The writes applied under a request id.
    pub fn dedup(&self) -> &dedup::Dedup {
        &self.dedup
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
