//! HTTP, both ends: the server that answers clients and other nodes
//! (`gate`: the accept loop and its limits, in front of tiny_http;
//! `server`: tiny_http and the worker pools, `pool` the one that grows;
//! `api`: routing and handlers;
//! `docs`: the embedded OpenAPI document and its Swagger page), the
//! client that calls other nodes (`client`, the real implementation of the
//! node's seams; `resolve`, its name lookups bounded in time), and the TLS
//! of both ends (`tls`). What travels between nodes is defined in `wire`,
//! not here.

pub mod api;
pub mod client;
pub mod docs;
mod gate;
mod pool;
mod resolve;
pub mod server;
pub mod tls;
