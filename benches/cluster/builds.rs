//! Release builds of the node at older commits, made by the benchmark
//! itself and kept between runs, so that section `compare` measures them
//! against this checkout's build in the same run.
//!
//! A commit's build lives in `<cache>/<full hash>/treecache`, where
//! `<cache>` is `$TREECACHE_BENCH_BUILDS`, else
//! `${XDG_CACHE_HOME:-~/.cache}/treecache/bench-builds`: outside the
//! checkout. To make it, the commit's files are taken from the repository
//! this benchmark was built in (`git archive`, nothing checked out or
//! changed there) into `<cache>/<hash>/src`, built with `cargo build
//! --release --locked -p treecache` and a target directory of its own
//! (`<cache>/<hash>/target`), the binary copied out, and both directories
//! removed. Cargo's output goes to `<cache>/<hash>/build.log`, which is
//! kept. A later run finds the binary and builds nothing; removing the
//! directory makes it build again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// An older build measured.
pub struct Old {
    /// Its commit, short: the name of its column.
    pub commit: &'static str,
    pub what: &'static str,
    /// It has a cluster key and TLS (the first version has neither).
    pub secure: bool,
}

/// The older builds measured, in column order: [`OLD`], then the commits
/// named in `$TREECACHE_BENCH_ALSO` (comma-separated; builds of the second
/// version or later), to hold a change against the commit before it.
pub fn measured() -> Vec<Old> {
    let also = std::env::var("TREECACHE_BENCH_ALSO").unwrap_or_default();
    let also = also.split(',').map(str::trim).filter(|c| !c.is_empty());
    OLD.iter()
        .map(|o| Old { ..*o })
        .chain(also.map(|c| Old {
            commit: Box::leak(c.to_string().into_boxed_str()),
            what: "named in TREECACHE_BENCH_ALSO",
            secure: true,
        }))
        .collect()
}

/// The older builds measured, in column order.
pub const OLD: &[Old] = &[
    Old {
        commit: "f0c43ed",
        what: "the second version, whose gate relays what it does not answer to tiny_http",
        secure: true,
    },
    Old {
        commit: "9cb0f20",
        what: "the first version, tiny_http alone",
        secure: false,
    },
];

/// The repository this benchmark was built from.
fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the builds are kept.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TREECACHE_BENCH_BUILDS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("treecache").join("bench-builds")
}

/// A git command in the repository; its output, trimmed, or why it failed.
fn git(args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repository())
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit this checkout is at, short, with `+changes` when its files
/// differ from it; `?` when git cannot tell.
pub fn this_checkout() -> String {
    let Ok(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "?".into();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Ok(changes) if changes.is_empty() => head,
        _ => format!("{head}+changes"),
    }
}

/// The node binary of `commit`: the cached build, or, when `may_build`, a
/// build made now (it says what it does and how long it took). The error
/// says why there is none.
pub fn binary(commit: &str, may_build: bool) -> Result<PathBuf, String> {
    let full = git(&["rev-parse", "--verify", &format!("{commit}^{{commit}}")])?;
    let dir = cache_dir().join(&full);
    let bin = dir.join("treecache");
    if bin.is_file() {
        println!("build of {commit}: cached, {}", bin.display());
        return Ok(bin);
    }
    if !may_build {
        return Err(format!(
            "no cached build in {} (smoke mode builds none)",
            dir.display()
        ));
    }
    let began = Instant::now();
    let result = build(commit, &full, &dir);
    for part in ["src", "target"] {
        let _ = std::fs::remove_dir_all(dir.join(part));
    }
    let seconds = began.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            println!(
                "build of {commit}: made in {seconds:.0} s, {}",
                bin.display()
            );
            Ok(bin)
        }
        Err(e) => Err(format!("the build failed after {seconds:.0} s: {e}")),
    }
}

/// Takes the files of `full` into `dir/src`, builds the node there and
/// copies it to `dir/treecache`.
fn build(commit: &str, full: &str, dir: &Path) -> Result<(), String> {
    let (src, target) = (dir.join("src"), dir.join("target"));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).map_err(|e| format!("create {}: {e}", src.display()))?;
    println!(
        "build of {commit}: no cached build; taking its files into {}",
        src.display()
    );
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repository())
        .args(["archive", "--format=tar", full])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(archive.stdout.take().expect("the archive's output"))
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let archived = archive.wait().map_err(|e| e.to_string())?;
    if !archived.success() || !untar.success() {
        return Err(format!("git archive {full} | tar -x: {archived}, {untar}"));
    }

    let log_path = dir.join("build.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("create {}: {e}", log_path.display()))?;
    println!(
        "build of {commit}: cargo build --release --locked -p treecache (target {}, log {}) ...",
        target.display(),
        log_path.display()
    );
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // What Cargo set for running this benchmark is about this checkout,
    // not the old one.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let ours = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name);
        if ours {
            cargo.env_remove(&*name);
        }
    }
    let status = cargo
        .args(["build", "--release", "--locked", "-p", "treecache"])
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "cargo build: {status}; the end of {}:\n{}",
            log_path.display(),
            tail.join("\n")
        ));
    }
    let built = target.join("release").join("treecache");
    let partial = dir.join("treecache.partial");
    std::fs::copy(&built, &partial).map_err(|e| format!("copy {}: {e}", built.display()))?;
    std::fs::rename(&partial, dir.join("treecache")).map_err(|e| e.to_string())?;
    Ok(())
}
