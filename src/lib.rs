//! treecache: a distributed key-value cache whose nodes form a binary tree.
//!
//! The root holds the primary copy of the data; every other node is a
//! read-through cache in front of its parent, kept coherent by invalidations
//! that the root sends down to the nodes holding a key before it applies a
//! write. Membership lives in the root and in ZooKeeper.
//!
//! # Layout
//! A request enters through `http`, is decided by `node`, keeps its data in
//! `store`, and reaches other nodes through the seams of `node::peers`,
//! whose HTTP implementation is `http::client` speaking `wire`.
//!
//! - `launch`: `treecache node`, the wiring from flags to a serving node;
//!   `logging`: its log lines (RFC 3339 timestamps, text or JSON), with the
//!   ZooKeeper client's records routed to `registry`.
//! - `config`: flags and environment into one validated `Config`.
//! - `auth/`: who may do what: the cluster key that signs node-to-node
//!   calls, client tokens, one process per node id.
//! - `http/`: both ends of HTTP: `server` (the one event loop that reads
//!   and writes every connection, with heads parsed by httparse: the
//!   limits, TLS, hits answered in place), `pool` (its workers, started on
//!   demand), `message` (the server's own requests and answers), `api`
//!   (routing: decode, call the node, encode; and in `api/failure` the
//!   one table that makes every error a status and a sentence), `docs`
//!   (openapi.yaml and /docs), `client` (calls to other nodes) and
//!   `resolve` (its name lookups, bounded in time).
//! - `wire`: the node-to-node protocol: every path, header and body, both ends;
//!   `peer`: another node, and what can go wrong calling it (`UpstreamError`).
//! - `node/`: the policy: reads and fills (`read`), many keys at once
//!   (`bulk`), writes (`write`) and invalidations (`invalidate`), flushes
//!   and release notices (`upkeep`), where calls go (`route`), where this
//!   node sits (`position`), the seams (`peers`) and their in-process fakes
//!   for tests (`fake`).
//! - `root/`: what only the root group does (the processes started with the
//!   root's id): electing the primary among them and fencing the ones that
//!   were (`group`), replicating writes to the standbys and their catch-up
//!   (`replication`), the slot table (`membership`), joins, versions and
//!   write locks, retried writes applied once (`dedup`), and becoming the
//!   serving primary (`bootstrap`).
//! - `store/`: the data under per-shard locks: values and LRU, fills and
//!   fences, the root's writes, the directory of holders, release notices.
//! - `flight`: one upstream fill shared by concurrent misses.
//! - `startup`: bringing a node into the tree (joining, registering).
//! - `registry/`: ZooKeeper: a client guarded against the crate's
//!   weaknesses and the registrations it keeps (`mod.rs`), the layout of the
//!   cluster's znodes (`layout`), this node's sessions as leases and other
//!   nodes' liveness (`sessions`, the node's `Sessions` seam).
//! - `tree`: slot arithmetic (no I/O); `deadline`: time budgets across hops;
//!   `awaited`: a value one thread sets and others wait for, for a while;
//!   `expiry`: when keys with a time to live expire, as deadlines, time left
//!   and Unix times; `input`: what clients send, validated; `precondition`:
//!   versions as ETags, and conditional requests; `error`: what a request
//!   can fail with, each layer's own error in a variant (statuses and
//!   sentences are `http::api`'s); `metrics`: counters in the Prometheus
//!   text format; `process`: this process's signals and limits.
//! - `wal/`: the root's data directory: the log, snapshots, recovery, compaction.
//! - `local/`: `treecache cluster` (a whole cluster on one machine), a
//!   throwaway ZooKeeper (one server or an ensemble), and child processes;
//!   used by the tests too.

pub mod auth;
mod awaited;
mod config;
mod deadline;
mod error;
mod expiry;
mod flight;
mod http;
mod input;
pub mod launch;
pub mod local;
mod logging;
mod metrics;
mod node;
mod peer;
mod precondition;
mod process;
pub mod registry;
mod root;
mod startup;
mod store;
mod tree;
mod wal;
mod wire;

pub use config::default_threads;
pub use config::{flags_usage, FLAGS};
