//! Name lookups for calls to other nodes, bounded in time.
//!
//! Nodes advertise `host:port`, and a host may be a name (Compose, Vagrant
//! and Kubernetes advertise names). The system resolver has no time bound of
//! its own: when a name's owner has left the network, a lookup may wait for
//! a DNS server that does not answer (glibc waits 5 s before it asks again),
//! and a call bounded by its hop timeout would wait that long before it
//! even starts. So each lookup runs on a thread of its own and is waited for
//! only up to [`Resolver::limit`]; answers are kept for [`FRESH`], and an
//! older answer is used when a new lookup does not finish in time (an
//! address that stopped answering then fails the call as any dead peer
//! does). Addresses given as IP literals are never looked up.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is used without looking the name up again.
const FRESH: Duration = Duration::from_secs(5);
/// How long an older answer stands in for a lookup that did not finish.
const STALE: Duration = Duration::from_secs(300);

/// See the module documentation.
pub struct Resolver {
    limit: Duration,
    known: Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>,
}

impl Resolver {
    /// Lookups waited for at most `limit`.
    pub fn new(limit: Duration) -> Resolver {
        Resolver {
            limit,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The addresses of `netloc` (`host:port`).
    pub fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        if let Ok(address) = netloc.parse::<SocketAddr>() {
            return Ok(vec![address]);
        }
        let known = self.known.lock().unwrap().get(netloc).cloned();
        if let Some((at, addresses)) = &known {
            if at.elapsed() < FRESH {
                return Ok(addresses.clone());
            }
        }
        let (tx, rx) = mpsc::channel();
        let name = netloc.to_string();
        let spawned = std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
            });
        let answer = match spawned {
            Ok(_) => rx.recv_timeout(self.limit).unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "looking up {netloc} took longer than {} ms",
                        self.limit.as_millis()
                    ),
                ))
            }),
            Err(e) => Err(e),
        };
        match answer {
            Ok(addresses) if !addresses.is_empty() => {
                self.known
                    .lock()
                    .unwrap()
                    .insert(netloc.to_string(), (Instant::now(), addresses.clone()));
                Ok(addresses)
            }
            failed => match known {
                Some((at, addresses)) if at.elapsed() < STALE => Ok(addresses),
                _ => failed,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_not_looked_up_and_names_are_kept() {
        let r = Resolver::new(Duration::from_secs(2));
        assert_eq!(
            r.resolve("127.0.0.1:5001").unwrap(),
            vec!["127.0.0.1:5001".parse().unwrap()]
        );
        let first = r.resolve("localhost:5001").unwrap();
        assert!(first.iter().all(|a| a.ip().is_loopback()), "{first:?}");
        assert!(r.known.lock().unwrap().contains_key("localhost:5001"));
        assert_eq!(r.resolve("localhost:5001").unwrap(), first);
    }

    #[test]
    fn a_lookup_that_fails_falls_back_to_an_older_answer() {
        let r = Resolver::new(Duration::from_secs(2));
        let old = vec!["10.0.1.12:5000".parse().unwrap()];
        r.known.lock().unwrap().insert(
            "no-such-host.invalid:5000".into(),
            (Instant::now() - FRESH * 2, old.clone()),
        );
        assert_eq!(r.resolve("no-such-host.invalid:5000").unwrap(), old);
        assert!(Resolver::new(Duration::from_secs(2))
            .resolve("no-such-host.invalid:5000")
            .is_err());
    }
}
