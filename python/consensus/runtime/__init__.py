"""The runtime: `Node` drives one protocol core on asyncio with its storage, a transport and a state
machine (the Ready loop of docs/design.md §2), `BlockingNode` wraps it for synchronous callers.
Beside it: the peers' failure detectors and the data directory's identity and start gate.
"""

from consensus.runtime._blocking import BlockingNode
from consensus.runtime._datadir import DataDirectory, Identity, storage_is_empty
from consensus.runtime._health import HeartbeatTimeoutDetector, PeerHealth, PhiAccrualDetector
from consensus.runtime._membership import MemberAddress
from consensus.runtime._node import Node
from consensus.runtime._options import NodeOptions
from consensus.runtime._stats import LatencyObserver, NodeStats

__all__ = [
    "BlockingNode",
    "DataDirectory",
    "HeartbeatTimeoutDetector",
    "Identity",
    "LatencyObserver",
    "MemberAddress",
    "Node",
    "NodeOptions",
    "NodeStats",
    "PeerHealth",
    "PhiAccrualDetector",
    "storage_is_empty",
]
