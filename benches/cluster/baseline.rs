//! The baseline: a bare tiny_http server with a node's number of workers,
//! answering the hot keys from a static map with the bytes a node would
//! send. It is this benchmark's binary, re-executed with
//! `--baseline-server PORT`, and it is measured in the same run as the
//! nodes.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common;
use crate::load::{get_body, hot_key, load, small_value, Req, Stats};
use crate::Mode;

/// Keys read by the hit scenarios (and the baseline).
pub const HOT_KEYS: u64 = 1_000;
/// Client connections of the read scenarios.
pub const READERS: usize = 8;

/// Serves `/store/{key}` on `port` until killed.
pub fn serve(port: u16) {
    let map: HashMap<String, Vec<u8>> = (0..HOT_KEYS)
        .map(|i| {
            let key = hot_key(i);
            let body = get_body(&key, &small_value(i)).into_bytes();
            (format!("/store/{key}"), body)
        })
        .collect();
    let map = std::sync::Arc::new(map);
    let server = std::sync::Arc::new(
        tiny_http::Server::http(("127.0.0.1", port)).expect("bind the baseline port"),
    );
    let content_type =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap();
    let workers: Vec<_> = (0..treecache::default_threads())
        .map(|_| {
            let server = server.clone();
            let map = map.clone();
            let content_type = content_type.clone();
            std::thread::spawn(move || loop {
                let Ok(request) = server.recv() else { continue };
                let response = match map.get(request.url()) {
                    Some(body) => tiny_http::Response::from_data(body.clone())
                        .with_header(content_type.clone()),
                    None => tiny_http::Response::from_data(&b"{\"error\":\"not found\"}"[..])
                        .with_status_code(404)
                        .with_header(content_type.clone()),
                };
                let _ = request.respond(response);
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

/// The baseline server process, killed on drop.
struct Baseline {
    child: Child,
    url: String,
}

impl Baseline {
    fn start() -> Baseline {
        let port = common::free_port();
        let mut command = Command::new(std::env::current_exe().expect("this benchmark's path"));
        command
            .args(["--baseline-server", &port.to_string()])
            .stdin(Stdio::null());
        treecache::local::children::die_with_parent(&mut command);
        let child = command.spawn().expect("start the baseline server");
        let url = format!("http://127.0.0.1:{port}");
        common::wait_until(Duration::from_secs(10), "the baseline answers", || {
            common::http::get(&format!("{url}/store/{}", hot_key(0))).0 == 200
        });
        Baseline { child, url }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the baseline server, measures its GET throughput with
/// [`READERS`] connections over the hot keys, and stops it.
pub fn measure(mode: Mode) -> Stats {
    let baseline = Baseline::start();
    load(READERS, mode.warmup, mode.measure, |c, n| {
        let i = (c as u64 * 7919 + n) % HOT_KEYS;
        Some(Req::get(
            format!("{}/store/{}", baseline.url, hot_key(i)),
            200,
        ))
    })
}
