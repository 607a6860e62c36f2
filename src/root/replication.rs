//! Synchronous replication in the root group, both ends.
//!
//! **The primary** sends every write, once it is in its own log, to every
//! standby it replicates to, all at once, and waits for each: an in-sync
//! standby that does not make it durable in time is removed from the
//! in-sync set (see `group`) before the write is acknowledged; a standby
//! that refuses it for its epoch fences this primary, and the write fails.
//!
//! A standby that is not in sync **catches up**: the primary stops the
//! writes for a moment (they hold `gate` from before they replicate until
//! they are applied, and a catch-up takes it alone) to tell the standby to
//! drop what it holds and to add it to the writes' targets; every write
//! from then on reaches it. Then the primary sends its whole state in
//! chunks, read while writes go on, and finally asks the standby to make it
//! durable; once it has, the standby is added to the in-sync set. A write
//! and a chunk may bring one key in either order: the standby keeps the
//! newer version, and remembers the versions of deletes until the catch-up
//! ends, so that an older chunk cannot bring a deleted key back.
//!
//! **The standby** makes each write durable in its own log before it
//! answers, applies it to its store, and refuses requests from an epoch
//! older than the newest it has seen.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::error::Error;
use crate::expiry::{self, Kept};
use crate::node::Node;
use crate::peer::UpstreamError;
use crate::root::RootError;
use crate::store::Mutation;
use crate::wal::record::{self, Change, Edit};
use crate::wal::{Live, Source};
use crate::wire::{Answer, Peer, Phase, Refused, Replicate, Replicated};

use super::dedup::Fingerprint;
use super::group::Member;

/// Records per catch-up chunk, at most.
const CHUNK_RECORDS: usize = 4096;
/// Bytes per catch-up chunk, about.
const CHUNK_BYTES: usize = 1 << 20;
/// Time allowed for one catch-up call.
const CHUNK_TIME: Duration = Duration::from_secs(30);

/// A standby the primary replicates to.
#[derive(Clone, Debug)]
struct Target {
    member: Member,
    /// Counted in sync (else still catching up).
    in_sync: bool,
}

/// What one standby made of one replication request.
type Outcome = Result<Result<Replicated, Answer>, UpstreamError>;

/// A catch-up under way at a standby.
struct CatchUp {
    id: String,
    /// Versions of the deletes applied during it, by key.
    deleted: HashMap<String, u64>,
}

/// See the module documentation.
#[derive(Default)]
pub struct Replication {
    gate: RwLock<()>,
    targets: Mutex<Vec<Target>>,
    /// Members with a catch-up under way (the primary's).
    syncing: Mutex<HashSet<String>>,
    /// The catch-up under way here (a standby's).
    catch_up: Mutex<Option<CatchUp>>,
}

/// Why a standby refused a replication request.
pub enum Refusal {
    /// The request comes from an older epoch than this process knows.
    Stale(u64),
    Other(Error),
}

impl Replication {
    /// Held by a write from before it replicates until it is applied.
    pub fn hold(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets every standby (this process stopped being the primary).
    pub fn stop(&self) {
        self.targets.lock().unwrap().clear();
    }

    /// The primary: sends one write to every target and waits for each
    /// (`expires_ms`: a put's expiry as a Unix time in milliseconds, 0 for
    /// none; `write_id`: the fingerprint of a write forwarded under a
    /// request id).
    #[allow(clippy::too_many_arguments)]
    pub fn replicate(
        &self,
        node: &Node,
        epoch: u64,
        key: &str,
        version: u64,
        expires_ms: u64,
        mutation: &Mutation,
        write_id: Option<Fingerprint>,
        deadline: Deadline,
    ) -> Result<(), Error> {
        let targets = self.targets.lock().unwrap().clone();
        if targets.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        let edit = match mutation {
            Mutation::Put(v) => Edit::Put(v),
            Mutation::Delete => Edit::Delete,
        };
        record::encode_write(&mut records, 0, key, version, expires_ms, edit);
        let message = Replicate {
            epoch,
            phase: Phase::Live,
            catch_up: None,
            write_id: write_id.map(|id| id.to_string()),
            records,
        };
        let hop = node.config().hop_timeout;
        let call = |t: &Target| node.replicate_to(&peer_of(&t.member), &message, deadline, hop);
        let outcomes: Vec<(Target, Outcome)> = match targets.as_slice() {
            // One standby (the usual case): no thread to start.
            [one] => vec![(one.clone(), call(one))],
            // Several: all at once.
            _ => std::thread::scope(|s| {
                let calls: Vec<_> = targets.iter().map(|t| s.spawn(move || call(t))).collect();
                targets
                    .iter()
                    .cloned()
                    .zip(calls.into_iter().map(|c| {
                        c.join().unwrap_or_else(|_| {
                            Err(UpstreamError::Relayed {
                                status: 500,
                                body: Vec::new(),
                            })
                        })
                    }))
                    .collect()
            }),
        };
        for (target, outcome) in outcomes {
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err(answer)) if answer.status == 409 => {
                    if let Ok(refused) = serde_json::from_slice::<Refused>(&answer.body) {
                        node.root()
                            .expect("the root")
                            .group()
                            .learn_epoch(refused.epoch);
                    }
                    return Err(RootError::RefusedByStandby {
                        address: target.member.address.clone(),
                    }
                    .into());
                }
                failed => {
                    log::warn!(
                        "replicating to standby {} failed: {failed:?}",
                        target.member.address
                    );
                    self.targets
                        .lock()
                        .unwrap()
                        .retain(|t| t.member.id != target.member.id);
                    if target.in_sync {
                        node.root()
                            .expect("the root")
                            .group()
                            .drop_in_sync(&target.member)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The primary: starts a catch-up for every member that is neither a
    /// target nor catching up.
    pub fn catch_up_members(self: &Arc<Self>, node: &Arc<Node>, members: &[Member]) {
        for member in members {
            let known = self
                .targets
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.member.id == member.id);
            if known || !self.syncing.lock().unwrap().insert(member.id.clone()) {
                continue;
            }
            let id = member.id.clone();
            let (me, node, member) = (self.clone(), node.clone(), member.clone());
            let spawned = std::thread::Builder::new()
                .name("catch-up".into())
                .spawn(move || {
                    if let Err(e) = me.catch_up(&node, &member) {
                        log::warn!("standby {} did not catch up: {e}", member.address);
                        me.targets
                            .lock()
                            .unwrap()
                            .retain(|t| t.member.id != member.id);
                    }
                    me.syncing.lock().unwrap().remove(&member.id);
                });
            if spawned.is_err() {
                self.syncing.lock().unwrap().remove(&id);
            }
        }
    }

    /// One catch-up of `member` (see the module documentation).
    fn catch_up(&self, node: &Node, member: &Member) -> Result<(), Error> {
        let root = node.root().expect("the root");
        let epoch = root.group().epoch().ok_or(RootError::CatchUpNotPrimary)?;
        let id = crate::wal::dir::random_id().map_err(|e| RootError::Internal(e.to_string()))?;
        let peer = peer_of(member);
        let send = |phase: Phase, records: Vec<u8>| -> Result<(), Error> {
            let message = Replicate {
                epoch,
                phase,
                catch_up: Some(id.clone()),
                write_id: None,
                records,
            };
            match node.replicate_to(&peer, &message, Deadline::after(CHUNK_TIME), CHUNK_TIME) {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(answer)) => Err(RootError::StandbyAnswered {
                    status: answer.status,
                    body: answer.body,
                }
                .into()),
                Err(e) => Err(Error::from(e)),
            }
        };
        log::info!("standby {} ({}) catches up", member.address, member.id);
        {
            let _no_write_between = self.gate.write().unwrap_or_else(|e| e.into_inner());
            send(Phase::Reset, Vec::new())?;
            self.targets.lock().unwrap().push(Target {
                member: member.clone(),
                in_sync: false,
            });
        }
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        let mut count = 0;
        let mut sent = 0usize;
        let mut failure = None;
        let _ = Source::dump(node.store_handle().as_ref(), &mut |live: Live<'_>| {
            record::encode_write(
                &mut chunk,
                0,
                live.key,
                live.version,
                live.expires_ms,
                Edit::Put(live.value),
            );
            count += 1;
            if count >= CHUNK_RECORDS || chunk.len() >= CHUNK_BYTES {
                if let Err(e) = send(Phase::Chunk, std::mem::take(&mut chunk)) {
                    failure = Some(e);
                    return Err(std::io::Error::other("the standby failed"));
                }
                sent += count;
                count = 0;
            }
            Ok(())
        });
        if let Some(e) = failure {
            return Err(e);
        }
        sent += count;
        send(Phase::Chunk, chunk)?;
        send(Phase::End, Vec::new())?;
        {
            // No write between: each write either ended before (and reached
            // the standby, or removed it from the targets) or starts after
            // and counts it in sync, so that a write it then misses first
            // removes it from the in-sync set again.
            let _no_write_between = self.gate.write().unwrap_or_else(|e| e.into_inner());
            let mut targets = self.targets.lock().unwrap();
            let Some(target) = targets.iter_mut().find(|t| t.member.id == member.id) else {
                return Err(RootError::StandbyDropped.into());
            };
            root.group().add_in_sync(member)?;
            target.in_sync = true;
        }
        log::info!("standby {} caught up with {sent} keys", member.address);
        Ok(())
    }

    /// The standby: applies a replication request.
    pub fn receive(&self, node: &Node, message: &Replicate) -> Result<Replicated, Refusal> {
        let root = node.root().expect("replication reaches the root's id only");
        let group = root.group();
        if message.epoch < group.known_epoch() {
            return Err(Refusal::Stale(group.known_epoch()));
        }
        group.learn_epoch(message.epoch);
        if group.is_primary() {
            return Err(Refusal::Other(RootError::IsPrimary.into()));
        }
        // A catch-up's phases run one at a time, under the lock; live writes
        // take it only for a moment (a delete, below), so that concurrent
        // writes share their syncs of this process's log.
        let mut catch_up = match message.phase {
            Phase::Live => None,
            _ => Some(self.catch_up.lock().unwrap()),
        };
        match message.phase {
            Phase::Reset => {
                node.store_handle().clear();
                **catch_up.as_mut().expect("locked for the catch-up") = Some(CatchUp {
                    id: message.catch_up.clone().unwrap_or_default(),
                    deleted: HashMap::new(),
                });
                log::info!("catching up with the primary (epoch {})", message.epoch);
                return Ok(Replicated { applied: 0 });
            }
            Phase::Chunk | Phase::End => {
                let ours = catch_up
                    .as_deref()
                    .and_then(Option::as_ref)
                    .is_some_and(|c| Some(&c.id) == message.catch_up.as_ref());
                if !ours {
                    return Err(Refusal::Other(RootError::NoSuchCatchUp.into()));
                }
            }
            Phase::Live => {}
        }
        let mut applied = 0;
        let mut at = 0;
        while at < message.records.len() {
            let (r, len) = record::decode(&message.records[at..])
                .map_err(|d| Refusal::Other(RootError::DamagedRecord(d.to_string()).into()))?;
            at += len;
            let value = match &r.change {
                Change::Put(v) => Some(v.as_slice()),
                Change::Delete => None,
                Change::End(_) => continue,
            };
            root.note_version(r.version);
            // The log keeps the expiry as the primary sent it; memory, the
            // time it has left by this process's clock.
            let (live, expires) =
                match expiry::from_unix_ms(r.expires_ms, expiry::unix_now_ms(), Instant::now()) {
                    Kept::Forever => (value, None),
                    Kept::Until(at) => (value, Some(at)),
                    Kept::Expired => (None, None),
                };
            match message.phase {
                Phase::Live => {
                    let mutation = match value {
                        Some(v) => Mutation::Put(v.to_vec()),
                        None => Mutation::Delete,
                    };
                    // A delete is remembered by a catch-up under way before
                    // it is applied, so that no chunk applied after it can
                    // bring the key back. The catch-up's lock is taken before
                    // the log's, as a catch-up's end takes them (it compacts
                    // the log under its lock): the other order deadlocks a
                    // delete against the end of a catch-up.
                    let remembered = value.is_none().then(|| {
                        let mut under_way = self.catch_up.lock().unwrap();
                        if let Some(c) = under_way.as_mut() {
                            c.deleted.insert(r.key.clone(), r.version);
                        }
                        under_way
                    });
                    let logged = root
                        .log(&r.key, r.version, r.expires_ms, &mutation)
                        .map_err(Refusal::Other)?;
                    if node
                        .store_handle()
                        .apply_if_newer(&r.key, live, r.version, expires)
                    {
                        applied += 1;
                    }
                    if let Some(id) = message.write_id.as_deref().and_then(Fingerprint::parse) {
                        root.dedup().remember(id, r.version);
                    }
                    drop(remembered);
                    drop(logged);
                }
                _ => {
                    let deleted_later = catch_up
                        .as_deref()
                        .and_then(Option::as_ref)
                        .and_then(|c| c.deleted.get(&r.key))
                        .is_some_and(|&v| v >= r.version);
                    if !deleted_later
                        && node
                            .store_handle()
                            .apply_if_newer(&r.key, live, r.version, expires)
                    {
                        applied += 1;
                    }
                }
            }
        }
        if message.phase == Phase::End {
            // What was received becomes durable here, whatever this
            // directory held before the catch-up.
            if let Some(wal) = root.wal() {
                wal.compact_now(node.store_handle().as_ref())
                    .map_err(|e| Refusal::Other(RootError::Internal(e).into()))?;
            }
            **catch_up.as_mut().expect("locked for the catch-up") = None;
            log::info!("caught up with the primary (epoch {})", message.epoch);
        }
        Ok(Replicated { applied })
    }
}

fn peer_of(member: &Member) -> Peer {
    Peer {
        name: format!("standby {}", member.id),
        address: member.address.clone(),
    }
}
