//! The HTTP side: the request each command sends, and sending it with ureq
//! under bounded time-outs.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::time::Duration;

use serde_json::{json, Value};

use crate::args::{Command, Condition, PutValue};

/// Connecting never takes longer than this, even with a longer `--timeout`:
/// a node that does not accept within it is as good as down.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Delete,
    Post,
}

/// One request, relative to a node's base URL.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: Method,
    /// Starts with `/`; a key in it is percent-encoded, and so are the
    /// values of its query.
    pub path: String,
    /// Sent as JSON.
    pub body: Option<Value>,
    /// Sent as given, besides `Content-Type` of a body.
    pub headers: Vec<(&'static str, String)>,
}

/// Most keys `keys` asks for in one request.
pub const KEYS_PAGE: u64 = 1000;

/// The request a command sends (for `keys`, its first page). `put` with
/// its VALUE on standard input must have been read (`PutValue::Given`).
pub fn request_for(command: &Command) -> Request {
    let mut headers = Vec::new();
    let (method, path, body) = match command {
        Command::Get { key, .. } => (Method::Get, store_path(key), None),
        Command::Put {
            key,
            value,
            ttl,
            condition,
            ..
        } => {
            let PutValue::Given(value) = value else {
                unreachable!("main reads a VALUE of '-' before it makes the request")
            };
            let mut body = json!({ "value": value });
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            match condition {
                Some(Condition::IfMatch(version)) => {
                    headers.push(("If-Match", format!("\"{version}\"")))
                }
                Some(Condition::IfAbsent) => headers.push(("If-None-Match", "*".to_string())),
                None => {}
            }
            (Method::Put, store_path(key), Some(body))
        }
        Command::Delete { key, if_match, .. } => {
            if let Some(version) = if_match {
                headers.push(("If-Match", format!("\"{version}\"")));
            }
            (Method::Delete, store_path(key), None)
        }
        Command::Health { .. } => (Method::Get, "/".to_string(), None),
        Command::Ready { .. } => (Method::Get, "/ready".to_string(), None),
        Command::Metrics { .. } => (Method::Get, "/metrics".to_string(), None),
        Command::Keys {
            prefix,
            after,
            limit,
            ..
        } => {
            let page = limit.map_or(KEYS_PAGE, |l| l.min(KEYS_PAGE));
            (
                Method::Get,
                keys_path(prefix.as_deref(), after.as_deref(), page),
                None,
            )
        }
        Command::Mget { keys, .. } => (
            Method::Post,
            "/mget".to_string(),
            Some(json!({ "keys": keys })),
        ),
        Command::Tree { .. } => (Method::Get, "/nodes".to_string(), None),
        Command::Completions => unreachable!("completions talk to no node"),
    };
    Request {
        method,
        path,
        body,
        headers,
    }
}

fn store_path(key: &str) -> String {
    format!("/store/{}", encode_key(key))
}

/// `GET /keys?prefix=P&after=K&limit=N`, each value percent-encoded.
pub fn keys_path(prefix: Option<&str>, after: Option<&str>, limit: u64) -> String {
    let mut path = "/keys?".to_string();
    if let Some(prefix) = prefix {
        path.push_str(&format!("prefix={}&", encode_key(prefix)));
    }
    if let Some(after) = after {
        path.push_str(&format!("after={}&", encode_key(after)));
    }
    path.push_str(&format!("limit={limit}"));
    path
}

/// Percent-encodes every byte of the key's UTF-8 except the unreserved
/// characters of RFC 3986, so that `/`, `?`, `#`, `%` and spaces stay inside
/// the one path segment (a `/` arrives as `%2F`, which the node refuses).
/// The node encodes keys the same way.
pub use treecache_common::segment::encode as encode_key;

/// A node's answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The `ETag` header, as sent.
    pub etag: Option<String>,
}

/// No answer from the node: it could not be reached, or did not answer in time.
#[derive(Debug)]
pub struct Unreachable {
    pub url: String,
    pub reason: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot reach {}: {}", self.url, self.reason)
    }
}

pub struct Client {
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer TOKEN` when given.
    token: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl Client {
    /// A client whose every request, connecting included, ends within `timeout`.
    pub fn new(timeout: Duration) -> Client {
        let connect_timeout = timeout.min(MAX_CONNECT_TIMEOUT);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(connect_timeout)
            .timeout(timeout)
            // Show what the node itself answered, never where it points to.
            .redirects(0)
            .user_agent(concat!("treecache-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent,
            token: None,
            timeout,
            connect_timeout,
        }
    }

    /// Sends `token` with every request (`--token`).
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// Sends `request` to the node at `base` and returns its answer, error
    /// statuses included.
    pub fn send(&self, base: &str, request: &Request) -> Result<Reply, Unreachable> {
        let url = format!("{base}{}", request.path);
        let mut call = match request.method {
            Method::Get => self.agent.get(&url),
            Method::Put => self.agent.put(&url),
            Method::Delete => self.agent.delete(&url),
            Method::Post => self.agent.post(&url),
        };
        if let Some(token) = &self.token {
            call = call.set("Authorization", &format!("Bearer {token}"));
        }
        for (name, value) in &request.headers {
            call = call.set(name, value);
        }
        let result = match &request.body {
            Some(body) => call
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
            None => call.call(),
        };
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => {
                let reason = self.describe(&transport);
                return Err(Unreachable { url, reason });
            }
        };
        let status = response.status();
        let etag = response.header("ETag").map(str::to_string);
        let body = response.into_string().map_err(|error| Unreachable {
            url: url.clone(),
            reason: format!("the answer broke off: {}", self.describe_io(&error)),
        })?;
        Ok(Reply { status, body, etag })
    }

    fn describe(&self, transport: &ureq::Transport) -> String {
        let io_error = transport
            .source()
            .and_then(|source| source.downcast_ref::<io::Error>());
        match (transport.kind(), io_error) {
            (ureq::ErrorKind::Dns, _) => "cannot resolve the host name".to_string(),
            (ureq::ErrorKind::ConnectionFailed, Some(error)) if is_time_out(error) => {
                format!("no connection within {}", seconds(self.connect_timeout))
            }
            (_, Some(error)) => self.describe_io(error),
            _ => transport.to_string(),
        }
    }

    fn describe_io(&self, error: &io::Error) -> String {
        match error.kind() {
            _ if is_time_out(error) => format!("no answer within {}", seconds(self.timeout)),
            io::ErrorKind::ConnectionRefused => {
                "connection refused (is the node running?)".to_string()
            }
            io::ErrorKind::ConnectionReset => "the connection was reset".to_string(),
            _ => error.to_string(),
        }
    }
}

fn is_time_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_stay_and_everything_else_is_encoded() {
        assert_eq!(encode_key("hello"), "hello");
        assert_eq!(encode_key("a-b.c_d~e09"), "a-b.c_d~e09");
        assert_eq!(encode_key("a b"), "a%20b");
        assert_eq!(encode_key("a/b"), "a%2Fb");
        assert_eq!(encode_key("what?#100%"), "what%3F%23100%25");
        assert_eq!(encode_key("ü"), "%C3%BC");
        assert_eq!(encode_key("😀"), "%F0%9F%98%80");
        assert_eq!(encode_key("a+b&c=d\\e"), "a%2Bb%26c%3Dd%5Ce");
    }

    #[test]
    fn each_command_sends_its_request() {
        let node = || "1".to_string();
        let get = request_for(&Command::Get {
            node: node(),
            key: "k 1".into(),
        });
        assert_eq!(
            get,
            Request {
                method: Method::Get,
                path: "/store/k%201".into(),
                body: None,
                headers: Vec::new(),
            }
        );
        let put = request_for(&Command::Put {
            node: node(),
            key: "k".into(),
            value: PutValue::Given(json!({"a": [1, null]})),
            ttl: None,
            condition: None,
        });
        assert_eq!(
            put,
            Request {
                method: Method::Put,
                path: "/store/k".into(),
                body: Some(json!({"value": {"a": [1, null]}})),
                headers: Vec::new(),
            }
        );
        let delete = request_for(&Command::Delete {
            node: node(),
            key: "k".into(),
            if_match: None,
        });
        assert_eq!(
            (delete.method, delete.path.as_str()),
            (Method::Delete, "/store/k")
        );
        let health = request_for(&Command::Health { node: node() });
        assert_eq!((health.method, health.path.as_str()), (Method::Get, "/"));
        let tree = request_for(&Command::Tree { node: None });
        assert_eq!((tree.method, tree.path.as_str()), (Method::Get, "/nodes"));
    }

    #[test]
    fn put_sends_its_ttl_in_the_body_and_its_condition_as_a_header() {
        let put = |ttl, condition| {
            request_for(&Command::Put {
                node: "1".into(),
                key: "k".into(),
                value: PutValue::Given(json!("v")),
                ttl,
                condition,
            })
        };
        let r = put(Some(90), Some(Condition::IfMatch(7)));
        assert_eq!(r.body, Some(json!({"value": "v", "ttl": 90})));
        assert_eq!(r.headers, vec![("If-Match", "\"7\"".to_string())]);
        let r = put(None, Some(Condition::IfAbsent));
        assert_eq!(r.body, Some(json!({"value": "v"})));
        assert_eq!(r.headers, vec![("If-None-Match", "*".to_string())]);
        let r = request_for(&Command::Delete {
            node: "1".into(),
            key: "k".into(),
            if_match: Some(3),
        });
        assert_eq!(
            (r.method, r.headers),
            (Method::Delete, vec![("If-Match", "\"3\"".to_string())])
        );
    }

    #[test]
    fn ready_metrics_keys_and_mget_send_their_requests() {
        let ready = request_for(&Command::Ready { node: "1".into() });
        assert_eq!((ready.method, ready.path.as_str()), (Method::Get, "/ready"));
        let metrics = request_for(&Command::Metrics { node: "1".into() });
        assert_eq!(
            (metrics.method, metrics.path.as_str()),
            (Method::Get, "/metrics")
        );
        let keys = |prefix: Option<&str>, after: Option<&str>, limit| {
            request_for(&Command::Keys {
                node: "1".into(),
                prefix: prefix.map(String::from),
                after: after.map(String::from),
                limit,
            })
            .path
        };
        assert_eq!(keys(None, None, None), "/keys?limit=1000");
        assert_eq!(
            keys(Some("user:1 &"), Some("a/b"), Some(5)),
            "/keys?prefix=user%3A1%20%26&after=a%2Fb&limit=5"
        );
        assert_eq!(keys(None, None, Some(5000)), "/keys?limit=1000");
        let mget = request_for(&Command::Mget {
            node: "1".into(),
            keys: vec!["a".into(), "b c".into()],
        });
        assert_eq!(
            mget,
            Request {
                method: Method::Post,
                path: "/mget".into(),
                body: Some(json!({"keys": ["a", "b c"]})),
                headers: Vec::new(),
            }
        );
    }

    /// Serves one request on a loopback port with `answer`; returns the base
    /// URL and what the request was (head and body).
    fn one_answer(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            (&stream).write_all(answer.as_bytes()).unwrap();
            head + "\r\n" + &String::from_utf8(body).unwrap()
        });
        (base, served)
    }

    #[test]
    fn conditions_and_bodies_go_on_the_wire() {
        let (base, served) = one_answer(
            "HTTP/1.1 412 Precondition Failed\r\nETag: \"8\"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        );
        let request = request_for(&Command::Put {
            node: "1".into(),
            key: "k".into(),
            value: PutValue::Given(json!(1)),
            ttl: Some(60),
            condition: Some(Condition::IfMatch(7)),
        });
        let reply = Client::new(Duration::from_secs(5))
            .send(&base, &request)
            .unwrap();
        assert_eq!((reply.status, reply.etag.as_deref()), (412, Some("\"8\"")));
        let sent = served.join().unwrap();
        assert!(sent.starts_with("PUT /store/k HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("\r\nIf-Match: \"7\"\r\n"), "{sent}");
        assert!(
            sent.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{sent}"
        );
        let body: Value = serde_json::from_str(sent.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body, json!({"value": 1, "ttl": 60}));

        let (base, served) = one_answer(
            "HTTP/1.1 200 OK\r\nContent-Length: 32\r\nConnection: close\r\n\r\n{\"values\": {}, \"missing\": [\"a\"]}",
        );
        let request = request_for(&Command::Mget {
            node: "1".into(),
            keys: vec!["a".into()],
        });
        let reply = Client::new(Duration::from_secs(5))
            .send(&base, &request)
            .unwrap();
        assert_eq!(reply.status, 200);
        let sent = served.join().unwrap();
        assert!(sent.starts_with("POST /mget HTTP/1.1\r\n"), "{sent}");
        assert!(sent.ends_with("{\"keys\":[\"a\"]}"), "{sent}");
    }

    #[test]
    fn a_refused_connection_names_the_url() {
        // Bind a loopback port and close it again, so that nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(Duration::from_secs(2));
        let request = request_for(&Command::Health {
            node: port.to_string(),
        });
        let error = client
            .send(&format!("http://127.0.0.1:{port}"), &request)
            .unwrap_err();
        assert_eq!(error.url, format!("http://127.0.0.1:{port}/"));
        assert_eq!(
            error.to_string(),
            format!(
                "cannot reach http://127.0.0.1:{port}/: connection refused (is the node running?)"
            )
        );
    }

    #[test]
    fn a_node_that_never_answers_times_out() {
        // The kernel accepts the connection into the backlog; nobody ever reads it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", silent.local_addr().unwrap());
        let client = Client::new(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let error = client
            .send(&base, &request_for(&Command::Tree { node: None }))
            .unwrap_err();
        assert_eq!(error.reason, "no answer within 0.3s");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
