//! The HTTP side: the request each command sends, and sending it with ureq
//! under bounded time-outs.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::time::Duration;

use serde_json::{json, Value};

use crate::args::Command;

/// Connecting never takes longer than this, even with a longer `--timeout`:
/// a node that does not accept within it is as good as down.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Delete,
}

/// One request, relative to a node's base URL.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: Method,
    /// Starts with `/`; a key in it is percent-encoded.
    pub path: String,
    /// Sent as JSON.
    pub body: Option<Value>,
}

/// The request a command sends.
pub fn request_for(command: &Command) -> Request {
    let (method, path, body) = match command {
        Command::Get { key, .. } => (Method::Get, store_path(key), None),
        Command::Put { key, value, .. } => (
            Method::Put,
            store_path(key),
            Some(json!({ "value": value })),
        ),
        Command::Delete { key, .. } => (Method::Delete, store_path(key), None),
        Command::Health { .. } => (Method::Get, "/".to_string(), None),
        Command::Tree { .. } => (Method::Get, "/nodes".to_string(), None),
    };
    Request { method, path, body }
}

fn store_path(key: &str) -> String {
    format!("/store/{}", encode_key(key))
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
        let call = match request.method {
            Method::Get => self.agent.get(&url),
            Method::Put => self.agent.put(&url),
            Method::Delete => self.agent.delete(&url),
        };
        let call = match &self.token {
            Some(token) => call.set("Authorization", &format!("Bearer {token}")),
            None => call,
        };
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
        let body = response.into_string().map_err(|error| Unreachable {
            url: url.clone(),
            reason: format!("the answer broke off: {}", self.describe_io(&error)),
        })?;
        Ok(Reply { status, body })
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
                body: None
            }
        );
        let put = request_for(&Command::Put {
            node: node(),
            key: "k".into(),
            value: json!({"a": [1, null]}),
        });
        assert_eq!(
            put,
            Request {
                method: Method::Put,
                path: "/store/k".into(),
                body: Some(json!({"value": {"a": [1, null]}})),
            }
        );
        let delete = request_for(&Command::Delete {
            node: node(),
            key: "k".into(),
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
