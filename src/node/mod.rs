//! The node: what it does with data and with the tree. This is the policy:
//! read through the parent, write at the root, keep every cached copy
//! coherent, follow a parent or root that moved. It never sees HTTP: it
//! calls other nodes through the two traits of [`peers`], and the HTTP
//! layer (`http::api`) calls it through the operations below.
//!
//! - [`read`]: reads, and fills served to the nodes below.
//! - [`write`](mod@write): writes at the root, or forwarded to it, and their conditions.
//! - [`bulk`]: requests about many keys: `POST /mget` and `GET /keys`.
//! - [`invalidate`]: invalidations sent down and answered.
//! - [`upkeep`]: flushes after a restart or a lost session, release notices.
//! - [`route`]: which node a call goes to: around a dead parent, after a
//!   node that moved.
//! - [`position`]: where this node sits; [`peers`]: the seams.
//! - `error`: what the policy refuses or fails at ([`NodeError`]);
//!   `failed`: what a request can fail with, any layer's error (the HTTP
//!   layer makes its status and sentence).
//!
//! On the root's id a node holds a [`Root`] (`crate::root`): it calls the
//! root, which never calls it back (the root tells the start-up wiring what
//! happened, and reaches its standbys through a seam of its own).
//!
//! A write at the root, for one key, under that key's write lock:
//! 1. mark the key pending and take its directory bits (`Store::begin_write`);
//! 2. invalidate every child that holds it and wait for their acknowledgements
//!    (each passes the invalidation on to its own holders first), or for
//!    ZooKeeper to say a silent child's session has ended;
//! 3. apply the write with a new version, and answer.
//!
//! Applying last is what makes a write linearizable: until step 3 every reader
//! sees the old value, and after it no cache anywhere still holds the old one.
//! Fills answered while the key is pending are marked not cacheable, so no
//! child can pick up the old value after the directory was emptied. A cache
//! node answers from its copy only under the lease of its ZooKeeper session,
//! which is what lets a parent stop waiting for it once that session ended
//! (docs/design.md has the argument).

mod bulk;
mod error;
pub mod failed;
mod invalidate;
mod owners;
pub mod peers;
pub mod position;
mod read;
mod route;
mod upkeep;
mod write;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::metrics::{bump, Gauges, Metrics};
use crate::node::failed::Error;
use crate::root::{Outcome, Refusal, Root, Standbys};
use crate::store::{Lookup, Mode, Store};
use crate::tree::Side;
use crate::wal::OpenError;
use crate::wire::{Join, Joined, NodesDoc, Peer, Replicate, Replicated};

pub use bulk::Gathered;
pub use error::NodeError;
pub use owners::{MapLoader, ShardLocator};
pub use peers::{Downstream, RootLocator, Sessions, Upstream};
pub use position::{Place, Position};
pub use write::Write;

/// The calls a node makes to others, what it learns from ZooKeeper about
/// sessions, and how it finds the root (and each root shard's primary, and
/// the slot map) again.
pub struct Links {
    pub up: Arc<dyn Upstream>,
    pub down: Arc<dyn Downstream>,
    pub sessions: Arc<dyn Sessions>,
    pub locate_root: RootLocator,
    pub locate_shard: ShardLocator,
    pub slot_map: MapLoader,
}

/// A node's shared state. See the module documentation.
pub struct Node {
    config: Config,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    position: Position,
    links: Links,
    /// Everything only the root has: its table, versions, log, request ids.
    root: Option<Arc<Root>>,
    writes: Writes,
    /// This node, for the background work it starts.
    me: Weak<Node>,
    /// The session generation this node's cache belongs to (0: none yet).
    /// It answers from its cache only under a valid lease of that session.
    cache_generation: AtomicU64,
    /// Set while the children may hold keys this node's directory does not
    /// know of (after a restart or a lost session, until they have dropped
    /// their caches): every invalidation then goes to every child.
    directory_incomplete: AtomicBool,
    flushes_running: AtomicUsize,
    invalidations: invalidate::InProgress,
    routes: route::Routes,
    /// The slot map and where each root shard's primary is.
    owners: owners::Owners,
    request_ids: RequestIds,
    release_batches: AtomicU64,
}

/// Writes under way, and whether new ones are still taken.
#[derive(Default)]
struct Writes {
    under_way: AtomicUsize,
    stopping: AtomicBool,
}

/// Request ids of the writes this node forwards: its name, a number of
/// this process, and a counter.
struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    fn new(name: &str) -> RequestIds {
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RequestIds {
            prefix: format!("{name}-{boot:x}"),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// `GET /`: what this node is and where it sits.
#[derive(Serialize)]
pub struct Info {
    pub status: &'static str,
    pub node: String,
    pub address: String,
    pub role: &'static str,
    pub slot: Option<usize>,
    pub depth: Option<u32>,
    pub parent: Option<String>,
    /// Where this node reaches its parent (it follows a parent that moved).
    pub parent_address: Option<String>,
    pub joined: bool,
    /// Whether this node answers from its own copy now: always on the root;
    /// on a cache, under a valid lease of its ZooKeeper session.
    pub lease: bool,
}

impl Node {
    /// A node of `config`; the root loads its data directory first, and
    /// fails when it cannot (see `wal::OpenError` for how).
    pub fn new(
        config: Config,
        links: Links,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Node>, OpenError> {
        let me = Peer {
            name: config.name(),
            address: config.advertise.clone(),
        };
        // A process of the root group takes its place when it becomes the
        // primary (`became_primary`); until then it knows no root.
        let (mode, place, root_address) = match config.is_root() {
            true => (
                Mode::Primary {
                    max_bytes: config.max_store_bytes,
                },
                None,
                None,
            ),
            false => (
                Mode::Cache {
                    max_bytes: config.cache_max_bytes,
                },
                None,
                config.root.clone(),
            ),
        };
        let store = Arc::new(Store::new(mode));
        let root = match config.is_root() {
            true => {
                let standbys = Arc::new(ToStandbys(links.down.clone()));
                Some(Arc::new(Root::open(&config, store.clone(), standbys)?))
            }
            false => None,
        };
        let root_name = crate::config::node_name(config.root_id);
        let request_ids = RequestIds::new(&config.name());
        let is_root = root.is_some();
        let shards = config.root_shards;
        Ok(Arc::new_cyclic(|weak| Node {
            store,
            metrics,
            position: Position::new(me, root_name, root_address, place),
            links,
            root,
            config,
            writes: Writes::default(),
            me: weak.clone(),
            cache_generation: AtomicU64::new(0),
            // A node (re)starting knows nothing of what its children hold
            // until they have dropped their caches (`flush_after_join`).
            directory_incomplete: AtomicBool::new(!is_root),
            flushes_running: AtomicUsize::new(0),
            invalidations: invalidate::InProgress::default(),
            routes: route::Routes::default(),
            owners: owners::Owners::new(shards),
            request_ids,
            release_batches: AtomicU64::new(1),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The root's own state, on the processes of the root group only.
    pub fn root(&self) -> Option<&Arc<Root>> {
        self.root.as_ref()
    }

    /// Whether this process is the root: the primary of the root group.
    pub fn is_root(&self) -> bool {
        self.root.as_ref().is_some_and(|r| r.is_primary())
    }

    /// Whether this process is a standby of the root group.
    pub fn is_standby(&self) -> bool {
        self.root.as_ref().is_some_and(|r| !r.is_primary())
    }

    /// This process just became the primary: it takes the root's place.
    pub fn became_primary(&self) {
        self.position.set_place(Place {
            slot: 0,
            depth: 1,
            parent: None,
        });
        self.position
            .set_root_address(self.config.advertise.clone());
    }

    /// `POST /internal/replicate` on a process of the root group: the
    /// root's answer or refusal; an error on a process outside the group.
    pub fn receive_replication(
        &self,
        message: &Replicate,
    ) -> Result<Result<Replicated, Refusal>, Error> {
        match &self.root {
            Some(root) => Ok(root.receive(message)),
            None => Err(NodeError::NotInRootGroup {
                name: self.config.name(),
            }
            .into()),
        }
    }

    /// Fails with 503 until the node has joined the tree.
    pub fn require_joined(&self) -> Result<(), Error> {
        // A standby of the root group holds no slot: it serves `/store`
        // through the primary.
        if self.position.joined() || self.is_standby() {
            Ok(())
        } else {
            Err(NodeError::Joining {
                name: self.config.name(),
            }
            .into())
        }
    }

    /// `GET /ready`: whether this node can serve `/store`, and if not, why.
    pub fn readiness(&self) -> Result<(), String> {
        if self.writes.stopping.load(Ordering::SeqCst) {
            return Err(format!("{} is stopping.", self.config.name()));
        }
        if let Some(root) = self.root.as_ref().filter(|r| !r.is_primary()) {
            return Err(match root.group().primary_address() {
                Some(primary) => format!(
                    "This process is a standby of the root group; the primary is at {primary}."
                ),
                None => "This process of the root group is not the primary (yet).".to_string(),
            });
        }
        if !self.position.joined() {
            return Err(format!(
                "{} has not joined the tree yet.",
                self.config.name()
            ));
        }
        if let Some(root) = &self.root {
            root.require_open()
                .map_err(|e| Error::from(e).to_string())?;
            root.group()
                .require_primacy(&*self.links.sessions)
                .map_err(|e| Error::from(e).to_string())?;
        }
        if let Some(why) = self
            .root
            .as_ref()
            .and_then(|r| r.wal())
            .and_then(|w| w.poisoned())
        {
            return Err(format!(
                "The root takes no writes until it is restarted: {why}."
            ));
        }
        Ok(())
    }

    /// `GET /`.
    pub fn info(&self) -> Info {
        // A standby holds no slot, whatever it held as a primary before.
        let place = self.position.place().filter(|_| !self.is_standby());
        let parent = place.as_ref().and_then(|p| p.parent.clone());
        Info {
            status: "alive",
            node: self.config.name(),
            address: self.config.advertised_host().to_string(),
            role: match &self.root {
                Some(r) if r.is_primary() => "root",
                Some(_) => "standby",
                None => "cache",
            },
            slot: place.as_ref().map(|p| p.slot),
            depth: place.as_ref().map(|p| p.depth),
            parent: parent.as_ref().map(|p| p.name.clone()),
            parent_address: parent.map(|p| p.address),
            joined: place.is_some(),
            lease: match self.is_standby() {
                true => self.links.sessions.lease().valid,
                false => self.cache_trusted(),
            },
        }
    }

    /// The `/nodes` document when this node has it (the root), each node
    /// marked live or not; others ask the root (`Node::nodes`).
    pub fn nodes_here(&self) -> Option<NodesDoc> {
        // The tree is shard 0's: another shard's primary asks it.
        let root = self
            .root
            .as_ref()
            .filter(|r| r.is_primary() && r.shard() == 0)?;
        let mut doc = root.document();
        doc.root_group = Some(root.group().document());
        doc.shards = Some(root.shards_document());
        if let Some(live) = self.links.sessions.live() {
            for node in &mut doc.nodes {
                node.live = Some(live.contains(&node.name));
            }
        }
        Some(doc)
    }

    /// `POST /nodes/join`: only the root places nodes.
    pub fn join(&self, join: &Join) -> Result<Joined, Error> {
        match self.root.as_ref() {
            Some(root) if root.is_primary() => Ok(root.join(join)?),
            Some(root) => Err(match root.group().primary_address() {
                Some(primary) => Error::from(NodeError::JoinThePrimary { primary }),
                None => Error::from(NodeError::NoPrimaryYet),
            }),
            None => Err(NodeError::NotTheRoot {
                name: self.config.name(),
                root: self.position.root_name().to_string(),
            }
            .into()),
        }
    }

    /// `GET /metrics`.
    pub fn metrics_text(&self) -> String {
        let mut text = self.metrics.render(&Gauges {
            evictions: self.store.stats.evictions.load(Ordering::Relaxed),
            cache_bytes: self.store.bytes(),
            store_keys: self.store.keys(),
        });
        if let Some(root) = &self.root {
            let in_sync = match root.is_primary() {
                true => root.group().in_sync_count(),
                false => root.group().in_sync() as usize,
            };
            crate::metrics::gauge(
                &mut text,
                "treecache_replication_in_sync",
                "On the primary of the root group, its standbys in sync; on a standby, 1 when \
                 it is in sync.",
                in_sync as u64,
            );
        }
        if let Some(wal) = self.root.as_ref().and_then(|r| r.wal()) {
            crate::metrics::histogram(
                &mut text,
                "treecache_wal_fsync_seconds",
                "Time each sync of the root's log took.",
                wal.stats().fsync(),
            );
            crate::metrics::gauge(
                &mut text,
                "treecache_wal_bytes",
                "Bytes of the root's log not yet replaced by a snapshot.",
                wal.stats().bytes(),
            );
        }
        text
    }

    /// Stops taking writes (503), waits up to `wait` for those under way,
    /// and, on the root, syncs and closes the log. Run on SIGTERM.
    pub fn stop(&self, wait: Duration) {
        self.writes.stopping.store(true, Ordering::SeqCst);
        let until = Instant::now() + wait;
        while self.writes.under_way.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let left = self.writes.under_way.load(Ordering::SeqCst);
        if left > 0 {
            log::warn!("stopping with {left} writes still under way");
        }
        if let Some(root) = &self.root {
            root.close(until.saturating_duration_since(Instant::now()));
        }
    }

    pub fn count_response(&self, status: u16) {
        self.metrics.count_response(status);
    }

    /// The node's metrics, for the HTTP layer's request timings.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Looks `key` up in this node's own copy, counting the hit or miss;
    /// `child` is the asking child when the lookup answers a fill.
    fn lookup<R>(
        &self,
        key: &str,
        child: Option<Side>,
        render: impl FnOnce(&[u8]) -> R,
    ) -> Lookup<R> {
        let found = self.store.lookup(key, child, render);
        self.count_lookup(&found);
        found
    }

    /// Counts a lookup's hit or miss.
    fn count_lookup<R>(&self, found: &Lookup<R>) {
        match found {
            Lookup::Hit { .. } => bump(&self.metrics.hits),
            Lookup::Miss { .. } => bump(&self.metrics.misses),
        }
    }
}

/// The root group's standbys, reached through the calls toward the children.
struct ToStandbys(Arc<dyn Downstream>);

impl Standbys for ToStandbys {
    fn replicate(
        &self,
        standby: &Peer,
        message: &Replicate,
        deadline: crate::deadline::Deadline,
        hop: Duration,
    ) -> Outcome {
        self.0.replicate(standby, message, deadline, hop)
    }
}
