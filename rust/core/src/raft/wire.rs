//! Raft message encoding (to be written).
