//! Raft: the complete protocol of the Raft paper and thesis, with the feature set of etcd-io/raft.

pub mod message;
pub mod wire;

pub use message::*;
