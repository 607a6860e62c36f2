//! Names no other test of this run takes: temporary directories and
//! numbers unique in this process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A number no other call in this process has had.
pub fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "treecache-test-{}-{what}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
