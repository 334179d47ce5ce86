"""consensus: fault-tolerant replication for Python services.

Raft and Multi-Paxos cores (Zab to come) written in Rust (sans-IO, deterministic), driven from Python
through one Ready contract: persist, then send, then apply, then advance. `consensus.Node` runs a
core on asyncio with durable storage, a TCP transport and a state machine; `consensus serve` runs
one as a process with an HTTP KV service.
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

from consensus import paxos, raft, sim  # noqa: E402  (submodules are part of the public surface)
from consensus.errors import BusyError, LeadershipLostError, NodeStoppedError, RequestTimeoutError  # noqa: E402
from consensus.node import BlockingNode, Node, NodeOptions  # noqa: E402
from consensus.statemachine import Counter, KVStore, Lock, ReplicatedDict, StateMachine  # noqa: E402

__all__ = [
    "BlockingNode",
    "BusyError",
    "ConfigError",
    "ConsensusError",
    "Counter",
    "DecodeError",
    "KVStore",
    "LeadershipLostError",
    "Lock",
    "Node",
    "NodeOptions",
    "NodeStoppedError",
    "NotLeaderError",
    "ProposalDroppedError",
    "ProtocolError",
    "ReplicatedDict",
    "RequestTimeoutError",
    "Role",
    "StateMachine",
    "StorageError",
    "__version__",
    "paxos",
    "raft",
    "sim",
]
