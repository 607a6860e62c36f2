//! The root's data directory: a write-ahead log of applied writes,
//! snapshots, recovery at start, and compaction in the background.
//!
//! - `record`: one record and its frame on disk (checksummed).
//! - `dir`: the directory: which cluster it belongs to, its lock, file names.
//! - `writer`: appending with group commit; disk-full, I/O and sync failures.
//! - `snapshot`: the whole state in one file, written whole or not at all.
//! - `recovery`: the latest snapshot, then the logs after it.
//! - `compaction`: a new snapshot once the log outgrows the live data.
//!
//! The root logs every write with [`Wal::log_then`] (the primary
//! replicates the write while the log syncs), after the invalidations and
//! before it changes memory: the record is made as durable as `--fsync`
//! promises, then the write is applied in memory. A write whose record
//! could not be written is not applied. Compaction cuts the log only at a
//! point where every write logged before it has been applied, so that the
//! snapshot taken after that point holds all of them: each write holds the
//! `gate` lock shared from its record until it is applied ([`Logged`]),
//! and the compaction takes it alone to cut.

mod compaction;
pub mod dir;
pub mod record;
mod recovery;
mod snapshot;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::metrics::{Histogram, LATENCY_BUCKETS};

pub use dir::Identity;
pub use record::{Change, Edit, Record};

/// How often the log is synced: the names and meanings of Redis' `appendfsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Before every answer; concurrent writes share one sync.
    Always,
    /// Once a second: a machine crash may lose up to a second of
    /// acknowledged writes, a process crash none.
    EverySec,
    /// When the kernel decides (and at rotation and shutdown).
    No,
}

impl Fsync {
    pub fn parse(s: &str) -> Result<Fsync, String> {
        match s {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::EverySec),
            "no" => Ok(Fsync::No),
            _ => Err("expected always, everysec or no".into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }
}

/// Why a write could not be logged (and so was not applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalError {
    /// The disk is full (507).
    DiskFull(String),
    /// Another error writing the log (500).
    Io(String),
    /// A sync failed: what is on disk is unknown, so no write is taken
    /// until a restart (503).
    Poisoned(String),
    /// The log is closed: the node is stopping (503).
    Closed,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::DiskFull(m) => write!(f, "the disk is full ({m})"),
            WalError::Io(m) => write!(f, "writing the log failed ({m})"),
            WalError::Poisoned(m) => f.write_str(m),
            WalError::Closed => f.write_str("the log is closed: the node is stopping"),
        }
    }
}

/// Why a data directory could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not this cluster's directory, or in use (exit status 2).
    Refused(String),
    /// A record is damaged before the end of the log (exit status 1).
    Corrupt {
        file: String,
        offset: u64,
        detail: String,
    },
    /// Reading or creating the directory failed (exit status 1).
    Io(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Refused(m) | OpenError::Io(m) => f.write_str(m),
            OpenError::Corrupt {
                file,
                offset,
                detail,
            } => write!(
                f,
                "{file} is damaged at offset {offset}: {detail}; refusing to start with \
                 acknowledged writes missing"
            ),
        }
    }
}

impl OpenError {
    /// The exit status a node stops with.
    pub fn exit_status(&self) -> i32 {
        match self {
            OpenError::Refused(_) => 2,
            _ => 1,
        }
    }
}

/// The figures `/metrics` shows.
pub struct WalStats {
    fsync: Histogram,
    /// Bytes of the log files not yet replaced by a snapshot.
    bytes: AtomicU64,
}

impl Default for WalStats {
    fn default() -> Self {
        WalStats {
            fsync: Histogram::new(LATENCY_BUCKETS),
            bytes: AtomicU64::new(0),
        }
    }
}

impl WalStats {
    fn observe_fsync(&self, d: Duration) {
        self.fsync.observe(d);
    }

    fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn fsync(&self) -> &Histogram {
        &self.fsync
    }
}

/// One live key as a snapshot keeps it.
pub struct Live<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub version: u64,
    /// Unix time in milliseconds at which the key expires; 0: never.
    pub expires_ms: u64,
}

/// The live state, as the store shows it to a snapshot.
pub trait Source: Send + Sync {
    /// Bytes of live keys and values: the log is compacted when it has grown
    /// past twice this.
    fn live_bytes(&self) -> u64;

    /// Calls `visit` with every live key. `visit` is never called under a
    /// lock of the store.
    fn dump(&self, visit: &mut dyn FnMut(Live<'_>) -> std::io::Result<()>) -> std::io::Result<()>;
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Records applied (snapshot and logs).
    pub records: u64,
    /// The highest version among them: versions go on from above it.
    pub max_version: u64,
    /// How long it took.
    pub took: Duration,
}

/// A write that is in the log; hold it until the write is applied in memory
/// (compaction cuts the log only where no write is between the two).
pub struct Logged<'a> {
    _gate: std::sync::RwLockReadGuard<'a, ()>,
}

/// The open data directory. See the module documentation.
pub struct Wal {
    dir: Arc<dir::DataDir>,
    writer: Arc<writer::Writer>,
    /// Held shared by each write from its record until it is applied, and
    /// alone by a compaction's cut: no write is ever between the two.
    gate: RwLock<()>,
    stats: Arc<WalStats>,
    /// What compacts the log, once [`Wal::compact_in_background`] is called.
    compactor: std::sync::OnceLock<compaction::Compactor>,
}

impl Wal {
    /// Opens `path` for `identity`, replays it through `load` (in order:
    /// the snapshot's records, then the logs'), and starts a new log.
    pub fn open(
        path: &Path,
        identity: &Identity,
        mode: Fsync,
        load: &mut dyn FnMut(Record),
    ) -> Result<(Wal, Recovered), OpenError> {
        let started = Instant::now();
        let dir = Arc::new(dir::DataDir::open(path, identity)?);
        let found = recovery::recover(&dir, load)?;
        let stats = Arc::new(WalStats::default());
        stats.add_bytes(found.log_bytes);
        let writer = writer::Writer::start(
            dir.clone(),
            found.next_log,
            found.next_seq,
            mode,
            stats.clone(),
        )
        .map_err(|e| OpenError::Io(e.to_string()))?;
        let recovered = Recovered {
            records: found.records,
            max_version: found.max_version,
            took: started.elapsed(),
        };
        Ok((
            Wal {
                dir,
                writer,
                gate: RwLock::new(()),
                stats,
                compactor: std::sync::OnceLock::new(),
            },
            recovered,
        ))
    }

    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// The data directory's id: what tells this copy of the data apart.
    pub fn id(&self) -> &str {
        self.dir.id()
    }

    /// Compacts now: a snapshot of `source` replaces every log so far. A
    /// standby does this after a catch-up, so that the state it received is
    /// durable, whatever its logs held before.
    pub fn compact_now(&self, source: &dyn Source) -> Result<(), String> {
        compaction::compact(self, source)
    }

    /// Logs a write of `key`, returning once it is as durable as the mode
    /// promises. The caller applies the write in memory while it holds the
    /// returned [`Logged`], and must not apply it when this fails.
    #[cfg(test)]
    pub fn log(
        &self,
        key: &str,
        version: u64,
        expires_ms: u64,
        edit: Edit<'_>,
    ) -> Result<Logged<'_>, WalError> {
        self.log_then(key, version, expires_ms, edit, || ()).0
    }

    /// Logs a write of `key`, as durably as the mode promises: the caller
    /// applies the write in memory while it holds the returned [`Logged`],
    /// and must not apply it when this fails. Runs `during` once the record
    /// is in the file (not when writing it failed), while it is synced: what
    /// must wait for a write to be logged here, but not for the sync, runs
    /// alongside it. Returns what `during` returned, if it ran.
    pub fn log_then<R>(
        &self,
        key: &str,
        version: u64,
        expires_ms: u64,
        edit: Edit<'_>,
        during: impl FnOnce() -> R,
    ) -> (Result<Logged<'_>, WalError>, Option<R>) {
        let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let (logged, ran) = self
            .writer
            .append_then(key, version, expires_ms, edit, during);
        if let Some(compactor) = self.compactor.get() {
            compactor.check(self);
        }
        (logged.map(|()| Logged { _gate: gate }), ran)
    }

    /// Why the log refuses writes, if it does (a sync failed).
    pub fn poisoned(&self) -> Option<String> {
        self.writer.poisoned()
    }

    /// Waits up to `wait` for the writes under way to finish, then syncs
    /// and closes the log: later writes get [`WalError::Closed`].
    pub fn close(&self, wait: Duration) -> Result<(), WalError> {
        let until = Instant::now() + wait;
        let _quiet = loop {
            match self.gate.try_write() {
                Ok(g) => break Some(g),
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        self.writer.close()
    }

    /// Compacts in the background whenever the log outgrows `source`'s
    /// live data: checked now and after every write, and done on a thread
    /// that lasts as long as one compaction (see `compaction`).
    pub fn compact_in_background(self: &Arc<Self>, source: Arc<dyn Source>) {
        let _ = self
            .compactor
            .set(compaction::Compactor::new(Arc::downgrade(self), source));
        if let Some(compactor) = self.compactor.get() {
            compactor.check(self);
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.writer.close();
    }
}

#[cfg(test)]
mod tests;
