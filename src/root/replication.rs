//! Synchronous replication in the root group, both ends.
//!
//! **The primary** sends every write, once it is in its own log, to every
//! standby it replicates to, all at once, and waits for each: an in-sync
//! standby that does not make it durable in time is removed from the
//! in-sync set (see `group`) before the write is acknowledged; a standby
//! that refuses it for its epoch fences this primary, and the write fails.
//!
//! A standby that is not in sync **catches up**: the primary stops the
//! writes for a moment (they hold the `gate` lock from before they replicate until
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

use super::error::RootError;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::deadline::Deadline;
use crate::peer::UpstreamError;
use crate::wire::{Answer, Peer, Replicate, Replicated};

use super::group::Member;

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
pub(super) struct Target {
    pub(super) member: Member,
    /// Counted in sync (else still catching up).
    pub(super) in_sync: bool,
}

/// A catch-up under way at a standby.
pub(super) struct CatchUp {
    pub(super) id: String,
    /// Versions of the deletes applied during it, by key.
    pub(super) deleted: HashMap<String, u64>,
}

/// The state of both ends (see the module documentation); what the primary
/// does with it is in `primary`, what a standby does in `standby`.
#[derive(Default)]
pub struct Replication {
    /// Held shared by each write from before it is replicated until it is
    /// applied, and alone by a catch-up when it adds its standby to the
    /// targets and when it counts it in sync: no write is between.
    pub(super) gate: RwLock<()>,
    /// The standbys the primary sends its writes to.
    pub(super) targets: Mutex<Vec<Target>>,
    /// Members with a catch-up under way (the primary's).
    pub(super) syncing: Mutex<HashSet<String>>,
    /// The catch-up under way here (a standby's).
    pub(super) catch_up: Mutex<Option<CatchUp>>,
}

/// Why a standby refused a replication request.
pub enum Refusal {
    /// The request comes from an older epoch than this process knows.
    Stale(u64),
    Other(RootError),
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
    pub(super) fn forget(&self, id: &str) {
        self.targets.lock().unwrap().retain(|t| t.member.id != id);
    }
}
