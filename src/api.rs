//! Routing and handlers: each handler reads like the contract in SPEC.md §4.
//!
//! A request is handled in one of two lanes (see `server`). Anything answered
//! from this node alone (a cache hit, `/metrics`, an invalidation) is answered
//! at once by the thread that received it. Anything that must wait on another
//! node (a miss, a forwarded write, a write at the root that waits for
//! invalidations) becomes [`Deferred`] work for the upstream pool, so that
//! waiting on a parent can never use up the threads that answer the
//! invalidations the parent may be sending us.

use std::io::Read;

use serde::Deserialize;
use tiny_http::{Header, Method, Request, Response};

use crate::docs;
use crate::error::Error;
use crate::input::{self, decode_key, key_value_body, MAX_BODY_BYTES};
use crate::membership::JoinError;
use crate::node::{Answer, Child, Node};
use crate::store::{Lookup, Mutation};
use crate::upstream::{
    Deadline, BUDGET_HEADER, CACHEABLE_HEADER, CHILD_ADDRESS_HEADER, CHILD_NAME_HEADER,
    CHILD_SLOT_HEADER, FENCED_HEADER, VERSION_HEADER,
};

const JSON: &str = "application/json";

/// Slack past the end of a child's fill during which it is still sent invalidations.
const FILL_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// An answer to send.
pub struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
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
        if let Error::MethodNotAllowed { allow } = e {
            reply.headers.push(("Allow", allow.to_string()));
        }
        reply
    }

    fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// Work that waits on another node, for the upstream pool.
pub struct Deferred {
    request: Request,
    work: Work,
}

enum Work {
    Read {
        key: String,
        child: Option<Child>,
        deadline: Deadline,
    },
    Write {
        key: String,
        mutation: Mutation,
        body: Vec<u8>,
        deadline: Deadline,
    },
    Tree {
        deadline: Deadline,
    },
}

enum Step {
    Done(Reply),
    Defer(Work),
}

/// The routes, and the methods each allows.
enum Route<'a> {
    Info,
    Store(&'a str),
    Nodes,
    Join,
    Metrics,
    OpenApi,
    Docs,
    Fill(&'a str),
    Invalidate,
    Evicted,
    Flush,
}

fn route(path: &str) -> Option<(Route<'_>, &'static str)> {
    let r = match path {
        "/" => (Route::Info, "GET"),
        "/nodes" => (Route::Nodes, "GET"),
        "/nodes/join" => (Route::Join, "POST"),
        "/metrics" => (Route::Metrics, "GET"),
        "/openapi.yaml" => (Route::OpenApi, "GET"),
        "/docs" => (Route::Docs, "GET"),
        "/internal/invalidate" => (Route::Invalidate, "POST"),
        "/internal/evicted" => (Route::Evicted, "POST"),
        "/internal/flush" => (Route::Flush, "POST"),
        _ => {
            if let Some(seg) = path.strip_prefix("/store/").filter(|s| !s.contains('/')) {
                (Route::Store(seg), "GET, PUT, DELETE")
            } else if let Some(seg) = path
                .strip_prefix("/internal/fill/")
                .filter(|s| !s.contains('/'))
            {
                (Route::Fill(seg), "GET")
            } else {
                return None;
            }
        }
    };
    Some(r)
}

/// Handles a request on the receiving thread; returns the work to defer, if any.
pub fn handle(node: &Node, mut request: Request) -> Option<Deferred> {
    match dispatch(node, &mut request) {
        Ok(Step::Done(reply)) => {
            respond(node, request, reply);
            None
        }
        Ok(Step::Defer(work)) => Some(Deferred { request, work }),
        Err(e) => {
            respond(node, request, Reply::error(&e));
            None
        }
    }
}

/// Runs deferred work on the upstream pool and answers.
pub fn finish(node: &Node, deferred: Deferred) {
    let reply = match deferred.work {
        Work::Read {
            key,
            child,
            deadline,
        } => node
            .read_through(&key, child.as_ref(), deadline)
            .map(|answer| match child {
                Some(_) => fill_reply(&key, answer),
                None => match answer.value {
                    Some(v) => Reply::json(200, key_value_body(&key, &v)),
                    None => Reply::error(&not_found(&key)),
                },
            }),
        Work::Write {
            key,
            mutation,
            body,
            deadline,
        } => write(node, &key, mutation, &body, deadline),
        Work::Tree { deadline } => node
            .upstream
            .get_from_root("/nodes", deadline)
            .map(|(status, body)| Reply::json(status, body))
            .map_err(Error::from),
    };
    let reply = reply.unwrap_or_else(|e| Reply::error(&e));
    respond(node, deferred.request, reply);
}

fn dispatch(node: &Node, request: &mut Request) -> Result<Step, Error> {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let Some((route, allow)) = route(path) else {
        drain(request);
        return Err(Error::NotFound(format!("There is no resource at {path}.")));
    };
    let method = request.method().clone();
    let allowed = allow.split(", ").any(|m| m == method.as_str());
    if !allowed {
        drain(request);
        return Err(Error::MethodNotAllowed { allow });
    }
    let deadline =
        Deadline::from_header(header(request, BUDGET_HEADER), node.config.upstream_timeout);
    match route {
        Route::Info => Ok(Step::Done(info(node))),
        Route::Store(segment) => {
            let key = decode_key(segment)?;
            node.require_joined()?;
            match method {
                Method::Get => read(node, key, input::local_flag(query)?, deadline),
                Method::Put => {
                    let body = read_body(request)?;
                    let value = input::put_value(&body)?;
                    Ok(Step::Defer(Work::Write {
                        key,
                        mutation: Mutation::Put(value),
                        body,
                        deadline,
                    }))
                }
                _ => Ok(Step::Defer(Work::Write {
                    key,
                    mutation: Mutation::Delete,
                    body: Vec::new(),
                    deadline,
                })),
            }
        }
        Route::Nodes => match &node.membership {
            Some(m) => Ok(Step::Done(json_reply(
                &m.lock().unwrap_or_else(|e| e.into_inner()).document(),
            ))),
            None => Ok(Step::Defer(Work::Tree { deadline })),
        },
        Route::Join => join(node, &read_body(request)?),
        Route::Metrics => Ok(Step::Done(Reply {
            status: 200,
            body: node.metrics.render(&node.gauges()).into_bytes(),
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
            body: docs::swagger_page(&node.config.docs_assets_url).into_bytes(),
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
        })),
        Route::Fill(segment) => {
            let key = decode_key(segment)?;
            let child = child_of(node, request)?;
            // Until this child's fill has surely ended, invalidations of the
            // key go to it too, whatever we answer (see Store::note_fill).
            // The child's own deadline is up to a tenth later than the budget it
            // sent us (Deadline::for_next_hop); its fill cannot outlast that.
            let until = deadline.0 + deadline.remaining() / 8 + FILL_GRACE;
            node.store.note_fill(&key, child.side, until);
            match node.read_local(&key, Some(&child), <[u8]>::to_vec) {
                Lookup::Hit {
                    out,
                    version,
                    cacheable,
                    pending,
                } => Ok(Step::Done(fill_reply(
                    &key,
                    Answer {
                        value: Some(out),
                        version,
                        cacheable,
                        fenced: pending,
                    },
                ))),
                Lookup::Miss { pending } if node.is_root() => Ok(Step::Done(fill_reply(
                    &key,
                    Answer {
                        value: None,
                        version: 0,
                        cacheable: false,
                        fenced: pending,
                    },
                ))),
                Lookup::Miss { .. } => Ok(Step::Defer(Work::Read {
                    key,
                    child: Some(child),
                    deadline,
                })),
            }
        }
        Route::Invalidate => {
            #[derive(Deserialize)]
            struct Body {
                key: String,
                version: u64,
            }
            let body: Body = parse_json(&read_body(request)?)?;
            let dropped = node.invalidate(&body.key, body.version, deadline)?;
            Ok(Step::Done(json_reply(
                &serde_json::json!({"key": body.key, "dropped": dropped}),
            )))
        }
        Route::Flush => {
            drain(request);
            let children = node.flush(deadline);
            Ok(Step::Done(json_reply(
                &serde_json::json!({"flushed": true, "children": children}),
            )))
        }
        Route::Evicted => {
            #[derive(Deserialize)]
            struct Body {
                keys: Vec<String>,
                slot: usize,
            }
            let body: Body = parse_json(&read_body(request)?)?;
            let released = node.release(&body.keys, body.slot)?;
            Ok(Step::Done(json_reply(
                &serde_json::json!({"released": released}),
            )))
        }
    }
}

/// `GET /store/{key}`: own copy first; a miss goes upstream (unless `local`).
fn read(node: &Node, key: String, local: bool, deadline: Deadline) -> Result<Step, Error> {
    match node.read_local(&key, None, |v| key_value_body(&key, v)) {
        Lookup::Hit { out, .. } => Ok(Step::Done(Reply::json(200, out))),
        Lookup::Miss { .. } if local || node.is_root() => Err(not_found(&key)),
        Lookup::Miss { .. } => Ok(Step::Defer(Work::Read {
            key,
            child: None,
            deadline,
        })),
    }
}

/// `PUT`/`DELETE /store/{key}`: applied at the root, forwarded there by others.
fn write(
    node: &Node,
    key: &str,
    mutation: Mutation,
    body: &[u8],
    deadline: Deadline,
) -> Result<Reply, Error> {
    if !node.is_root() {
        let method = match mutation {
            Mutation::Put(_) => "PUT",
            Mutation::Delete => "DELETE",
        };
        let path = format!("/store/{}", input::percent_encode(key));
        let (status, answer) = node.upstream.forward_to_root(
            method,
            &path,
            Some(body).filter(|b| !b.is_empty()),
            deadline,
        )?;
        return Ok(Reply::json(status, answer));
    }
    // The answer is rendered before the value moves into the store.
    let answer = match &mutation {
        Mutation::Put(v) => Reply::json(200, key_value_body(key, v)),
        Mutation::Delete => json_reply(&serde_json::json!({ "key": key })),
    };
    node.write_at_root(key, mutation, deadline)?;
    Ok(answer)
}

/// `POST /nodes/join`, on the root only.
fn join(node: &Node, body: &[u8]) -> Result<Step, Error> {
    let Some(membership) = &node.membership else {
        return Err(Error::NotRoot(format!(
            "{} is not the root; join {}.",
            node.config.name(),
            crate::config::node_name(node.config.root_id)
        )));
    };
    #[derive(Deserialize)]
    struct Body {
        name: String,
        address: String,
    }
    let body: Body = parse_json(body)?;
    crate::config::parse_host_port(&body.address).map_err(|_| {
        Error::BadRequest(format!("The address {:?} is not host:port.", body.address))
    })?;
    if !node.tree_loaded.load(std::sync::atomic::Ordering::Acquire) {
        return Err(Error::Unavailable(
            "The root is still loading the tree from ZooKeeper; try again shortly.".into(),
        ));
    }
    let joined = membership
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .join(&body.name, &body.address)
        .map_err(|e| match e {
            JoinError::BadName(m) => Error::BadRequest(m),
            JoinError::IsRoot(m) => Error::Conflict(m),
        })?;
    log::info!(
        "{} joined at slot {} from {}",
        body.name,
        joined.slot,
        body.address
    );
    Ok(Step::Done(json_reply(&joined)))
}

fn info(node: &Node) -> Reply {
    let position = node.position();
    json_reply(&serde_json::json!({
        "status": "alive",
        "node": node.config.name(),
        "address": node.config.advertised_host(),
        "role": if node.is_root() { "root" } else { "cache" },
        "slot": position.as_ref().map(|p| p.slot),
        "depth": position.as_ref().map(|p| p.depth),
        "parent": position.and_then(|p| p.parent).map(|p| p.name),
        "joined": node.joined(),
    }))
}

/// The asking child, from the headers of a fill.
fn child_of(node: &Node, request: &Request) -> Result<Child, Error> {
    let slot = header(request, CHILD_SLOT_HEADER)
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or_else(|| {
            Error::BadRequest(format!("A fill needs the {CHILD_SLOT_HEADER} header."))
        })?;
    let name = header(request, CHILD_NAME_HEADER)
        .unwrap_or("a child")
        .to_string();
    let address = header(request, CHILD_ADDRESS_HEADER)
        .ok_or_else(|| {
            Error::BadRequest(format!("A fill needs the {CHILD_ADDRESS_HEADER} header."))
        })?
        .to_string();
    node.child_from(slot, &name, &address)
}

/// The answer to a child's fill: the raw value (or a 404) and what the
/// child may do with it.
fn fill_reply(key: &str, answer: Answer) -> Reply {
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    let reply = match answer.value {
        Some(value) => Reply::json(200, value)
            .with_header(VERSION_HEADER, answer.version.to_string())
            .with_header(CACHEABLE_HEADER, flag(answer.cacheable)),
        None => Reply::error(&not_found(key)),
    };
    reply.with_header(FENCED_HEADER, flag(answer.fenced))
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("The key {key:?} does not exist."))
}

fn json_reply<T: serde::Serialize>(value: &T) -> Reply {
    Reply::json(200, serde_json::to_vec(value).expect("a reply serializes"))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| {
        Error::BadRequest(format!(
            "The request body is not what this endpoint takes: {e}."
        ))
    })
}

fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Reads the body, refusing one over the limit before reading it.
fn read_body(request: &mut Request) -> Result<Vec<u8>, Error> {
    let too_large = || {
        Error::PayloadTooLarge(format!(
            "The request body is larger than {MAX_BODY_BYTES} bytes."
        ))
    };
    if request.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::BadRequest(format!("The request body could not be read: {e}.")))?;
    if body.len() > MAX_BODY_BYTES {
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

fn respond(node: &Node, request: Request, reply: Reply) {
    node.metrics.count_response(reply.status);
    let mut response = Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_header(header_of("Content-Type", reply.content_type));
    for (name, value) in &reply.headers {
        response.add_header(header_of(name, value));
    }
    if reply.status == 413 {
        // The rest of an oversized body is not read: end the connection.
        response.add_header(header_of("Connection", "close"));
    }
    if let Err(e) = request.respond(response) {
        log::debug!("could not send a response: {e}");
    }
}

fn header_of(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("header names and values are ASCII")
}
