//! A durable root, on real processes and real files: what it acknowledged
//! survives kill -9 and SIGTERM; damage in its log is judged as documented;
//! a full disk and a failed sync refuse writes without losing any.
//!
//! Random choices print their seed; `DURABILITY_SEED=<n>` replays one.

use treecache_harness as common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sentinels;
use common::traffic::Tally;
use common::{http, temp_dir, wait_until, Cluster};
use serde_json::json;

const SEED_VAR: &str = "DURABILITY_SEED";

/// A cluster whose root keeps its data in `data` (cache nodes ignore the flag).
fn durable(depth: u32, data: &Path) -> common::Builder {
    Cluster::builder(depth)
        .arg("--data-dir")
        .arg(data.to_str().unwrap())
}

/// Starts the root again on its port and waits until it takes writes.
fn restart_root(cluster: &mut Cluster) {
    cluster.spawn(cluster.root_id);
    wait_ready(cluster, cluster.root_id);
}

fn wait_ready(cluster: &Cluster, id: u32) {
    let url = format!("{}/ready", cluster.url(id));
    wait_until(Duration::from_secs(20), "the root is ready", || {
        http::get(&url).0 == 200
    });
}

fn store(cluster: &Cluster, id: u32, key: &str) -> String {
    format!("{}/store/{}", cluster.url(id), http::enc(key))
}

/// Traffic through every node while `fault` runs in the foreground; then
/// the final reads, the checker, and the sentinels.
fn traffic_across(
    cluster: &mut Cluster,
    what: &str,
    run_for: Duration,
    fault: impl FnOnce(&mut Cluster),
) -> Tally {
    let urls: Vec<(u32, String)> = cluster
        .ids()
        .iter()
        .map(|&id| (id, cluster.url(id)))
        .collect();
    sentinels::under_fault(cluster, urls, (what, SEED_VAR, "durable"), run_for, fault)
}

#[test]
fn a_root_killed_under_load_keeps_every_acknowledged_write() {
    let data = temp_dir("root-data");
    let mut cluster = durable(2, &data).start();
    let tally = traffic_across(
        &mut cluster,
        "kill -9 of the root",
        Duration::from_secs(6),
        |c| {
            std::thread::sleep(Duration::from_secs(2));
            c.kill(c.root_id);
            std::thread::sleep(Duration::from_millis(300));
            restart_root(c);
        },
    );
    eprintln!("{tally:?}");
    assert!(tally.puts >= 50, "too few acknowledged PUTs: {tally:?}");
    assert!(tally.unknown >= 1, "the kill went unnoticed: {tally:?}");
    assert!(
        tally.reads_of_values >= 50,
        "too few reads of values: {tally:?}"
    );
}

#[test]
fn sigterm_under_load_finishes_the_writes_under_way_and_exits_0_within_5_s() {
    let data = temp_dir("root-data");
    let mut cluster = durable(2, &data).start();
    let tally = traffic_across(
        &mut cluster,
        "SIGTERM of the root",
        Duration::from_secs(5),
        |c| {
            std::thread::sleep(Duration::from_millis(1500));
            let sent = Instant::now();
            c.signal(c.root_id, 15);
            let status = c.wait_exit(c.root_id, Duration::from_secs(6));
            let took = sent.elapsed();
            assert!(
                status.is_some_and(|s| s.success()),
                "the root ended with {status:?} after {took:?}"
            );
            assert!(took < Duration::from_secs(5), "it took {took:?} to stop");
            restart_root(c);
        },
    );
    assert!(tally.puts >= 50, "too few acknowledged PUTs: {tally:?}");
}

/// The log files of a data directory, oldest first.
fn logs(data: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

fn stop_root(cluster: &mut Cluster) {
    cluster.signal(cluster.root_id, 15);
    let status = cluster.wait_exit(cluster.root_id, Duration::from_secs(6));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

fn put(cluster: &Cluster, key: &str, value: serde_json::Value) -> (u16, serde_json::Value) {
    http::put(&store(cluster, cluster.root_id, key), &value)
}

#[test]
fn a_torn_last_record_is_cut_off_garbage_too_and_damage_before_the_end_stops_the_root() {
    let data = temp_dir("root-data");
    let mut cluster = durable(1, &data).start();
    for i in 0..20 {
        assert_eq!(put(&cluster, &format!("k{i}"), json!(i)).0, 200);
    }
    stop_root(&mut cluster);

    // A torn write: the last record loses its last 3 bytes.
    let log = logs(&data).pop().unwrap();
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    restart_root(&mut cluster);
    for i in 0..19 {
        assert_eq!(
            http::get(&store(&cluster, 1, &format!("k{i}"))).1["value"],
            json!(i)
        );
    }
    assert_eq!(
        http::get(&store(&cluster, 1, "k19")).0,
        404,
        "the torn write is gone"
    );
    let warned: Vec<String> = cluster
        .log(1)
        .lines()
        .filter(|l| l.contains("cutting off an incomplete last record"))
        .map(String::from)
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains(&log.display().to_string()),
        "{}",
        warned[0]
    );

    // Garbage after the last record of the last log.
    assert_eq!(put(&cluster, "after-restart", json!(1)).0, 200);
    stop_root(&mut cluster);
    let newest = logs(&data).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let good = bytes.len();
    bytes.extend((0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    std::fs::write(&newest, &bytes).unwrap();
    restart_root(&mut cluster);
    assert_eq!(http::get(&store(&cluster, 1, "after-restart")).0, 200);
    assert_eq!(http::get(&store(&cluster, 1, "k3")).1["value"], json!(3));
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), good as u64);

    // A flipped byte inside the first record of the first log.
    stop_root(&mut cluster);
    let first = logs(&data).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[8] ^= 0x20;
    std::fs::write(&first, &bytes).unwrap();
    cluster.spawn(1);
    let status = cluster.wait_exit(1, Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", cluster.log(1));
    let log = cluster.log(1);
    assert!(
        log.contains(&format!("{} is damaged at offset", first.display())),
        "the error names neither file nor offset:\n{log}"
    );
}

#[test]
fn a_data_directory_of_another_cluster_is_refused_with_status_2() {
    let data = temp_dir("foreign-data");
    std::fs::write(
        data.join("treecache.json"),
        r#"{"format": 1, "zk_prefix": "/another", "root_id": 1, "depth": 3}"#,
    )
    .unwrap();
    let mut cluster = durable(1, &data).no_wait().start_root_only();
    let status = cluster.wait_exit(1, Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{}", cluster.log(1));
    assert!(cluster.log(1).contains("belongs to another cluster"));
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs for the disk-full test was refused ({}): this test \
             must run as root",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_writes_with_507_and_takes_them_again_once_space_is_freed() {
    let disk = Tmpfs::mount("1m");
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; 700 * 1024]).unwrap();
    let data = disk.0.join("data");
    let mut cluster = durable(2, &data).start();
    let leaf = cluster.at_slot(1);
    let value = json!("x".repeat(8 * 1024));
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let key = format!("big-{i}");
        let (status, body) = http::put(&store(&cluster, leaf, &key), &value);
        match status {
            200 => acknowledged.push(key),
            507 => {
                refused = Some((key, body));
                break;
            }
            other => panic!("PUT {key} got {other}: {body}"),
        }
    }
    let (key, body) = refused.expect("the disk never filled up");
    assert!(
        body["error"].as_str().unwrap().contains("disk is full"),
        "{body}"
    );
    assert!(
        acknowledged.len() >= 5,
        "only {} writes fit",
        acknowledged.len()
    );
    // Nothing of the refused write, and reads go on, through a leaf too.
    assert_eq!(http::get(&store(&cluster, 1, &key)).0, 404);
    assert_eq!(http::get(&store(&cluster, leaf, &acknowledged[0])).0, 200);
    assert_eq!(
        put(&cluster, "big-again", value.clone()).0,
        507,
        "still full"
    );

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(http::put(&store(&cluster, leaf, &key), &value).0, 200);
    acknowledged.push(key);
    stop_root(&mut cluster);
    restart_root(&mut cluster);
    for key in &acknowledged {
        assert_eq!(
            http::get(&store(&cluster, 1, key)).1["value"],
            value,
            "{key}"
        );
    }
    assert_eq!(http::get(&store(&cluster, 1, "big-again")).0, 404);
}

/// Builds a library that makes fsync and fdatasync fail with EIO while the
/// file named by `TREECACHE_TEST_FAIL_SYNC` exists.
fn failing_sync_library() -> PathBuf {
    let dir = temp_dir("shim");
    let source = dir.join("failsync.c");
    std::fs::write(
        &source,
        r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *flag = getenv("TREECACHE_TEST_FAIL_SYNC");
    return flag && access(flag, F_OK) == 0;
}

int fdatasync(int fd) {
    if (failing()) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd) {
    if (failing()) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
"#,
    )
    .unwrap();
    let library = dir.join("failsync.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .expect("run cc (gcc) to build the failing-sync library");
    assert!(
        out.status.success(),
        "building the failing-sync library failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    library
}

#[test]
fn after_a_failed_sync_every_write_is_refused_until_a_restart_and_reads_go_on() {
    let library = failing_sync_library();
    let flag = temp_dir("flag").join("fail-now");
    let data = temp_dir("root-data");
    let mut cluster = durable(1, &data)
        .env("LD_PRELOAD", library.to_str().unwrap())
        .env("TREECACHE_TEST_FAIL_SYNC", flag.to_str().unwrap())
        .start();
    assert_eq!(put(&cluster, "before", json!(1)).0, 200);

    std::fs::write(&flag, "").unwrap();
    let (status, body) = put(&cluster, "during", json!(2));
    assert_eq!(status, 503, "{body}");
    std::fs::remove_file(&flag).unwrap();
    let (status, body) = put(&cluster, "after", json!(3));
    assert_eq!(
        status, 503,
        "the sync works again, but the log must stay refused: {body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("restarted"),
        "{body}"
    );
    assert_eq!(
        http::get(&store(&cluster, 1, "before")).0,
        200,
        "reads go on"
    );
    let (status, ready) = http::get(&format!("{}/ready", cluster.url(1)));
    assert_eq!((status, &ready["ready"]), (503, &json!(false)));
    assert!(
        ready["reason"].as_str().unwrap().contains("syncing"),
        "{ready}"
    );

    stop_root(&mut cluster);
    restart_root(&mut cluster);
    assert_eq!(
        http::get(&store(&cluster, 1, "before")).1["value"],
        json!(1)
    );
    assert_eq!(
        http::get(&store(&cluster, 1, "during")).0,
        404,
        "a refused write stays refused"
    );
    assert_eq!(http::get(&store(&cluster, 1, "after")).0, 404);
    assert_eq!(put(&cluster, "again", json!(4)).0, 200);
}
