//! This member's part in the root group, run on a thread of its own for as
//! long as the process runs (the rules are in `group`): it keeps its
//! election znode, follows the root's state, tells the process where the
//! primary is, takes over when it may (then `bootstrap` makes it the
//! serving primary), and, as primary, has every other member catch up.

use std::sync::Arc;
use std::time::Duration;

use crate::lease::Sessions;
use crate::registry::{layout, Registry};

use super::group::{Group, Member, Role, RootState, Versioned};
use super::{bootstrap, Event, Host, Root};
use crate::shards::SlotMap;
use crate::wire::{RootMember, ShardEntry};

/// How often each member looks at the election and the root's state.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Where the group's znodes are.
struct Paths {
    election: String,
    state: String,
}

/// Runs this member's part of the group until the process ends, telling
/// `host` what happens.
pub fn run(root: Arc<Root>, registry: Registry, host: Arc<dyn Host>) {
    let group = root.group();
    let prefix = root.settings.group_prefix.clone();
    let paths = Paths {
        election: layout::election(&prefix),
        state: layout::root_state(&prefix),
    };
    let me_data = serde_json::to_vec(group.me()).expect("a member serializes");
    group.start(registry.clone(), prefix, root.live_path());
    let mut said_waiting = false;
    loop {
        std::thread::sleep(LOOK_EVERY);
        let Some((members, state)) = look(group, &registry, &paths, &me_data) else {
            continue;
        };
        group.set_state(state.clone());
        if let Some((s, _)) = &state {
            group.learn_epoch(s.epoch);
            if !group.is_primary() && s.primary.id != group.me().id {
                host.tell(Event::PrimaryAt(s.primary.address.clone()));
            }
        }
        match (group.role(), state) {
            (Role::Primary { epoch, generation }, Some((s, _))) => {
                lead(&root, &registry, epoch, generation, &s);
            }
            (Role::Primary { .. }, None) => group.step_down("the root's state is gone"),
            (_, None) => {
                // No group yet: the first member to write the state leads.
                let first = RootState {
                    epoch: 1,
                    primary: group.me().clone(),
                    in_sync: Vec::new(),
                    memory: group.memory(),
                };
                take_over(&root, &registry, &*host, first, None);
            }
            (_, Some((s, version))) => {
                root.replication.stop();
                said_waiting = follow(
                    &root,
                    &registry,
                    &*host,
                    &members,
                    &s,
                    version,
                    said_waiting,
                );
            }
        }
    }
}

/// Reads the election's members (kept in `group` at once) and the root's
/// state, after making sure this member's election znode exists; `None`
/// when ZooKeeper could not say, or the state does not parse.
fn look(
    group: &Group,
    registry: &Registry,
    paths: &Paths,
    me_data: &[u8],
) -> Option<(Vec<Member>, Versioned)> {
    registry
        .ensure_member(&paths.election, me_data.to_vec())
        .ok()?;
    let read = registry.read_versioned(&paths.state).ok()?;
    let members = registry.members(&paths.election).ok()?;
    let members: Vec<Member> = members
        .iter()
        .filter_map(|(_, data)| serde_json::from_slice(data).ok())
        .collect();
    group.set_members(members.clone());
    let state = match read {
        Some((data, version)) => match serde_json::from_slice::<RootState>(&data) {
            Ok(state) => Some((state, version)),
            Err(e) => {
                log::error!("the root's state in ZooKeeper does not parse: {e}");
                return None;
            }
        },
        None => None,
    };
    Some((members, state))
}

/// The primary of `epoch` under session `generation`, as the root's state
/// `s` was read: steps down if it names another or the session ended
/// (when another could take over), else keeps leading.
fn lead(root: &Arc<Root>, registry: &Registry, epoch: u64, generation: u64, s: &RootState) {
    let group = root.group();
    if s.epoch != epoch || s.primary.id != group.me().id {
        group.step_down("the root's state names another primary");
    } else if registry.lease().generation != generation && group.replaceable() {
        group.step_down("its ZooKeeper session ended");
    } else {
        group.adopt_session(registry.lease().generation);
        let others = group.others();
        if !others.is_empty() {
            group.saw_others();
        }
        root.catch_up_members(&others);
        bootstrap::keep_root_znode(root, registry);
        look_at_shards(root, registry);
    }
}

/// On shard 0's primary of a cluster of several root shards: what
/// ZooKeeper shows of the other shards' root groups, for `GET /nodes`.
fn look_at_shards(root: &Root, registry: &Registry) {
    let s = &root.settings;
    if s.shard != 0 || s.root_shards == 1 {
        return;
    }
    let map = SlotMap::initial(s.root_shards);
    let views = (1..s.root_shards)
        .map(|shard| shard_entry(registry, &s.zk_prefix, shard, &map))
        .collect();
    *root.other_shards.lock().unwrap() = views;
}

/// Root shard `shard` as its znodes show it: the primary the state names,
/// if its election znode is there, and every member.
fn shard_entry(registry: &Registry, prefix: &str, shard: u32, map: &SlotMap) -> ShardEntry {
    let group = layout::group(prefix, shard);
    let state: Option<RootState> = registry
        .get(&layout::root_state(&group))
        .ok()
        .flatten()
        .and_then(|data| serde_json::from_slice(&data).ok());
    let members: Vec<Member> = registry
        .members(&layout::election(&group))
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, data)| serde_json::from_slice(data).ok())
        .collect();
    let primary = state
        .as_ref()
        .map(|s| &s.primary)
        .filter(|p| members.iter().any(|m| m.id == p.id));
    let root_group = members
        .iter()
        .map(|m| {
            let leads = primary.is_some_and(|p| p.id == m.id);
            RootMember {
                address: m.address.clone(),
                role: if leads { "root" } else { "standby" }.into(),
                in_sync: leads
                    || state
                        .as_ref()
                        .is_some_and(|s| s.in_sync.iter().any(|i| i.id == m.id)),
            }
        })
        .collect();
    ShardEntry {
        shard,
        ranges: map.ranges_of(shard),
        primary: primary.map(|p| p.address.clone()),
        root_group,
    }
}

/// Not the primary: takes over when this process may (it was the primary
/// itself, or the primary is gone and this one is eligible), else stays a
/// standby. Returns whether it has said it is waiting for an in-sync one.
fn follow(
    root: &Root,
    registry: &Registry,
    host: &dyn Host,
    members: &[Member],
    s: &RootState,
    version: i32,
    said_waiting: bool,
) -> bool {
    let group = root.group();
    let me = group.me();
    let alive = members.iter().any(|m| m.id == s.primary.id);
    let mine = s.primary.id == me.id;
    let eligible =
        mine || s.in_sync.iter().any(|m| m.id == me.id) || (s.memory && s.in_sync.is_empty());
    if mine || (!alive && eligible) {
        let next = RootState {
            epoch: s.epoch + 1,
            primary: me.clone(),
            in_sync: Vec::new(),
            memory: group.memory(),
        };
        take_over(root, registry, host, next, Some(version));
        return false;
    }
    if !alive && !said_waiting {
        log::warn!(
            "the primary ({}) is gone and this standby is not in sync: it may not take \
             over; writes wait for an in-sync standby",
            s.primary.address
        );
        return true;
    }
    group.settle_as_standby(&s.primary.address);
    said_waiting
}

/// Becomes the primary: writes `state` (conditionally on `version`), then
/// takes the root's znode, rebuilds the tree, flushes the caches below, and
/// opens (`bootstrap`).
fn take_over(
    root: &Root,
    registry: &Registry,
    host: &dyn Host,
    state: RootState,
    version: Option<i32>,
) {
    let group = root.group();
    let lease = registry.lease();
    if !lease.valid {
        return;
    }
    let bytes = serde_json::to_vec(&state).expect("the state serializes");
    match registry.write_versioned(
        &layout::root_state(&root.settings.group_prefix),
        bytes,
        version,
    ) {
        Ok(true) => {}
        _ => return,
    }
    group.assume_primary(state.epoch, lease.generation);
    group.set_state(Some((state.clone(), version.map_or(0, |v| v + 1))));
    log::info!(
        "the primary of the root group, epoch {} (at {})",
        state.epoch,
        state.primary.address
    );
    bootstrap::run(root, registry, host);
}
