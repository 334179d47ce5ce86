"""`NodeOptions`: the runtime settings of a node (the protocol's own are `protocols.CoreOptions`)."""

from __future__ import annotations

from dataclasses import dataclass

from consensus import defaults
from consensus.protocols import CoreOptions


@dataclass(frozen=True)
class NodeOptions:
    """Runtime settings of a node (the protocol's own are `protocols.CoreOptions`)."""

    tick_interval: float = defaults.TICK_MS / 1000
    election_ticks: int = defaults.ELECTION_TICKS
    heartbeat_ticks: int = defaults.HEARTBEAT_TICKS
    pre_vote: bool = True
    check_quorum: bool = True
    request_timeout: float = defaults.REQUEST_TIMEOUT_MS / 1000
    #: Proposals and reads waiting at once; more are refused with `BusyError`.
    max_pending: int = defaults.MAX_PENDING_REQUESTS
    #: Take a snapshot (and compact the log) every this many applied entries; 0: never.
    snapshot_entries: int = defaults.SNAPSHOT_ENTRIES
    phi_threshold: float = defaults.PHI_THRESHOLD
    seed: int = 0
    #: The largest entry the core accepts (a command plus its envelope).
    max_entry_bytes: int = defaults.MAX_ENTRY_BYTES

    def core_options(self) -> CoreOptions:
        return CoreOptions(
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            seed=self.seed,
            max_entry_bytes=self.max_entry_bytes,
        )


__all__ = ["NodeOptions"]
