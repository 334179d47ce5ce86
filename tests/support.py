"""Helpers shared by the test modules (imported as `support`; pytest puts tests/ on the path).

Waits are bounded only so that a bug fails its test instead of hanging it: they assert nothing
about time.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, List, Tuple, Union

from consensus import raft

#: How long one test's event loop may run before the test fails as hung.
RUN_BOUND_SECONDS = 120.0


def run(test: Union[Awaitable[Any], Callable[[], Awaitable[Any]]], bound: float = RUN_BOUND_SECONDS) -> Any:
    """Runs a coroutine (or a function returning one) on a fresh event loop, bounded."""
    coroutine = test if inspect.isawaitable(test) else test()
    return asyncio.run(asyncio.wait_for(coroutine, bound))


async def eventually(check: Callable[[], bool], what: str = "the condition", timeout: float = 30.0) -> None:
    """Returns once `check()` holds; fails the test naming `what` if it does not within `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


def event_loop_factories() -> List[Any]:
    """pytest params of the event loops the runtime supports: the stdlib's and uvloop's."""
    import pytest

    factories: List[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        factories.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip(reason="uvloop not installed")))
    else:
        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


def run_on(new_loop: Callable[[], asyncio.AbstractEventLoop], coroutine: Awaitable[Any], bound: float = RUN_BOUND_SECONDS) -> Any:
    """Runs `coroutine` on a loop from `new_loop` (one of `event_loop_factories`), bounded."""
    loop = new_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coroutine, bound))
    finally:
        loop.close()


class Journal:
    """A state machine that records every command and answers with its index."""

    def __init__(self) -> None:
        self.commands: List[bytes] = []

    def apply(self, index: int, command: bytes) -> Any:
        self.commands.append(command)
        return {"index": index, "count": len(self.commands)}

    def snapshot(self) -> bytes:
        return b"\n".join(self.commands)

    def restore(self, data: bytes) -> None:
        self.commands = data.split(b"\n") if data else []


def frame(sender: int, to: int, seq: int) -> bytes:
    """A real Raft frame whose `commit` field carries a sequence number (for transport tests)."""
    return raft.Message(type=raft.MessageType.HEARTBEAT, from_=sender, to=to, term=1, commit=seq).encode()


def seq_of(data: bytes) -> int:
    return raft.decode(data).commit


class Inbox:
    """A transport's deliver() callback that decodes like a node would and records (peer, seq)."""

    def __init__(self) -> None:
        self.received: List[Tuple[int, int]] = []

    def __call__(self, peer: int, data: bytes) -> None:
        self.received.append((peer, seq_of(data)))  # raft.decode raises DecodeError on garbage

    def from_peer(self, peer: int) -> List[int]:
        return [seq for sender, seq in self.received if sender == peer]
