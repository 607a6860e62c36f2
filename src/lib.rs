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
//! - `launch/`: `treecache node`, the wiring from flags to a serving node,
//!   and the reading of what the flags point at (`files`: the cluster key,
//!   tokens, TLS certificates, the host name); `logging`: its log lines
//!   (RFC 3339 timestamps, text or JSON), without the ZooKeeper client's
//!   own records.
//! - `config`: flags and environment into one validated `Config`, from one
//!   table (`FLAGS`) of each flag's name, variable, default, help and parser.
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
//!   for tests (`fake`), what the policy refuses (`error`) and what a
//!   request can fail with (`failed`).
//! - `root/`: what only the root group does (the processes started with the
//!   root's id), below the node and never calling it: the group's state and
//!   its fencing (`group`), following the election and taking over
//!   (`election`), becoming the serving primary (`bootstrap`), the rules and
//!   state of replication (`replication`) and its two ends (`primary`: a
//!   write committed, the standbys' catch-up; `standby`), the slot table
//!   (`membership`), joins, versions, retried writes applied once (`dedup`).
//!   It tells the process what happened through its `Host`.
//! - `store/`: the data under per-shard locks: values and LRU, fills and
//!   fences, the root's writes, the directory of holders, release notices.
//! - `flight`: one upstream fill shared by concurrent misses.
//! - `startup`: bringing a node into the tree (joining, registering), or
//!   running the root group's election with the node as the root's host.
//! - `lease`: a ZooKeeper session as a lease, and the `Sessions` seam that
//!   the registry implements for the node and the root.
//! - `registry/`: ZooKeeper: the handle and its bounded calls (`mod.rs`), a
//!   client guarded against the crate's weaknesses, each session learned
//!   (`client`, `handshake`), the registrations it keeps (`keep`), znode
//!   reads and writes (`znodes`), the layout of the cluster's znodes
//!   (`layout`), this node's sessions as leases and other nodes' liveness
//!   (`sessions`, the node's `Sessions` seam).
//! - `tree`: slot arithmetic (no I/O); `shards`: hash slots of keys and
//!   the map of which root group (shard) owns them (no I/O); `deadline`: time budgets across hops;
//!   `awaited`: a value one thread sets and others wait for, for a while;
//!   `expiry`: when keys with a time to live expire, as deadlines, time left
//!   and Unix times; `input`: what clients send, validated; `precondition`:
//!   versions as ETags, and conditional requests; `metrics`: counters in the
//!   Prometheus text format; `process`: this process's signals and limits.
//! - `wal/`: the root's data directory: the log, snapshots, recovery, compaction.
//!
//! Each layer fails with its own error (`StoreError`, `WalError`,
//! `RootError`, which passes on those below it, `UpstreamError`,
//! `AuthError`, `NodeError`); `node::failed::Error` holds any of them, and
//! `http::api`'s failure table alone turns one into a status and a
//! sentence. Imports run one way: `scripts/import-scan.py` (run in CI)
//! finds no cycle and nothing below the node importing it.
//!
//! `treecache cluster` (a whole cluster on one machine) is the binary's
//! own (`src/cluster/`), with the throwaway ZooKeeper and the child
//! processes of the `treecache-local` crate, which the tests use too.

pub mod auth;
mod awaited;
mod config;
mod deadline;
mod expiry;
mod flight;
mod http;
mod input;
pub mod launch;
mod lease;
mod logging;
mod metrics;
mod node;
mod peer;
mod precondition;
mod process;
pub mod registry;
mod root;
pub mod shards;
mod startup;
mod store;
mod tree;
mod wal;
mod wire;

pub use config::default_threads;
pub use config::{flags_usage, FLAGS};

// What the binary's `treecache cluster` uses of the node: the flags'
// checks, the tree's size, the join it signs, and this process's signals.
pub use config::{node_name, parse_host_port, TlsFiles};
pub use http::tls::read_ca;
pub use process::{catch_stop_signals, raise_open_files_limit, stop_requested};
pub use tree::Tree;
pub use wire::{Headers, NodesDoc, AUTH_HEADER, JOIN_PATH};
