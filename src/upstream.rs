//! Every call this node makes to another node: fills from the parent, writes
//! and tree queries forwarded to the root, joins, invalidations sent down to
//! children, and release notices sent up. One shared ureq agent keeps
//! connections alive; every call is bounded by the request's [`Deadline`],
//! which travels with it (header `X-Treecache-Budget-Ms`), shrinking at each
//! hop so that the node nearest a fault is the one that reports it.
//!
//! Where to find the parent and the root also lives here: when one cannot be
//! reached, its address is looked up again (the parent's from the root, the
//! root's from ZooKeeper) and the call is tried once more. Routing around a
//! dead node later is a change to this module alone.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::UpstreamError;
use crate::input::{percent_encode, MAX_BODY_BYTES};

pub const BUDGET_HEADER: &str = "X-Treecache-Budget-Ms";
pub const VERSION_HEADER: &str = "X-Treecache-Version";
pub const CACHEABLE_HEADER: &str = "X-Treecache-Cacheable";
pub const FENCED_HEADER: &str = "X-Treecache-Fenced";
pub const CHILD_SLOT_HEADER: &str = "X-Treecache-Child-Slot";
pub const CHILD_NAME_HEADER: &str = "X-Treecache-Child-Name";
pub const CHILD_ADDRESS_HEADER: &str = "X-Treecache-Child-Address";

/// The moment by which a request must be answered.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline(Instant::now() + budget)
    }

    /// The deadline of a request: the budget it carried, capped by this node's own bound.
    pub fn from_header(header: Option<&str>, own: Duration) -> Deadline {
        let budget = header
            .and_then(|h| h.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .map_or(own, |b| b.min(own));
        Deadline::after(budget)
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The budget to hand to the next hop: a little less than ours, so that
    /// the next hop times out, and reports, before we do.
    pub fn for_next_hop(&self) -> Duration {
        let r = self.remaining();
        r.saturating_sub((r / 10).max(Duration::from_millis(20)))
    }
}

/// Another node: its name and `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub address: String,
}

/// This node as a child, as it introduces itself to its parent.
#[derive(Clone, Debug)]
pub struct Me {
    pub name: String,
    pub address: String,
    pub slot: usize,
}

/// What the parent said to a fill. `fenced`: see `flight::Fetched`.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    Found {
        value: Vec<u8>,
        version: u64,
        cacheable: bool,
        fenced: bool,
    },
    Absent {
        fenced: bool,
    },
}

/// The root's answer to a join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub slot: usize,
    pub depth: u32,
    pub parent: Option<Peer>,
    pub path: String,
}

/// An HTTP answer relayed as it came: status and body.
pub type Relay = (u16, Vec<u8>);

/// Looks the root's address up again (in ZooKeeper) after it could not be reached.
pub type RootLocator = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// Connection counters for `/metrics`.
#[derive(Default)]
pub struct UpstreamStats {
    /// New TCP connections opened to other nodes (name resolutions by the agent).
    pub connections: AtomicU64,
}

/// Calls to other nodes. See the module documentation.
pub struct Upstream {
    agent: ureq::Agent,
    root_name: String,
    root: RwLock<Option<String>>,
    parent: RwLock<Option<Peer>>,
    me: RwLock<Option<Me>>,
    locate_root: RootLocator,
    pub stats: Arc<UpstreamStats>,
}

impl Upstream {
    pub fn new(
        root_name: String,
        root_address: Option<String>,
        connect_timeout: Duration,
        locate_root: RootLocator,
    ) -> Upstream {
        let stats = Arc::new(UpstreamStats::default());
        let counter = stats.clone();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(connect_timeout)
            .max_idle_connections(256)
            .max_idle_connections_per_host(64)
            .no_delay(true)
            .redirects(0)
            .resolver(move |addr: &str| {
                counter.connections.fetch_add(1, Ordering::Relaxed);
                std::net::ToSocketAddrs::to_socket_addrs(addr).map(|a| a.collect())
            })
            .build();
        Upstream {
            agent,
            root_name,
            root: RwLock::new(root_address),
            parent: RwLock::new(None),
            me: RwLock::new(None),
            locate_root,
            stats,
        }
    }

    /// Sets where this node sits, after it has joined.
    pub fn set_position(&self, me: Me, parent: Option<Peer>) {
        *self.me.write().unwrap() = Some(me);
        *self.parent.write().unwrap() = parent;
    }

    pub fn parent(&self) -> Option<Peer> {
        self.parent.read().unwrap().clone()
    }

    pub fn root(&self) -> Option<Peer> {
        let address = self.root.read().unwrap().clone()?;
        Some(Peer {
            name: self.root_name.clone(),
            address,
        })
    }

    pub fn set_root_address(&self, address: String) {
        *self.root.write().unwrap() = Some(address);
    }

    /// Asks the parent for `key` (`GET /internal/fill/{key}`).
    pub fn fill(&self, key: &str, deadline: Deadline) -> Result<Fill, UpstreamError> {
        let me = self.me.read().unwrap().clone().ok_or_else(not_joined)?;
        let path = format!("/internal/fill/{}", percent_encode(key));
        let slot = me.slot.to_string();
        let (status, headers, body) = self.to_parent(deadline, |peer| {
            self.call(
                peer,
                "GET",
                &path,
                None,
                deadline,
                &[
                    (CHILD_SLOT_HEADER, &slot),
                    (CHILD_NAME_HEADER, &me.name),
                    (CHILD_ADDRESS_HEADER, &me.address),
                ],
            )
        })?;
        match status {
            200 => {
                let version = headers.version.ok_or_else(|| UpstreamError::Relayed {
                    status: 502,
                    body: error_body("The parent's fill answer had no version."),
                })?;
                Ok(Fill::Found {
                    value: body,
                    version,
                    cacheable: headers.cacheable,
                    fenced: headers.fenced,
                })
            }
            404 => Ok(Fill::Absent {
                fenced: headers.fenced,
            }),
            status => Err(UpstreamError::Relayed { status, body }),
        }
    }

    /// Forwards a write to the root and returns its answer unchanged.
    pub fn forward_to_root(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        deadline: Deadline,
    ) -> Result<Relay, UpstreamError> {
        self.to_root(|root| self.call(root, method, path, body, deadline, &[]))
            .map(|(status, _, body)| (status, body))
    }

    /// Joins the tree at the root.
    pub fn join(
        &self,
        me: &Peer,
        deadline: Deadline,
    ) -> Result<Result<Joined, Relay>, UpstreamError> {
        let body = serde_json::to_vec(me).expect("a peer serializes");
        let (status, _, answer) = self
            .to_root(|root| self.call(root, "POST", "/nodes/join", Some(&body), deadline, &[]))?;
        if status != 200 {
            return Ok(Err((status, answer)));
        }
        serde_json::from_slice(&answer)
            .map(Ok)
            .map_err(|e| UpstreamError::Relayed {
                status: 502,
                body: error_body(&format!("The root's join answer was not understood: {e}.")),
            })
    }

    /// Tells a child to drop `key`; waits for its acknowledgement.
    pub fn invalidate(
        &self,
        child: &Peer,
        key: &str,
        version: u64,
        deadline: Deadline,
    ) -> Result<(), UpstreamError> {
        let body = serde_json::json!({"key": key, "version": version});
        self.retry_once(deadline, || {
            self.post(child, "/internal/invalidate", &body, deadline)
        })
        .and_then(acknowledged)
    }

    /// Tells a child to drop everything it caches (this node lost its directory).
    pub fn flush(&self, child: &Peer, deadline: Deadline) -> Result<(), UpstreamError> {
        let body = serde_json::json!({});
        self.retry_once(deadline, || {
            self.post(child, "/internal/flush", &body, deadline)
        })
        .and_then(acknowledged)
    }

    /// Tells the parent that this node no longer holds `keys`.
    pub fn release(&self, keys: &[String], deadline: Deadline) -> Result<(), UpstreamError> {
        let me = self.me.read().unwrap().clone().ok_or_else(not_joined)?;
        let body = serde_json::json!({"keys": keys, "slot": me.slot});
        self.to_parent(deadline, |peer| {
            self.post(peer, "/internal/evicted", &body, deadline)
        })
        .and_then(acknowledged)
    }

    /// `POST` a JSON body to a node-to-node endpoint.
    fn post(
        &self,
        peer: &Peer,
        path: &str,
        body: &serde_json::Value,
        deadline: Deadline,
    ) -> Result<Answer, UpstreamError> {
        let body = serde_json::to_vec(body).expect("JSON serializes");
        self.call(peer, "POST", path, Some(&body), deadline, &[])
    }

    /// `GET {path}` at the root (the tree), answer relayed unchanged.
    pub fn get_from_root(&self, path: &str, deadline: Deadline) -> Result<Relay, UpstreamError> {
        self.to_root(|root| self.call(root, "GET", path, None, deadline, &[]))
            .map(|(status, _, body)| (status, body))
    }

    /// Calls the parent; when it cannot be reached, asks the root where the
    /// parent is now and, if it moved, tries once more there.
    fn to_parent(
        &self,
        deadline: Deadline,
        call: impl Fn(&Peer) -> Result<Answer, UpstreamError>,
    ) -> Result<Answer, UpstreamError> {
        let parent = self.parent().ok_or_else(not_joined)?;
        match call(&parent) {
            Err(UpstreamError::Unreachable { .. }) if deadline.remaining() > Duration::ZERO => {
                match self.locate_parent(deadline) {
                    Some(moved) if moved.address != parent.address => {
                        log::info!("{} moved to {}; following it", moved.name, moved.address);
                        *self.parent.write().unwrap() = Some(moved.clone());
                        call(&moved)
                    }
                    _ => call(&parent),
                }
            }
            other => other,
        }
    }

    /// Calls the root; when it cannot be reached, looks its address up again.
    fn to_root(
        &self,
        call: impl Fn(&Peer) -> Result<Answer, UpstreamError>,
    ) -> Result<Answer, UpstreamError> {
        let root = self.root().ok_or_else(|| UpstreamError::Unreachable {
            name: self.root_name.clone(),
            address: "(unknown)".into(),
            detail: "its address is not known yet (not registered in ZooKeeper)".into(),
        })?;
        match call(&root) {
            Err(UpstreamError::Unreachable { .. }) => match (self.locate_root)() {
                Some(address) if address != root.address => {
                    log::info!("{} moved to {address}; following it", root.name);
                    self.set_root_address(address.clone());
                    call(&Peer {
                        name: root.name,
                        address,
                    })
                }
                _ => call(&root),
            },
            other => other,
        }
    }

    /// Where the root says this node's parent is now.
    fn locate_parent(&self, deadline: Deadline) -> Option<Peer> {
        let me = self.me.read().unwrap().clone()?;
        let (status, body) = self.get_from_root("/nodes", deadline).ok()?;
        if status != 200 {
            return None;
        }
        let tree: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let parent_slot = (me.slot.checked_sub(1)?) / 2;
        tree["nodes"].as_array()?.iter().find_map(|n| {
            if n["slot"].as_u64()? as usize != parent_slot {
                return None;
            }
            Some(Peer {
                name: n["name"].as_str()?.to_string(),
                address: n["address"].as_str()?.to_string(),
            })
        })
    }

    /// Retries an idempotent call once when the first attempt could not connect
    /// (a pooled connection to a restarted peer fails on first use).
    fn retry_once(
        &self,
        deadline: Deadline,
        call: impl Fn() -> Result<Answer, UpstreamError>,
    ) -> Result<Answer, UpstreamError> {
        match call() {
            Err(UpstreamError::Unreachable { .. }) if deadline.remaining() > Duration::ZERO => {
                call()
            }
            other => other,
        }
    }

    /// One HTTP call within the deadline. Any HTTP status is an answer;
    /// only transport failures are errors.
    fn call(
        &self,
        peer: &Peer,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        deadline: Deadline,
        headers: &[(&str, &str)],
    ) -> Result<Answer, UpstreamError> {
        let timeout = deadline.remaining();
        if timeout.is_zero() {
            return Err(UpstreamError::TimedOut {
                name: peer.name.clone(),
                address: peer.address.clone(),
            });
        }
        let url = format!("http://{}{}", peer.address, path);
        let mut request = self.agent.request(method, &url).timeout(timeout).set(
            BUDGET_HEADER,
            &deadline.for_next_hop().as_millis().to_string(),
        );
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let result = match body {
            Some(b) => request
                .set("Content-Type", "application/json")
                .send_bytes(b),
            None => request.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport_error(peer, &t)),
        };
        let status = response.status();
        let meta = AnswerHeaders {
            version: response.header(VERSION_HEADER).and_then(|v| v.parse().ok()),
            cacheable: response.header(CACHEABLE_HEADER) == Some("1"),
            fenced: response.header(FENCED_HEADER) == Some("1"),
        };
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    UpstreamError::TimedOut {
                        name: peer.name.clone(),
                        address: peer.address.clone(),
                    }
                }
                _ => UpstreamError::Unreachable {
                    name: peer.name.clone(),
                    address: peer.address.clone(),
                    detail: format!("the answer broke off ({e})"),
                },
            })?;
        Ok((status, meta, body))
    }
}

struct AnswerHeaders {
    version: Option<u64>,
    cacheable: bool,
    fenced: bool,
}

type Answer = (u16, AnswerHeaders, Vec<u8>);

/// A 200 acknowledges; any other answer is relayed as the error it is.
fn acknowledged((status, _, body): Answer) -> Result<(), UpstreamError> {
    match status {
        200 => Ok(()),
        status => Err(UpstreamError::Relayed { status, body }),
    }
}

fn not_joined() -> UpstreamError {
    UpstreamError::Relayed {
        status: 503,
        body: error_body("This node is still joining the tree."),
    }
}

fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": message })).expect("JSON serializes")
}

fn transport_error(peer: &Peer, t: &ureq::Transport) -> UpstreamError {
    let timed_out = std::error::Error::source(t)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        });
    if timed_out {
        UpstreamError::TimedOut {
            name: peer.name.clone(),
            address: peer.address.clone(),
        }
    } else {
        let detail = match std::error::Error::source(t) {
            Some(source) => source.to_string(),
            None => t.kind().to_string(),
        };
        UpstreamError::Unreachable {
            name: peer.name.clone(),
            address: peer.address.clone(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_shrink_at_each_hop() {
        let d = Deadline::after(Duration::from_secs(2));
        let next = d.for_next_hop();
        assert!(next < d.remaining());
        assert!(next > Duration::from_millis(1500));
        let tiny = Deadline::after(Duration::from_millis(10));
        assert_eq!(tiny.for_next_hop(), Duration::ZERO);
    }

    #[test]
    fn a_carried_budget_is_capped_by_our_own() {
        let own = Duration::from_secs(3);
        assert!(Deadline::from_header(Some("500"), own).remaining() <= Duration::from_millis(500));
        assert!(Deadline::from_header(Some("99999"), own).remaining() <= own);
        assert!(Deadline::from_header(Some("junk"), own).remaining() > Duration::from_secs(2));
    }

    #[test]
    fn an_unreachable_peer_is_named() {
        // Port 1 on loopback: nothing listens there.
        let up = Upstream::new(
            "NODE-1".into(),
            Some("127.0.0.1:1".into()),
            Duration::from_millis(500),
            Box::new(|| None),
        );
        let err = up
            .forward_to_root("GET", "/", None, Deadline::after(Duration::from_secs(1)))
            .unwrap_err();
        match err {
            UpstreamError::Unreachable { name, address, .. } => {
                assert_eq!((name.as_str(), address.as_str()), ("NODE-1", "127.0.0.1:1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
