//! Routing and handlers: each request is decoded, handed to the node, and
//! its outcome encoded. No decision about data or the tree is made here;
//! those are the node's (`node`), and node-to-node bodies and headers are
//! read and written by `wire`.
//!
//! A request is handled in one of two lanes (see `server`). Anything the
//! node answers alone (a cache hit, `/metrics`, an invalidation) is answered
//! at once by the thread that received it. Anything that must wait on
//! another node (a miss, a forwarded write, a write at the root that waits
//! for invalidations) becomes [`Deferred`] work for the upstream pool, so
//! that waiting on a parent can never use up the threads that answer the
//! invalidations the parent may be sending us.
//!
//! Every request is timed from the moment a receiver takes it to the moment
//! its answer has been written, in either lane, into the histogram of its
//! method and route (`metrics::RequestDurations`).
//!
//! A plain `GET /store/{key}` that hits mostly never reaches a receiver: the
//! gate asks [`answer_now`] first, which answers it with the same code
//! (`value_reply`, `response_of`), counts it and times it (from the moment
//! the gate has the head until its answer is made) as a receiver would.

use std::io::Read;
use std::time::{Duration, Instant};

use tiny_http::{HTTPVersion, Header, Method, Request, Response};

use crate::auth::{Guard, Signed};
use crate::deadline::Deadline;
use crate::error::Error;
use crate::expiry;
use crate::http::docs;
use crate::input::{self, decode_key, key_value_body, Listing, MAX_BODY_BYTES};
use crate::metrics::{RequestSeries, RouteName};
use crate::node::{Gathered, Node, Write};
use crate::precondition::{self, Condition, Tags, IF_MATCH, IF_NONE_MATCH};
use crate::root::replication::Refusal;
use crate::store::Mutation;
use crate::wire::{
    self, Answer, FillRequest, Flush, Headers, Invalidate, Join, Message, Refused, Release,
    Replicate, ETAG_HEADER, FILL_PREFIX, REQUEST_ID_HEADER, SESSION_HEADER, STORE_PREFIX,
};

const JSON: &str = "application/json";
/// Largest replication request: a catch-up chunk of about 1 MiB, plus one
/// record of the largest value.
const MAX_REPLICATION_BYTES: usize = 4 << 20;

/// An answer to send.
pub struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            content_type: JSON,
            headers: Vec::new(),
        }
    }

    fn error(e: &Error) -> Reply {
        let mut reply = Reply::json(e.status(), e.body());
        match e {
            Error::MethodNotAllowed { allow } => {
                reply.headers.push(("Allow".into(), allow.to_string()));
            }
            Error::Unauthorized { challenge, .. } => {
                reply
                    .headers
                    .push(("WWW-Authenticate".into(), challenge.to_string()));
            }
            _ => {}
        }
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
            status: a.status,
            body: a.body,
            content_type: JSON,
            headers: a.headers,
        }
    }
}

/// Work that waits on another node, for the upstream pool.
pub struct Deferred {
    request: Request,
    work: Work,
    timing: Timing,
}

/// When a request was received, and the series its time goes to.
#[derive(Clone, Copy)]
struct Timing {
    received: Instant,
    series: RequestSeries,
}

impl Timing {
    fn start(request: &Request) -> Timing {
        Timing::of(request.method().as_str(), request.url())
    }

    /// From now, for a request of `method` to `url` (its path and query).
    fn of(method: &str, url: &str) -> Timing {
        let received = Instant::now();
        let path = url.split_once('?').map_or(url, |(path, _)| path);
        let route = route(path).map_or(RouteName::Other, |(r, _)| r.name());
        Timing {
            received,
            series: RequestSeries::of(method, route),
        }
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

/// Handles a request on the receiving thread; returns the work to defer, if any.
pub fn handle(node: &Node, guard: &Guard, mut request: Request) -> Option<Deferred> {
    let timing = Timing::start(&request);
    match dispatch(node, guard, &mut request) {
        Ok(Step::Done(reply)) => {
            respond(node, request, reply, timing);
            None
        }
        Ok(Step::Defer(work)) => Some(Deferred {
            request,
            work,
            timing,
        }),
        Err(e) => {
            drain(&mut request);
            respond(node, request, Reply::error(&e), timing);
            None
        }
    }
}

/// Runs deferred work on the upstream pool and answers.
pub fn finish(node: &Node, deferred: Deferred) {
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
            .map(|fill| fill.answer(&request.key).into()),
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
        Work::Replicate { message } => Ok(match node.receive_replication(&message) {
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
            Err(Refusal::Other(e)) => Reply::error(&e),
        }),
    };
    let reply = reply.unwrap_or_else(|e| Reply::error(&e));
    respond(node, deferred.request, reply, deferred.timing);
}

/// Answers a plain `GET /store/{key}` (`head`, a whole request head with no
/// body) at once when it is a hit this node may serve right now: the bytes
/// of the very answer a receiver would send, made by the same functions
/// (`value_reply`, `response_of`), and counted and timed as a receiver's
/// answer is. `None` for anything else, which then goes to tiny_http as it
/// came and is answered (or refused) there: a head tiny_http would read
/// otherwise, or that asks for more than a plain read (see `Head::plain`),
/// a token that does not pass, a node not joined, a miss, no lease.
///
/// The gate calls it on its one thread, which serves every connection: it
/// takes the key's shard lock for the lookup only, and the locks of the
/// lease and the tokens only for a moment each, none of them held across
/// I/O; it waits on no other node.
pub fn answer_now(node: &Node, guard: &Guard, head: &[u8]) -> Option<Vec<u8>> {
    let head = Head::parse(head)?;
    if head.method != "GET" || head.version != "HTTP/1.1" || !head.plain() {
        return None;
    }
    // A query (`local`, say) is the receivers' to read.
    if head.url.contains('?') {
        return None;
    }
    let timing = Timing::of(head.method, head.url);
    // As `dispatch` checks them, in its order.
    if guard.needs_body(&head) {
        return None;
    }
    guard.client(head.header("Authorization"), false).ok()?;
    let Some((Route::Store(segment), _)) = route(head.url) else {
        return None;
    };
    let key = decode_key(segment).ok()?;
    node.require_joined().ok()?;
    input::request_id(head.header(REQUEST_ID_HEADER)).ok()?;
    let unless = head.header(IF_NONE_MATCH).map(Tags::parse);
    let found = node.hit_now(&key, |v| key_value_body(&key, v))?;
    let reply = value_reply(found.value, found.version, found.expires, unless.as_ref());
    let mut answer = Vec::new();
    // The request headers tiny_http would consult here are `TE`'s, which
    // a plain head has none of.
    response_of(node, reply)
        .raw_print(&mut answer, HTTPVersion(1, 1), &[], false, None)
        .expect("writing to a Vec cannot fail");
    node.metrics()
        .requests
        .observe(timing.series, timing.received.elapsed());
    Some(answer)
}

/// A request head as the gate holds it, read as tiny_http reads one: the
/// request line's three parts, and each header's name and trimmed value.
struct Head<'h> {
    method: &'h str,
    url: &'h str,
    version: &'h str,
    headers: Vec<(&'h str, &'h str)>,
}

impl<'h> Head<'h> {
    /// `None` for a head tiny_http would refuse or read differently (not
    /// ASCII, a bare CR or LF, a malformed line): tiny_http answers it.
    fn parse(head: &'h [u8]) -> Option<Head<'h>> {
        let text = std::str::from_utf8(head).ok().filter(|t| t.is_ascii())?;
        let lines: Vec<&str> = text.strip_suffix("\r\n\r\n")?.split("\r\n").collect();
        // Lines end at CR LF only: tiny_http keeps a lone CR or LF in its line.
        if lines.iter().any(|l| l.contains(['\r', '\n'])) {
            return None;
        }
        let mut lines = lines.into_iter();
        let mut parts = lines.next()?.trim().split(' ');
        let (method, url, version) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.trim().split_once(':')?;
            if name.is_empty() || name.contains(char::is_whitespace) {
                return None;
            }
            headers.push((name, value.trim()));
        }
        Some(Head {
            method,
            url,
            version,
            headers,
        })
    }

    /// Nothing in the head asks for more than a plain read kept alive: no
    /// body, no `Connection` but `keep-alive` (after `close` tiny_http ends
    /// the connection), no `Expect`, `TE` (it chooses the answer's
    /// transfer coding) or `Upgrade`.
    fn plain(&self) -> bool {
        self.headers.iter().all(|(name, value)| {
            let is = |n: &str| name.eq_ignore_ascii_case(n);
            if is("Content-Length") {
                *value == "0"
            } else if is("Connection") {
                value.eq_ignore_ascii_case("keep-alive")
            } else {
                !(is("Transfer-Encoding") || is("Expect") || is("TE") || is("Upgrade"))
            }
        })
    }
}

impl Headers for Head<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
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

fn dispatch(node: &Node, guard: &Guard, request: &mut Request) -> Result<Step, Error> {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = request.method().clone();
    let write = matches!(method, Method::Put | Method::Delete);
    if is_data_path(path) && !guard.needs_body(&RequestHeaders(request)) {
        // A client's request: its token, before anything else.
        guard.client(RequestHeaders(request).header("Authorization"), write)?;
    }
    let Some((route, allow)) = route(path) else {
        return Err(Error::NotFound(format!("There is no resource at {path}.")));
    };
    if !allow.split(", ").any(|m| m == method.as_str()) {
        return Err(Error::MethodNotAllowed { allow });
    }
    // A signed request: read what its signature covers, and check it.
    let mut signed_body = if is_node_to_node(&route) || guard.needs_body(&RequestHeaders(request)) {
        let body = match route {
            // A catch-up's chunk may be a few MiB; a live write is small.
            Route::Replicate => read_body_up_to(request, MAX_REPLICATION_BYTES)?,
            _ => read_body(request)?,
        };
        let parts = Signed {
            method: method.as_str(),
            path: &url,
            headers: &RequestHeaders(request),
            body: &body,
        };
        if is_node_to_node(&route) {
            guard.node_to_node(&parts, matches!(route, Route::Join | Route::Evicted))?;
        } else {
            guard.data(&parts, None, write)?;
        }
        Some(body)
    } else {
        None
    };
    let headers = RequestHeaders(request);
    let deadline = Deadline::from_budget(wire::budget(&headers), node.config().upstream_timeout);
    // A call bounded by the caller's hop timeout is answered (if only with
    // an error, or "still working") well within it.
    let own_hop = node.config().hop_timeout;
    let hop = wire::hop(&headers).map_or(own_hop, |h| (h * 9 / 10).min(own_hop));
    let request_id = input::request_id(headers.header(REQUEST_ID_HEADER))?;
    match route {
        Route::Info => Ok(Step::Done(Reply::of(&node.info()))),
        Route::Ready => Ok(Step::Done(match node.readiness() {
            Ok(()) => Reply::of(&serde_json::json!({ "ready": true })),
            Err(reason) => Reply::json(
                503,
                serde_json::to_vec(&serde_json::json!({ "ready": false, "reason": reason }))
                    .expect("JSON serializes"),
            ),
        })),
        Route::Store(segment) => {
            let key = decode_key(segment)?;
            node.require_joined()?;
            match method {
                Method::Get => {
                    let local = input::local_flag(query)?;
                    let unless = headers.header(IF_NONE_MATCH).map(Tags::parse);
                    match node.read_now(&key, local, |v| key_value_body(&key, v))? {
                        Some(found) => Ok(Step::Done(value_reply(
                            found.value,
                            found.version,
                            found.expires,
                            unless.as_ref(),
                        ))),
                        None => Ok(Step::Defer(Work::Read {
                            key,
                            unless,
                            deadline,
                        })),
                    }
                }
                Method::Put => {
                    let body = take_body(&mut signed_body, request)?;
                    let condition = write_condition(&RequestHeaders(request));
                    let put = input::put_body(&body)?;
                    Ok(Step::Defer(Work::Write {
                        key,
                        write: Write {
                            mutation: Mutation::Put(put.value),
                            ttl: put.ttl,
                            condition,
                        },
                        body,
                        request_id,
                        deadline,
                    }))
                }
                _ => {
                    let condition = write_condition(&headers);
                    Ok(Step::Defer(Work::Write {
                        key,
                        write: Write {
                            mutation: Mutation::Delete,
                            ttl: None,
                            condition,
                        },
                        body: Vec::new(),
                        request_id,
                        deadline,
                    }))
                }
            }
        }
        Route::Mget => {
            node.require_joined()?;
            let keys = input::mget_keys(&take_body(&mut signed_body, request)?)?;
            let gathered = node.read_many_now(keys)?;
            match gathered.incomplete() {
                false => Ok(Step::Done(mget_reply(&gathered))),
                true => Ok(Step::Defer(Work::Mget { gathered, deadline })),
            }
        }
        Route::Keys => {
            node.require_joined()?;
            let listing = input::listing(query)?;
            match node.keys_here(&listing) {
                Some(page) => Ok(Step::Done(Reply::of(&page?))),
                None => Ok(Step::Defer(Work::Keys { listing, deadline })),
            }
        }
        Route::Nodes => match node.nodes_here() {
            Some(doc) => Ok(Step::Done(Reply::of(&doc))),
            None => Ok(Step::Defer(Work::Tree { deadline })),
        },
        Route::Join => {
            let join = Join::decode(&take_body(&mut signed_body, request)?)?;
            if node.is_root() {
                let headers = RequestHeaders(request);
                guard.join(&join.name, headers.header(SESSION_HEADER))?;
            }
            Ok(Step::Done(Reply::of(&node.join(&join)?)))
        }
        Route::Metrics => Ok(Step::Done(Reply {
            status: 200,
            body: node.metrics_text().into_bytes(),
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            headers: Vec::new(),
        })),
        Route::OpenApi => Ok(Step::Done(Reply {
            status: 200,
            body: docs::OPENAPI_YAML.as_bytes().to_vec(),
            content_type: "application/yaml",
            headers: Vec::new(),
        })),
        Route::Docs => Ok(Step::Done(Reply {
            status: 200,
            body: docs::swagger_page(&node.config().docs_assets_url).into_bytes(),
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
        })),
        Route::Fill(segment) => {
            let fill = FillRequest::decode(decode_key(segment)?, &RequestHeaders(request))?;
            match node.serve_fill_now(&fill, deadline)? {
                Some(answer) => Ok(Step::Done(answer.answer(&fill.key).into())),
                None => Ok(Step::Defer(Work::Fill {
                    request: fill,
                    deadline,
                    hop,
                })),
            }
        }
        Route::Invalidate => {
            // Deferred: it may wait (a little) on the children, and the
            // receivers must stay free for what does not wait.
            let message = Invalidate::decode(&take_body(&mut signed_body, request)?)?;
            Ok(Step::Defer(Work::Invalidate {
                message,
                deadline,
                answer_by: Instant::now() + hop * 8 / 9,
            }))
        }
        Route::Flush => {
            Flush::decode(&take_body(&mut signed_body, request)?)?;
            Ok(Step::Done(Reply::of(&node.flush())))
        }
        Route::Evicted => {
            let notice = Release::decode(&take_body(&mut signed_body, request)?)?;
            Ok(Step::Done(Reply::of(&node.release(&notice, deadline)?)))
        }
        Route::Replicate => {
            let body = match signed_body.take() {
                Some(body) => body,
                None => read_body_up_to(request, MAX_REPLICATION_BYTES)?,
            };
            let message = Replicate::decode(&RequestHeaders(request), body)?;
            Ok(Step::Defer(Work::Replicate { message }))
        }
    }
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

/// The headers of a request received, as `wire` reads them.
struct RequestHeaders<'r>(&'r Request);

impl Headers for RequestHeaders<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

/// The body already read for a signature check, else read now.
fn take_body(signed: &mut Option<Vec<u8>>, request: &mut Request) -> Result<Vec<u8>, Error> {
    match signed.take() {
        Some(body) => Ok(body),
        None => read_body(request),
    }
}

/// Reads the body, refusing one over the limit before reading it.
fn read_body(request: &mut Request) -> Result<Vec<u8>, Error> {
    read_body_up_to(request, MAX_BODY_BYTES)
}

/// Reads a body of at most `limit` bytes, refusing a larger one before reading it.
fn read_body_up_to(request: &mut Request, limit: usize) -> Result<Vec<u8>, Error> {
    let too_large =
        || Error::PayloadTooLarge(format!("The request body is larger than {limit} bytes."));
    if request.body_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::BadRequest(format!("The request body could not be read: {e}.")))?;
    if body.len() > limit {
        return Err(too_large());
    }
    Ok(body)
}

/// Reads and discards a small unread body, so the connection stays usable.
fn drain(request: &mut Request) {
    if request.body_length().is_some_and(|n| n <= MAX_BODY_BYTES) {
        let _ = std::io::copy(&mut request.as_reader(), &mut std::io::sink());
    }
}

fn respond(node: &Node, request: Request, reply: Reply, timing: Timing) {
    if let Err(e) = request.respond(response_of(node, reply)) {
        log::debug!("could not send a response: {e}");
    }
    node.metrics()
        .requests
        .observe(timing.series, timing.received.elapsed());
}

/// The answer as tiny_http sends it, counted by its status: the one place
/// an answer's status line and headers are made, for a receiver's answer
/// and for the gate's alike (`answer_now`).
fn response_of(node: &Node, reply: Reply) -> Response<std::io::Cursor<Vec<u8>>> {
    node.count_response(reply.status);
    let mut response = Response::from_data(reply.body).with_status_code(reply.status);
    // A 304 has no body, so no type of one.
    if reply.status != 304 {
        response.add_header(header_of("Content-Type", reply.content_type));
    }
    for (name, value) in &reply.headers {
        response.add_header(header_of(name, value));
    }
    if reply.status == 413 {
        // The rest of an oversized body is not read: end the connection.
        response.add_header(header_of("Connection", "close"));
    }
    response
}

fn header_of(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("header names and values are ASCII")
}
