//! HTTP, both ends: the server that answers clients and other nodes
//! (`server`: one event loop that reads and writes every connection, with
//! its limits and TLS, and the worker pools behind it, `pool`; `message`:
//! the server's own requests and answers; `api`: routing, handlers and the
//! failure table; `docs`: the embedded OpenAPI document and its Swagger
//! page), the client that calls other nodes (`client`, the real
//! implementation of the node's seams; `resolve`, its name lookups bounded
//! in time), and the TLS of both ends (`tls`). What travels between nodes is defined in `wire`, not here.

pub mod api;
pub mod client;
pub mod docs;
mod message;
mod pool;
mod resolve;
pub mod server;
pub mod tls;
