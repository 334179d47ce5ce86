"""`BlockingNode`: a synchronous facade over `Node`, for callers that are not async."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Dict, Optional

from consensus.runtime._node import Node


class BlockingNode:
    """A thread-safe synchronous facade: runs a `Node` on its own event loop in a background
    thread, for callers that are not async. Every method may be called from any thread."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"consensus-node-{node.id}", daemon=True)
        self._thread.start()
        self._call(node.start())

    def _call(self, coro: Any, timeout: Optional[float] = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def propose(self, command: bytes, *, timeout: Optional[float] = None) -> Any:
        return self._call(self.node.propose(command, timeout=timeout))

    def read_index(self, *, timeout: Optional[float] = None) -> int:
        return self._call(self.node.read_index(timeout=timeout))

    def status(self) -> Dict[str, Any]:
        async def status() -> Dict[str, Any]:
            return self.node.status()

        return self._call(status())

    def call(self, fn: Any, *args: Any) -> Any:
        """Runs ``fn(*args)`` on the node's loop (for reading the state machine consistently)."""

        async def run() -> Any:
            return fn(*args)

        return self._call(run())

    def stop(self) -> None:
        if not self._loop.is_running():
            return
        self._call(self.node.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> "BlockingNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["BlockingNode"]
