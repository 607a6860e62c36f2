//! A snapshot: every live key in one file, the records of the log's format
//! followed by an end record that counts them. It is written to a
//! temporary file, synced, and renamed into place, so a snapshot that
//! exists is whole; a missing or wrong end record is damage.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::dir::DataDir;
use super::record::{self, Change, Record};
use super::{OpenError, Source};

/// Writes the snapshot that precedes log `number`; returns its size in bytes.
pub(super) fn write(dir: &DataDir, number: u64, source: &dyn Source) -> std::io::Result<u64> {
    let path = dir.snapshot_path(number);
    let tmp = path.with_extension("snap.tmp");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut frame = Vec::with_capacity(4096);
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut put = |r: &Record, out: &mut BufWriter<File>| -> std::io::Result<()> {
        frame.clear();
        r.encode_into(&mut frame);
        bytes += frame.len() as u64;
        out.write_all(&frame)
    };
    source.dump(&mut |live| {
        count += 1;
        put(
            &Record {
                seq: 0,
                key: live.key.to_string(),
                version: live.version,
                expires_ms: live.expires_ms,
                change: Change::Put(live.value.to_vec()),
            },
            &mut out,
        )
    })?;
    let end = Record {
        seq: 0,
        key: String::new(),
        version: 0,
        expires_ms: 0,
        change: Change::End(count),
    };
    put(&end, &mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    dir.sync()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes)
}

/// Reads the snapshot at `path` through `load`. Any damage, or a missing or
/// wrong end record, is an error naming the file and offset.
pub(super) fn read(path: &Path, load: &mut dyn FnMut(Record)) -> Result<u64, OpenError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| OpenError::Io(format!("{name}: {e}")))?;
    let corrupt = |offset: usize, detail: String| OpenError::Corrupt {
        file: name.clone(),
        offset: offset as u64,
        detail,
    };
    let mut at = 0;
    let mut count = 0;
    loop {
        let (r, len) = record::decode(&bytes[at..]).map_err(|d| corrupt(at, d.to_string()))?;
        match r.change {
            Change::End(n) if n == count && at + len == bytes.len() => return Ok(count),
            Change::End(n) => {
                return Err(corrupt(
                    at,
                    format!("the snapshot ends after {count} records but says {n}"),
                ))
            }
            Change::Delete => return Err(corrupt(at, "a snapshot holds no deletes".into())),
            Change::Put(_) => {
                count += 1;
                load(r);
                at += len;
            }
        }
    }
}
