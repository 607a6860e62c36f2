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
use crate::error::{Error, UpstreamError};
use crate::expiry::{self, Kept};
use crate::store::{Mutation, Store};
use crate::wal::record::{self, Change, Edit, Record};
use crate::wal::{Live, Source};
use crate::wire::{Answer, Peer, Phase, Refused, Replicate, Replicated};

use super::dedup::Fingerprint;
use super::group::Member;
use super::{Commit, Root};

/// Records per catch-up chunk, at most.
const CHUNK_RECORDS: usize = 4096;
/// Bytes per catch-up chunk, about.
const CHUNK_BYTES: usize = 1 << 20;
/// Time allowed for one catch-up call.
const CHUNK_TIME: Duration = Duration::from_secs(30);

/// How the primary reaches its standbys. The layer above hands the root
/// one when it builds it: HTTP in a running node, in process in the tests.
pub trait Standbys: Send + Sync {
    /// Sends records to `standby`, giving up after `hop`; `Ok(Err(answer))`
    /// when the standby refused them.
    fn replicate(
        &self,
        standby: &Peer,
        message: &Replicate,
        deadline: Deadline,
        hop: Duration,
    ) -> Outcome;
}

/// What one standby made of one replication request.
pub type Outcome = Result<Result<Replicated, Answer>, UpstreamError>;

/// A standby the primary replicates to.
#[derive(Clone, Debug)]
struct Target {
    member: Member,
    /// Counted in sync (else still catching up).
    in_sync: bool,
}

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

    /// Drops the standby `id` from the writes' targets.
    fn forget(&self, id: &str) {
        self.targets.lock().unwrap().retain(|t| t.member.id != id);
    }

    /// The primary: sends one write of `epoch` to every target and waits
    /// for each (`expires_ms`: a put's expiry as a Unix time in
    /// milliseconds, 0 for none).
    pub(super) fn replicate(
        &self,
        root: &Root,
        epoch: u64,
        write: &Commit<'_>,
        expires_ms: u64,
    ) -> Result<(), Error> {
        let targets = self.targets.lock().unwrap().clone();
        if targets.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        let edit = match &write.mutation {
            Mutation::Put(v) => Edit::Put(v),
            Mutation::Delete => Edit::Delete,
        };
        record::encode_write(&mut records, 0, write.key, write.version, expires_ms, edit);
        let message = Replicate {
            epoch,
            phase: Phase::Live,
            catch_up: None,
            write_id: write.retry_of.map(|id| id.to_string()),
            records,
        };
        let hop = root.settings.hop;
        let call = |t: &Target| {
            root.standbys
                .replicate(&peer_of(&t.member), &message, write.deadline, hop)
        };
        for (target, outcome) in send_to_each(&targets, call) {
            self.settle(root, &target, outcome)?;
        }
        Ok(())
    }

    /// What one standby's answer to a write means: a refusal for its epoch
    /// fences this primary (the write fails); any other failure drops the
    /// standby from the targets, and first from the in-sync set if it was
    /// counted there.
    fn settle(&self, root: &Root, target: &Target, outcome: Outcome) -> Result<(), Error> {
        match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(answer)) if answer.status == 409 => {
                if let Ok(refused) = serde_json::from_slice::<Refused>(&answer.body) {
                    root.group.learn_epoch(refused.epoch);
                }
                Err(Error::Unavailable(format!(
                    "Standby {} refused the write: this process is no longer the primary.",
                    target.member.address
                )))
            }
            failed => {
                log::warn!(
                    "replicating to standby {} failed: {failed:?}",
                    target.member.address
                );
                self.forget(&target.member.id);
                if target.in_sync {
                    root.group.drop_in_sync(&target.member)?;
                }
                Ok(())
            }
        }
    }

    /// The primary: starts a catch-up for every member that is neither a
    /// target nor catching up.
    pub(super) fn catch_up_members(&self, root: &Arc<Root>, members: &[Member]) {
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
            let (root, member) = (root.clone(), member.clone());
            let spawned = std::thread::Builder::new()
                .name("catch-up".into())
                .spawn(move || {
                    let me = &root.replication;
                    if let Err(e) = me.catch_up(&root, &member) {
                        log::warn!("standby {} did not catch up: {e}", member.address);
                        me.forget(&member.id);
                    }
                    me.syncing.lock().unwrap().remove(&member.id);
                });
            if spawned.is_err() {
                self.syncing.lock().unwrap().remove(&id);
            }
        }
    }

    /// One catch-up of `member` (see the module documentation).
    fn catch_up(&self, root: &Root, member: &Member) -> Result<(), Error> {
        let epoch = root
            .group
            .epoch()
            .ok_or_else(|| Error::Unavailable("not the primary".into()))?;
        let id = crate::wal::dir::random_id().map_err(|e| Error::Internal(e.to_string()))?;
        let peer = peer_of(member);
        let send = |phase: Phase, records: Vec<u8>| -> Result<(), Error> {
            let message = Replicate {
                epoch,
                phase,
                catch_up: Some(id.clone()),
                write_id: None,
                records,
            };
            let deadline = Deadline::after(CHUNK_TIME);
            match root
                .standbys
                .replicate(&peer, &message, deadline, CHUNK_TIME)
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(answer)) => Err(Error::Unavailable(format!(
                    "it answered {} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ))),
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
        let sent = send_state(&root.store, &send)?;
        send(Phase::End, Vec::new())?;
        {
            // No write between: each write either ended before (and reached
            // the standby, or removed it from the targets) or starts after
            // and counts it in sync, so that a write it then misses first
            // removes it from the in-sync set again.
            let _no_write_between = self.gate.write().unwrap_or_else(|e| e.into_inner());
            let mut targets = self.targets.lock().unwrap();
            let Some(target) = targets.iter_mut().find(|t| t.member.id == member.id) else {
                return Err(Error::Unavailable("a write to it failed meanwhile".into()));
            };
            root.group.add_in_sync(member)?;
            target.in_sync = true;
        }
        log::info!("standby {} caught up with {sent} keys", member.address);
        Ok(())
    }

    /// The standby: applies a replication request.
    pub(super) fn receive(&self, root: &Root, message: &Replicate) -> Result<Replicated, Refusal> {
        let group = &root.group;
        if message.epoch < group.known_epoch() {
            return Err(Refusal::Stale(group.known_epoch()));
        }
        group.learn_epoch(message.epoch);
        if group.is_primary() {
            return Err(Refusal::Other(Error::Conflict(
                "This process is the primary of the root group.".into(),
            )));
        }
        match message.phase {
            Phase::Live => self.receive_live(root, message),
            _ => self.receive_catch_up(root, message),
        }
    }

    /// The standby: applies a live write, logged first. Live writes take
    /// the catch-up's lock only for a moment (a delete), so that concurrent
    /// writes share their syncs of this process's log.
    fn receive_live(&self, root: &Root, message: &Replicate) -> Result<Replicated, Refusal> {
        let write_id = message.write_id.as_deref().and_then(Fingerprint::parse);
        let applied = each_record(root, &message.records, |r, live, expires| {
            let mutation = match &r.change {
                Change::Put(v) => Mutation::Put(v.clone()),
                _ => Mutation::Delete,
            };
            // A delete is remembered by a catch-up under way before it is
            // applied, so that no chunk applied after it can bring the key
            // back. The catch-up's lock is taken before the log's, as a
            // catch-up's end takes them (it compacts the log under its
            // lock): the other order deadlocks a delete against the end of
            // a catch-up.
            let remembered = matches!(mutation, Mutation::Delete).then(|| {
                let mut under_way = self.catch_up.lock().unwrap();
                if let Some(c) = under_way.as_mut() {
                    c.deleted.insert(r.key.clone(), r.version);
                }
                under_way
            });
            let logged = root
                .log(&r.key, r.version, r.expires_ms, &mutation)
                .map_err(Refusal::Other)?;
            let applied = root.store.apply_if_newer(&r.key, live, r.version, expires);
            if let Some(id) = write_id {
                root.dedup.remember(id, r.version);
            }
            drop(remembered);
            drop(logged);
            Ok(applied)
        })?;
        Ok(Replicated { applied })
    }

    /// The standby: a catch-up's phase. Its phases run one at a time, under
    /// the catch-up's lock.
    fn receive_catch_up(&self, root: &Root, message: &Replicate) -> Result<Replicated, Refusal> {
        let mut catch_up = self.catch_up.lock().unwrap();
        if message.phase == Phase::Reset {
            root.store.clear();
            *catch_up = Some(CatchUp {
                id: message.catch_up.clone().unwrap_or_default(),
                deleted: HashMap::new(),
            });
            log::info!("catching up with the primary (epoch {})", message.epoch);
            return Ok(Replicated { applied: 0 });
        }
        let Some(ours) = catch_up
            .as_ref()
            .filter(|c| Some(&c.id) == message.catch_up.as_ref())
        else {
            return Err(Refusal::Other(Error::Conflict(
                "No such catch-up is under way here.".into(),
            )));
        };
        let applied = each_record(root, &message.records, |r, live, expires| {
            let deleted_later = ours.deleted.get(&r.key).is_some_and(|&v| v >= r.version);
            Ok(!deleted_later && root.store.apply_if_newer(&r.key, live, r.version, expires))
        })?;
        if message.phase == Phase::End {
            // What was received becomes durable here, whatever this
            // directory held before the catch-up.
            if let Some(wal) = root.wal() {
                wal.compact_now(root.store.as_ref())
                    .map_err(|e| Refusal::Other(Error::Internal(e)))?;
            }
            *catch_up = None;
            log::info!("caught up with the primary (epoch {})", message.epoch);
        }
        Ok(Replicated { applied })
    }
}

/// Calls `call` for every target: one (the usual case) on this thread,
/// several all at once.
fn send_to_each(
    targets: &[Target],
    call: impl Fn(&Target) -> Outcome + Sync,
) -> Vec<(Target, Outcome)> {
    if let [one] = targets {
        return vec![(one.clone(), call(one))];
    }
    std::thread::scope(|s| {
        let call = &call;
        let calls: Vec<_> = targets.iter().map(|t| s.spawn(move || call(t))).collect();
        let outcomes = calls.into_iter().map(|c| {
            c.join().unwrap_or_else(|_| {
                Err(UpstreamError::Relayed {
                    status: 500,
                    body: Vec::new(),
                })
            })
        });
        targets.iter().cloned().zip(outcomes).collect()
    })
}

/// Sends the whole of `store` in chunks through `send` (read while writes
/// go on); returns how many keys it sent.
fn send_state(
    store: &Store,
    send: &dyn Fn(Phase, Vec<u8>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
    let (mut count, mut sent) = (0, 0usize);
    let mut failure = None;
    let _ = Source::dump(store, &mut |live: Live<'_>| {
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
    send(Phase::Chunk, chunk)?;
    Ok(sent + count)
}

/// Decodes each record of `records` and hands it to `apply` with the value
/// it leaves (none for a delete, or a put whose time ran out) and when that
/// expires by this process's clock (the log keeps the expiry as the primary
/// sent it); counts the records `apply` applied.
fn each_record(
    root: &Root,
    records: &[u8],
    mut apply: impl FnMut(&Record, Option<&[u8]>, Option<Instant>) -> Result<bool, Refusal>,
) -> Result<usize, Refusal> {
    let (mut applied, mut at) = (0, 0);
    while at < records.len() {
        let (r, len) = record::decode(&records[at..])
            .map_err(|d| Refusal::Other(Error::BadRequest(format!("a record is damaged: {d}"))))?;
        at += len;
        let value = match &r.change {
            Change::Put(v) => Some(v.as_slice()),
            Change::Delete => None,
            Change::End(_) => continue,
        };
        root.note_version(r.version);
        let (live, expires) =
            match expiry::from_unix_ms(r.expires_ms, expiry::unix_now_ms(), Instant::now()) {
                Kept::Forever => (value, None),
                Kept::Until(at) => (value, Some(at)),
                Kept::Expired => (None, None),
            };
        if apply(&r, live, expires)? {
            applied += 1;
        }
    }
    Ok(applied)
}

fn peer_of(member: &Member) -> Peer {
    Peer {
        name: format!("standby {}", member.id),
        address: member.address.clone(),
    }
}
