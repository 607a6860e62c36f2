//! Compaction: when the log has grown past twice the live data, the log is
//! cut (a new file starts, at a point where every write logged so far has
//! been applied), a snapshot of the state is written beside it, and the
//! logs and snapshots before the cut are deleted. Writes go on meanwhile:
//! they wait only for the cut itself, one sync long.
//!
//! The snapshot is taken while writes continue, so a key may appear in it
//! with a value newer than the cut; every such write is also in the new
//! log, after the cut, and replaying that log in order over the snapshot
//! ends with each key's last write either way.
//!
//! While the file `HOLD` exists in the directory, no compaction starts, so
//! that a backup can copy the files knowing none is deleted under it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{snapshot, Source, Wal};

/// The log is never compacted below this size.
const MIN_LOG_BYTES: u64 = 4 << 20;
/// While a backup holds the directory, how often the compacting thread
/// looks whether it still does.
const HELD_RETRY: Duration = Duration::from_millis(500);
/// After a compaction failed, how long until the next may start.
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Starts a compaction when one is due, on a thread of its own that ends
/// with it: no thread waits for the log to grow. Checked after every write
/// (the log grows only by writes; a log that outgrows its live data only
/// because values expired is compacted at the next write).
pub(super) struct Compactor {
    wal: Weak<Wal>,
    source: Arc<dyn Source>,
    /// A compaction thread runs.
    running: AtomicBool,
    /// When the last compaction failed.
    failed_at: Mutex<Option<Instant>>,
}

impl Compactor {
    pub(super) fn new(wal: Weak<Wal>, source: Arc<dyn Source>) -> Compactor {
        Compactor {
            wal,
            source,
            running: AtomicBool::new(false),
            failed_at: Mutex::new(None),
        }
    }

    /// Starts a compaction if the log has outgrown twice the live data
    /// (and 4 MiB) and none runs. Cheap when none is due: an atomic load
    /// and the source's count of live bytes.
    pub(super) fn check(&self, wal: &Wal) {
        if !due(wal, self.source.as_ref()) || self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let recently = self
            .failed_at
            .lock()
            .unwrap()
            .is_some_and(|at| at.elapsed() < AFTER_FAILURE);
        let Some(wal) = self.wal.upgrade().filter(|_| !recently) else {
            self.running.store(false, Ordering::SeqCst);
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("wal-compact".into())
            .spawn(move || {
                let Some(compactor) = wal.compactor.get() else {
                    return;
                };
                compactor.run(&wal);
                compactor.running.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            log::warn!("cannot start a thread to compact the log; will try at a later write");
            self.running.store(false, Ordering::SeqCst);
        }
    }

    /// One compaction, once no backup holds the directory.
    fn run(&self, wal: &Wal) {
        while wal.dir.held() {
            // A backup is copying the directory: no file may go meanwhile.
            if wal.writer.poisoned().is_some() {
                return;
            }
            std::thread::sleep(HELD_RETRY);
        }
        if wal.writer.poisoned().is_some() || !due(wal, self.source.as_ref()) {
            return;
        }
        if let Err(e) = compact(wal, self.source.as_ref()) {
            log::error!("compacting the log failed: {e}; will try again");
            *self.failed_at.lock().unwrap() = Some(Instant::now());
        }
    }
}

/// Whether the log has outgrown twice the live data, and 4 MiB.
fn due(wal: &Wal, source: &dyn Source) -> bool {
    let logged = wal.stats.bytes();
    logged > MIN_LOG_BYTES && logged > 2 * source.live_bytes() && wal.writer.poisoned().is_none()
}

/// One compaction. Public to the tests of this module.
pub(super) fn compact(wal: &Wal, source: &dyn Source) -> Result<(), String> {
    let started = std::time::Instant::now();
    let number = {
        let _applied = wal.gate.write().unwrap_or_else(|e| e.into_inner());
        wal.writer.rotate().map_err(|e| e.to_string())?
    };
    let snapshot_bytes = snapshot::write(&wal.dir, number, source)
        .map_err(|e| format!("writing the snapshot before log {number}: {e}"))?;
    let (logs, snapshots) = wal.dir.numbers().map_err(|e| e.to_string())?;
    for n in logs.iter().filter(|&&n| n < number) {
        let _ = std::fs::remove_file(wal.dir.log_path(*n));
    }
    for n in snapshots.iter().filter(|&&n| n < number) {
        let _ = std::fs::remove_file(wal.dir.snapshot_path(*n));
    }
    let remaining: u64 = logs
        .iter()
        .filter(|&&n| n >= number)
        .filter_map(|&n| std::fs::metadata(wal.dir.log_path(n)).ok())
        .map(|m| m.len())
        .sum();
    wal.stats
        .bytes
        .store(remaining, std::sync::atomic::Ordering::Relaxed);
    log::info!(
        "compacted the log: snapshot of {snapshot_bytes} bytes before log {number}, \
         in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
