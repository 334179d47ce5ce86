"""The door: frames from peers wait here, per peer and bounded, until the driver steps them into the
core in turns (docs/security.md).

Each peer has its own queue and the driver takes them in turn, so a peer that floods cannot starve
another's heartbeats. Whatever a peer sends, the worst outcome is a dropped frame: the core
validates every field before it changes state, and a frame's sender must be the peer its
connection authenticated as. A frame the core refuses is dropped and counted, and a peer that
keeps sending them (or sends bytes that are no message at all) is disconnected.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable, Deque, Dict

from consensus._core import ConsensusError, DecodeError, StorageError
from consensus.runtime._stats import NodeStats

log = logging.getLogger("consensus.node")

#: Frames waiting for the driver, per peer; past this, that peer's frames are dropped (the
#: protocols retransmit).
INBOX_FRAMES_PER_PEER_MAX = 16_384
#: ... and bytes waiting per peer (a slow fsync must not let a fast peer fill the memory).
INBOX_BYTES_PER_PEER_MAX = 64 * 1024 * 1024
#: Frames the driver takes from one peer's queue before moving on to the next peer.
INBOX_FRAMES_PER_TURN = 64
#: Refused frames (invalid for the core) in a row after which the peer is disconnected.
REFUSALS_BEFORE_DISCONNECT = 8


class Inbox:
    def __init__(self, stats: NodeStats, wake: Callable[[], None], disconnect: Callable[[int, str], None]) -> None:
        self._stats = stats
        self._wake = wake
        self._disconnect = disconnect
        #: peer -> frames waiting for the driver (and their bytes); fed to the core in turns.
        self._queues: Dict[int, Deque[bytes]] = {}
        self._bytes: Dict[int, int] = {}
        #: peer -> frames refused in a row (reset by an accepted one).
        self._refusals: Dict[int, int] = {}

    def __bool__(self) -> bool:
        return bool(self._queues)

    def on_frame(self, peer: int, frame: bytes) -> None:
        """The transport's delivery callback."""
        queue = self._queues.get(peer)
        if queue is None:
            queue = self._queues[peer] = deque()
            self._bytes[peer] = 0
        size = len(frame)
        if len(queue) >= INBOX_FRAMES_PER_PEER_MAX or self._bytes[peer] + size > INBOX_BYTES_PER_PEER_MAX:
            self._stats.frames_dropped += 1
            return
        queue.append(frame)
        self._bytes[peer] += size
        self._wake()

    def step_into(self, step: Callable[..., object]) -> None:
        """Steps every waiting frame into the core (`step(frame, sender=peer)`), peers in turns."""
        queues = self._queues
        while queues:
            for peer in list(queues):
                queue = queues[peer]
                for _ in range(min(len(queue), INBOX_FRAMES_PER_TURN)):
                    frame = queue.popleft()
                    self._bytes[peer] -= len(frame)
                    try:
                        step(frame, sender=peer)
                    except ConsensusError as exc:
                        self._refuse(peer, exc)
                        continue
                    if self._refusals:
                        self._refusals.pop(peer, None)
                if not queue:
                    del queues[peer]

    def _refuse(self, peer: int, exc: ConsensusError) -> None:
        """A frame the core refused: dropped and counted; the peer is disconnected when its bytes
        are no message at all, or after repeated refusals."""
        if isinstance(exc, StorageError):
            raise exc
        if isinstance(exc, DecodeError):
            # Bytes that are not a message: the stream is broken or hostile; drop the connection.
            self._stats.bad_frames += 1
            log.warning("dropping an undecodable frame from peer %d: %s", peer, exc)
            self._disconnect(peer, "undecodable frame")
            return
        self._stats.refused_frames += 1
        refusals = self._refusals.get(peer, 0) + 1
        if refusals <= 3 or refusals % 1000 == 0:
            log.warning("refused a frame from peer %d: %s", peer, exc)
        if refusals >= REFUSALS_BEFORE_DISCONNECT:
            self._disconnect(peer, f"{refusals} refused frames in a row")
            refusals = 0
        self._refusals[peer] = refusals


__all__ = [
    "INBOX_BYTES_PER_PEER_MAX",
    "INBOX_FRAMES_PER_PEER_MAX",
    "INBOX_FRAMES_PER_TURN",
    "REFUSALS_BEFORE_DISCONNECT",
    "Inbox",
]
