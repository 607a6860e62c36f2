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

pub(super) fn recover(dir: &DataDir, load: &mut dyn FnMut(Record)) -> Result<Found, OpenError> {
    let (logs, snapshots) = dir.numbers()?;
    let mut found = Found {
        next_seq: 1,
        ..Found::default()
    };
    let note = |r: &Record, found: &mut Found| {
        found.records += 1;
        found.max_version = found.max_version.max(r.version);
    };
    let first_log = match snapshots.last() {
        Some(&n) => {
            snapshot::read(&dir.snapshot_path(n), &mut |r| {
                note(&r, &mut found);
                load(r);
            })?;
            n
        }
        None => 0,
    };
    // Logs before the snapshot are left over from a compaction that ended
    // before it could delete them: the snapshot holds what they held.
    let logs: Vec<u64> = logs.into_iter().filter(|&n| n >= first_log).collect();
    // Logs are numbered without gaps from the snapshot on: a missing one
    // (a copy of the directory taken while a compaction deleted files, say)
    // would lose the writes it held.
    let expected_first = match snapshots.is_empty() {
        true => logs.first().copied().unwrap_or(0),
        false => first_log,
    };
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
    for (i, &n) in logs.iter().enumerate() {
        let last = i + 1 == logs.len();
        let path = dir.log_path(n);
        let name = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| OpenError::Io(format!("{name}: {e}")))?;
        let mut at = 0;
        while at < bytes.len() {
            match record::decode(&bytes[at..]) {
                Ok((r, len)) if r.seq >= found.next_seq && !matches!(r.change, Change::End(_)) => {
                    found.next_seq = r.seq + 1;
                    note(&r, &mut found);
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
                    if let Some(j) = readable_later {
                        return Err(OpenError::Corrupt {
                            file: name,
                            offset: at as u64,
                            detail: format!(
                                "{damage}, and a readable record follows at offset {j}"
                            ),
                        });
                    }
                    if !last {
                        return Err(OpenError::Corrupt {
                            file: name,
                            offset: at as u64,
                            detail: format!("{damage}, and later logs follow"),
                        });
                    }
                    log::warn!(
                        "{name}: cutting off an incomplete last record at offset {at} \
                         ({} bytes: {damage}); it was never acknowledged",
                        bytes.len() - at
                    );
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| {
                            f.set_len(at as u64)?;
                            f.sync_all()
                        })
                        .map_err(|e| OpenError::Io(format!("{name}: {e}")))?;
                    break;
                }
            }
        }
        found.log_bytes += at as u64;
    }
    found.next_log = logs.last().map_or(first_log, |&n| n + 1).max(1);
    Ok(found)
}
