"""Errors of the runtime, beside the core's (`consensus.ConsensusError` and its subclasses), and the
one place the Python side builds a core error with its typed attribute.

Each runtime error carries `indeterminate`: true when the operation may or may not have taken effect
(the client cannot know without reading), false when it certainly did not. Callers branch on the
type and on the typed attribute (`NotLeaderError.leader_hint`, `ProposalDroppedError.reason`,
`ConfigError.field`, `StorageError.kind`), never on the message text.
"""

from __future__ import annotations

from consensus._core import ConfigError, ConsensusError, NotLeaderError, ProposalDroppedError, StorageError


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


# Every core error is built with its typed attribute as a keyword (docs/design.md §3), here once.


def not_leader(leader_hint: int) -> NotLeaderError:
    """A `NotLeaderError` carrying the leader this node knows (0: unknown)."""
    return NotLeaderError(f"not the leader (leader hint: {leader_hint})", leader_hint=leader_hint)


def config_error(field: str, reason: str) -> ConfigError:
    """A `ConfigError` whose message and `.field` name the offending setting or argument."""
    return ConfigError(f"{field}: {reason}", field=field)


def proposal_dropped(reason: str, message: str) -> ProposalDroppedError:
    """A `ProposalDroppedError` with its `reason` code: nothing was proposed; retry."""
    return ProposalDroppedError(message, reason=reason)


def storage_error(kind: str, message: str) -> StorageError:
    """A `StorageError` of `kind` ("corrupt", "io", "compacted", ...)."""
    return StorageError(message, kind=kind)


__all__ = [
    "BusyError",
    "LeadershipLostError",
    "NodeStoppedError",
    "RequestTimeoutError",
    "config_error",
    "not_leader",
    "proposal_dropped",
    "storage_error",
]
