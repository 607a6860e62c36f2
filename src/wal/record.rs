//! One record of the log (and of a snapshot), and how it is framed on disk.
//!
//! A frame is `[length: varint][crc32: u32 LE][payload: length bytes]`, the
//! CRC-32 covering the payload. The payload:
//!
//! ```text
//! seq varint | kind u8 | version varint | expires_ms varint | key_len varint | key | value
//! ```
//!
//! Varints are LEB128 (7 bits a byte, low first), which keeps a record of a
//! small key near 20 bytes of overhead. `seq` counts records up across every
//! file of a directory; `kind` is a put (with the value, compact JSON), a
//! delete (no value), or the end of a snapshot (its `version` field holds the
//! number of records before it); `expires_ms` is a Unix time in
//! milliseconds, 0 for a key without expiry.

use std::fmt;

/// No payload is larger: a key of 250 characters (1,000 bytes at most) and a
/// value of 1 MiB, with room to spare. A length beyond it is damage.
pub const MAX_PAYLOAD: u64 = (1 << 20) + 64 * 1024;

/// What a record says happened to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key now holds this value (compact JSON).
    Put(Vec<u8>),
    Delete,
    /// The end of a snapshot, after this many records.
    End(u64),
}

/// One applied write, as it is kept on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub key: String,
    pub version: u64,
    /// Unix time in milliseconds at which the key expires; 0: never.
    pub expires_ms: u64,
    pub change: Change,
}

/// A write to log, borrowed from the request that makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit<'a> {
    Put(&'a [u8]),
    Delete,
}

const PUT: u8 = 1;
const DELETE: u8 = 2;
const END: u8 = 3;

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint at the start of `bytes`: the number and its length, or
/// `None` when `bytes` ends inside it (or it is longer than ten bytes).
fn get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// Appends the frame of one record to `out`.
fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    kind: u8,
    version: u64,
    expires_ms: u64,
    key: &str,
    value: &[u8],
) {
    let mut head = Vec::with_capacity(40);
    put_varint(&mut head, seq);
    head.push(kind);
    put_varint(&mut head, version);
    put_varint(&mut head, expires_ms);
    put_varint(&mut head, key.len() as u64);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(key.as_bytes());
    crc.update(value);
    put_varint(out, (head.len() + key.len() + value.len()) as u64);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
}

/// Appends the frame of a write of `key` to `out`.
pub fn encode_write(
    out: &mut Vec<u8>,
    seq: u64,
    key: &str,
    version: u64,
    expires_ms: u64,
    edit: Edit<'_>,
) {
    match edit {
        Edit::Put(v) => encode(out, seq, PUT, version, expires_ms, key, v),
        Edit::Delete => encode(out, seq, DELETE, version, expires_ms, key, &[]),
    }
}

impl Record {
    /// Appends the record's frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, version, value): (u8, u64, &[u8]) = match &self.change {
            Change::Put(v) => (PUT, self.version, v),
            Change::Delete => (DELETE, self.version, &[]),
            Change::End(count) => (END, *count, &[]),
        };
        encode(
            out,
            self.seq,
            kind,
            version,
            self.expires_ms,
            &self.key,
            value,
        );
    }

    /// The record's frame.
    #[cfg(test)]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Why the bytes at some offset are not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside the frame.
    Short,
    /// The length field is impossible.
    BadLength(u64),
    /// The checksum does not match the payload.
    BadChecksum,
    /// The payload does not parse.
    BadPayload(&'static str),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Short => f.write_str("the file ends inside a record"),
            Damage::BadLength(n) => write!(f, "a record claims an impossible length ({n} bytes)"),
            Damage::BadChecksum => f.write_str("a record fails its checksum"),
            Damage::BadPayload(what) => write!(f, "a record does not parse ({what})"),
        }
    }
}

/// Reads the record whose frame starts `bytes`; returns it and the frame's length.
pub fn decode(bytes: &[u8]) -> Result<(Record, usize), Damage> {
    let Some((len, at)) = get_varint(bytes) else {
        return Err(if bytes.len() >= 10 {
            Damage::BadLength(u64::MAX)
        } else {
            Damage::Short
        });
    };
    if !(5..=MAX_PAYLOAD).contains(&len) {
        return Err(Damage::BadLength(len));
    }
    let start = at + 4;
    let end = start + len as usize;
    if bytes.len() < end {
        return Err(Damage::Short);
    }
    let crc = u32::from_le_bytes(bytes[at..start].try_into().unwrap());
    let payload = &bytes[start..end];
    if crc32fast::hash(payload) != crc {
        return Err(Damage::BadChecksum);
    }
    let bad = Damage::BadPayload("a field runs past the record");
    let mut p = payload;
    let mut next = || -> Result<u64, Damage> {
        let (n, used) = get_varint(p).ok_or(bad.clone())?;
        p = &p[used..];
        Ok(n)
    };
    let seq = next()?;
    // The kind is one byte, read as a varint below 0x80.
    let kind = next()?;
    let version = next()?;
    let expires_ms = next()?;
    let key_len = next()? as usize;
    if p.len() < key_len {
        return Err(bad);
    }
    let key = std::str::from_utf8(&p[..key_len])
        .map_err(|_| Damage::BadPayload("the key is not UTF-8"))?
        .to_string();
    let value = &p[key_len..];
    let (version, change) = match kind as u8 {
        PUT => (version, Change::Put(value.to_vec())),
        DELETE if value.is_empty() => (version, Change::Delete),
        END if value.is_empty() => (0, Change::End(version)),
        _ => return Err(Damage::BadPayload("unknown kind")),
    };
    Ok((
        Record {
            seq,
            key,
            version,
            expires_ms,
            change,
        },
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(seq: u64, key: &str, value: &str) -> Record {
        Record {
            seq,
            key: key.into(),
            version: 1_780_000_000_000_000 + seq,
            expires_ms: 0,
            change: Change::Put(value.as_bytes().to_vec()),
        }
    }

    #[test]
    fn records_round_trip() {
        let records = [
            put(1, "k", "\"v\""),
            Record {
                seq: 300,
                key: "žluť".into(),
                version: 7,
                expires_ms: 1_800_000_000_000,
                change: Change::Delete,
            },
            Record {
                seq: u64::MAX,
                key: String::new(),
                version: 0,
                expires_ms: 0,
                change: Change::End(2),
            },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            r.encode_into(&mut bytes);
        }
        let mut at = 0;
        for r in &records {
            let (read, len) = decode(&bytes[at..]).unwrap();
            assert_eq!(&read, r);
            at += len;
        }
        assert_eq!(at, bytes.len());
    }

    #[test]
    fn a_small_record_costs_about_twenty_bytes_over_its_key_and_value() {
        let r = put(123_456, &"k".repeat(16), &"v".repeat(32));
        assert!(r.encode().len() <= 48 + 24, "{} bytes", r.encode().len());
    }

    #[test]
    fn a_cut_record_is_short_at_every_offset() {
        let bytes = put(1, "key", "[1,2,3]").encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]).unwrap_err(),
                Damage::Short,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_caught() {
        let bytes = put(1, "key", "[1,2,3]").encode();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(
                    decode(&damaged).is_err(),
                    "flip of bit {bit} at {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn varints_round_trip() {
        for n in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, n);
            assert_eq!(get_varint(&b), Some((n, b.len())));
            assert_eq!(get_varint(&b[..b.len() - 1]), None);
        }
    }
}
