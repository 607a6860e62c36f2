//! treecache on one machine, apart from the node: a throwaway ZooKeeper
//! from the local installation (`zookeeper`: one server or an ensemble),
//! and the child processes started beside it (`children`: none outlives
//! its parent, each can be limited and signalled, their output copied by
//! whole lines). `treecache cluster`, the tests and the benchmark use the
//! same pieces.

pub mod children;
pub mod zookeeper;
