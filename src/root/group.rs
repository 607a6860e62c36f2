//! The root group: every process started with the root's id is a member;
//! ZooKeeper elects one primary, the others are standbys.
//!
//! ZooKeeper holds, under the cluster's prefix:
//! - `election/member-N`: one ephemeral, sequential znode per member and
//!   session, holding the member's id and address. A member's id is its data
//!   directory's id (a copy of the data, not an address: a process started
//!   on an empty directory is a new member, whatever its address).
//! - `root-state`: `{"epoch", "primary", "in_sync", "memory"}`, written only
//!   with a conditional write (the version read). `in_sync` lists the
//!   standbys that hold every write the primary acknowledged.
//!
//! The rules:
//! - The primary sends each write to every standby it replicates to, and
//!   acknowledges it only after each in-sync standby made it durable; a
//!   standby that does not is first removed from `in_sync` (a conditional
//!   write, which fails if the epoch moved on: then this primary is fenced
//!   and acknowledges nothing). So every in-sync standby holds every
//!   acknowledged write.
//! - The primary acknowledges a write only under the lease of the ZooKeeper
//!   session it became primary in. A standby takes over only once the
//!   primary's member znode is gone, that is, once its session ended: by
//!   then the old primary's lease has run out (`lease::Lease`), so it
//!   can acknowledge nothing the new primary lacks.
//! - Only an in-sync standby takes over (or the previous primary itself,
//!   restarted on its own data directory; or anyone, when the previous
//!   primary kept its data in memory only and no standby was in sync): it
//!   raises the epoch with a conditional write, so that exactly one wins.
//!   A standby not in sync never takes over: writes stay unavailable rather
//!   than lose data.
//! - Every replication request carries the epoch; a standby refuses one from
//!   an older epoch than it knows, and a primary that is refused, or that
//!   finds the epoch moved on, acknowledges no further write and becomes a
//!   standby.
//! - A new primary starts with no standby in sync: each catches up (the
//!   whole state, then every write from then on) and is added back.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

use crate::lease::Sessions;
use crate::registry::{layout, Registry};
use crate::root::RootError;
use crate::wire::RootMember;

/// A member of the root group: its data directory's id and its address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub address: String,
}

/// The `root-state` znode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootState {
    pub epoch: u64,
    pub primary: Member,
    pub in_sync: Vec<Member>,
    /// The primary keeps its data in memory only.
    #[serde(default)]
    pub memory: bool,
}

/// The root's state and its znode's version, when there is one.
pub type Versioned = Option<(RootState, i32)>;

/// What this process is in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not yet decided (no look at ZooKeeper yet).
    Starting,
    /// The primary of `epoch`, under the lease of session `generation`.
    Primary {
        epoch: u64,
        generation: u64,
    },
    Standby,
}

/// This process's view of the group. See the module documentation.
pub struct Group {
    me: Member,
    memory: bool,
    role: RwLock<Role>,
    /// The root's state as last read, and its version.
    state: Mutex<Versioned>,
    /// The members whose election znodes exist, as last read, in order.
    members: Mutex<Vec<Member>>,
    /// The highest epoch this process has seen: it refuses replication from
    /// an older one.
    known_epoch: AtomicU64,
    /// Serializes this process's writes of the root's state.
    writing: Mutex<()>,
    /// ZooKeeper and where this member's znodes are, once the group runs.
    zk: OnceLock<Zk>,
    /// The standbys this primary counts in sync, by its own conditional
    /// writes of the root's state (only the primary changes `in_sync`): a
    /// standby is counted from before the write that adds it until after
    /// the write that removes it succeeded.
    counted: Mutex<Vec<String>>,
    /// A primary without a data directory has seen another member, which
    /// may take over from it (see `replaceable`).
    seen_others: AtomicBool,
}

/// ZooKeeper as the group uses it.
struct Zk {
    registry: Registry,
    prefix: String,
    /// The liveness znode of the root's id, kept while primary.
    live: String,
}

impl Group {
    pub fn new(me: Member, memory: bool) -> Group {
        Group {
            me,
            memory,
            role: RwLock::new(Role::Starting),
            state: Mutex::new(None),
            members: Mutex::new(Vec::new()),
            known_epoch: AtomicU64::new(0),
            writing: Mutex::new(()),
            zk: OnceLock::new(),
            counted: Mutex::new(Vec::new()),
            seen_others: AtomicBool::new(false),
        }
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    pub fn role(&self) -> Role {
        *self.role.read().unwrap()
    }

    pub fn is_primary(&self) -> bool {
        matches!(self.role(), Role::Primary { .. })
    }

    /// The epoch this process is primary of.
    pub fn epoch(&self) -> Option<u64> {
        match self.role() {
            Role::Primary { epoch, .. } => Some(epoch),
            _ => None,
        }
    }

    pub fn known_epoch(&self) -> u64 {
        self.known_epoch.load(Ordering::SeqCst)
    }

    /// Learns of `epoch` (from a replication request or the root's state).
    /// A primary of an older epoch is fenced: it steps down.
    pub fn learn_epoch(&self, epoch: u64) {
        let before = self.known_epoch.fetch_max(epoch, Ordering::SeqCst);
        if epoch > before {
            if let Role::Primary { epoch: mine, .. } = self.role() {
                if epoch > mine {
                    self.step_down(&format!("epoch {epoch} is newer than its own ({mine})"));
                }
            }
        }
    }

    /// Stops being primary: no further write is acknowledged.
    pub fn step_down(&self, why: &str) {
        let mut role = self.role.write().unwrap();
        if let Role::Primary { epoch, .. } = *role {
            log::warn!("no longer the primary of epoch {epoch}: {why}; becoming a standby");
            *role = Role::Standby;
            // The liveness znode of the root's id is the new primary's to
            // keep; a later session of this process must not wait for it.
            if let Some(zk) = self.zk.get() {
                zk.registry.forget(&zk.live);
            }
        }
    }

    /// Makes this process the primary of `epoch` under session `generation`
    /// (once the root's state says so).
    pub fn assume_primary(&self, epoch: u64, generation: u64) {
        self.learn_epoch(epoch);
        self.counted.lock().unwrap().clear();
        *self.role.write().unwrap() = Role::Primary { epoch, generation };
    }

    /// Whether another process could take over from this primary once its
    /// session ends: a standby it counts in sync; or, when this primary
    /// keeps its data in memory only, any other member it has seen (see
    /// `election`). If not, it alone may lead (restarted on its own data
    /// directory), and needs no lease to acknowledge or to answer.
    pub(super) fn replaceable(&self) -> bool {
        !self.counted.lock().unwrap().is_empty() || self.seen_others.load(Ordering::SeqCst)
    }

    /// 503 unless this process is the primary and, when another process
    /// could take over from it, still holds the lease of the session it
    /// became primary in: only then may it acknowledge.
    pub fn require_primacy(&self, sessions: &dyn Sessions) -> Result<(), RootError> {
        match self.role() {
            Role::Primary { generation, .. } => {
                let lease = sessions.lease();
                if !self.replaceable() {
                    self.adopt_session(lease.generation);
                    return Ok(());
                }
                if lease.valid && lease.generation == generation {
                    return Ok(());
                }
                if lease.generation != generation {
                    self.step_down("its ZooKeeper session ended");
                }
                Err(RootError::NoLease)
            }
            _ => Err(RootError::NotPrimary),
        }
    }

    /// A primary that nobody else could take over from carries on in a new
    /// session of its own (after ZooKeeper was away for a whole timeout).
    pub(super) fn adopt_session(&self, new: u64) {
        let mut role = self.role.write().unwrap();
        if let Role::Primary { epoch, generation } = *role {
            if generation != new {
                log::info!(
                    "the primary of epoch {epoch} carries on in its new ZooKeeper session \
                     (no standby is in sync that could have taken over)"
                );
                *role = Role::Primary {
                    epoch,
                    generation: new,
                };
            }
        }
    }

    /// Whether this process may answer reads from its own copy: as the
    /// primary, and, once another process could take over from it, only
    /// under the lease of the session it became primary in (a primary
    /// frozen past its session's end must not answer from what is by then
    /// an old copy).
    pub fn may_answer(&self, sessions: &dyn Sessions) -> bool {
        match self.role() {
            Role::Primary { generation, .. } => {
                if !self.replaceable() {
                    return true;
                }
                let lease = sessions.lease();
                lease.valid && lease.generation == generation
            }
            _ => false,
        }
    }

    /// The primary's address, as the root's state says.
    pub fn primary_address(&self) -> Option<String> {
        let state = self.state.lock().unwrap();
        state.as_ref().map(|(s, _)| s.primary.address.clone())
    }

    /// Whether this process is counted in sync (the primary always is).
    pub fn in_sync(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.as_ref().is_some_and(|(s, _)| {
            s.primary.id == self.me.id || s.in_sync.iter().any(|m| m.id == self.me.id)
        })
    }

    /// How many standbys are in sync, as the root's state says.
    pub fn in_sync_count(&self) -> usize {
        let state = self.state.lock().unwrap();
        state.as_ref().map_or(0, |(s, _)| s.in_sync.len())
    }

    /// The members other than this one, as last seen.
    pub fn others(&self) -> Vec<Member> {
        let members = self.members.lock().unwrap();
        let mut seen = Vec::new();
        for m in members.iter() {
            if m.id != self.me.id && !seen.iter().any(|s: &Member| s.id == m.id) {
                seen.push(m.clone());
            }
        }
        seen
    }

    /// The group as `GET /nodes` shows it.
    pub fn document(&self) -> Vec<RootMember> {
        let state = self.state.lock().unwrap().clone().map(|(s, _)| s);
        let mut out = vec![RootMember {
            address: self.me.address.clone(),
            role: "root".into(),
            in_sync: true,
        }];
        for m in self.others() {
            out.push(RootMember {
                address: m.address.clone(),
                role: "standby".into(),
                in_sync: state
                    .as_ref()
                    .is_some_and(|s| s.in_sync.iter().any(|i| i.id == m.id)),
            });
        }
        out
    }

    /// Starts the group's use of ZooKeeper: `live` is the liveness znode of
    /// the root's id, kept while primary.
    pub(super) fn start(&self, registry: Registry, prefix: String, live: String) {
        let _ = self.zk.set(Zk {
            registry,
            prefix,
            live,
        });
    }

    /// The members whose election znodes exist, as ZooKeeper showed them.
    pub(super) fn set_members(&self, members: Vec<Member>) {
        *self.members.lock().unwrap() = members;
    }

    /// The root's state as this process last read or wrote it.
    pub(super) fn set_state(&self, state: Versioned) {
        *self.state.lock().unwrap() = state;
    }

    /// Whether this process keeps its data in memory only.
    pub(super) fn memory(&self) -> bool {
        self.memory
    }

    /// The primary saw other members: one without a data directory may be
    /// taken over from from now on (see `replaceable`).
    pub(super) fn saw_others(&self) {
        if self.memory {
            self.seen_others.store(true, Ordering::SeqCst);
        }
    }

    /// A process still starting learned that `primary` leads: it is a standby.
    pub(super) fn settle_as_standby(&self, primary: &str) {
        let mut role = self.role.write().unwrap();
        if *role == Role::Starting {
            log::info!("a standby of the root group; the primary is {primary}");
            *role = Role::Standby;
        }
    }

    /// Changes the root's state with `change`, conditionally on the version
    /// read; fails when the epoch moved on (this primary is fenced).
    fn change_state(&self, change: impl Fn(&mut RootState)) -> Result<(), RootError> {
        let Zk {
            registry, prefix, ..
        } = self.zk.get().ok_or(RootError::NotRunning)?;
        let _one_at_a_time = self.writing.lock().unwrap();
        let epoch = self.epoch().ok_or(RootError::Deposed)?;
        let path = layout::root_state(prefix);
        for _ in 0..5 {
            let read = registry
                .read_versioned(&path)
                .map_err(|e| RootError::ZooKeeper(e.to_string()))?;
            let Some((data, version)) = read else {
                return Err(RootError::StateGone);
            };
            let mut state: RootState = serde_json::from_slice(&data)
                .map_err(|e| RootError::StateUnreadable(e.to_string()))?;
            if state.epoch != epoch || state.primary.id != self.me.id {
                self.learn_epoch(state.epoch);
                self.step_down("the root's state names another primary");
                return Err(RootError::Superseded);
            }
            change(&mut state);
            let bytes = serde_json::to_vec(&state).expect("the state serializes");
            match registry.write_versioned(&path, bytes, Some(version)) {
                Ok(true) => {
                    *self.state.lock().unwrap() = Some((state, version + 1));
                    return Ok(());
                }
                Ok(false) => continue,
                Err(e) => return Err(RootError::ZooKeeper(e.to_string())),
            }
        }
        Err(RootError::StateContended)
    }

    /// Removes `member` from the in-sync standbys (before a write is
    /// acknowledged without it).
    pub fn drop_in_sync(&self, member: &Member) -> Result<(), RootError> {
        self.change_state(|s| s.in_sync.retain(|m| m.id != member.id))?;
        self.counted.lock().unwrap().retain(|id| *id != member.id);
        log::warn!("standby {} ({}) is out of sync", member.address, member.id);
        Ok(())
    }

    /// Adds `member` to the in-sync standbys (it caught up).
    pub fn add_in_sync(&self, member: &Member) -> Result<(), RootError> {
        self.counted.lock().unwrap().push(member.id.clone());
        self.change_state(|s| {
            s.in_sync.retain(|m| m.id != member.id);
            s.in_sync.push(member.clone());
        })?;
        log::info!("standby {} ({}) is in sync", member.address, member.id);
        Ok(())
    }
}
