//! A standby's side of replication (see `replication` for the rules): each
//! live write made durable in its own log before it answers, a catch-up's
//! chunks applied without bringing back what a later delete removed, and
//! requests from an older epoch than it knows refused.

use std::collections::HashMap;
use std::time::Instant;

use crate::expiry::{self, Kept};
use crate::store::Mutation;
use crate::wal::record::{self, Change, Record};
use crate::wire::{Phase, Replicate, Replicated};

use super::dedup::Fingerprint;
use super::replication::{CatchUp, Refusal};
use super::{Root, RootError};

impl Root {
    /// `POST /internal/replicate`: a standby applies what its primary sent.
    pub fn receive(&self, message: &Replicate) -> Result<Replicated, Refusal> {
        let group = &self.group;
        if message.epoch < group.known_epoch() {
            return Err(Refusal::Stale(group.known_epoch()));
        }
        group.learn_epoch(message.epoch);
        if group.is_primary() {
            return Err(Refusal::Other(RootError::IsPrimary));
        }
        match message.phase {
            Phase::Live => self.receive_live(message),
            _ => self.receive_catch_up(message),
        }
    }

    /// The standby: applies a live write, logged first. Live writes take
    /// the catch-up's lock only for a moment (a delete), so that concurrent
    /// writes share their syncs of this process's log.
    fn receive_live(&self, message: &Replicate) -> Result<Replicated, Refusal> {
        let write_id = message.write_id.as_deref().and_then(Fingerprint::parse);
        let applied = each_record(self, &message.records, |r, live, expires| {
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
                let mut under_way = self.replication.catch_up.lock().unwrap();
                if let Some(c) = under_way.as_mut() {
                    c.deleted.insert(r.key.clone(), r.version);
                }
                under_way
            });
            let logged = self
                .log(&r.key, r.version, r.expires_ms, &mutation)
                .map_err(Refusal::Other)?;
            let applied = self.store.apply_if_newer(&r.key, live, r.version, expires);
            if let Some(id) = write_id {
                self.dedup.remember(id, r.version);
            }
            drop(remembered);
            drop(logged);
            Ok(applied)
        })?;
        Ok(Replicated { applied })
    }

    /// The standby: a catch-up's phase. Its phases run one at a time, under
    /// the catch-up's lock.
    fn receive_catch_up(&self, message: &Replicate) -> Result<Replicated, Refusal> {
        let mut catch_up = self.replication.catch_up.lock().unwrap();
        if message.phase == Phase::Reset {
            self.store.clear();
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
            return Err(Refusal::Other(RootError::NoSuchCatchUp));
        };
        let applied = each_record(self, &message.records, |r, live, expires| {
            let deleted_later = ours.deleted.get(&r.key).is_some_and(|&v| v >= r.version);
            Ok(!deleted_later && self.store.apply_if_newer(&r.key, live, r.version, expires))
        })?;
        if message.phase == Phase::End {
            // What was received becomes durable here, whatever this
            // directory held before the catch-up.
            if let Some(wal) = self.wal() {
                wal.compact_now(self.store.as_ref())
                    .map_err(|e| Refusal::Other(RootError::Internal(e)))?;
            }
            *catch_up = None;
            log::info!("caught up with the primary (epoch {})", message.epoch);
        }
        Ok(Replicated { applied })
    }
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
            .map_err(|d| Refusal::Other(RootError::DamagedRecord(d.to_string())))?;
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
