//! ZooKeeper sessions as leases: the timeout the server grants, a frozen or
//! partitioned node's session and lease ending, generations, one liveness
//! znode per session, and an ensemble with a server down.
//!
//! The lease is tested on registries in this process: a partition is played
//! by a proxy between the registry and ZooKeeper that stops passing bytes
//! (the server then hears nothing, as from a frozen process, and expires
//! the session), which a test cannot do to its own process with SIGSTOP.
//! Frozen and killed nodes are real node processes. Sessions are of 2 s.

use treecache_harness as common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{http, Cluster, ZooKeeper};
use serde_json::json;
use treecache::registry::{layout, Registry, Sessions, Znode};

const TIMEOUT: Duration = Duration::from_secs(2);

fn prefix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "/treecache-sessions-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn registry(connect: &str, prefix: &str, timeout: Duration) -> Registry {
    common::route_zookeeper_log();
    Registry::start(connect, timeout, prefix)
}

/// Keeps NODE-`id`'s liveness znode, holding `data`.
fn keep_live(registry: &Registry, prefix: &str, id: u32, data: &str) {
    registry.keep(Znode {
        path: layout::live(prefix, id),
        data: data.as_bytes().to_vec(),
        ephemeral: true,
    });
}

/// The generations `registry` announces, in order.
fn announced(registry: &Registry) -> Arc<Mutex<Vec<u64>>> {
    let told = Arc::new(Mutex::new(Vec::new()));
    let t = told.clone();
    registry.on_new_session(move |generation| t.lock().unwrap().push(generation));
    told
}

/// The session owning the ephemeral znode at `path` (0: none), when
/// ZooKeeper answers.
fn owner(registry: &Registry, path: &str) -> Option<i64> {
    let path = path.to_string();
    registry
        .call(move |zk| Ok(zk.exists(&path, false)?.map_or(0, |s| s.ephemeral_owner)))
        .ok()
}

/// [`owner`], waiting up to 10 s for an answer.
fn wait_owner(registry: &Registry, path: &str) -> i64 {
    let mut found = None;
    wait_until(Duration::from_secs(10), "ZooKeeper answers", || {
        found = owner(registry, path);
        found.is_some()
    });
    found.unwrap()
}

fn wait_until(limit: Duration, what: &str, ok: impl FnMut() -> bool) {
    common::wait_until(limit, what, ok)
}

/// Waits like [`wait_until`], and returns when the state came about, from
/// `since`: after the start of the last look that did not find it. A bound
/// on how late it came is checked against this moment, so that a look made
/// late by a loaded machine is not taken for a late state.
fn wait_after(
    limit: Duration,
    what: &str,
    since: Instant,
    mut ok: impl FnMut() -> bool,
) -> Duration {
    let mut not_yet = since;
    wait_until(limit, what, || {
        let looked = Instant::now();
        let done = ok();
        if !done {
            not_yet = looked;
        }
        done
    });
    not_yet.saturating_duration_since(since)
}

#[test]
fn the_timeout_the_server_grants_is_logged() {
    let cluster = Cluster::builder(2)
        .arg("--zk-session-timeout")
        .arg("2s")
        .start_root_only();
    wait_until(
        Duration::from_secs(20),
        "the granted timeout logged",
        || {
            cluster
                .log(1)
                .contains("established (timeout granted: 2000 ms, asked for 2000 ms)")
        },
    );
    // The server clamps: with a tick of 500 ms it grants at least 1 s.
    let r = registry(
        &common::shared_zookeeper(),
        &prefix(),
        Duration::from_millis(500),
    );
    wait_until(Duration::from_secs(10), "a session", || {
        r.session().is_some()
    });
    assert_eq!(r.session().unwrap().timeout, Duration::from_millis(1000));
}

#[test]
fn a_frozen_nodes_liveness_znode_goes_within_its_session_timeout() {
    let cluster = Cluster::builder(2)
        .arg("--zk-session-timeout")
        .arg("2s")
        .start_root_only();
    let watcher = cluster.registry();
    wait_until(Duration::from_secs(20), "the root registered", || {
        watcher.ended("NODE-1") == Ok(false)
    });
    cluster.freeze(1);
    let frozen = Instant::now();
    wait_until(
        Duration::from_secs(6),
        "the frozen root's session ended",
        || watcher.ended("NODE-1") == Ok(true),
    );
    let took = frozen.elapsed();
    cluster.thaw(1);
    // The root was heard from at most a heartbeat (a sixth of 2 s) before the freeze.
    assert!(
        took >= Duration::from_millis(1500) && took < TIMEOUT + Duration::from_secs(2),
        "took {took:?}"
    );
    // Thawed, it gets a new session and registers again.
    wait_until(Duration::from_secs(15), "the root's next session", || {
        cluster
            .log(1)
            .contains("(generation 2): registrations in place")
    });
    wait_until(Duration::from_secs(5), "the root registered again", || {
        watcher.ended("NODE-1") == Ok(false)
    });
}

#[test]
fn a_partitioned_registrys_lease_ends_within_two_thirds_of_its_timeout() {
    let zk = common::shared_zookeeper();
    let proxy = Proxy::start(&zk);
    let p = prefix();
    let node = registry(&proxy.addr(), &p, TIMEOUT);
    let told = announced(&node);
    keep_live(&node, &p, 5, "NODE-5");
    let watcher = registry(&zk, &p, TIMEOUT);
    wait_until(Duration::from_secs(10), "a lease", || node.lease().valid);
    assert_eq!(node.lease().generation, 1);
    assert_eq!(*told.lock().unwrap(), [1]);
    let first = node.session().unwrap().id;
    wait_until(Duration::from_secs(5), "the watcher's session", || {
        watcher.ended("NODE-5") == Ok(false)
    });

    proxy.pause();
    let cut = Instant::now();
    let lost = wait_after(Duration::from_secs(3), "the lease ended", cut, || {
        !node.lease().valid
    });
    assert!(
        lost <= TIMEOUT * 2 / 3 + Duration::from_millis(100),
        "the lease lasted {lost:?}"
    );
    wait_until(Duration::from_secs(6), "the session ended", || {
        watcher.ended("NODE-5") == Ok(true)
    });
    let ended = cut.elapsed();
    assert!(!node.lease().valid, "a lease without a session");
    assert!(
        ended >= Duration::from_millis(1500) && ended > lost,
        "ended after {ended:?}, the lease after {lost:?}"
    );

    // Healed: a new session, announced, with its liveness znode and a lease.
    proxy.resume();
    wait_until(Duration::from_secs(20), "a new session's lease", || {
        let lease = node.lease();
        lease.valid && lease.generation == 2
    });
    assert_eq!(*told.lock().unwrap(), [1, 2]);
    let second = node.session().unwrap().id;
    assert_ne!(first, second);
    assert_eq!(wait_owner(&watcher, &layout::live(&p, 5)), second);
}

/// The client reconnects within its session only within a session timeout
/// of its last ping, and the heartbeat leaves it no pause to ping: only a
/// connection lost soon after the client started is taken up again. See
/// the next test for what happens later.
#[test]
fn a_reconnection_within_the_session_keeps_its_generation() {
    let zk = common::shared_zookeeper();
    let proxy = Proxy::start(&zk);
    let p = prefix();
    let node = registry(&proxy.addr(), &p, TIMEOUT);
    let told = announced(&node);
    keep_live(&node, &p, 6, "NODE-6");
    wait_until(Duration::from_secs(10), "a lease", || node.lease().valid);
    let session = node.session().unwrap();

    proxy.cut();
    let cut = Instant::now();
    // The session taken up on a new connection (not only the connection
    // accepted): then its heartbeat confirms the lease within a sixth of
    // the timeout.
    wait_until(
        Duration::from_secs(5),
        "ZooKeeper answers through a new connection",
        || proxy.accepted() >= 2 && node.call(|zk| zk.exists("/", false)).is_ok(),
    );
    let taken_up = Instant::now();
    // Past 2/3 of the timeout, only a heartbeat sent after the cut keeps the
    // lease; and a heartbeat's time after the session was taken up, when
    // a loaded machine took that long.
    let look_at = (cut + TIMEOUT * 3 / 4).max(taken_up + TIMEOUT / 6 + Duration::from_millis(100));
    std::thread::sleep(look_at.saturating_duration_since(Instant::now()));
    let lease = node.lease();
    assert!(lease.valid && lease.generation == 1, "{lease:?}");
    assert_eq!(node.session(), Some(session));
    assert_eq!(*told.lock().unwrap(), [1]);
}

#[test]
fn a_connection_lost_later_gives_a_new_session_and_liveness_at_once() {
    let zk = common::shared_zookeeper();
    let proxy = Proxy::start(&zk);
    let p = prefix();
    let node = registry(&proxy.addr(), &p, TIMEOUT);
    let told = announced(&node);
    keep_live(&node, &p, 8, "NODE-8");
    let watcher = registry(&zk, &p, TIMEOUT);
    wait_until(Duration::from_secs(10), "a lease", || node.lease().valid);
    let first = node.session().unwrap();
    // Past the client's own reconnection window.
    std::thread::sleep(TIMEOUT + Duration::from_millis(1200));

    proxy.cut();
    let cut = Instant::now();
    let took = wait_after(Duration::from_secs(5), "a new session's lease", cut, || {
        let lease = node.lease();
        lease.valid && lease.generation == 2
    });
    // The old session lives on at the server for a timeout after it was
    // last heard from; its znode was replaced without waiting for that.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let second = node.session().unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(*told.lock().unwrap(), [1, 2]);
    assert_eq!(
        wait_owner(&watcher, &layout::live(&p, 8)),
        second.id,
        "the new session's znode"
    );
}

#[test]
fn a_quick_zookeeper_restart_keeps_the_session() {
    let mut zk = ZooKeeper::start();
    let p = prefix();
    // Long enough for a restart of the server, JVM and all.
    let node = registry(&zk.addr(), &p, Duration::from_secs(10));
    let told = announced(&node);
    keep_live(&node, &p, 7, "NODE-7");
    wait_until(Duration::from_secs(10), "a lease", || node.lease().valid);
    let session = node.session().unwrap();

    zk.restart();
    wait_until(Duration::from_secs(10), "ZooKeeper answers again", || {
        node.call(|zk| zk.exists("/", false)).is_ok()
    });
    assert_eq!(node.session(), Some(session));
    assert_eq!(node.lease().generation, 1);
    assert_eq!(*told.lock().unwrap(), [1]);
    assert_eq!(wait_owner(&node, &layout::live(&p, 7)), session.id);
}

#[test]
fn a_second_process_with_a_live_nodes_id_waits_for_its_session_to_end() {
    let mut cluster = Cluster::builder(2)
        .arg("--zk-session-timeout")
        .arg("2s")
        .start_root_only();
    let watcher = cluster.registry();
    let live = layout::live(&cluster.prefix, 1);
    let address = cluster.address(1).into_bytes();
    wait_until(Duration::from_secs(20), "the root registered", || {
        watcher.get(&live) == Ok(Some(address.clone()))
    });

    let intruder = registry(&cluster.zk_addr, &cluster.prefix, TIMEOUT);
    let told = announced(&intruder);
    keep_live(&intruder, &cluster.prefix, 1, "intruder");
    wait_until(Duration::from_secs(10), "the intruder's session", || {
        intruder.session().is_some()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(watcher.get(&live), Ok(Some(address.clone())));
    assert!(!intruder.lease().valid, "a lease on another's znode");
    assert!(
        told.lock().unwrap().is_empty(),
        "announced before registering"
    );
    assert_eq!(watcher.ended("NODE-1"), Ok(false));

    cluster.kill(1);
    let killed = Instant::now();
    wait_until(Duration::from_secs(8), "the intruder registered", || {
        watcher.get(&live) == Ok(Some(b"intruder".to_vec()))
    });
    let took = killed.elapsed();
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    assert_eq!(
        wait_owner(&watcher, &live),
        intruder.session().unwrap().id,
        "the intruder's own znode"
    );
    wait_until(Duration::from_secs(2), "the intruder's lease", || {
        intruder.lease().valid
    });
    assert_eq!(*told.lock().unwrap(), [1]);
}

#[test]
fn a_cluster_serves_and_takes_joins_with_a_zookeeper_server_down() {
    let mut cluster = Cluster::builder(2)
        .ensemble()
        .arg("--zk-session-timeout")
        .arg("2s")
        .start();
    let watcher = cluster.registry();
    let live_dir = layout::live_dir(&cluster.prefix);
    let all_live = |watcher: &Registry| {
        watcher.children(&live_dir).map(|mut names| {
            names.sort();
            names
        }) == Ok(vec!["NODE-1".into(), "NODE-2".into(), "NODE-3".into()])
    };
    wait_until(Duration::from_secs(10), "every node registered", || {
        all_live(&watcher)
    });

    for (down, up_again) in [(1, None), (2, Some(1))] {
        if let Some(member) = up_again {
            cluster.restart_zookeeper_member(member);
        }
        // Every client connects to the first server in the list first.
        cluster.stop_zookeeper_member(down);
        for id in cluster.ids() {
            let key = format!("{}/store/k{down}-{id}", cluster.url(id));
            assert_eq!(
                http::put(&key, &json!(id)).0,
                200,
                "write through NODE-{id}"
            );
            for reader in cluster.ids() {
                let url = format!("{}/store/k{down}-{id}", cluster.url(reader));
                let (status, body) = http::get(&url);
                assert_eq!((status, &body["value"]), (200, &json!(id)), "{url}");
            }
        }
        // A node restarts: it joins, and registers once its old session ended.
        let restarted = if down == 1 { 2 } else { 3 };
        let live = layout::live(&cluster.prefix, restarted);
        let before = wait_owner(&watcher, &live);
        cluster.restart(restarted);
        wait_until(
            Duration::from_secs(10),
            &format!("NODE-{restarted} registered again with server {down} down"),
            || all_live(&watcher) && owner(&watcher, &live).is_some_and(|o| o != 0 && o != before),
        );
    }
}
