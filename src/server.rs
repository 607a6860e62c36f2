//! The HTTP server: tiny_http with two fixed pools of worker threads.
//!
//! - Receivers (`--threads` of them) take requests off the socket and answer
//!   everything that needs no other node. They may wait on children (an
//!   invalidation passed down), never on a parent.
//! - The upstream pool runs work that waits on the parent or the root. It is
//!   separate so that however many requests wait upstream, receivers remain
//!   to answer the invalidations those very requests may depend on.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::api;
use crate::node::Node;

/// Runs the server until the process ends.
pub fn serve(node: Arc<Node>, server: tiny_http::Server, threads: usize) {
    let server = Arc::new(server);
    let upstream_threads = (threads * 4).clamp(16, 256);
    let (tx, rx) = mpsc::channel::<api::Deferred>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..upstream_threads {
        let node = node.clone();
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("upstream-{i}"))
            .spawn(move || loop {
                let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                match job {
                    Ok(job) => api::finish(&node, job),
                    Err(_) => return,
                }
            })
            .expect("spawn an upstream worker");
    }
    let receivers: Vec<_> = (0..threads)
        .map(|i| {
            let node = node.clone();
            let server = server.clone();
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || loop {
                    match server.recv() {
                        Ok(request) => {
                            if let Some(job) = api::handle(&node, request) {
                                let _ = tx.send(job);
                            }
                        }
                        Err(e) => log::warn!("accepting a request failed: {e}"),
                    }
                })
                .expect("spawn an HTTP worker")
        })
        .collect();
    for r in receivers {
        let _ = r.join();
    }
}
