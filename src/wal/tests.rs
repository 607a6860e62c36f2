//! The log against real files: what is written comes back, damage is
//! judged as documented, compaction keeps the state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::*;

/// A new empty directory for one test.
pub(crate) fn temp(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "treecache-unit-{}-wal-{what}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn identity() -> Identity {
    Identity {
        zk_prefix: "/t".into(),
        root_id: 1,
        depth: 3,
        shard: 0,
    }
}

/// A map standing in for the store: key -> (value, version).
#[derive(Default)]
struct Map(Mutex<BTreeMap<String, (Vec<u8>, u64)>>);

impl Map {
    fn load(&self, r: Record) {
        let mut m = self.0.lock().unwrap();
        match r.change {
            Change::Put(v) => {
                m.insert(r.key, (v, r.version));
            }
            Change::Delete => {
                m.remove(&r.key);
            }
            Change::End(_) => panic!("an end record reached the store"),
        }
    }

    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u64)> {
        self.0.lock().unwrap().clone()
    }
}

impl Source for Map {
    fn live_bytes(&self) -> u64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, (v, _))| (k.len() + v.len()) as u64)
            .sum()
    }

    fn dump(&self, visit: &mut dyn FnMut(Live<'_>) -> std::io::Result<()>) -> std::io::Result<()> {
        for (k, (v, version)) in self.snapshot() {
            visit(Live {
                key: &k,
                value: &v,
                version,
                expires_ms: 0,
            })?;
        }
        Ok(())
    }
}

fn open(path: &std::path::Path, mode: Fsync) -> (Wal, Arc<Map>, Recovered) {
    let map = Arc::new(Map::default());
    let m = map.clone();
    let (wal, recovered) = Wal::open(path, &identity(), mode, &mut |r| m.load(r)).unwrap();
    (wal, map, recovered)
}

fn put(wal: &Wal, map: &Map, key: &str, value: &str, version: u64) {
    let logged = wal
        .log(key, version, 0, Edit::Put(value.as_bytes()))
        .unwrap();
    map.load(Record {
        seq: 0,
        key: key.into(),
        version,
        expires_ms: 0,
        change: Change::Put(value.as_bytes().to_vec()),
    });
    drop(logged);
}

fn delete(wal: &Wal, map: &Map, key: &str, version: u64) {
    let _logged = wal.log(key, version, 0, Edit::Delete).unwrap();
    map.0.lock().unwrap().remove(key);
}

/// The only log file of a directory, and its bytes.
fn the_log(path: &std::path::Path) -> (PathBuf, Vec<u8>) {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = logs.pop().unwrap();
    let bytes = std::fs::read(&log).unwrap();
    (log, bytes)
}

#[test]
fn what_was_committed_comes_back_in_order() {
    let path = temp("replay");
    let (wal, map, _) = open(&path, Fsync::Always);
    put(&wal, &map, "a", "1", 10);
    put(&wal, &map, "b", "2", 11);
    put(&wal, &map, "a", "3", 12);
    delete(&wal, &map, "b", 13);
    let before = map.snapshot();
    wal.close(Duration::from_secs(1)).unwrap();
    drop(wal);
    let (_wal, again, recovered) = open(&path, Fsync::Always);
    assert_eq!(again.snapshot(), before);
    assert_eq!((recovered.records, recovered.max_version), (4, 13));
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn concurrent_writers_share_syncs() {
    let path = temp("group");
    let (wal, map, _) = open(&path, Fsync::Always);
    std::thread::scope(|s| {
        for t in 0..16 {
            let (wal, map) = (&wal, &map);
            s.spawn(move || {
                for i in 0..50 {
                    put(wal, map, &format!("k{t}-{i}"), "0", 1 + t * 100 + i);
                }
            });
        }
    });
    let syncs = wal.stats().fsync().count();
    assert!(syncs < 800, "800 writes took {syncs} syncs");
    drop(wal);
    let (_wal, again, _) = open(&path, Fsync::Always);
    assert_eq!(again.snapshot().len(), 800);
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn a_torn_last_record_is_cut_off_at_every_offset() {
    let path = temp("torn");
    let (wal, map, _) = open(&path, Fsync::Always);
    put(&wal, &map, "kept", "1", 1);
    put(&wal, &map, "torn", "\"a longer value\"", 2);
    drop(wal);
    let (log, bytes) = the_log(&path);
    let last = record::Record {
        seq: 2,
        key: "torn".into(),
        version: 2,
        expires_ms: 0,
        change: Change::Put(b"\"a longer value\"".to_vec()),
    }
    .encode()
    .len();
    let start = bytes.len() - last;
    for cut in start..bytes.len() {
        std::fs::write(&log, &bytes[..cut]).unwrap();
        let (wal, again, recovered) = open(&path, Fsync::Always);
        assert_eq!(recovered.records, 1, "cut at {cut}");
        assert!(again.snapshot().contains_key("kept"));
        assert!(!again.snapshot().contains_key("torn"));
        assert_eq!(std::fs::metadata(&log).unwrap().len(), start as u64);
        drop(wal);
        // The next run's log is empty; remove it so that `the_log` finds one.
        for e in std::fs::read_dir(&path).unwrap().flatten() {
            if e.path() != log && e.path().extension().is_some_and(|x| x == "log") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn garbage_after_the_last_record_is_cut_off() {
    let path = temp("garbage");
    let (wal, map, _) = open(&path, Fsync::Always);
    put(&wal, &map, "a", "1", 1);
    drop(wal);
    let (log, mut bytes) = the_log(&path);
    let good = bytes.len();
    bytes.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&log, &bytes).unwrap();
    let (_wal, again, _) = open(&path, Fsync::Always);
    assert_eq!(again.snapshot().len(), 1);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), good as u64);
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn damage_before_the_end_stops_recovery_naming_file_and_offset() {
    let path = temp("flip");
    let (wal, map, _) = open(&path, Fsync::Always);
    for i in 0..20 {
        put(&wal, &map, &format!("k{i}"), "\"value\"", 1 + i);
    }
    drop(wal);
    let (log, bytes) = the_log(&path);
    // Every byte of the first ten records, flipped in turn.
    let tenth = {
        let mut at = 0;
        for _ in 0..10 {
            at += record::decode(&bytes[at..]).unwrap().1;
        }
        at
    };
    for i in 0..tenth {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x10;
        std::fs::write(&log, &damaged).unwrap();
        match Wal::open(&path, &identity(), Fsync::Always, &mut |_| {}) {
            Err(OpenError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, log.display().to_string());
                assert!(offset as usize <= i, "flip at {i} reported at {offset}");
            }
            Err(e) => panic!("flip at {i}: {e}"),
            Ok(_) => panic!("a flipped byte at {i} went unnoticed"),
        }
    }
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn compaction_keeps_the_state_and_frees_the_log() {
    let path = temp("compact");
    let (wal, map, _) = open(&path, Fsync::No);
    let big = format!("\"{}\"", "x".repeat(1000));
    let mut version = 0;
    for round in 0..3 {
        for i in 0..100 {
            version += 1;
            let value = if i % 2 == 0 {
                big.clone()
            } else {
                round.to_string()
            };
            put(&wal, &map, &format!("k{i}"), &value, version);
        }
    }
    for i in 0..10 {
        version += 1;
        delete(&wal, &map, &format!("k{i}"), version);
    }
    let logged = wal.stats().bytes();
    compaction::compact(&wal, map.as_ref()).unwrap();
    assert!(wal.stats().bytes() < logged / 10);
    put(&wal, &map, "after", "1", version + 1);
    let before = map.snapshot();
    wal.close(Duration::from_secs(1)).unwrap();
    drop(wal);
    let (_wal, again, recovered) = open(&path, Fsync::No);
    assert_eq!(again.snapshot(), before);
    assert_eq!(recovered.max_version, version + 1);
    let on_disk: u64 = std::fs::read_dir(&path)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        on_disk < 2 * map.live_bytes() + 4096,
        "{on_disk} bytes on disk"
    );
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn a_closed_log_takes_nothing_more() {
    let path = temp("closed");
    let (wal, map, _) = open(&path, Fsync::EverySec);
    put(&wal, &map, "a", "1", 1);
    wal.close(Duration::from_secs(1)).unwrap();
    let refused = wal.log("b", 2, 0, Edit::Delete).err();
    assert_eq!(refused, Some(WalError::Closed));
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn another_clusters_directory_is_refused_with_status_2() {
    let path = temp("other");
    drop(open(&path, Fsync::Always));
    let other = Identity {
        depth: 4,
        ..identity()
    };
    let e = Wal::open(&path, &other, Fsync::Always, &mut |_| {})
        .err()
        .unwrap();
    assert_eq!(e.exit_status(), 2, "{e}");
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn another_shards_directory_is_refused_with_status_2() {
    let path = temp("shard");
    drop(open(&path, Fsync::Always));
    let other = Identity {
        shard: 2,
        ..identity()
    };
    let e = Wal::open(&path, &other, Fsync::Always, &mut |_| {})
        .err()
        .unwrap();
    assert_eq!(e.exit_status(), 2, "{e}");
    assert!(e.to_string().contains("shard 0"), "{e}");
    // The directory of shard 0 written before shards were kept reads as shard 0.
    let meta = std::fs::read_to_string(path.join("treecache.json")).unwrap();
    assert!(!meta.contains("shard"), "{meta}");
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn a_missing_log_between_others_stops_recovery() {
    let path = temp("gap");
    for round in 0..3 {
        let (wal, map, _) = open(&path, Fsync::Always);
        put(&wal, &map, &format!("k{round}"), "1", round + 1);
    }
    let (logs, _) = dir::DataDir::open(&path, &identity())
        .unwrap()
        .numbers()
        .unwrap();
    assert_eq!(logs.len(), 3, "{logs:?}");
    std::fs::remove_file(path.join(format!("wal-{:08}.log", logs[1]))).unwrap();
    match Wal::open(&path, &identity(), Fsync::Always, &mut |_| {}) {
        Err(OpenError::Corrupt { file, detail, .. }) => {
            assert!(file.ends_with(&format!("wal-{:08}.log", logs[1])), "{file}");
            assert!(detail.contains("missing"), "{detail}");
        }
        other => panic!("a gap in the logs went unnoticed: {:?}", other.err()),
    }
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn no_file_is_deleted_while_a_backup_holds_the_directory() {
    let path = temp("hold");
    let (wal, map, _) = open(&path, Fsync::No);
    let wal = Arc::new(wal);
    wal.compact_in_background(map.clone());
    std::fs::write(path.join(dir::HOLD), "").unwrap();
    let big = "y".repeat(64 * 1024);
    let files = || std::fs::read_dir(&path).unwrap().count();
    // More than 4 MiB of log for 64 KiB of live data.
    for i in 0..40 {
        put(&wal, &map, "same", &format!("\"{big}{i}\""), i + 1);
    }
    for i in 40..80 {
        put(&wal, &map, "same", &format!("\"{big}{i}\""), i + 1);
    }
    let held = files();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(files(), held, "a file went while the directory was held");
    assert!(wal.stats().bytes() > 4 << 20);
    // Released: the log is compacted into a snapshot.
    std::fs::remove_file(path.join(dir::HOLD)).unwrap();
    wait_for(|| wal.stats().bytes() < 1 << 20);
    drop(wal);
    std::fs::remove_dir_all(&path).unwrap();
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn what_goes_alongside_a_sync_runs_once_the_record_is_in_the_file_and_not_after_a_refusal() {
    let path = temp("alongside");
    let (wal, map, _) = open(&path, Fsync::Always);
    put(&wal, &map, "a", "1", 1);
    let before = the_log(&path).1.len();
    let (logged, ran) = wal.log_then("b", 2, 0, Edit::Put(b"2"), || {
        // The record is in the file by now (its sync may still be running).
        the_log(&path).1.len()
    });
    assert!(logged.is_ok());
    let during = ran.expect("it ran");
    assert!(during > before, "the file had {during} bytes, as before");
    drop(logged);
    wal.close(Duration::from_secs(1)).unwrap();
    let (refused, ran) = wal.log_then("c", 3, 0, Edit::Delete, || ());
    assert_eq!(refused.err(), Some(WalError::Closed));
    assert_eq!(ran, None, "it ran for a write that was refused");
    std::fs::remove_dir_all(&path).unwrap();
}
