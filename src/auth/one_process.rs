//! One node id, one process. A node's liveness znode
//! (`ZK_PREFIX/live/NODE-i`) belongs to the ZooKeeper session that created
//! it. A joining node tells the root its own session
//! ([`crate::wire::SESSION_HEADER`], signed with the rest of the join); the root
//! refuses the join (409) when the name's liveness znode belongs to another
//! session, which is still alive (ZooKeeper deletes the znode when it
//! ends). The refused node tries again for about one session timeout (the
//! holder may be its own predecessor, killed a moment ago), then gives up
//! (`startup`).

use super::AuthError;

/// The session id as a join carries it: lower-case hex.
pub fn session_text(id: i64) -> String {
    format!("{:x}", id as u64)
}

/// Who holds a node's liveness znode: the owning session's id, `None` when
/// the znode is missing; an error when ZooKeeper cannot tell.
pub type LivenessOwner = dyn Fn(&str) -> Result<Option<i64>, String> + Send + Sync;

/// `Ok` when the node `name`, joining in `session`, may take its name:
/// nobody's liveness znode holds it, or the joining session's own does.
/// When ZooKeeper cannot tell, the join goes ahead, with a warning: a root
/// that still serves while ZooKeeper is away keeps taking joins.
pub fn check(owner: &LivenessOwner, name: &str, session: Option<&str>) -> Result<(), AuthError> {
    let holder = match owner(name) {
        Ok(holder) => holder,
        Err(e) => {
            log::warn!("cannot tell whether {name} is already live ({e}); taking its join");
            return Ok(());
        }
    };
    match holder {
        None => Ok(()),
        Some(id) if session == Some(session_text(id).as_str()) => Ok(()),
        Some(id) => Err(AuthError::LiveElsewhere {
            name: name.to_string(),
            session: session_text(id),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_held_by_another_session_is_refused() {
        let held = |_: &str| Ok(Some(0x1234));
        assert!(check(&held, "NODE-2", Some("1234")).is_ok());
        assert_eq!(
            crate::node::failed::Error::from(check(&held, "NODE-2", Some("99")).unwrap_err())
                .status(),
            409
        );
        assert_eq!(
            crate::node::failed::Error::from(check(&held, "NODE-2", None).unwrap_err()).status(),
            409
        );
        assert!(check(&|_: &str| Ok(None), "NODE-2", None).is_ok());
        assert!(check(&|_: &str| Err("down".into()), "NODE-2", None).is_ok());
    }
}
