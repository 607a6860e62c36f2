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

use std::time::Duration;

use super::{snapshot, Source, Wal};

/// The log is never compacted below this size.
const MIN_LOG_BYTES: u64 = 4 << 20;

/// Checks every half second whether the log should be compacted, and does it.
pub(super) fn run(wal: &Wal, source: &dyn Source) {
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if wal.writer.poisoned().is_some() {
            return;
        }
        let logged = wal.stats.bytes();
        if logged <= MIN_LOG_BYTES.max(2 * source.live_bytes()) {
            continue;
        }
        if wal.dir.held() {
            // A backup is copying the directory: no file may go meanwhile.
            continue;
        }
        if let Err(e) = compact(wal, source) {
            log::error!("compacting the log failed: {e}; will try again");
            std::thread::sleep(Duration::from_secs(5));
        }
    }
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
