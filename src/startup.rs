//! Bringing a node up, in the background while it already serves `/`:
//! - a process of the root group runs its part of the election
//!   (`root::election`), with the node as the root's [`Host`]: the root
//!   tells it when it became the primary, where the primary is, and which
//!   caches to flush, and never calls the node itself;
//! - any other node waits `STARTUP_DELAY`, finds the root (in ZooKeeper,
//!   unless `--root` names it), joins it, registers itself under its parent,
//!   tells the caches below it to drop what an earlier run of it served
//!   (`Node::flush_after_join`), and then sends release notices to its parent
//!   for as long as it runs;
//! - every node drops expired values every second (`Node::sweep_expired`).

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a cache node looks for the root's address in ZooKeeper (it
/// follows a failover in the root group).
const LOOK_FOR_ROOT: Duration = Duration::from_millis(500);
/// How often a node that dropped keys tells its parent (while it has some).
const RELEASE_EVERY: Duration = Duration::from_millis(100);
/// How often expired values are swept away.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

use crate::config::Config;
use crate::deadline::Deadline;
use crate::node::{Node, Place};
use crate::registry::{layout, Registry, RegistryError, Znode, ZnodeData};
use crate::root::{Event, Host};
use crate::shards::SlotMap;
use crate::wire::{Answer, Join, Joined};

/// Keeps this node's liveness znode (ephemeral) registered.
pub fn keep_live(node: &Node, registry: &Registry) {
    let c = node.config();
    registry.keep(Znode {
        path: layout::live(&c.zk_prefix, c.id),
        data: c.advertise.clone().into_bytes(),
        ephemeral: true,
    });
}

/// Starts, in the background, the work that brings the node into the tree
/// (on a thread of its own: it waits on the root and ZooKeeper), and the
/// sweep of expired values (a chore of `upkeep`).
pub fn start(node: Arc<Node>, registry: Registry, upkeep: &crate::process::Upkeep) {
    let sweeping = node.clone();
    let root = node.root().cloned();
    let name = if root.is_some() { "root-group" } else { "join" };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            agree_on_slots(&node, &registry);
            match root {
                Some(root) => crate::root::election::run(root, registry, Arc::new(InTree(node))),
                None => {
                    join_tree(&node, &registry);
                    send_releases_forever(&node);
                }
            }
        })
        .expect("spawn the start-up thread");
    // A sweep is local and quick: one of the chores of the upkeep thread.
    upkeep.every(SWEEP_EVERY, move || sweeping.sweep_expired());
}

/// Reads the cluster's slot map, waiting for ZooKeeper (and, on a cache,
/// for a root to have written it: a process of a root group writes the
/// map of its `--root-shards` when there is none). Exits 2 when the cluster
/// has another number of shards than this node was given, or a map this
/// build cannot use: every node must cut the key space the same way.
fn agree_on_slots(node: &Node, registry: &Registry) {
    let c = node.config();
    let path = layout::slots(&c.zk_prefix);
    let mine = SlotMap::initial(c.root_shards);
    let mut said_waiting = false;
    let map = loop {
        let read = match node.root() {
            Some(_) => registry.create_slot_map(&c.zk_prefix, &mine).map(Some),
            None => registry.slot_map(&c.zk_prefix),
        };
        match read {
            Ok(Some(map)) => break map,
            Err(e @ RegistryError::Unreadable(_)) => refuse_map(&format!("{e}")),
            waiting => {
                if !said_waiting {
                    let why = match waiting {
                        Ok(_) => "no root has written it yet".to_string(),
                        Err(e) => e.to_string(),
                    };
                    log::info!("waiting for the slot map {path}: {why}");
                    said_waiting = true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if let Some(problem) = map.problem() {
        refuse_map(&format!("the slot map {path} cannot be used: {problem}"));
    }
    if map.shards != c.root_shards {
        refuse_map(&format!(
            "the cluster under {} has {} root shards (its slot map {path}), and this node \
             was given {}",
            c.zk_prefix, map.shards, c.root_shards
        ));
    }
    node.set_slot_map(map);
}

/// Exits 2, naming `--root-shards`, as a bad flag does.
fn refuse_map(why: &str) -> ! {
    log::error!("--root-shards: {why}");
    eprintln!("treecache node: --root-shards: {why}");
    std::process::exit(2)
}

/// The node a process of the root group runs in, as its root's host.
struct InTree(Arc<Node>);

impl Host for InTree {
    fn tell(&self, event: Event<'_>) {
        match event {
            Event::BecamePrimary => self.0.became_primary(),
            Event::PrimaryAt(address) => self.0.position().set_root_address(address),
            Event::FlushBelow(children) => self.0.flush_all(children, &self.0.flush_of_own_slots()),
        }
    }
}

/// Finds the root, joins it, and registers in ZooKeeper. Retries until it has joined.
fn join_tree(node: &Node, registry: &Registry) {
    let c = node.config();
    if !c.startup_delay.is_zero() {
        log::info!("waiting {:?} before joining", c.startup_delay);
        std::thread::sleep(c.startup_delay);
    }
    let me = Join {
        name: c.name(),
        address: c.advertise.clone(),
    };
    let mut said_waiting = false;
    let mut failures = Failures::default();
    loop {
        if c.root.is_none() {
            match registry.find_root(&c.zk_prefix, c.root_id) {
                Some(address) => node.position().set_root_address(address),
                None => {
                    if !said_waiting {
                        log::info!(
                            "waiting for the root {} to register in ZooKeeper at {}",
                            node.position().root_name(),
                            c.zookeeper
                        );
                        said_waiting = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
            }
        }
        match node.join_root(&me, Deadline::after(c.upstream_timeout)) {
            Ok(Ok(joined)) => return take_place(node, registry, &me, joined),
            Ok(Err(refused)) => failures.refused(c, &refused),
            Err(e) => failures.say(|| log::warn!("joining failed ({e:?}); retrying")),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Joined: takes the slot, registers it and this node's liveness in
/// ZooKeeper, and has the caches below drop what an earlier run served.
fn take_place(node: &Node, registry: &Registry, me: &Join, joined: Joined) {
    node.position().set_place(Place {
        slot: joined.slot,
        depth: joined.depth,
        parent: joined.parent.clone(),
    });
    let data = ZnodeData {
        name: me.name.clone(),
        address: me.address.clone(),
        slot: joined.slot,
        depth: joined.depth,
        parent: joined.parent.as_ref().map(|p| p.name.clone()),
    };
    registry.keep(Znode {
        path: joined.path.clone(),
        data: serde_json::to_vec(&data).expect("znode data serializes"),
        ephemeral: false,
    });
    keep_live(node, registry);
    node.flush_after_join();
    log::info!(
        "joined the tree at slot {} (depth {}) under {}; znode {}",
        joined.slot,
        joined.depth,
        joined
            .parent
            .map_or("nobody".into(), |p| format!("{} at {}", p.name, p.address)),
        joined.path
    );
}

/// The joins that failed so far: said once, and how long the root has
/// refused this node's name.
#[derive(Default)]
struct Failures {
    said: bool,
    /// Refused because another live session holds this node's name: since when.
    held_since: Option<Instant>,
}

impl Failures {
    /// Logs a failure, the first time only.
    fn say(&mut self, log: impl FnOnce()) {
        if !self.said {
            log();
            self.said = true;
        }
    }

    /// The root refused the join: retried while the refusal may pass, and
    /// the process ends when it will not.
    fn refused(&mut self, c: &Config, refused: &Answer) {
        let why = String::from_utf8_lossy(&refused.body).into_owned();
        if refused.status == 409 {
            // One id, one process (auth::one_process): the holder may be
            // this node's predecessor, whose session ends within a timeout.
            let since = *self.held_since.get_or_insert_with(Instant::now);
            if since.elapsed() > c.zk_session_timeout + Duration::from_secs(2) {
                log::error!("the root refused the join for a whole session timeout: {why}");
                std::process::exit(1);
            }
            self.say(|| log::warn!("the root refused the join for now ({why}); retrying"));
        } else if refused.status < 500 {
            log::error!("the root refused the join: {} {why}", refused.status);
            std::process::exit(2);
        } else {
            let status = refused.status;
            self.say(|| log::warn!("the root cannot take the join yet ({status}); retrying"));
        }
    }
}

/// Tells the parent which keys this node dropped: every 100 ms while there
/// are some, backing off to every `LOOK_FOR_ROOT` while there are none (an
/// idle node wakes twice a second, not ten times); every `LOOK_FOR_ROOT`,
/// looks for the root's address in ZooKeeper (as read with the lease's
/// heartbeat: see `Registry::follow_root`).
fn send_releases_forever(node: &Node) {
    let mut looked = Instant::now();
    let mut pause = RELEASE_EVERY;
    loop {
        std::thread::sleep(pause);
        pause = match node.send_releases() {
            true => RELEASE_EVERY,
            false => (pause * 2).min(LOOK_FOR_ROOT),
        };
        if node.config().root.is_none() && looked.elapsed() >= LOOK_FOR_ROOT {
            node.look_for_root();
            looked = Instant::now();
        }
    }
}
