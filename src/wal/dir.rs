//! The data directory: which cluster it belongs to, that one process uses
//! it at a time, and the names of its files.
//!
//! ```text
//! DIR/treecache.json          {"format": 1, "id", "zk_prefix", "root_id", "depth"}
//! DIR/lock                    held (flock) by the process using DIR
//! DIR/snapshot-00000007.snap  the state before log 7 (written as .tmp, then renamed)
//! DIR/wal-00000007.log        the writes after it, then wal-00000008.log, ...
//! DIR/HOLD                    made by whoever backs the directory up: no
//!                             file is deleted while it exists
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::OpenError;

/// The on-disk format this build reads and writes.
pub const FORMAT: u32 = 1;
const META: &str = "treecache.json";
/// Present while a backup copies the directory (see `held`).
pub const HOLD: &str = "HOLD";

/// The cluster a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub zk_prefix: String,
    pub root_id: u32,
    pub depth: u32,
    /// The root group (shard) whose data it holds; 0 in a directory made
    /// before shards were kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shard: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    /// Made at random when the directory is made: what tells this copy of
    /// the data apart from every other (the root group counts a standby in
    /// sync by it, not by its address). A directory made before ids were
    /// kept gets one when it is next opened.
    #[serde(default)]
    id: String,
    #[serde(flatten)]
    identity: Identity,
}

/// An open data directory, locked for this process while the value lives.
pub struct DataDir {
    path: PathBuf,
    id: String,
    _lock: File,
}

impl DataDir {
    /// Opens `path` for the cluster `identity`, creating it (and its record
    /// of the cluster) when it is new. Refuses a directory of another
    /// cluster or format, one that holds other files but no record, and one
    /// that another process uses.
    pub fn open(path: &Path, identity: &Identity) -> Result<DataDir, OpenError> {
        std::fs::create_dir_all(path).map_err(|e| io(path, e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("lock"))
            .map_err(|e| io(&path.join("lock"), e))?;
        lock_exclusively(&lock).map_err(|_| {
            OpenError::Refused(format!("{} is in use by another process", path.display()))
        })?;
        let mut dir = DataDir {
            path: path.to_path_buf(),
            id: String::new(),
            _lock: lock,
        };
        let meta = path.join(META);
        match std::fs::read(&meta) {
            Ok(bytes) => {
                let found: Meta = serde_json::from_slice(&bytes).map_err(|e| {
                    OpenError::Refused(format!("{} is not readable: {e}", meta.display()))
                })?;
                if found.format != FORMAT {
                    return Err(OpenError::Refused(format!(
                        "{} is in format {} and this build reads format {FORMAT}",
                        path.display(),
                        found.format
                    )));
                }
                dir.id = found.id.clone();
                if found.identity != *identity {
                    return Err(OpenError::Refused(format!(
                        "{} belongs to another cluster or shard (ZK prefix {}, root id {}, \
                         depth {}, shard {}); this node is of ZK prefix {}, root id {}, depth \
                         {}, shard {}",
                        path.display(),
                        found.identity.zk_prefix,
                        found.identity.root_id,
                        found.identity.depth,
                        found.identity.shard,
                        identity.zk_prefix,
                        identity.root_id,
                        identity.depth,
                        identity.shard
                    )));
                }
                if dir.id.is_empty() {
                    dir.write_meta(identity)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Hidden files and a file system's lost+found are not data.
                let others = dir
                    .files()?
                    .into_iter()
                    .filter(|n| n != "lock" && n != HOLD)
                    .filter(|n| !n.starts_with('.') && n != "lost+found")
                    .count();
                if others > 0 {
                    return Err(OpenError::Refused(format!(
                        "{} holds files but is not a treecache data directory (no {META})",
                        path.display()
                    )));
                }
                dir.write_meta(identity)?;
            }
            Err(e) => return Err(io(&meta, e)),
        }
        Ok(dir)
    }

    /// Gives the directory a new id and records it, with the cluster's
    /// identity, in its metadata file.
    fn write_meta(&mut self, identity: &Identity) -> Result<(), OpenError> {
        self.id = random_id().map_err(|e| io(&self.path, e))?;
        let meta = serde_json::to_vec_pretty(&Meta {
            format: FORMAT,
            id: self.id.clone(),
            identity: identity.clone(),
        })
        .expect("the record serializes");
        self.write_durably(META, &meta)
    }

    /// This directory's id (see `Meta::id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether a backup holds the directory still (the file `HOLD` exists):
    /// then no file is deleted.
    pub fn held(&self) -> bool {
        self.path.join(HOLD).exists()
    }

    pub fn log_path(&self, number: u64) -> PathBuf {
        self.path.join(format!("wal-{number:08}.log"))
    }

    pub fn snapshot_path(&self, number: u64) -> PathBuf {
        self.path.join(format!("snapshot-{number:08}.snap"))
    }

    /// The numbers of the logs and of the snapshots present, each ascending.
    pub fn numbers(&self) -> Result<(Vec<u64>, Vec<u64>), OpenError> {
        let number = |name: &str, prefix: &str, suffix: &str| {
            name.strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse::<u64>()
                .ok()
        };
        let (mut logs, mut snapshots) = (Vec::new(), Vec::new());
        for name in self.files()? {
            if let Some(n) = number(&name, "wal-", ".log") {
                logs.push(n);
            } else if let Some(n) = number(&name, "snapshot-", ".snap") {
                snapshots.push(n);
            }
        }
        logs.sort_unstable();
        snapshots.sort_unstable();
        Ok((logs, snapshots))
    }

    fn files(&self) -> Result<Vec<String>, OpenError> {
        let entries = std::fs::read_dir(&self.path).map_err(|e| io(&self.path, e))?;
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// Writes `name` whole or not at all: to a temporary file, synced, then
    /// renamed over `name`, and the directory synced.
    pub fn write_durably(&self, name: &str, bytes: &[u8]) -> Result<(), OpenError> {
        let tmp = self.path.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, self.path.join(name)).map_err(|e| io(&tmp, e))?;
        self.sync()
    }

    /// Syncs the directory itself, so that files created or renamed in it stay.
    pub fn sync(&self) -> Result<(), OpenError> {
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.path, e))
    }
}

/// 16 random bytes from the kernel, in hex.
pub fn random_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn io(path: &Path, e: std::io::Error) -> OpenError {
    OpenError::Io(format!("{}: {e}", path.display()))
}

/// Takes an exclusive advisory lock on `file` without waiting.
fn lock_exclusively(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wal::tests::temp;

    fn cluster(prefix: &str) -> Identity {
        Identity {
            zk_prefix: prefix.into(),
            root_id: 1,
            depth: 3,
            shard: 0,
        }
    }

    #[test]
    fn a_directory_remembers_its_cluster() {
        let path = temp("identity");
        let id = DataDir::open(&path, &cluster("/a"))
            .unwrap()
            .id()
            .to_string();
        assert_eq!(id.len(), 32);
        assert_eq!(
            DataDir::open(&path, &cluster("/a")).unwrap().id(),
            id,
            "it keeps its id"
        );
        match DataDir::open(&path, &cluster("/b")) {
            Err(OpenError::Refused(m)) => assert!(m.contains("another cluster"), "{m}"),
            _ => panic!("another cluster's directory was accepted"),
        }
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn a_directory_made_before_ids_gets_one_and_keeps_it() {
        let path = temp("no-id");
        std::fs::write(
            path.join(META),
            r#"{"format": 1, "zk_prefix": "/a", "root_id": 1, "depth": 3}"#,
        )
        .unwrap();
        let id = DataDir::open(&path, &cluster("/a"))
            .unwrap()
            .id()
            .to_string();
        assert_eq!(id.len(), 32);
        assert_eq!(DataDir::open(&path, &cluster("/a")).unwrap().id(), id);
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn one_process_at_a_time_and_no_foreign_files() {
        let path = temp("lock");
        let held = DataDir::open(&path, &cluster("/a")).unwrap();
        assert!(matches!(
            DataDir::open(&path, &cluster("/a")),
            Err(OpenError::Refused(_))
        ));
        drop(held);
        let foreign = temp("foreign");
        std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
        assert!(matches!(
            DataDir::open(&foreign, &cluster("/a")),
            Err(OpenError::Refused(_))
        ));
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::remove_dir_all(&foreign).unwrap();
    }

    #[test]
    fn files_are_numbered() {
        let path = temp("numbers");
        let dir = DataDir::open(&path, &cluster("/a")).unwrap();
        for name in [
            "wal-00000002.log",
            "wal-00000010.log",
            "snapshot-00000010.snap",
            "x.tmp",
        ] {
            std::fs::write(path.join(name), "").unwrap();
        }
        assert_eq!(dir.numbers().unwrap(), (vec![2, 10], vec![10]));
        std::fs::remove_dir_all(&path).unwrap();
    }
}
