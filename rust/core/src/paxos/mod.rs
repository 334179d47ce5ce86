//! Multi-Paxos: ballots `(round, node)`, Phase 1 once per leadership over every slot from the first
//! one not known chosen, pipelined Phase 2 within a window of `max_inflight_slots` slots, batching of
//! client commands into one slot value, catch-up and snapshots for lagging replicas and read-index
//! reads. Same Ready contract as Raft (docs/design.md §2); the design and its reasons are in `docs/paxos.md`.

pub mod config;
pub mod core;
pub mod membership;
pub mod message;
pub mod raw_node;
pub mod storage;
pub mod validate;
pub mod wire;

pub use self::config::{Config, ReadOnlyOption};
pub use self::core::Paxos;
pub use self::membership::{decode_reconfig, encode_reconfig, Membership};
pub use self::message::*;
pub use self::raw_node::{PeerStatus, RawNode, Ready, ReadyMark, Status};
pub use self::storage::{MemStorage, MemStorageCore, PaxosStorage};
pub use crate::contract::ReadState;
