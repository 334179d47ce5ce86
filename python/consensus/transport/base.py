"""The transport interface shared by the TCP and the in-memory transports, and their common parts.

A transport moves whole core frames (docs/wire-format.md §2) between authenticated peers. It never
decodes a protocol message: the node's core does, and tells the transport through `DecodeError`
when a peer sent bytes it rejects.
"""

from __future__ import annotations

import abc
import logging
import math
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Set

from consensus import defaults, protocols
from consensus._core import DecodeError
from consensus.errors import config_error
from consensus.config import parse_address
from consensus.transport.handshake import GREETING_FLAGS_KNOWN

logger = logging.getLogger("consensus.transport")

#: Every frame is at least this long: a 7-byte header and a 4-byte CRC32C (wire-format.md §2).
FRAME_BYTES_MIN = 11
#: The largest frame a receiver accepts unless configured otherwise (wire-format.md §3).
FRAME_BYTES_MAX_DEFAULT = defaults.FRAME_BYTES_MAX
#: The largest value of the u32 length field.
FRAME_BYTES_LIMIT = 0xFFFF_FFFF
#: Node ids travel as u64; 0 means "none" throughout the project.
NODE_ID_MAX = defaults.NODE_ID_MAX

#: Called for every frame received from an authenticated peer: ``deliver(peer_id, frame)``.
Deliver = Callable[[int, bytes], None]

PROTOCOL_IDS: Dict[str, int] = protocols.protocol_ids()


def no_greeting_flags(peer_id: int) -> int:
    """The default `Transport.greeting_flags`: tell no peer anything."""
    return 0


def ignore_greeting(peer_id: int, flags: int) -> None:
    """The default `Transport.on_greeting`."""


def check_node_id(field: str, value: object) -> int:
    """`value` as a node id (an int in 1..2**64-1), or a `ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(field, f"a node id must be an int, got {type(value).__name__}")
    if not 1 <= value <= NODE_ID_MAX:
        raise config_error(field, f"a node id must be in 1..2**64-1, got {value}")
    return value


def check_positive_int(field: str, value: object, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise config_error(field, f"must be a positive int, got {value!r}")
    if maximum is not None and value > maximum:
        raise config_error(field, f"must be at most {maximum}, got {value}")
    return value


def check_positive_seconds(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise config_error(field, f"must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise config_error(field, f"must be a finite number of seconds > 0, got {value!r}")
    return seconds


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_peers(node_id: int, peers: object, *, addresses: bool = True) -> Dict[int, str]:
    """Validate a peer map ``{id: "host:port"}`` that excludes ``node_id``; return a copy.

    With ``addresses=False`` an address may be any string (the in-memory network ignores it)."""
    if not isinstance(peers, Mapping):
        raise config_error("peers", f"must be a mapping {{id: 'host:port'}}, got {type(peers).__name__}")
    checked: Dict[int, str] = {}
    for peer_id, address in peers.items():
        check_node_id("peers", peer_id)
        if peer_id == node_id:
            raise config_error("peers", f"the peer map must not contain this node's own id {node_id}")
        if addresses:
            parse_address(address, "peers")
        elif not isinstance(address, str):
            raise config_error("peers", f"an address must be a string, got {address!r}")
        checked[peer_id] = address
    return checked


def check_frame(frame: object) -> int:
    """The length of an outgoing frame; a malformed one is the caller's bug (`ValueError`)."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise TypeError(f"a frame must be bytes, got {type(frame).__name__}")
    size = len(frame)
    if size < FRAME_BYTES_MIN or int.from_bytes(frame[:4], "little") != size:
        raise ValueError(f"not a frame: {size} bytes whose length field does not match (wire-format.md §2)")
    return size


class PeerStats:
    """Counters for one peer; they survive reconnections."""

    __slots__ = (
        "frames_sent",
        "frames_received",
        "bytes_sent",
        "bytes_received",
        "dropped",
        "bad_frames",
        "reconnects",
        "connections",
    )

    def __init__(self) -> None:
        self.frames_sent = 0
        self.frames_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        #: Frames refused by `send` because the queue was full or too large for the link.
        self.dropped = 0
        #: Frames that broke the connection: bad length, truncated, or rejected by the core.
        self.bad_frames = 0
        #: Connections established after the first one.
        self.reconnects = 0
        self.connections = 0

    def connected_once(self) -> None:
        if self.connections:
            self.reconnects += 1
        self.connections += 1


class SendQueue:
    """A FIFO of frames bounded both in count and in bytes. Invariant: ``size_bytes`` is the sum."""

    __slots__ = ("frames", "size_bytes", "frames_max", "bytes_max")

    def __init__(self, frames_max: int, bytes_max: int) -> None:
        self.frames: Deque[bytes] = deque()
        self.size_bytes = 0
        self.frames_max = frames_max
        self.bytes_max = bytes_max

    def __len__(self) -> int:
        return len(self.frames)

    def offer(self, frame: bytes, size: int) -> bool:
        """Append unless a bound would be exceeded; return whether it was appended."""
        if len(self.frames) >= self.frames_max or self.size_bytes + size > self.bytes_max:
            return False
        self.frames.append(frame)
        self.size_bytes += size
        return True

    def take(self, bytes_max: int) -> List[bytes]:
        """Remove frames from the front: at least one, then more while under ``bytes_max``."""
        batch: List[bytes] = []
        taken_bytes = 0
        frames = self.frames
        while frames and (not batch or taken_bytes + len(frames[0]) <= bytes_max):
            frame = frames.popleft()
            taken_bytes += len(frame)
            batch.append(frame)
        self.size_bytes -= taken_bytes
        return batch

    def clear(self) -> int:
        """Drop everything; return how many frames were dropped."""
        count = len(self.frames)
        self.frames.clear()
        self.size_bytes = 0
        return count


class Transport(abc.ABC):
    """Moves whole frames between this node and its peers; never decodes them.

    `deliver(peer_id, frame)` runs on the event loop, in arrival order per peer. If it raises
    `consensus.DecodeError` the peer sent bytes the core rejected: the transport drops that
    peer's connection and counts a bad frame. Any other exception is logged.
    """

    node_id: int
    #: Called with the peer id for every frame that arrives (keepalives included), before it is
    #: delivered: the failure detectors' input. Set by the node.
    on_arrival: Optional[Callable[[int], None]] = None
    #: ``greeting_flags(peer_id)``: the greeting flags (handshake.GREETING_*, docs/wire-format.md
    #: §9.1) this node sends to that peer in each handshake. Set by the node; default 0.
    greeting_flags: Callable[[int], int] = staticmethod(no_greeting_flags)
    #: ``on_greeting(peer_id, flags)``: called once per completed handshake, in either direction,
    #: with the flags the peer sent, before any frame of that connection is delivered.
    on_greeting: Callable[[int, int], None] = staticmethod(ignore_greeting)

    @abc.abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Begin listening and dialing; frames from peers go to `deliver`."""

    @abc.abstractmethod
    def send(self, to: int, frame: bytes) -> bool:
        """Queue `frame` for peer `to`; False (and counted) when unknown or its queue is full.

        Never blocks and never raises for network trouble; a frame lost in the network later is
        not reported (the protocols tolerate loss).
        """

    @abc.abstractmethod
    def set_peers(self, peers: Mapping[int, str]) -> None:
        """Replace the peer map ``{id: "host:port"}`` (this node excluded); removed peers are dropped."""

    @abc.abstractmethod
    def stats(self) -> Dict[int, Dict[str, Any]]:
        """Per peer: connected, frames_sent, frames_received, bytes_sent, bytes_received, dropped,
        bad_frames, reconnects, queued."""

    @abc.abstractmethod
    def disconnect(self, peer_id: int, reason: str = "") -> None:
        """Drop the connection to `peer_id` after the node rejected one of its frames later (a
        frame it had queued); counts a bad frame. The dialing side reconnects with backoff."""

    @abc.abstractmethod
    def greet_again(self, peer_id: int) -> None:
        """Make the handshake with `peer_id` once more, because the greeting flags this node sends
        it changed (its data directory now holds state). Not an error: nothing is counted."""

    @abc.abstractmethod
    def greeted_peers(self) -> Set[int]:
        """The peers a handshake has completed with since `start` (a copy)."""

    @property
    @abc.abstractmethod
    def rejected_connections(self) -> int:
        """Connections refused during the handshake (wrong cluster, unknown id, TLS, garbage...)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening, close every connection and task; idempotent."""


def greeting_flags_for(transport: Transport, peer_id: int) -> int:
    """The flags `transport` sends to `peer_id`; a callback that fails or returns something that
    is not a flag set raises `ValueError`, and the caller drops the connection rather than send
    flags that may be wrong."""
    try:
        flags = transport.greeting_flags(peer_id)
    except Exception as error:  # noqa: BLE001 - the node's callback; the connection fails, not the node
        logger.exception("greeting_flags(%d) failed", peer_id)
        raise ValueError(f"greeting_flags({peer_id}) failed: {error}") from None
    if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags <= 0xFF:
        raise ValueError(f"greeting_flags({peer_id}) returned {flags!r}, not a flag byte")
    return flags & GREETING_FLAGS_KNOWN


def report_greeting(transport: Transport, peer_id: int, flags: int) -> None:
    """Call `transport.on_greeting`; a failure is logged, never raised into the transport."""
    try:
        transport.on_greeting(peer_id, flags)
    except Exception:  # noqa: BLE001 - a bug in the node must not kill the connection
        logger.exception("on_greeting(%d, %d) failed", peer_id, flags)


def deliver_frame(deliver: Deliver, peer_id: int, frame: bytes) -> bool:
    """Call `deliver`; return False when the core rejected the frame (`DecodeError`)."""
    try:
        deliver(peer_id, frame)
    except DecodeError as error:
        logger.warning("peer %d sent a frame the core rejected: %s", peer_id, error)
        return False
    except Exception:  # noqa: BLE001 - a bug in the caller must not kill the transport
        logger.exception("deliver() failed for a frame from peer %d", peer_id)
    return True


__all__ = [
    "FRAME_BYTES_LIMIT",
    "FRAME_BYTES_MAX_DEFAULT",
    "FRAME_BYTES_MIN",
    "NODE_ID_MAX",
    "PROTOCOL_IDS",
    "Deliver",
    "PeerStats",
    "SendQueue",
    "Transport",
    "check_frame",
    "check_node_id",
    "check_peers",
    "check_positive_int",
    "check_positive_seconds",
    "deliver_frame",
    "format_address",
    "greeting_flags_for",
    "ignore_greeting",
    "no_greeting_flags",
    "report_greeting",
]
