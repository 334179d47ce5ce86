//! `consensus-core`: sans-IO protocol cores. Nothing in this crate reads a clock, touches a socket or a
//! file, spawns a thread or calls back into Python. Each protocol is a deterministic state machine
//! driven by `tick`, `step` and `propose`, whose output is a `Ready` batch the caller persists, sends,
//! applies and acknowledges with `advance`.

pub mod codec;
pub mod common_config;
pub mod contract;
pub mod entry;
pub mod error;
pub mod limits;
pub mod paxos;
pub mod protocol_id;
pub mod raft;
pub mod rng;
pub mod role;
pub mod sim;

pub use contract::{ProtocolNode, ReadState, ReadyView};
pub use error::{DecodeError, DropReason, Error, Result, StorageError};
pub use protocol_id::ProtocolId;
pub use role::Role;
