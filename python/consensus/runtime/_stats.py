"""What a node measures: the counters it keeps (exported by `consensus.service.NodeMetrics` and
`Node.status`) and the latencies it reports to an observer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class LatencyObserver(Protocol):
    """Receives the node's latency observations (`consensus.service.NodeMetrics` is one)."""

    def observe(self, name: str, seconds: float) -> None: ...


@dataclass
class NodeStats:
    proposals: int = 0
    proposals_failed: int = 0
    reads: int = 0
    elections: int = 0
    leader_changes: int = 0
    bad_frames: int = 0
    #: Frames from peers that the core refused (well-formed but invalid); dropped.
    refused_frames: int = 0
    frames_dropped: int = 0
    #: Committed entries that could not be applied (a conf change that does not decode); skipped.
    entries_skipped: int = 0
    readies: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0


__all__ = ["LatencyObserver", "NodeStats"]
