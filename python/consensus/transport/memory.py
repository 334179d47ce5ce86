"""An in-process network of transports for tests: same interface, bounded queues and stats as
TCP, delivery through the event loop in order per pair, and fault controls (partitions,
isolation, random loss from a seeded generator)."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Set

from consensus import defaults
from consensus.errors import config_error
from consensus.transport.base import (
    FRAME_BYTES_LIMIT,
    FRAME_BYTES_MAX_DEFAULT,
    FRAME_BYTES_MIN,
    Deliver,
    PeerStats,
    SendQueue,
    Transport,
    check_frame,
    check_node_id,
    check_peers,
    check_positive_int,
    deliver_frame,
    greeting_flags_for,
    report_greeting,
)


class MemoryNetwork:
    """Connects `MemoryTransport`s of one process and injects faults between them.

    A frame dropped by a partition, an isolation or `drop_rate` is lost silently, as on a real
    network: `send` still returned True. Such losses are counted in `lost_frames`.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        drop_rate: float = 0.0,
        max_frame_bytes: int = FRAME_BYTES_MAX_DEFAULT,
        queue_frames: int = 4096,
        queue_bytes: int = defaults.SEND_QUEUE_BYTES,
    ) -> None:
        self.random = random.Random(seed)
        self.drop_rate = drop_rate
        self.max_frame_bytes = check_positive_int("max_frame_bytes", max_frame_bytes, FRAME_BYTES_LIMIT)
        if max_frame_bytes < FRAME_BYTES_MIN:
            raise config_error("max_frame_bytes", f"must be at least {FRAME_BYTES_MIN}")
        self.queue_frames = check_positive_int("queue_frames", queue_frames)
        self.queue_bytes = check_positive_int("queue_bytes", queue_bytes)
        self._transports: Dict[int, MemoryTransport] = {}
        self._cut: Set[FrozenSet[int]] = set()
        self._isolated: Set[int] = set()
        #: Frames accepted by `send` and then lost to a fault (or to a closed receiver).
        self.lost_frames = 0

    @property
    def drop_rate(self) -> float:
        """Probability in [0, 1] that a frame is lost, drawn from the seeded `random`."""
        return self._drop_rate

    @drop_rate.setter
    def drop_rate(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and 0.0 <= value <= 1.0
        ):
            raise config_error("drop_rate", f"must be a probability in [0, 1], got {value!r}")
        self._drop_rate = float(value)

    def transport(self, node_id: int, peers: Optional[Mapping[int, str]] = None) -> MemoryTransport:
        """A transport for `node_id`; its peers default to every other transport of the network."""
        check_node_id("node_id", node_id)
        existing = self._transports.get(node_id)
        if existing is not None and not existing.closed:
            raise config_error("node_id", f"node {node_id} already has an open transport on this network")
        created = MemoryTransport(self, node_id)
        self._transports[node_id] = created
        if peers is None:
            peers = {other: f"memory:{other}" for other in self._transports if other != node_id}
            for other in self._transports.values():
                if other is not created and not other.closed and node_id not in other._peers:
                    known = {peer: link.address for peer, link in other._peers.items()}
                    other.set_peers({**known, node_id: f"memory:{node_id}"})
        created.set_peers(peers)
        return created

    # ------------------------------------------------------------------ faults

    def partition(self, a: int, b: int) -> None:
        """Cut the link between `a` and `b`, both directions."""
        self._cut.add(frozenset((a, b)))

    def isolate(self, node: int) -> None:
        """Cut every link of `node`."""
        self._isolated.add(node)

    def heal(self) -> None:
        """Restore every link (partitions and isolations)."""
        self._cut.clear()
        self._isolated.clear()

    def linked(self, a: int, b: int) -> bool:
        """Whether frames can currently travel between `a` and `b`."""
        return a not in self._isolated and b not in self._isolated and frozenset((a, b)) not in self._cut

    # ------------------------------------------------------------------ delivery

    def _receiver(self, sender: int, to: int) -> Optional[MemoryTransport]:
        receiver = self._transports.get(to)
        if receiver is None or receiver.closed or not receiver.started or sender not in receiver._peers:
            return None
        return receiver

    def _pass(self, sender: int, to: int) -> bool:
        if not self.linked(sender, to):
            return False
        return not (self._drop_rate > 0.0 and self.random.random() < self._drop_rate)


class _Link:
    """Frames from one transport to one peer, waiting for the event loop to deliver them."""

    __slots__ = ("queue", "stats", "scheduled", "address")

    def __init__(self, queue: SendQueue, address: str) -> None:
        self.queue = queue
        self.stats = PeerStats()
        self.scheduled = False
        self.address = address


class MemoryTransport(Transport):
    """A `Transport` on a `MemoryNetwork`; build it with `network.transport(node_id)`."""

    def __init__(self, network: MemoryNetwork, node_id: int) -> None:
        self.node_id = node_id
        self.network = network
        self._peers: Dict[int, _Link] = {}
        self._deliver: Optional[Deliver] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._rejected = 0
        self._greeted: Set[int] = set()
        self.dropped_unknown_peer = 0
        self.started = False
        self.closed = False

    def greeted_peers(self) -> Set[int]:
        return set(self._greeted)

    @property
    def rejected_connections(self) -> int:
        return self._rejected

    async def start(self, deliver: Deliver) -> None:
        if self.started:
            raise RuntimeError("the transport was already started")
        self._loop = asyncio.get_running_loop()
        self._deliver = deliver
        self.started = True
        for peer_id in self._peers:
            self._greet(peer_id)
        for peer_id in self._peers:
            self._schedule(peer_id)

    def send(self, to: int, frame: bytes) -> bool:
        link = self._peers.get(to)
        if link is None:
            self.dropped_unknown_peer += 1
            return False
        size = check_frame(frame)
        if self.closed or size > self.network.max_frame_bytes or not link.queue.offer(bytes(frame), size):
            link.stats.dropped += 1
            return False
        self._schedule(to)
        return True

    def set_peers(self, peers: Mapping[int, str]) -> None:
        checked = check_peers(self.node_id, peers, addresses=False)
        for peer_id in list(self._peers):
            if peer_id not in checked:
                del self._peers[peer_id]
        for peer_id, address in checked.items():
            link = self._peers.get(peer_id)
            if link is None:
                queue = SendQueue(self.network.queue_frames, self.network.queue_bytes)
                self._peers[peer_id] = _Link(queue, address)
                self._greet(peer_id)
            else:
                link.address = address

    def disconnect(self, peer_id: int, reason: str = "") -> None:
        link = self._peers.get(peer_id)
        if link is None:
            return
        link.stats.bad_frames += 1
        link.stats.reconnects += 1
        # Frames still in flight from that peer are lost with the "connection".
        sender = self.network._transports.get(peer_id)
        inbound = sender._peers.get(self.node_id) if sender is not None else None
        if inbound is not None:
            self.network.lost_frames += inbound.queue.clear()

    def greet_again(self, peer_id: int) -> None:
        if peer_id in self._peers:
            self._greet(peer_id)

    def stats(self) -> Dict[int, Dict[str, Any]]:
        result: Dict[int, Dict[str, Any]] = {}
        for peer_id, link in self._peers.items():
            stats = link.stats
            result[peer_id] = {
                "connected": self._connected(peer_id),
                "frames_sent": stats.frames_sent,
                "frames_received": stats.frames_received,
                "bytes_sent": stats.bytes_sent,
                "bytes_received": stats.bytes_received,
                "dropped": stats.dropped,
                "bad_frames": stats.bad_frames,
                "reconnects": stats.reconnects,
                "queued": len(link.queue),
            }
        return result

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for link in self._peers.values():
            self.network.lost_frames += link.queue.clear()

    # ------------------------------------------------------------------ internals

    def _connected(self, peer_id: int) -> bool:
        if self.closed or not self.started:
            return False
        return self.network._receiver(self.node_id, peer_id) is not None and self.network.linked(
            self.node_id, peer_id
        )

    def _greet(self, peer_id: int) -> None:
        """The in-memory "handshake": once both transports are started and know each other, each
        reports the other's greeting flags, as TCP does when a connection opens."""
        other = self.network._transports.get(peer_id)
        if not self.started or self.closed or other is None or other.closed or not other.started:
            return
        if self.node_id not in other._peers:
            return
        try:
            mine, theirs = greeting_flags_for(self, peer_id), greeting_flags_for(other, self.node_id)
        except ValueError:
            return  # logged; as with TCP, no "connection" rather than wrong flags
        self._greeted.add(peer_id)
        other._greeted.add(self.node_id)
        report_greeting(self, peer_id, theirs)
        report_greeting(other, self.node_id, mine)

    def _schedule(self, to: int) -> None:
        link = self._peers.get(to)
        if link is None or link.scheduled or self._loop is None or not link.queue:
            return
        link.scheduled = True
        self._loop.call_soon(self._flush, to, link)

    def _flush(self, to: int, link: _Link) -> None:
        """Deliver, in order, the frames queued for `to` when this callback was scheduled."""
        link.scheduled = False
        if self.closed or self._peers.get(to) is not link:
            return
        network = self.network
        batch: List[bytes] = link.queue.take(network.queue_bytes)
        count = len(batch)
        for position, frame in enumerate(batch):
            link.stats.frames_sent += 1
            link.stats.bytes_sent += len(frame)
            receiver = network._receiver(self.node_id, to)
            if receiver is None or not network._pass(self.node_id, to):
                network.lost_frames += 1
                continue
            if not receiver._receive(self.node_id, frame):
                # The receiver "disconnected" this sender: what was in flight is lost with it.
                network.lost_frames += count - position - 1
                break
        self._schedule(to)

    def _receive(self, sender: int, frame: bytes) -> bool:
        """Hand a frame to the node; False when it rejected the frame (connection dropped)."""
        link = self._peers[sender]
        link.stats.frames_received += 1
        link.stats.bytes_received += len(frame)
        assert self._deliver is not None
        if self.on_arrival is not None:
            self.on_arrival(sender)
        if deliver_frame(self._deliver, sender, frame):
            return True
        link.stats.bad_frames += 1
        link.stats.reconnects += 1
        return False


__all__: List[str] = ["MemoryNetwork", "MemoryTransport"]
