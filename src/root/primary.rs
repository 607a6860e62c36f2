//! The primary's side of replication (see `replication` for the rules):
//! [`Root::commit`], a write logged, sent to every standby while the log
//! syncs, applied and acknowledged; and the catch-up of the standbys not in
//! sync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::expiry;
use crate::lease::Sessions;
use crate::peer::UpstreamError;
use crate::store::{Applied, Mutation, Reservation, Store};
use crate::wal::record::{self, Edit};
use crate::wal::{Live, Source};
use crate::wire::{Peer, Phase, Refused, Replicate};

use super::dedup::Fingerprint;
use super::group::Member;
use super::replication::{Outcome, Target};
use super::{Root, RootError};

/// Records per catch-up chunk, at most.
const CHUNK_RECORDS: usize = 4096;
/// Bytes per catch-up chunk, about.
const CHUNK_BYTES: usize = 1 << 20;
/// Time allowed for one catch-up call.
const CHUNK_TIME: Duration = Duration::from_secs(30);

/// A write the primary commits, once the caches below no longer hold its key.
pub struct Commit<'a> {
    pub key: &'a str,
    pub mutation: Mutation,
    pub version: u64,
    /// When a put's value expires; `None`: for good.
    pub expires: Option<Instant>,
    /// What the write is remembered under for its retries, if anything.
    pub retry_of: Option<Fingerprint>,
    pub deadline: Deadline,
}

impl Root {
    /// Commits a write at the primary, under the key's write lock (the key
    /// is pending in the store) once the caches below have dropped it: logs
    /// it (with `--data-dir`), replicates it to the standbys while the log
    /// syncs, applies it to the store in `room`, and acknowledges it only
    /// under the lease of the session this process became primary in. The
    /// key's write ends here, applied or aborted.
    pub fn commit(
        &self,
        write: Commit<'_>,
        room: Reservation<'_>,
        sessions: &dyn Sessions,
    ) -> Result<Applied, RootError> {
        let (key, version) = (write.key, write.version);
        let expires_ms = write.expires.map_or(0, expiry::to_unix_ms);
        // From before it is replicated until it is applied: a standby's
        // catch-up starts either before this write or after it is applied.
        let replicating = self.replication.hold();
        // Replicated once the write is in this process's log file, while
        // that file is synced: a full disk or a write error here stops it
        // before any standby has it.
        let replicate = || match self.group.epoch() {
            Some(epoch) => self.replicate(epoch, &write, expires_ms),
            None => Err(RootError::Deposed),
        };
        let (logged, replicated) =
            self.log_then(key, version, expires_ms, &write.mutation, replicate);
        let (logged, replicated) = match (logged, replicated) {
            (Ok(logged), Some(replicated)) => (logged, replicated),
            (Err(e), None) => {
                self.store.abort_write(key, 0);
                return Err(e);
            }
            // Written here and sent to the standbys, but the sync failed:
            // the log is poisoned and the write cut off it again, and a
            // standby may have it.
            (Err(e), Some(_)) => {
                self.store.abort_write(key, 0);
                return Err(RootError::MayHaveReplicated {
                    key: key.to_string(),
                    cause: Box::new(e),
                });
            }
            (Ok(_), None) => unreachable!("a write in the log is replicated"),
        };
        // Acknowledged only under the lease of the session this process
        // became primary in: no other primary can exist meanwhile.
        let acknowledged = replicated.and_then(|()| self.group.require_primacy(sessions));
        // In the log it is, so it is applied here whatever the answer: this
        // copy and its log must agree (a primary that was replaced drops
        // both when it catches up as a standby).
        let applied = self
            .store
            .apply(key, write.mutation, version, write.expires, room);
        drop(logged);
        drop(replicating);
        match acknowledged {
            Ok(()) => Ok(applied),
            Err(e) => Err(RootError::NotAcknowledged {
                key: key.to_string(),
                cause: Box::new(e),
            }),
        }
    }

    /// The primary: sends one write of `epoch` to every target and waits
    /// for each (`expires_ms`: a put's expiry as a Unix time in
    /// milliseconds, 0 for none).
    fn replicate(&self, epoch: u64, write: &Commit<'_>, expires_ms: u64) -> Result<(), RootError> {
        let targets = self.replication.targets.lock().unwrap().clone();
        if targets.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        let edit = super::edit_of(&write.mutation);
        record::encode_write(&mut records, 0, write.key, write.version, expires_ms, edit);
        let message = Replicate {
            epoch,
            phase: Phase::Live,
            catch_up: None,
            write_id: write.retry_of.map(|id| id.to_string()),
            records,
        };
        let hop = self.settings.hop;
        let call = |t: &Target| {
            self.standbys
                .replicate(&peer_of(&t.member), &message, write.deadline, hop)
        };
        for (target, outcome) in send_to_each(&targets, call) {
            self.settle(&target, outcome)?;
        }
        Ok(())
    }

    /// What one standby's answer to a write means: a refusal for its epoch
    /// fences this primary (the write fails); any other failure drops the
    /// standby from the targets, and first from the in-sync set if it was
    /// counted there.
    fn settle(&self, target: &Target, outcome: Outcome) -> Result<(), RootError> {
        match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(answer)) if answer.status == 409 => {
                if let Ok(refused) = serde_json::from_slice::<Refused>(&answer.body) {
                    self.group.learn_epoch(refused.epoch);
                }
                Err(RootError::RefusedByStandby {
                    address: target.member.address.clone(),
                })
            }
            failed => {
                log::warn!(
                    "replicating to standby {} failed: {failed:?}",
                    target.member.address
                );
                self.replication.forget(&target.member.id);
                if target.in_sync {
                    self.group.drop_in_sync(&target.member)?;
                }
                Ok(())
            }
        }
    }

    /// The primary: starts a catch-up for every member that is neither a
    /// target nor catching up.
    pub(super) fn catch_up_members(self: &Arc<Self>, members: &[Member]) {
        for member in members {
            let known = self
                .replication
                .targets
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.member.id == member.id);
            if known
                || !self
                    .replication
                    .syncing
                    .lock()
                    .unwrap()
                    .insert(member.id.clone())
            {
                continue;
            }
            let id = member.id.clone();
            let (root, member) = (self.clone(), member.clone());
            let spawned = std::thread::Builder::new()
                .name("catch-up".into())
                .spawn(move || {
                    if let Err(e) = root.catch_up(&member) {
                        log::warn!("standby {} did not catch up: {e:?}", member.address);
                        root.replication.forget(&member.id);
                    }
                    root.replication.syncing.lock().unwrap().remove(&member.id);
                });
            if spawned.is_err() {
                self.replication.syncing.lock().unwrap().remove(&id);
            }
        }
    }

    /// One catch-up of `member` (see the module documentation).
    fn catch_up(&self, member: &Member) -> Result<(), RootError> {
        let epoch = self.group.epoch().ok_or(RootError::CatchUpNotPrimary)?;
        let id = crate::wal::dir::random_id().map_err(|e| RootError::Internal(e.to_string()))?;
        let peer = peer_of(member);
        let send = |phase: Phase, records: Vec<u8>| -> Result<(), RootError> {
            let message = Replicate {
                epoch,
                phase,
                catch_up: Some(id.clone()),
                write_id: None,
                records,
            };
            let deadline = Deadline::after(CHUNK_TIME);
            match self
                .standbys
                .replicate(&peer, &message, deadline, CHUNK_TIME)
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(answer)) => Err(RootError::StandbyAnswered {
                    status: answer.status,
                    body: answer.body,
                }),
                Err(e) => Err(RootError::from(e)),
            }
        };
        log::info!("standby {} ({}) catches up", member.address, member.id);
        {
            let _no_write_between = self
                .replication
                .gate
                .write()
                .unwrap_or_else(|e| e.into_inner());
            send(Phase::Reset, Vec::new())?;
            self.replication.targets.lock().unwrap().push(Target {
                member: member.clone(),
                in_sync: false,
            });
        }
        let sent = send_state(&self.store, &send)?;
        send(Phase::End, Vec::new())?;
        {
            // No write between: each write either ended before (and reached
            // the standby, or removed it from the targets) or starts after
            // and counts it in sync, so that a write it then misses first
            // removes it from the in-sync set again.
            let _no_write_between = self
                .replication
                .gate
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let mut targets = self.replication.targets.lock().unwrap();
            let Some(target) = targets.iter_mut().find(|t| t.member.id == member.id) else {
                return Err(RootError::StandbyDropped);
            };
            self.group.add_in_sync(member)?;
            target.in_sync = true;
        }
        log::info!("standby {} caught up with {sent} keys", member.address);
        Ok(())
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
    send: &dyn Fn(Phase, Vec<u8>) -> Result<(), RootError>,
) -> Result<usize, RootError> {
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

fn peer_of(member: &Member) -> Peer {
    Peer {
        name: format!("standby {}", member.id),
        address: member.address.clone(),
    }
}
