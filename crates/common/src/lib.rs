//! What the `treecache` node and `treecache-cli` share, so that each rule is
//! written once.
//!
//! # Modules
//! - [`units`]: sizes (`64MiB`, `10MB`, `1G`) and durations (`5`, `0.5`,
//!   `250ms`, `2s`, `1m`), as flags and environment variables give them.
//! - [`segment`]: a key percent-encoded as one URL path segment, and a
//!   segment decoded back.
//! - [`names`]: node names, `NODE-{id}`, formatted and parsed strictly.
//! - [`nodes`]: the `/nodes` document, [`nodes::NodesDoc`] and
//!   [`nodes::NodeEntry`].
//! - [`drawing`]: the `/nodes` document drawn as an indented tree.
//! - [`tls`]: the client side of TLS: rustls trusting one CA's certificates.
//!
//! No I/O anywhere: pure functions and data types.

pub mod drawing;
pub mod names;
pub mod nodes;
pub mod segment;
pub mod tls;
pub mod units;
