//! Everything only the root does, behind one handle ([`Root`]), held by
//! every process started with the root's id (the root group):
//! - `membership`: the slot table and joins;
//! - `group`: this process's view of the root group (its role, epochs and
//!   the in-sync standbys) and its conditional writes of the root's state;
//! - `election`: the loop that follows the group in ZooKeeper and takes
//!   over when this process may;
//! - `bootstrap`: becoming the serving primary (register in ZooKeeper,
//!   rebuild the table, flush the caches below);
//! - `replication`: the rules of replication, and the state of both ends;
//!   `primary`: [`Root::commit`] (a write logged, sent to the standbys,
//!   applied and acknowledged) and the standbys' catch-up; `standby`: what
//!   a standby does with what its primary sends;
//! - `dedup`: writes applied at most once per request id;
//! - `error`: what the root group refuses or fails at ([`RootError`]);
//! - versions, and the data directory's log (`wal`).
//!
//! The root sits below the node: it is built from what it needs (the
//! store, the log, [`Standbys`] to reach the other members, and its
//! settings from the configuration), later given the registry when its
//! election starts, and it tells the process it runs in what happened
//! through a [`Host`] (it became the primary, where the primary is, which
//! caches to flush). It never calls the node. Other modules reach the
//! root's state only through [`Root`]'s methods; `node` holds one on the
//! root's id and none elsewhere.

pub mod bootstrap;
pub mod dedup;
pub mod election;
mod error;
pub mod group;
pub mod membership;
pub mod primary;
pub mod replication;
pub mod standby;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::expiry::{self, Kept};
use crate::store::{Mutation, Store};
use crate::tree::{Side, Tree};
use crate::wal::{Change, Edit, Identity, Logged, OpenError, Wal};
use crate::wire::{Join, Joined, NodesDoc, Peer, ShardEntry};

pub use error::RootError;
use membership::Membership;
pub use replication::{Outcome, Refusal, Standbys};

/// What the root group tells the process it runs in, as it happens.
pub enum Event<'a> {
    /// This process became the primary: it takes the root's place in the
    /// tree (slot 0, and the root's address its own).
    BecamePrimary,
    /// Another process is the primary, at this address: the root is there.
    PrimaryAt(String),
    /// The caches below the root must drop what they hold (a new primary's
    /// table does not know what an earlier one served them): the host
    /// returns once each child acknowledged or its session ended.
    FlushBelow(&'a [Peer]),
}

/// The process a root runs in, as the root sees it: implemented by the
/// layer above (the start-up wiring), so that the root tells it what
/// happened without knowing the node.
pub trait Host: Send + Sync {
    fn tell(&self, event: Event<'_>);
}

/// What the root takes from the configuration.
struct Settings {
    tree: Tree,
    root_id: u32,
    name: String,
    advertise: String,
    zk_prefix: String,
    /// Where this group's znodes are: the cluster's prefix for shard 0,
    /// `{prefix}/shards/{s}` for shard `s`.
    group_prefix: String,
    /// The root group (shard) of this process.
    shard: u32,
    /// Root groups (shards) of the cluster.
    root_shards: u32,
    /// Bound on one call to a standby.
    hop: Duration,
}

/// The root's own state. See the module documentation.
pub struct Root {
    settings: Settings,
    /// The data: the same store the node reads.
    store: Arc<Store>,
    /// How the primary reaches its standbys.
    standbys: Arc<dyn Standbys>,
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
    replication: replication::Replication,
    /// On shard 0's primary: the other shards as ZooKeeper last showed them.
    other_shards: Mutex<Vec<ShardEntry>>,
}

impl Root {
    /// The root's state over `store`; with `--data-dir`, what the directory
    /// holds is loaded into `store` first, and the log is kept from then on.
    pub fn open(
        config: &Config,
        store: Arc<Store>,
        standbys: Arc<dyn Standbys>,
    ) -> Result<Root, OpenError> {
        let Some(path) = &config.data_dir else {
            log::warn!(
                "no --data-dir: the root keeps its data in memory only, and a restart loses it"
            );
            let id = crate::wal::dir::random_id().map_err(|e| OpenError::Io(e.to_string()))?;
            return Ok(Root::new(
                config,
                store,
                standbys,
                format!("memory-{id}"),
                true,
            ));
        };
        let identity = Identity {
            zk_prefix: config.zk_prefix.clone(),
            root_id: config.root_id,
            depth: config.tree.depth(),
            shard: config.shard,
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
        let wal = Arc::new(wal);
        wal.compact_in_background(store.clone());
        let mut root = Root::new(config, store, standbys, wal.id().to_string(), false);
        // Versions go on above every version the directory has seen.
        root.note_version(recovered.max_version);
        root.wal = Some(wal);
        Ok(root)
    }

    /// The root's state, for the member `id` of the root group (`memory`:
    /// without a data directory).
    fn new(
        config: &Config,
        store: Arc<Store>,
        standbys: Arc<dyn Standbys>,
        id: String,
        memory: bool,
    ) -> Root {
        // Versions start at the clock so that a restarted root keeps counting up.
        let start = unix_micros().max(1);
        Root {
            settings: Settings {
                tree: config.tree,
                root_id: config.root_id,
                name: config.name(),
                advertise: config.advertise.clone(),
                zk_prefix: config.zk_prefix.clone(),
                group_prefix: crate::registry::layout::group(&config.zk_prefix, config.shard),
                shard: config.shard,
                root_shards: config.root_shards,
                hop: config.hop_timeout,
            },
            store,
            standbys,
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
            replication: replication::Replication::default(),
            other_shards: Mutex::default(),
        }
    }

    /// The root group, and this process's part in it.
    pub fn group(&self) -> &group::Group {
        &self.group
    }

    /// Whether this process is the primary of the root group.
    pub fn is_primary(&self) -> bool {
        self.group.is_primary()
    }

    /// Versions go on above `version` (seen in the log, or from the primary).
    fn note_version(&self, version: u64) {
        self.next_version.fetch_max(version + 1, Ordering::Relaxed);
    }

    /// Closes the root to joins and writes until `set_open` (a new primary
    /// has work to do first).
    fn set_closed(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// Logs a write with `--data-dir` (a put's expiry as a Unix time in
    /// milliseconds, 0 for none): apply it in memory while holding what this
    /// returns, and not at all when it fails (507 disk full, 500 another I/O
    /// error, 503 after a failed sync or while stopping).
    fn log(
        &self,
        key: &str,
        version: u64,
        expires_ms: u64,
        mutation: &Mutation,
    ) -> Result<Option<Logged<'_>>, RootError> {
        self.log_then(key, version, expires_ms, mutation, || ()).0
    }

    /// As [`Root::log`], and runs `during` once the write is in the log's
    /// file (at once without `--data-dir`; not at all when writing it
    /// failed), while the log is synced: the primary replicates a write
    /// alongside its own sync. Returns what `during` returned, if it ran.
    fn log_then<R>(
        &self,
        key: &str,
        version: u64,
        expires_ms: u64,
        mutation: &Mutation,
        during: impl FnOnce() -> R,
    ) -> (Result<Option<Logged<'_>>, RootError>, Option<R>) {
        let Some(wal) = &self.wal else {
            return (Ok(None), Some(during()));
        };
        let (logged, ran) = wal.log_then(key, version, expires_ms, edit_of(mutation), during);
        let logged = logged.map(Some).map_err(RootError::Log);
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
    pub fn join(&self, join: &Join) -> Result<Joined, RootError> {
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
    fn restore(&self, records: &[(String, Vec<u8>)]) -> Vec<String> {
        self.table().restore(records)
    }

    /// Opens the root to joins and writes (see `open`).
    pub fn set_open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// 503 until the root is open (and while it is not the primary).
    pub fn require_open(&self) -> Result<(), RootError> {
        if !self.group.is_primary() {
            return Err(RootError::Standby);
        }
        if self.open.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(RootError::Starting)
        }
    }

    /// The nodes in the root's two child slots.
    fn children(&self) -> Vec<Peer> {
        let table = self.table();
        [Side::Left, Side::Right]
            .into_iter()
            .filter_map(|side| self.settings.tree.child(0, side))
            .filter_map(|slot| table.peer_at(slot).cloned())
            .collect()
    }

    /// The znode path of the root (of this shard's primary, for a shard
    /// other than 0).
    fn znode_path(&self) -> String {
        match self.settings.shard {
            0 => self.table().path_of(0),
            _ => crate::registry::layout::root(&self.settings.group_prefix, self.settings.root_id),
        }
    }

    /// The root group (shard) of this process.
    pub fn shard(&self) -> u32 {
        self.settings.shard
    }

    /// Every root shard as `GET /nodes` shows them: this group (shard 0)
    /// first, then the others as ZooKeeper last showed them.
    pub fn shards_document(&self) -> Vec<ShardEntry> {
        let map = crate::shards::SlotMap::initial(self.settings.root_shards);
        let mut out = vec![ShardEntry {
            shard: self.settings.shard,
            ranges: map.ranges_of(self.settings.shard),
            primary: Some(self.settings.advertise.clone()),
            root_group: self.group.document(),
        }];
        out.extend(self.other_shards.lock().unwrap().iter().cloned());
        out
    }

    /// The liveness znode the primary keeps: the root's for shard 0, one of
    /// the shard's own otherwise (every shard's primary has the root's id).
    fn live_path(&self) -> String {
        let s = &self.settings;
        crate::registry::layout::live_named(
            &s.zk_prefix,
            &crate::registry::layout::primary_live_name(s.root_id, s.shard),
        )
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

/// A write as the log records it.
fn edit_of(mutation: &Mutation) -> Edit<'_> {
    match mutation {
        Mutation::Put(v) => Edit::Put(v),
        Mutation::Delete => Edit::Delete,
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
