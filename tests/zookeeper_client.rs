//! The `zookeeper` client with no logger in the process at all (its log
//! records reach nobody): a registry learns its session id, the timeout the
//! server granted and holds its lease all the same, and the client's
//! reconnect loop is paced while the server is down.

use treecache_harness as common;

use std::time::{Duration, Instant};

use treecache::registry::{layout, Registry, Sessions, Znode};

#[test]
fn a_registry_without_a_logger_learns_its_session_and_holds_its_lease() {
    assert_eq!(log::max_level(), log::LevelFilter::Off);
    let prefix = format!("/treecache-quiet-{}", std::process::id());
    // The shared server's tick is 500 ms: it grants at least 1 s.
    let node = Registry::start(
        &common::shared_zookeeper(),
        Duration::from_millis(500),
        &prefix,
    );
    let live = layout::live(&prefix, 3);
    node.keep(Znode {
        path: live.clone(),
        data: b"NODE-3".to_vec(),
        ephemeral: true,
    });
    common::wait_until(Duration::from_secs(15), "a lease", || node.lease().valid);
    let session = node.session().expect("a session");
    assert_eq!(session.timeout, Duration::from_millis(1000));
    assert_eq!(session.generation, 1);
    let owner = node
        .call(move |zk| Ok(zk.exists(&live, false)?.map(|s| s.ephemeral_owner)))
        .unwrap();
    assert_eq!(owner, Some(session.id));
    // The znode that told the session its id is gone again.
    let dir = layout::sessions(&prefix);
    assert_eq!(node.children(&dir), Ok(Vec::new()));
    node.close(Duration::from_secs(2));
}

/// The CPU time this process has used (user and system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name, which ends with ')'.
    let rest = stat.rsplit_once(')').unwrap().1;
    let field = |n: usize| -> u64 { rest.split_whitespace().nth(n).unwrap().parse().unwrap() };
    let ticks = field(11) + field(12);
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn a_client_whose_server_is_down_does_not_spin() {
    let mut zk = common::ZooKeeper::start();
    let node = Registry::start(
        &zk.addr(),
        Duration::from_secs(10),
        &format!("/treecache-down-{}", std::process::id()),
    );
    common::wait_until(Duration::from_secs(15), "a session", || {
        node.session().is_some()
    });
    zk.stop();
    // Within its session timeout the client retries at once and without
    // end unless held: a core's worth of CPU time.
    let (cpu, at) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let used = cpu_time() - cpu;
    assert!(
        used < Duration::from_millis(1500),
        "{used:?} of CPU time in {:?} with ZooKeeper down",
        at.elapsed()
    );
}
