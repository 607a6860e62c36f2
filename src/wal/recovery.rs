//! Reading a data directory back at start: the latest snapshot, then every
//! log from that snapshot's number on, in order.
//!
//! Damage is judged by what follows it. A record that cannot be read and is
//! followed by no readable record is a torn write at the end of the last
//! log (the process died while appending, so it was never acknowledged):
//! it is cut off, with one warning naming the file and the offset. Damage
//! followed by a readable record, or anywhere but the end of the last log,
//! or in a snapshot, means acknowledged writes would go missing: recovery
//! stops with the file and the offset, and the node does not start.

use std::fs::OpenOptions;
use std::path::Path;

use super::dir::DataDir;
use super::record::{self, Change, Record};
use super::{snapshot, OpenError};

/// What a directory held.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub records: u64,
    pub max_version: u64,
    /// The sequence number of the next record to append.
    pub next_seq: u64,
    /// The number of the next log file to start.
    pub next_log: u64,
    /// Bytes of the logs read (not yet replaced by a snapshot).
    pub log_bytes: u64,
}

/// Reads `dir` back, handing every record it keeps to `load` in order.
pub(super) fn recover(dir: &DataDir, load: &mut dyn FnMut(Record)) -> Result<Found, OpenError> {
    let (logs, snapshots) = dir.numbers()?;
    let mut found = Found {
        next_seq: 1,
        ..Found::default()
    };
    let first_log = match snapshots.last() {
        Some(&n) => {
            snapshot::read(&dir.snapshot_path(n), &mut |r| {
                found.note(&r);
                load(r);
            })?;
            n
        }
        None => 0,
    };
    // Logs before the snapshot are left over from a compaction that ended
    // before it could delete them: the snapshot holds what they held.
    let logs: Vec<u64> = logs.into_iter().filter(|&n| n >= first_log).collect();
    let expected_first = match snapshots.is_empty() {
        true => logs.first().copied().unwrap_or(0),
        false => first_log,
    };
    check_numbering(dir, &logs, expected_first)?;
    for (i, &n) in logs.iter().enumerate() {
        let last = i + 1 == logs.len();
        found.log_bytes += read_log(&dir.log_path(n), last, &mut found, load)?;
    }
    found.next_log = logs.last().map_or(first_log, |&n| n + 1).max(1);
    Ok(found)
}

impl Found {
    /// Counts a record read back.
    fn note(&mut self, r: &Record) {
        self.records += 1;
        self.max_version = self.max_version.max(r.version);
    }
}

/// Logs are numbered without gaps from the snapshot on: a missing one (a
/// copy of the directory taken while a compaction deleted files, say) would
/// lose the writes it held.
fn check_numbering(dir: &DataDir, logs: &[u64], expected_first: u64) -> Result<(), OpenError> {
    for (i, &n) in logs.iter().enumerate() {
        let expected = expected_first + i as u64;
        if n != expected {
            return Err(OpenError::Corrupt {
                file: dir.log_path(expected).display().to_string(),
                offset: 0,
                detail: "this log is missing, and later logs exist".into(),
            });
        }
    }
    Ok(())
}

/// Reads one log (`last`: the newest), handing its records to `load`;
/// returns how many bytes of it are kept (a torn last record is cut off).
fn read_log(
    path: &Path,
    last: bool,
    found: &mut Found,
    load: &mut dyn FnMut(Record),
) -> Result<u64, OpenError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| OpenError::Io(format!("{name}: {e}")))?;
    let mut at = 0;
    while at < bytes.len() {
        match record::decode(&bytes[at..]) {
            Ok((r, len)) if r.seq >= found.next_seq && !matches!(r.change, Change::End(_)) => {
                found.next_seq = r.seq + 1;
                found.note(&r);
                load(r);
                at += len;
            }
            Ok((r, _)) => {
                return Err(OpenError::Corrupt {
                    file: name,
                    offset: at as u64,
                    detail: format!(
                        "a record out of order (number {} after {})",
                        r.seq,
                        found.next_seq - 1
                    ),
                })
            }
            Err(damage) => {
                let readable_later = (at + 1..bytes.len()).find(|&j| {
                    matches!(record::decode(&bytes[j..]), Ok((r, _)) if r.seq >= found.next_seq)
                });
                let detail = match (readable_later, last) {
                    (Some(j), _) => {
                        format!("{damage}, and a readable record follows at offset {j}")
                    }
                    (None, false) => format!("{damage}, and later logs follow"),
                    (None, true) => {
                        log::warn!(
                            "{name}: cutting off an incomplete last record at offset {at} \
                             ({} bytes: {damage}); it was never acknowledged",
                            bytes.len() - at
                        );
                        cut_off(path, at as u64)
                            .map_err(|e| OpenError::Io(format!("{name}: {e}")))?;
                        break;
                    }
                };
                return Err(OpenError::Corrupt {
                    file: name,
                    offset: at as u64,
                    detail,
                });
            }
        }
    }
    Ok(at as u64)
}

/// Cuts the file at `path` to `len` bytes, durably.
fn cut_off(path: &Path, len: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}
