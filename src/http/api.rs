//! Routing and handlers: each request is decoded, handed to the node, and
//! its outcome encoded. No decision about data or the tree is made here;
//! those are the node's (`node`), and node-to-node bodies and headers are
//! read and written by `wire`. Requests and answers are the server's own
//! (`message`): a request arrives whole, its body read within the limit of
//! its route ([`largest_body`]).
//!
//! A request is handled in one of two lanes of workers (see `server`),
//! chosen by its route ([`lane`]). Work that may wait on another node (a
//! read that may miss, a write, a fill, an invalidation, the tree asked of
//! the root, replication) runs in the lane that waits, whose pool grows, so
//! that however much of it waits, threads remain for the rest; what the
//! node answers alone (`/`, `/ready`, `/metrics`, the docs, joins, flushes,
//! release notices) runs on the receivers. A receiver that finds its
//! request must wait after all hands it on as [`Deferred`] work.
//!
//! Every request is timed from the moment the server had its whole head to
//! the moment its answer is made, in either lane, into the histogram of its
//! method and route (`metrics::RequestDurations`).
//!
//! Each route has its handler (`store`, `mget`, `fill`, ...), reached from
//! [`dispatch`] once [`admit`] let the request through. Every error ends in
//! [`failure`], the one table of statuses and sentences.
//!
//! A plain `GET /store/{key}` that hits never reaches a worker: the server
//! asks [`answer_now`] first, which answers it with the same code
//! (`value_reply`), counts it and times it as a worker would.

mod failure;

use std::time::{Duration, Instant};

use crate::auth::{Guard, Signed};
use crate::config::Config;
use crate::deadline::Deadline;
use crate::expiry;
use crate::http::docs;
use crate::http::message::{Reply, Request};
use crate::input::{self, decode_key, key_value_body, Listing, MAX_BODY_BYTES};
use crate::metrics::{RequestSeries, RouteName};
use crate::node::failed::Error;
use crate::node::{Gathered, Node, Write};
use crate::precondition::{self, Condition, Tags, IF_MATCH, IF_NONE_MATCH};
use crate::root::replication::Refusal;
use crate::store::Mutation;
use crate::wire::{
    self, Answer, Fill, FillRequest, Flush, Headers, Invalidate, Join, Message, Refused, Release,
    Replicate, ETAG_HEADER, FILL_PREFIX, REQUEST_ID_HEADER, SESSION_HEADER, STORE_PREFIX,
};

/// Largest replication request: a catch-up chunk of about 1 MiB, plus one
/// record of the largest value.
const MAX_REPLICATION_BYTES: usize = 4 << 20;
/// How long a replication call may take at the standby: a catch-up chunk
/// is given 30 s by the primary.
const REPLICATION_TIME: Duration = Duration::from_secs(31);
/// The largest answer to `POST /mget`: its values, in all.
const MAX_MGET_ANSWER: usize = 8 << 20;
/// The most `POST /mget` answers made at once: with [`MAX_MGET_ANSWER`],
/// what they take is bounded for the whole node.
const MGETS_AT_ONCE: usize = 2;

/// The answers to `POST /mget` being made, at most [`MGETS_AT_ONCE`].
static MGETS: Slots = Slots::new(MGETS_AT_ONCE);

/// A count of things under way, at most `max`, waited for with a deadline.
struct Slots {
    taken: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    max: usize,
}

/// One of the [`Slots`], given back when dropped.
struct Slot(&'static Slots);

impl Slots {
    const fn new(max: usize) -> Slots {
        Slots {
            taken: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
            max,
        }
    }

    /// A slot, once one is free; `None` when none is by `deadline`.
    fn take(&'static self, deadline: Deadline) -> Option<Slot> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        while *taken >= self.max {
            let wait = deadline.remaining();
            if wait.is_zero() {
                return None;
            }
            taken = self
                .freed
                .wait_timeout(taken, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *taken += 1;
        Some(Slot(self))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.taken.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

impl Reply {
    /// The answer to a request that failed with `e`, as the failure table says.
    fn error(e: &Error) -> Reply {
        let failure = failure::failure(e);
        let mut reply = Reply::json(failure.status, Vec::new());
        if let Some((name, value)) = &failure.header {
            reply.headers.push((name.to_string(), value.clone()));
        }
        reply.body = failure.body();
        reply
    }

    /// A 200 with `value` as its JSON body.
    fn of<T: serde::Serialize>(value: &T) -> Reply {
        Reply::from(Answer::json(value))
    }
}

impl From<Answer> for Reply {
    fn from(a: Answer) -> Reply {
        Reply {
            headers: a.headers,
            ..Reply::json(a.status, a.body)
        }
    }
}

/// The most body bytes a request to `path` may carry; the server refuses a
/// longer one (413) before it reads any of it.
pub fn largest_body(path: &str) -> usize {
    match path {
        wire::REPLICATE_PATH => MAX_REPLICATION_BYTES,
        _ => MAX_BODY_BYTES,
    }
}

/// The lane of workers a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The receivers: what the node answers without waiting on another.
    Receive,
    /// The lane that waits on other nodes.
    Wait,
}

/// Which lane `request` goes to, by its route.
pub fn lane(request: &Request) -> Lane {
    match route(request.path()) {
        Some((
            Route::Store(_)
            | Route::Mget
            | Route::Keys
            | Route::Nodes
            | Route::Fill(_)
            | Route::Invalidate
            | Route::Replicate,
            _,
        )) => Lane::Wait,
        _ => Lane::Receive,
    }
}

/// How long the server waits for a worker's answer to `request` before it
/// answers 503 itself: the request's budget (`--upstream-timeout`) and a
/// second; a replication call, which the primary gives longer.
pub fn time_allowed(request: &Request, config: &Config) -> Duration {
    match request.path() {
        wire::REPLICATE_PATH => REPLICATION_TIME,
        _ => config.upstream_timeout + Duration::from_secs(1),
    }
}

/// Work that waits on another node, for the lane that waits.
pub struct Deferred {
    work: Work,
    timing: Timing,
}

/// What a worker made of a request.
pub enum Handled {
    Done(Reply),
    /// Work that waits on another node, for the lane that waits.
    Defer(Deferred),
}

/// When a request was received, and the series its time goes to.
#[derive(Clone, Copy)]
struct Timing {
    received: Instant,
    series: RequestSeries,
}

impl Timing {
    /// From the moment the server had the request's head.
    fn of(request: &Request) -> Timing {
        let route = route(request.path()).map_or(RouteName::Other, |(r, _)| r.name());
        Timing {
            received: request.received,
            series: RequestSeries::of(&request.method, route),
        }
    }

    /// Counts the request's time until now in its series.
    fn observe(self, node: &Node) {
        node.metrics()
            .requests
            .observe(self.series, self.received.elapsed());
    }
}

enum Work {
    Read {
        key: String,
        /// The client's `If-None-Match`: 304 when the version is one of them.
        unless: Option<Tags>,
        deadline: Deadline,
    },
    Mget {
        gathered: Gathered,
        deadline: Deadline,
        /// Held until the answer is made.
        _slot: Slot,
    },
    Keys {
        listing: Listing,
        deadline: Deadline,
    },
    Fill {
        request: FillRequest,
        deadline: Deadline,
        hop: Duration,
    },
    Invalidate {
        message: Invalidate,
        deadline: Deadline,
        answer_by: Instant,
    },
    Write {
        key: String,
        write: Write,
        body: Vec<u8>,
        request_id: Option<String>,
        deadline: Deadline,
    },
    Tree {
        deadline: Deadline,
    },
    Replicate {
        message: Replicate,
    },
}

enum Step {
    Done(Reply),
    Defer(Work),
}

/// The routes, and the methods each allows.
enum Route<'a> {
    Info,
    Ready,
    Store(&'a str),
    Mget,
    Keys,
    Nodes,
    Join,
    Metrics,
    OpenApi,
    Docs,
    Fill(&'a str),
    Invalidate,
    Evicted,
    Flush,
    Replicate,
}

impl Route<'_> {
    /// The `route` label of the request-duration metric.
    fn name(&self) -> RouteName {
        match self {
            Route::Info => RouteName::Info,
            Route::Ready => RouteName::Ready,
            Route::Store(_) => RouteName::Store,
            Route::Mget => RouteName::Mget,
            Route::Keys => RouteName::Keys,
            Route::Nodes => RouteName::Nodes,
            Route::Join => RouteName::Join,
            Route::Metrics => RouteName::Metrics,
            Route::OpenApi => RouteName::OpenApi,
            Route::Docs => RouteName::Docs,
            Route::Fill(_) => RouteName::Fill,
            Route::Invalidate => RouteName::Invalidate,
            Route::Evicted => RouteName::Evicted,
            Route::Flush => RouteName::Flush,
            Route::Replicate => RouteName::Replicate,
        }
    }
}

fn route(path: &str) -> Option<(Route<'_>, &'static str)> {
    let r = match path {
        "/" => (Route::Info, "GET"),
        "/ready" => (Route::Ready, "GET"),
        wire::MGET_PATH => (Route::Mget, "POST"),
        wire::KEYS_PATH => (Route::Keys, "GET"),
        wire::NODES_PATH => (Route::Nodes, "GET"),
        wire::JOIN_PATH => (Route::Join, "POST"),
        "/metrics" => (Route::Metrics, "GET"),
        "/openapi.yaml" => (Route::OpenApi, "GET"),
        "/docs" => (Route::Docs, "GET"),
        wire::INVALIDATE_PATH => (Route::Invalidate, "POST"),
        wire::EVICTED_PATH => (Route::Evicted, "POST"),
        wire::REPLICATE_PATH => (Route::Replicate, "POST"),
        wire::FLUSH_PATH => (Route::Flush, "POST"),
        _ => {
            let segment = |prefix| path.strip_prefix(prefix).filter(|s| !s.contains('/'));
            if let Some(seg) = segment(STORE_PREFIX) {
                (Route::Store(seg), "GET, PUT, DELETE")
            } else if let Some(seg) = segment(FILL_PREFIX) {
                (Route::Fill(seg), "GET")
            } else {
                return None;
            }
        }
    };
    Some(r)
}

/// Handles a request on a worker: its answer, or the work that must wait
/// on another node.
pub fn handle(node: &Node, guard: &Guard, request: Request) -> Handled {
    let timing = Timing::of(&request);
    let reply = match dispatch(node, guard, request) {
        Ok(Step::Done(reply)) => reply,
        Ok(Step::Defer(work)) => return Handled::Defer(Deferred { work, timing }),
        Err(e) => Reply::error(&e),
    };
    timing.observe(node);
    Handled::Done(reply)
}

/// Runs deferred work, on the lane that waits: its answer.
pub fn finish(node: &Node, deferred: Deferred) -> Reply {
    let reply = match deferred.work {
        Work::Read {
            key,
            unless,
            deadline,
        } => node.read(&key, deadline).and_then(|found| match found {
            Some(found) => Ok(value_reply(
                key_value_body(&key, &found.value),
                found.version,
                found.expires,
                unless.as_ref(),
            )),
            None => Err(Error::not_found(&key)),
        }),
        Work::Mget {
            mut gathered,
            deadline,
            _slot,
        } => node
            .read_many(&mut gathered, deadline)
            .map(|()| mget_reply(&gathered)),
        Work::Keys { listing, deadline } => node.keys(&listing, deadline).map(Reply::from),
        Work::Fill {
            request,
            deadline,
            hop,
        } => node
            .serve_fill(&request, deadline, hop)
            .map(|fill| fill_reply(fill, &request.key)),
        Work::Invalidate {
            message,
            deadline,
            answer_by,
        } => node
            .invalidate(&message, deadline, answer_by)
            .map(|progress| progress.answer().into()),
        Work::Write {
            key,
            write: w,
            body,
            request_id,
            deadline,
        } => write(node, &key, w, &body, request_id.as_deref(), deadline),
        Work::Tree { deadline } => node.nodes(deadline).map(Reply::from),
        Work::Replicate { message } => node.receive_replication(&message).map(|r| match r {
            Ok(done) => Reply::of(&done),
            Err(Refusal::Stale(epoch)) => Reply::json(
                409,
                serde_json::to_vec(&Refused {
                    error: format!(
                        "Epoch {} is older than epoch {epoch}: the sender is no longer the \
                         primary.",
                        message.epoch
                    ),
                    epoch,
                })
                .expect("JSON serializes"),
            ),
            Err(Refusal::Other(e)) => Reply::error(&e.into()),
        }),
    };
    let reply = reply.unwrap_or_else(|e| Reply::error(&e));
    deferred.timing.observe(node);
    reply
}

/// Answers a plain `GET /store/{key}` at once when it is a hit this node
/// may serve right now, and a fill from a child that hits here: the very
/// answer a worker would make, by the same functions (`value_reply`,
/// `Fill::answer`), counted and timed as a worker's answer is. `None` for
/// anything else, which then goes to a worker: a request that asks for
/// more than a plain read (a query, a body, a client's signature), a token
/// or signature that does not pass, a node not joined, a miss, no lease.
///
/// The server calls it on its one thread, which serves every connection:
/// it takes the key's shard lock for the lookup only, and the locks of the
/// lease and the tokens only for a moment each, none of them held across
/// I/O; it waits on no other node.
pub fn answer_now(node: &Node, guard: &Guard, request: &mut Request) -> Option<Reply> {
    if request.method != "GET" || !request.body.is_empty() || request.target.contains('?') {
        return None;
    }
    let reply = match route(&request.target)? {
        (Route::Store(segment), _) => hit_now(node, guard, request, segment)?,
        (Route::Fill(segment), _) => {
            let segment = segment.to_owned();
            fill_now(node, guard, request, &segment)?
        }
        _ => return None,
    };
    Timing::of(request).observe(node);
    Some(reply)
}

/// A client's plain read, answered at once when it hits (see [`answer_now`]).
fn hit_now(node: &Node, guard: &Guard, request: &Request, segment: &str) -> Option<Reply> {
    // As `dispatch` checks them, in its order.
    if guard.needs_body(request) {
        return None;
    }
    guard.client(request.header("Authorization"), false).ok()?;
    let key = decode_key(segment).ok()?;
    node.require_joined().ok()?;
    input::request_id(request.header(REQUEST_ID_HEADER)).ok()?;
    let unless = request.header(IF_NONE_MATCH).map(Tags::parse);
    let found = node.hit_now(&key, |v| key_value_body(&key, v))?;
    Some(value_reply(
        found.value,
        found.version,
        found.expires,
        unless.as_ref(),
    ))
}

/// A child's fill, answered at once when this node holds the key (or is
/// the root, which knows a key it does not hold exists nowhere): a parent
/// answers most fills without waking a worker. Checked as `dispatch`
/// checks it; anything it does not answer, a refusal included, a worker
/// answers.
///
/// A fill that must go upstream is left to a worker before its signature
/// is checked: the worker checks it and then signs its own call upstream,
/// one after the other on one thread, which finds the MAC's code and key
/// warm for the second (measured: see docs/benchmarks.md).
fn fill_now(node: &Node, guard: &Guard, request: &mut Request, segment: &str) -> Option<Reply> {
    let key = decode_key(segment).ok()?;
    if !node.may_fill_now(&key) {
        return None;
    }
    let parts = Signed {
        method: &request.method,
        path: &request.target,
        headers: &*request,
        body: &[],
    };
    guard.node_to_node(&parts, false).ok()?;
    // A worker that answers the fill after all need not check it again.
    request.verified = true;
    let request = &*request;
    let deadline = Deadline::from_budget(wire::budget(request), node.config().upstream_timeout);
    input::request_id(request.header(REQUEST_ID_HEADER)).ok()?;
    let fill = FillRequest::decode(key, request).ok()?;
    let answer = node.fill_hit_now(&fill, deadline)?;
    Some(fill_reply(answer, &fill.key))
}

/// The data endpoints, which take client tokens: `/store/...`, and `/mget`
/// and `/keys` (guarded by prefix whether or not this node serves them).
fn is_data_path(path: &str) -> bool {
    path.starts_with(STORE_PREFIX) || path.starts_with("/mget") || path.starts_with("/keys")
}

/// The node-to-node routes: each must be signed with the cluster key (when
/// there is one), whatever the sender says.
fn is_node_to_node(route: &Route<'_>) -> bool {
    matches!(
        route,
        Route::Join
            | Route::Fill(_)
            | Route::Invalidate
            | Route::Evicted
            | Route::Flush
            | Route::Replicate
    )
}

/// What a route's handler has of its request, once it was let through.
struct Call<'a> {
    headers: &'a Request,
    method: &'a str,
    query: &'a str,
    body: Vec<u8>,
    deadline: Deadline,
    /// How long this node may take over a call bounded by the caller's hop.
    hop: Duration,
    request_id: Option<String>,
}

fn dispatch(node: &Node, guard: &Guard, mut request: Request) -> Result<Step, Error> {
    let body = std::mem::take(&mut request.body);
    let route = admit(guard, &request, &body)?;
    let headers = &request;
    let deadline = Deadline::from_budget(wire::budget(headers), node.config().upstream_timeout);
    // A call bounded by the caller's hop timeout is answered (if only with
    // an error, or "still working") well within it.
    let own_hop = node.config().hop_timeout;
    let hop = wire::hop(headers).map_or(own_hop, |h| (h * 9 / 10).min(own_hop));
    let call = Call {
        headers,
        method: request.method.as_str(),
        query: request.query(),
        request_id: input::request_id(headers.header(REQUEST_ID_HEADER))?,
        body,
        deadline,
        hop,
    };
    match route {
        Route::Info => Ok(Step::Done(Reply::of(&node.info()))),
        Route::Ready => Ok(Step::Done(ready(node))),
        Route::Store(segment) => store(node, segment, call),
        Route::Mget => mget(node, call),
        Route::Keys => keys(node, call),
        Route::Nodes => Ok(match node.nodes_here() {
            Some(doc) => Step::Done(Reply::of(&doc)),
            None => Step::Defer(Work::Tree { deadline }),
        }),
        Route::Join => join(node, guard, call),
        Route::Metrics | Route::OpenApi | Route::Docs => Ok(Step::Done(page(node, &route))),
        Route::Fill(segment) => fill(node, segment, call),
        // Deferred: it may wait (a little) on the children, and the
        // receivers must stay free for what does not wait.
        Route::Invalidate => Ok(Step::Defer(Work::Invalidate {
            message: Invalidate::decode(&call.body)?,
            deadline,
            answer_by: Instant::now() + hop * 8 / 9,
        })),
        Route::Flush => {
            let flush = Flush::decode(&call.body)?;
            Ok(Step::Done(Reply::of(&node.flush(flush))))
        }
        Route::Evicted => {
            let notice = Release::decode(&call.body)?;
            Ok(Step::Done(Reply::of(&node.release(&notice, deadline)?)))
        }
        Route::Replicate => Ok(Step::Defer(Work::Replicate {
            message: Replicate::decode(headers, call.body)?,
        })),
    }
}

/// The route of `request` once it may take it, in this order: a client's
/// token on the data paths, the route and its method, and the signature of
/// a signed request.
fn admit<'r>(guard: &Guard, request: &'r Request, body: &[u8]) -> Result<Route<'r>, Error> {
    let (path, method) = (request.path(), request.method.as_str());
    let write = matches!(method, "PUT" | "DELETE");
    if is_data_path(path) && !guard.needs_body(request) {
        // A client's request: its token, before anything else.
        guard.client(request.header("Authorization"), write)?;
    }
    let Some((route, allow)) = route(path) else {
        return Err(Error::NoResource {
            path: path.to_string(),
        });
    };
    if !allow.split(", ").any(|m| m == method) {
        return Err(Error::MethodNotAllowed { allow });
    }
    // A signed request: check what its signature covers.
    if (is_node_to_node(&route) || guard.needs_body(request)) && !request.verified {
        let parts = Signed {
            method,
            path: &request.target,
            headers: request,
            body,
        };
        if is_node_to_node(&route) {
            guard.node_to_node(&parts, matches!(route, Route::Join | Route::Evicted))?;
        } else {
            guard.data(&parts, None, write)?;
        }
    }
    Ok(route)
}

/// `GET /ready`: 200, or 503 with the reason.
fn ready(node: &Node) -> Reply {
    match node.readiness() {
        Ok(()) => Reply::of(&serde_json::json!({ "ready": true })),
        Err(reason) => Reply::json(
            503,
            serde_json::to_vec(&serde_json::json!({ "ready": false, "reason": reason }))
                .expect("JSON serializes"),
        ),
    }
}

/// The pages that are not JSON: `/metrics`, `/openapi.yaml` and `/docs`.
fn page(node: &Node, route: &Route<'_>) -> Reply {
    let (content_type, body) = match route {
        Route::Metrics => (
            "text/plain; version=0.0.4; charset=utf-8",
            node.metrics_text().into_bytes(),
        ),
        Route::OpenApi => ("application/yaml", docs::OPENAPI_YAML.as_bytes().to_vec()),
        _ => (
            "text/html; charset=utf-8",
            docs::swagger_page(&node.config().docs_assets_url).into_bytes(),
        ),
    };
    Reply {
        content_type,
        ..Reply::json(200, body)
    }
}

/// `GET`, `PUT` and `DELETE /store/{key}`: a hit answered now, the rest deferred.
fn store(node: &Node, segment: &str, call: Call<'_>) -> Result<Step, Error> {
    let key = decode_key(segment)?;
    node.require_joined()?;
    if wire::meant_for_shard(call.headers).is_some() {
        // Sent by another node to this shard's primary: never passed on.
        node.refuse_foreign(&key)?;
    }
    let (mutation, ttl, body) = match call.method {
        "GET" => return read_now(node, key, &call),
        "PUT" => {
            let put = input::put_body(&call.body)?;
            (Mutation::Put(put.value), put.ttl, call.body)
        }
        _ => (Mutation::Delete, None, Vec::new()),
    };
    let asked = Write {
        mutation,
        ttl,
        condition: write_condition(call.headers),
    };
    Ok(Step::Defer(Work::Write {
        key,
        write: asked,
        body,
        request_id: call.request_id,
        deadline: call.deadline,
    }))
}

/// `GET /store/{key}`: from this node's copy, or deferred to read through.
fn read_now(node: &Node, key: String, call: &Call<'_>) -> Result<Step, Error> {
    let local = input::local_flag(call.query)?;
    let unless = call.headers.header(IF_NONE_MATCH).map(Tags::parse);
    Ok(
        match node.read_now(&key, local, |v| key_value_body(&key, v))? {
            Some(found) => Step::Done(value_reply(
                found.value,
                found.version,
                found.expires,
                unless.as_ref(),
            )),
            None => Step::Defer(Work::Read {
                key,
                unless,
                deadline: call.deadline,
            }),
        },
    )
}

/// `POST /mget`: answered now when every key hits, else deferred.
fn mget(node: &Node, call: Call<'_>) -> Result<Step, Error> {
    node.require_joined()?;
    let keys = input::mget_keys(&call.body)?;
    let slot = MGETS.take(call.deadline).ok_or(Error::MgetsBusy)?;
    let gathered = node.read_many_now(keys, MAX_MGET_ANSWER)?;
    Ok(match gathered.incomplete() {
        false => Step::Done(mget_reply(&gathered)),
        true => Step::Defer(Work::Mget {
            gathered,
            deadline: call.deadline,
            _slot: slot,
        }),
    })
}

/// `GET /keys`: a page the root answers now, else asked of the root.
fn keys(node: &Node, call: Call<'_>) -> Result<Step, Error> {
    node.require_joined()?;
    let listing = input::listing(call.query)?;
    let own = wire::meant_for_shard(call.headers).is_some();
    Ok(match node.keys_here(&listing, own) {
        Some(page) => Step::Done(Reply::of(&page?)),
        None => Step::Defer(Work::Keys {
            listing,
            deadline: call.deadline,
        }),
    })
}

/// `POST /nodes/join`.
fn join(node: &Node, guard: &Guard, call: Call<'_>) -> Result<Step, Error> {
    let join = Join::decode(&call.body)?;
    if node.is_root() {
        guard.join(&join.name, call.headers.header(SESSION_HEADER))?;
    }
    Ok(Step::Done(Reply::of(&node.join(&join)?)))
}

/// `GET /internal/fill/{key}`: answered now from this node's copy, else deferred.
fn fill(node: &Node, segment: &str, call: Call<'_>) -> Result<Step, Error> {
    let fill = FillRequest::decode(decode_key(segment)?, call.headers)?;
    Ok(match node.serve_fill_now(&fill, call.deadline)? {
        Some(answer) => Step::Done(fill_reply(answer, &fill.key)),
        None => Step::Defer(Work::Fill {
            request: fill,
            deadline: call.deadline,
            hop: call.hop,
        }),
    })
}

/// A fill's answer; a key that exists nowhere is a 404 with its sentence.
fn fill_reply(fill: Fill, key: &str) -> Reply {
    fill.answer(|| Error::not_found(key).body()).into()
}

/// `PUT`/`DELETE /store/{key}`: the node applies or forwards it; its
/// answer, or the root's, relayed as it came (with the new value's ETag).
fn write(
    node: &Node,
    key: &str,
    write: Write,
    body: &[u8],
    request_id: Option<&str>,
    deadline: Deadline,
) -> Result<Reply, Error> {
    let ttl = write.ttl;
    let answer = node.write(
        key,
        write,
        body,
        request_id,
        deadline,
        |m, version| match m {
            Mutation::Put(v) => {
                let body = key_value_body(key, v);
                let body = match ttl {
                    Some(ttl) => input::with_ttl(body, ttl.as_millis() as f64 / 1000.0),
                    None => body,
                };
                Answer::new(200, body).with_header(ETAG_HEADER, precondition::etag(version))
            }
            Mutation::Delete => Answer::json(&serde_json::json!({ "key": key })),
        },
    )?;
    Ok(Reply::from(answer))
}

/// The condition of a `PUT` or `DELETE` (`If-Match`, `If-None-Match`).
fn write_condition(headers: &impl Headers) -> Option<Condition> {
    Condition::parse(headers.header(IF_MATCH), headers.header(IF_NONE_MATCH))
}

/// The answer to `GET /store/{key}` from the value's body `{"key", "value"}`:
/// with its ETag, and its time left if it expires; 304 without a body when
/// the client's `If-None-Match` names its version.
fn value_reply(
    body: Vec<u8>,
    version: u64,
    expires: Option<Instant>,
    unless: Option<&Tags>,
) -> Reply {
    let mut reply = match unless.is_some_and(|tags| tags.matches(Some(version))) {
        true => Reply::json(304, Vec::new()),
        false => match expires {
            Some(at) => Reply::json(
                200,
                input::with_ttl(body, expiry::seconds_left(at, Instant::now())),
            ),
            None => Reply::json(200, body),
        },
    };
    reply
        .headers
        .push((ETAG_HEADER.to_string(), precondition::etag(version)));
    reply
}

/// The answer to `POST /mget`: `{"values": {K: V, ...}, "missing": [K, ...]}`.
fn mget_reply(gathered: &Gathered) -> Reply {
    let mut body = b"{\"values\":{".to_vec();
    let mut missing = Vec::new();
    let mut first = true;
    for (key, value) in gathered.keys.iter().zip(&gathered.values) {
        let Some(value) = value else {
            missing.push(key);
            continue;
        };
        if !first {
            body.push(b',');
        }
        first = false;
        input::push_json_string(&mut body, key);
        body.push(b':');
        body.extend_from_slice(value);
    }
    body.extend_from_slice(b"},\"missing\":");
    serde_json::to_writer(&mut body, &missing).expect("writing to a Vec cannot fail");
    body.push(b'}');
    Reply::json(200, body)
}
