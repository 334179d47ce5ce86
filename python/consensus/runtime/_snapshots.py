"""Snapshots of a node: what they hold (the application's snapshot and the address book, one
msgpack map), taking one in the background every ``snapshot_entries`` applied entries (the
driver keeps persisting and applying meanwhile), and installing one the leader sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple

import msgpack

from consensus._core import StorageError
from consensus.errors import storage_error
from consensus.runtime._membership import MemberAddress

if TYPE_CHECKING:
    from consensus.runtime._node import Node

log = logging.getLogger("consensus.node")

SNAPSHOT_FORMAT = 1


def snapshot_encoder(state_machine: Any, addresses: Mapping[int, MemberAddress]) -> Callable[[], bytes]:
    """Captures the replicated state now; the returned function encodes it, on any thread.
    A state machine with `snapshot_writer()` is captured cheaply and encoded off the loop;
    one with only `snapshot()` is encoded here."""
    writer = getattr(state_machine, "snapshot_writer", None)
    app: Callable[[], bytes]
    if writer is not None:
        app = writer()
    else:
        data = state_machine.snapshot()
        app = lambda: data  # noqa: E731
    book = {str(i): [a.peer, a.client] for i, a in sorted(addresses.items())}

    def encode() -> bytes:
        return msgpack.packb({"format": SNAPSHOT_FORMAT, "app": app(), "addresses": book}, use_bin_type=True)

    return encode


def decode_snapshot(data: bytes) -> Tuple[Any, Dict[int, MemberAddress]]:
    """`(application snapshot, address book)`; damaged bytes are a `StorageError`."""
    try:
        envelope = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(envelope, dict) or envelope.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unknown snapshot format {envelope.get('format') if isinstance(envelope, dict) else '?'}")
        app = envelope["app"]
        addresses = {int(k): MemberAddress(str(v[0]), str(v[1])) for k, v in envelope["addresses"].items()}
    except (ValueError, KeyError, TypeError, IndexError, msgpack.ExtraData) as exc:
        raise storage_error("corrupt", f"snapshot data is damaged: {exc}") from exc
    return app, addresses


class Snapshots:
    """Takes the node's snapshots, one at a time, beside the Ready loop."""

    def __init__(self, node: "Node", index: int) -> None:
        self._node = node
        #: The index of the latest snapshot (taken or installed).
        self.index = index
        #: Snapshots are encoded and written here, beside the IO thread, so Readies never wait.
        self.io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"consensus-snap-{node.id}")
        self.task: "Optional[asyncio.Task[int]]" = None

    def maybe_start(self) -> None:
        every = self._node.options.snapshot_entries
        if every <= 0 or self._node.applied_index - self.index < every or self.task is not None:
            return
        # In the background: the driver keeps persisting and applying while it is encoded and
        # written (the storage writes the file without holding its lock).
        self.start()

    def start(self) -> "asyncio.Task[int]":
        if self.task is None:
            self.task = asyncio.ensure_future(self.take())
            self.task.add_done_callback(self._done)
        return self.task

    def _done(self, task: "asyncio.Task[int]") -> None:
        self.task = None
        if task.cancelled():
            return
        exc = task.exception()
        node = self._node
        if isinstance(exc, StorageError) or (exc is not None and not isinstance(exc, Exception)):
            if not node._stopped:  # a storage failure, or a panic in the storage: stop loudly
                node._fatal(exc)
        elif exc is not None and not node._stopped:
            log.error("node %d: snapshot failed: %s", node.id, exc)

    async def take(self) -> int:
        node = self._node
        index = node.applied_index
        if index <= self.index:
            return self.index
        encode = node.snapshot_encoder()
        storage = node.storage

        def write() -> None:
            storage.compact(index, encode())

        assert node.loop is not None
        try:
            await node.loop.run_in_executor(self.io, write)
        except StorageError as exc:
            if exc.kind == "compacted":
                return self.index  # a newer snapshot (from the leader) came first
            raise
        self.index = max(self.index, index)
        node.stats.snapshots_taken += 1
        return index

    def installed(self, index: int) -> None:
        self.index = index
        self._node.stats.snapshots_installed += 1


__all__ = ["SNAPSHOT_FORMAT", "Snapshots", "decode_snapshot", "snapshot_encoder"]
