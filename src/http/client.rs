//! The HTTP client of node-to-node calls: the real implementation of the
//! seams in `node::peers`, over one shared ureq agent that keeps
//! connections alive. Requests and answers are built and read by `wire`;
//! this module only moves them, each call bounded by the deadline of the
//! request it serves (and carrying what is left of it). In a cluster that
//! runs TLS, every call is HTTPS, and the peer's certificate must chain to
//! the cluster's CA (`--tls-ca`) and name the host of its address.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{one_process, ClusterKey, Signed};
use crate::deadline::Deadline;
use crate::input::{Listing, MAX_BODY_BYTES};
use crate::metrics::Metrics;
use crate::node::{Downstream, Upstream};
use crate::peer::UpstreamError;
use crate::wire::{
    self, Answer, Fill, FillRequest, Flush, ForwardedWrite, Invalidate, Join, Joined, Message,
    Peer, Progress, Release, Replicate, Replicated, Request,
};

/// This process's ZooKeeper session id, when it has one (sent with a join).
pub type SessionId = Box<dyn Fn() -> Option<i64> + Send + Sync>;

/// Calls to other nodes over HTTP. Cheap to share.
pub struct HttpClient {
    agent: ureq::Agent,
    /// `http`, or `https` in a cluster that runs TLS.
    scheme: &'static str,
    /// The hop timeout of upkeep calls (release notices, flushes).
    hop: Duration,
    /// Signs every call, when the cluster has a key.
    key: Option<ClusterKey>,
    session: Option<SessionId>,
}

impl HttpClient {
    /// A client whose connections take at most `connect_timeout` to open;
    /// each one opened is counted in `metrics`. Upkeep calls give up after
    /// `hop`. With `tls`, calls are HTTPS under that configuration.
    pub fn new(
        connect_timeout: Duration,
        hop: Duration,
        metrics: Arc<Metrics>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> HttpClient {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(connect_timeout)
            .max_idle_connections(256)
            .max_idle_connections_per_host(64)
            .no_delay(true)
            .redirects(0)
            .resolver({
                // A lookup waits no longer than a call to the peer may.
                let names = super::resolve::Resolver::new(hop);
                move |addr: &str| {
                    metrics.upstream_connections.fetch_add(1, Ordering::Relaxed);
                    names.resolve(addr)
                }
            });
        if let Some(tls) = tls {
            agent = agent.tls_config(tls);
        }
        HttpClient {
            agent: agent.build(),
            scheme,
            hop,
            key: None,
            session: None,
        }
    }

    /// Signs every call with `key` (see `auth`).
    pub fn with_key(mut self, key: Option<ClusterKey>) -> HttpClient {
        self.key = key;
        self
    }

    /// Tells the root this process's ZooKeeper session with each join.
    pub fn with_session(mut self, session: SessionId) -> HttpClient {
        self.session = Some(session);
        self
    }

    /// One call within the deadline, and within `hop` when given (which the
    /// call then carries). Any HTTP status is an answer; only transport
    /// failures are errors.
    fn call(
        &self,
        peer: &Peer,
        request: &Request,
        deadline: Deadline,
        hop: Option<Duration>,
    ) -> Result<Answer, UpstreamError> {
        let left = deadline.remaining();
        let timeout = hop.map_or(left, |h| h.min(left));
        if timeout.is_zero() {
            return Err(timed_out(peer));
        }
        let url = format!("{}://{}{}", self.scheme, peer.address, request.path);
        let mut headers: Vec<(&str, String)> = vec![wire::budget_header(deadline)];
        if hop.is_some() {
            headers.push((wire::HOP_HEADER, timeout.as_millis().to_string()));
        }
        headers.extend(request.headers.iter().cloned());
        if request.path == wire::JOIN_PATH {
            if let Some(id) = self.session.as_ref().and_then(|s| s()) {
                headers.push((wire::SESSION_HEADER, one_process::session_text(id)));
            }
        }
        // Every node of the tree joins at the root and reads its tree
        // there, once: a connection kept for the next such call would be
        // one of the root's `--max-connections` held by each node, and a
        // tree of 1,023 nodes would hold them all.
        if [wire::JOIN_PATH, wire::NODES_PATH].contains(&request.path.as_str()) {
            headers.push(("Connection", "close".into()));
        }
        if let Some(key) = &self.key {
            // Signed for the node at the address it is sent to: the one it
            // advertises (as the root's table and ZooKeeper hold it), or
            // `--root` as given.
            let signature = key.sign(
                &peer.address,
                &Signed {
                    method: request.method,
                    path: &request.path,
                    headers: &Listed(&headers),
                    body: request.body.as_deref().unwrap_or_default(),
                },
            );
            headers.push((wire::AUTH_HEADER, signature));
        }
        let mut call = self.agent.request(request.method, &url).timeout(timeout);
        for (name, value) in &headers {
            call = call.set(name, value);
        }
        let result = match &request.body {
            Some(b) if request.headers.iter().any(|(n, _)| *n == "Content-Type") => {
                call.send_bytes(b)
            }
            Some(b) => call.set("Content-Type", "application/json").send_bytes(b),
            None => call.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport_error(peer, &t)),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter(|n| wire::kept_header(n))
            .filter_map(|n| {
                let v = response.header(&n)?.to_string();
                Some((n, v))
            })
            .collect();
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => timed_out(peer),
                _ => UpstreamError::Unreachable {
                    name: peer.name.clone(),
                    address: peer.address.clone(),
                    detail: format!("the answer broke off ({e})"),
                },
            })?;
        if status == 421 {
            if let Some(wrong) = wire::wrong_shard(&body) {
                return Err(wrong);
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends an idempotent message and requires a 200. Tried twice when the
    /// first attempt could not connect: a pooled connection to a restarted
    /// peer fails on first use.
    fn acknowledged(
        &self,
        peer: &Peer,
        request: &Request,
        deadline: Deadline,
    ) -> Result<(), UpstreamError> {
        let hop = Some(self.hop);
        let answer = match self.call(peer, request, deadline, hop) {
            Err(UpstreamError::Unreachable { .. }) if !deadline.passed() => {
                self.call(peer, request, deadline, hop)
            }
            other => other,
        }?;
        match answer.status {
            200 => Ok(()),
            _ => Err(answer.relayed()),
        }
    }
}

impl Upstream for HttpClient {
    fn fill(
        &self,
        parent: &Peer,
        request: &FillRequest,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Fill, UpstreamError> {
        let answer = self.call(parent, &request.request(), deadline, Some(hop))?;
        Fill::decode(answer, parent)
    }

    fn release(
        &self,
        parent: &Peer,
        release: &Release,
        deadline: Deadline,
    ) -> Result<(), UpstreamError> {
        let answer = self.call(parent, &release.request(), deadline, Some(self.hop))?;
        match answer.status {
            200 => Ok(()),
            _ => Err(answer.relayed()),
        }
    }

    fn forward(
        &self,
        root: &Peer,
        write: &ForwardedWrite<'_>,
        deadline: Deadline,
    ) -> Result<Answer, UpstreamError> {
        self.call(root, &write.request(), deadline, None)
    }

    fn nodes(&self, root: &Peer, deadline: Deadline) -> Result<Answer, UpstreamError> {
        self.call(root, &wire::nodes_request(), deadline, None)
    }

    fn keys(
        &self,
        root: &Peer,
        listing: &Listing,
        shard: Option<u32>,
        deadline: Deadline,
    ) -> Result<Answer, UpstreamError> {
        self.call(root, &wire::keys_request(listing, shard), deadline, None)
    }

    fn join(
        &self,
        root: &Peer,
        join: &Join,
        deadline: Deadline,
    ) -> Result<Result<Joined, Answer>, UpstreamError> {
        let answer = self.call(root, &join.request(), deadline, None)?;
        wire::decode_reply(answer, root)
    }

    fn probe(&self, peer: &Peer, hop: Duration) -> bool {
        let request = Request {
            method: "GET",
            path: "/".into(),
            headers: Vec::new(),
            body: None,
        };
        self.call(peer, &request, Deadline::after(hop), Some(hop))
            .is_ok_and(|a| a.status == 200)
    }
}

impl Downstream for HttpClient {
    fn invalidate(
        &self,
        child: &Peer,
        invalidate: &Invalidate,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Progress, UpstreamError> {
        let answer = self.call(child, &invalidate.request(), deadline, Some(hop))?;
        Progress::decode(answer, child)
    }

    fn flush(&self, child: &Peer, flush: &Flush, deadline: Deadline) -> Result<(), UpstreamError> {
        self.acknowledged(child, &flush.request(), deadline)
    }

    fn replicate(
        &self,
        standby: &Peer,
        message: &Replicate,
        deadline: Deadline,
        hop: Duration,
    ) -> Result<Result<Replicated, Answer>, UpstreamError> {
        let mut request = message.request();
        request
            .headers
            .push(("Content-Type", "application/octet-stream".into()));
        let answer = self.call(standby, &request, deadline, Some(hop))?;
        wire::decode_reply(answer, standby)
    }
}

/// Headers about to be sent, as the signature reads them.
struct Listed<'a>(&'a [(&'a str, String)]);

impl wire::Headers for Listed<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn timed_out(peer: &Peer) -> UpstreamError {
    UpstreamError::TimedOut {
        name: peer.name.clone(),
        address: peer.address.clone(),
    }
}

fn transport_error(peer: &Peer, t: &ureq::Transport) -> UpstreamError {
    let io = std::error::Error::source(t).and_then(|s| s.downcast_ref::<std::io::Error>());
    if io.is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        )
    }) {
        return timed_out(peer);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_peer_is_named() {
        let client = HttpClient::new(
            Duration::from_millis(500),
            Duration::from_secs(1),
            Arc::default(),
            None,
        );
        // Port 1 on loopback: nothing listens there.
        let root = Peer {
            name: "NODE-1".into(),
            address: "127.0.0.1:1".into(),
        };
        let err = client
            .nodes(&root, Deadline::after(Duration::from_secs(1)))
            .unwrap_err();
        match err {
            UpstreamError::Unreachable { name, address, .. } => {
                assert_eq!((name.as_str(), address.as_str()), ("NODE-1", "127.0.0.1:1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
