//! The local-cluster tooling, apart from the node: `treecache cluster`
//! (`cluster`), a throwaway ZooKeeper from the local installation
//! (`zookeeper`), and the child processes both start (`children`). The
//! tests and the benchmark use the same pieces.

pub mod children;
pub mod cluster;
pub mod zookeeper;
