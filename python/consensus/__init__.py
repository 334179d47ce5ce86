"""consensus: fault-tolerant replication for Python services.

Raft and Multi-Paxos cores written in Rust (sans-IO, deterministic), driven from Python through one
Ready contract: persist, then send, then apply, then advance (docs/design.md). The package:

- `consensus.raft`, `consensus.paxos`: the cores and their storage; `consensus.protocols`: the
  registry the runtime reads them from.
- `consensus.runtime`: `Node` runs a core on asyncio with durable storage, a transport and a state
  machine.
- `consensus.transport`: TCP (optionally mutual TLS) and in-memory transports.
- `consensus.statemachines`: the `StateMachine` protocol and the built-ins.
- `consensus.service`: `consensus serve` (one node as a process with an HTTP KV service), its
  client and the command line.
- `consensus.testing`: local clusters and the demo; `consensus.sim`: the deterministic simulator.
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
from consensus.runtime import BlockingNode, Node, NodeOptions  # noqa: E402
from consensus.statemachines import Counter, KVStore, Lock, ReplicatedDict, StateMachine  # noqa: E402

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
