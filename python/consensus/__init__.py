"""consensus: fault-tolerant replication for Python services.

Raft, Multi-Paxos and Zab cores written in Rust (sans-IO, deterministic), driven from Python
through one Ready contract: persist, then send, then apply, then advance.
"""

from consensus._core import (
    ConfigError,
    ConsensusError,
    DecodeError,
    NotLeaderError,
    ProposalDroppedError,
    ProtocolError,
    Role,
    StorageError,
    __version__,
)

from consensus import raft, sim  # noqa: E402  (submodules are part of the public surface)

__all__ = [
    "ConfigError",
    "ConsensusError",
    "DecodeError",
    "NotLeaderError",
    "ProposalDroppedError",
    "ProtocolError",
    "Role",
    "StorageError",
    "__version__",
    "raft",
    "sim",
]
