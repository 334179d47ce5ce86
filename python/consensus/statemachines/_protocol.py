"""The contracts between a state machine and the node that drives it: `StateMachine` (what the
runtime applies committed entries to), `Proposer` (what a built-in needs from a running node) and
the async side every built-in shares (`attach`, then propose and decode the answer)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Protocol, runtime_checkable

from consensus._core import ConsensusError


@runtime_checkable
class StateMachine(Protocol):
    """What the runtime applies committed entries to."""

    def apply(self, index: int, command: bytes) -> object:
        """Apply one committed command (deterministic); the result goes to the proposer."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as bytes (identical on replicas with identical state)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot; damaged bytes raise `StorageError`."""
        ...


@runtime_checkable
class Proposer(Protocol):
    """What the built-ins need from a running node (`consensus.Node` provides it)."""

    async def propose(self, command: bytes) -> object:
        """Replicate `command`; resolves with `apply()`'s result for that entry."""
        ...

    async def read_index(self) -> None:
        """Linearizable read barrier: returns once the local applied index covers the read index."""
        ...


class CommandRejectedError(ConsensusError):
    """A command was committed and applied, and the state machine answered with an error.

    `code` is the result's `error` field (`bad_command`, `request_id_reused`, `session_expired`,
    `unknown_session`, `overflow`, ...), `result` the whole error result. Nothing was
    changed by the command.
    """

    code: str
    result: Dict[str, Any]

    def __init__(self, result: Dict[str, Any]) -> None:
        self.code = str(result.get("error", "error"))
        self.result = result
        super().__init__(f"{self.code}: {result.get('message', '')}")


class _Attachable:
    """The async side of a built-in: a proposer to send commands through."""

    _proposer: Optional[Proposer] = None

    def attach(self, proposer: Proposer) -> None:
        """Bind the async helpers to a running node (the runtime calls this)."""
        self._proposer = proposer

    def _require_proposer(self) -> Proposer:
        if self._proposer is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a node: call attach(node) first")
        return self._proposer

    async def _propose(self, command: bytes) -> Any:
        result = await self._require_proposer().propose(command)
        if isinstance(result, dict) and "error" in result:
            raise CommandRejectedError(result)
        return result


__all__ = ["CommandRejectedError", "Proposer", "StateMachine"]
