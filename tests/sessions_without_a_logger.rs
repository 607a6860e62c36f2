//! A registry learns its sessions with no logger in the process at all: the
//! `zookeeper` crate's log records reach nobody, and the session id, the
//! timeout the server granted and the lease come all the same.

use treecache_harness as common;

use std::time::Duration;

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
