//! Raft: the complete protocol of the Raft paper and thesis, with the feature set of etcd-io/raft
//! (PreVote, CheckQuorum, ReadIndex and lease reads, leadership transfer, snapshots, joint
//! consensus and learners, flow control).

pub mod confchange;
pub mod config;
pub mod core;
pub mod log;
pub mod message;
pub mod progress;
pub mod quorum;
pub mod raw_node;
pub mod read_only;
pub mod storage;
pub mod validate;
pub mod wire;

pub use self::config::Config;
pub use self::core::Raft;
pub use self::message::*;
pub use self::raw_node::{PeerStatus, RawNode, Ready, ReadyMark, Status};
pub use self::read_only::{ReadOnlyOption, ReadState};
