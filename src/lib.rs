//! treecache: a distributed key-value cache whose nodes form a binary tree.
//!
//! The root holds the primary copy of the data; every other node is a
//! read-through cache in front of its parent, kept coherent by invalidations
//! that the root sends down to the nodes holding a key before it applies a
//! write. Membership lives in the root and in ZooKeeper.
//!
//! # Layout
//! - `config`: flags and environment into one validated `Config`.
//! - `tree`: slot arithmetic of the binary tree (no I/O).
//! - `input`: keys, query strings and bodies from clients, validated.
//! - `error`: the error type of the HTTP boundary and its status codes.
//! - `flight`: one upstream fill shared by concurrent misses.
//! - `store`: values, versions, the directory of holders, fill fences, LRU.
//! - `node`: the policy: read through, write at the root, invalidate.
//! - `membership`: the root's slot table and the `/nodes` document.
//! - `upstream`: every call to another node (parent, root, children).
//! - `registry`: ZooKeeper, guarded against its client's weaknesses.
//! - `startup`: registering, rebuilding the table, joining.
//! - `api`: routing and handlers; `server`: tiny_http and the worker pools.
//! - `metrics`: counters in the Prometheus text format.
//! - `docs`: the embedded openapi.yaml and the Swagger UI page.
//! - `cluster`, `zk_local`, `process`: the local-cluster command.

pub mod api;
pub mod cluster;
pub mod config;
pub mod docs;
pub mod error;
pub mod flight;
pub mod input;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod process;
pub mod registry;
pub mod server;
pub mod startup;
pub mod store;
pub mod tree;
pub mod upstream;
pub mod zk_local;
