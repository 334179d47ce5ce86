"""Errors of the runtime, beside the core's (`consensus.ConsensusError` and its subclasses).

Each carries `indeterminate`: true when the operation may or may not have taken effect (the client
cannot know without reading), false when it certainly did not.
"""

from __future__ import annotations

from consensus._core import ConsensusError, NotLeaderError, ProposalDroppedError


class LeadershipLostError(ConsensusError):
    """The leader that accepted the proposal lost its leadership before the entry was applied; the
    entry may still be committed by the next leader."""

    indeterminate = True


class RequestTimeoutError(ConsensusError):
    """The node gave up waiting (``request_timeout``); a write may still be applied later."""

    indeterminate = True


class BusyError(ProposalDroppedError):
    """Too many requests are waiting (``max_pending``); nothing was proposed. Retry later."""

    indeterminate = False
    reason = "too_many_pending_requests"


class NodeStoppedError(ConsensusError):
    """The node stopped (shutdown, or a fatal storage error). `indeterminate` is true for a
    request that was already waiting (it may have been applied), false for one refused at once."""

    def __init__(self, message: str, *, indeterminate: bool = False) -> None:
        super().__init__(message)
        self.indeterminate = indeterminate


def not_leader(leader_hint: int) -> NotLeaderError:
    """A `NotLeaderError` carrying the leader this node knows (0: unknown)."""
    return NotLeaderError(f"not the leader (leader hint: {leader_hint})", leader_hint=leader_hint)


__all__ = ["BusyError", "LeadershipLostError", "NodeStoppedError", "RequestTimeoutError", "not_leader"]
