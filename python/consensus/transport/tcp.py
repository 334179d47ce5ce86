"""Peer transport over asyncio TCP, optionally with mutual TLS.

One connection per pair of peers carries frames both ways: the node with the lower id dials, the
higher one accepts. Every connection starts with the handshake of docs/wire-format.md §9, then
carries core frames (§2) back to back. The transport checks a frame's length field before it
buffers the body, hands whole frames up unchanged and never decodes them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import ssl
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, Union

from consensus import defaults
from consensus.errors import config_error
from consensus.transport import accept, handshake
from consensus.transport.base import (
    FRAME_BYTES_LIMIT,
    FRAME_BYTES_MAX_DEFAULT,
    FRAME_BYTES_MIN,
    PROTOCOL_IDS,
    Deliver,
    PeerStats,
    SendQueue,
    Transport,
    check_frame,
    check_node_id,
    check_peers,
    check_positive_int,
    check_positive_seconds,
    deliver_frame,
    format_address,
    greeting_flags_for,
    logger,
    parse_address,
    report_greeting,
)

#: Connections accepted but not yet through the handshake (TLS included). At this bound a new
#: connection evicts the oldest pending one: memory stays bounded, and idle or slow sockets cannot
#: lock real peers out, whatever address they come from (on one host, attackers and peers share
#: 127.0.0.1, so no per-address quota could tell them apart).
PENDING_HANDSHAKES_MAX = 128
#: The default `handshake_timeout`: an accepted connection must complete TLS and the handshake
#: within this many seconds of being accepted (one deadline, not one per step, so a peer that
#: trickles bytes cannot stretch it); a dialer must get its WELCOME within it.
HANDSHAKE_TIMEOUT_DEFAULT = 2.0
#: The writer hands at most this many bytes to the socket before it yields to the loop.
WRITE_BATCH_BYTES_MAX = 4 * 1024 * 1024


def _crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), bitwise: used once, for the constant keepalive frame."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


#: The keepalive (docs/wire-format.md §9.5): an empty frame of protocol 0, type 0. A writer sends it
#: when it has had nothing to send for `keepalive_interval`, so every peer hears from every other
#: one regularly and the failure detectors see arrivals even between two followers.
KEEPALIVE_PROTOCOL = 0
_KEEPALIVE_HEAD = (11).to_bytes(4, "little") + bytes((1, KEEPALIVE_PROTOCOL, 0))
KEEPALIVE_FRAME = _KEEPALIVE_HEAD + _crc32c(_KEEPALIVE_HEAD).to_bytes(4, "little")

_STATE_ACCEPTED = 0  # acceptor only: the loop is setting up the transport (the TLS handshake)
_STATE_HANDSHAKE = 1  # waiting for HELLO (acceptor) or WELCOME (dialer)
_STATE_OPEN = 2  # authenticated: frames flow both ways
_STATE_CLOSED = 3


def tls_contexts(cert: str, key: str, ca: str) -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for mutual TLS between the peers of one cluster.

    Both sides present `cert` (with `key`) and require the other side's certificate to be signed
    by `ca`; TLS 1.2 or newer. Peers are dialled by address, so the client does not check host
    names: a peer's identity is its CA-signed certificate plus the node id of the handshake.
    """
    for field, path in (("tls.cert", cert), ("tls.key", key), ("tls.ca", ca)):
        if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
            raise config_error(field, f"no such file: {path!r}")
    contexts = []
    for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
        context = ssl.SSLContext(purpose)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError, ValueError) as error:
            raise config_error("tls.cert", f"cannot load the certificate and key: {error}") from None
        try:
            context.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError, ValueError) as error:
            raise config_error("tls.ca", f"cannot load the CA certificate: {error}") from None
        contexts.append(context)
    return contexts[0], contexts[1]


class _Peer:
    """What this node keeps about one peer across connections."""

    __slots__ = ("id", "address", "queue", "stats", "connection", "dial_task", "frames_waiter")

    def __init__(self, peer_id: int, address: str, queue: SendQueue) -> None:
        self.id = peer_id
        self.address = address
        self.queue = queue
        self.stats = PeerStats()
        #: The authenticated connection, if any. Invariant: its state is _STATE_OPEN.
        self.connection: Optional[_Connection] = None
        self.dial_task: Optional[asyncio.Task[None]] = None
        #: Resolved by `send` to wake the writer of an idle connection.
        self.frames_waiter: Optional[asyncio.Future[None]] = None

    def wake_writer(self) -> None:
        waiter = self.frames_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: handshake, then frames in and a writer task out."""

    def __init__(
        self, owner: TcpTransport, dial_peer: Optional[_Peer], accepted: Optional[socket.socket] = None
    ) -> None:
        self.owner = owner
        #: The peer this connection dials, or None for an accepted connection.
        self.dial_peer = dial_peer
        #: The authenticated peer, once the handshake succeeded.
        self.peer: Optional[_Peer] = None
        self.transport: Optional[asyncio.BaseTransport] = None
        self.state = _STATE_HANDSHAKE if accepted is None else _STATE_ACCEPTED
        #: An accepted socket, until it is handed to the loop (then the loop owns and closes it).
        self.unowned_socket = accepted
        #: The accepted socket, kept to shut it down while the loop still runs its TLS handshake.
        self.accepted_socket = accepted
        self.buffer = bytearray()
        loop = owner._loop
        assert loop is not None
        self.loop = loop
        #: Resolved True when the handshake succeeds, False when the connection fails before.
        self.ready: asyncio.Future[bool] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.handshake_timer: Optional[asyncio.TimerHandle] = None
        self.writer_task: Optional[asyncio.Task[None]] = None
        self.write_paused = False
        #: Loop time of the last write: a keepalive goes out only after a quiet interval.
        self.last_write = 0.0
        self.resume_waiter: Optional[asyncio.Future[None]] = None

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called with the final transport: for TLS, after the loop completed the TLS handshake
        (accepted sockets are handed to the loop with the TLS context from the start, so no
        ciphertext ever reaches this protocol)."""
        self.transport = transport
        if self.state == _STATE_CLOSED:  # evicted or timed out while the loop ran TLS
            transport.abort()  # type: ignore[attr-defined]
            return
        self._begin_handshake(transport)

    def data_received(self, data: bytes) -> None:
        if self.state == _STATE_OPEN:
            self._receive_frames(data)
        elif self.state == _STATE_HANDSHAKE:
            self.buffer += data
            self._receive_handshake()

    def eof_received(self) -> Optional[bool]:
        return False  # close the connection; connection_lost does the accounting

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.state == _STATE_CLOSED:
            return
        if self.state == _STATE_OPEN and self.buffer and self.peer is not None:
            # The peer closed the stream in the middle of a frame.
            self.peer.stats.bad_frames += 1
            logger.warning("peer %d closed the connection inside a frame", self.peer.id)
        elif self.state in (_STATE_HANDSHAKE, _STATE_ACCEPTED):
            self.owner._rejected += 1
            logger.info("connection closed during the handshake: %s", exc)
        self._finish()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.resume_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ handshake

    async def _open_accepted(self) -> None:
        """Hand the accepted socket to the loop, with the TLS context if any: the loop runs the
        TLS handshake before it calls `connection_made`.

        Upgrading a plain transport later with `loop.start_tls` races under uvloop: uvloop
        resumes reading right after `connection_made` returns (a `pause_reading` there is
        undone), so the ClientHello could reach this protocol before `start_tls` took over."""
        sock = self.unowned_socket
        if sock is None or self.state == _STATE_CLOSED:
            return
        self.unowned_socket = None
        owner = self.owner
        tls = owner._ssl_server
        try:
            await self.loop.connect_accepted_socket(
                lambda: self,
                sock,
                ssl=tls,
                ssl_handshake_timeout=owner.handshake_timeout if tls is not None else None,
            )
        except (OSError, asyncio.TimeoutError, ValueError, RuntimeError) as error:
            # The loop closed the socket. ssl.SSLError is an OSError.
            if self.state != _STATE_CLOSED:
                owner._rejected += 1
                logger.info("TLS handshake with a connecting peer failed: %s", error)
                self._finish()

    def _begin_handshake(self, transport: asyncio.BaseTransport) -> None:
        owner = self.owner
        self.transport = transport
        self.state = _STATE_HANDSHAKE
        if self.handshake_timer is None:
            self.handshake_timer = self.loop.call_later(owner.handshake_timeout, self._handshake_timed_out)
        if self.dial_peer is not None:
            try:
                owner._check_identity(self._peer_certificate(), self.dial_peer.id)
                flags = greeting_flags_for(owner, self.dial_peer.id)
            except handshake.HandshakeError as error:
                # Before HELLO: a listener with another node's certificate learns nothing.
                owner._count_refusal(error)
                logger.warning("peer %d at %s: %s", self.dial_peer.id, self.dial_peer.address, error)
                self.close()
                return
            except ValueError:
                self.close()
                return
            hello = handshake.encode_hello(
                owner._protocol_id, owner.node_id, self.dial_peer.id, owner.cluster_id, flags
            )
            transport.write(hello)  # type: ignore[attr-defined]
        elif self.buffer:
            self._receive_handshake()

    def evict(self) -> None:
        """Close this pending connection to make room for a newer one (plain TCP: say BUSY)."""
        if self.state == _STATE_HANDSHAKE and self.transport is not None:
            self.transport.write(handshake.encode_refused(handshake.REASON_BUSY))  # type: ignore[attr-defined]
            self.close(flush=True)
        else:
            self.close()

    def _handshake_timed_out(self) -> None:
        if self.state in (_STATE_ACCEPTED, _STATE_HANDSHAKE):
            self.owner._rejected += 1
            logger.info("handshake timed out (peer %s)", self.dial_peer.id if self.dial_peer else "unknown")
            self.close()

    def _receive_handshake(self) -> None:
        try:
            length = handshake.message_length(self.buffer)
            if length is None or len(self.buffer) < length:
                return
            message = handshake.decode(self.buffer[:length])
            del self.buffer[:length]
            if self.dial_peer is None:
                peer = self.owner._check_hello(message, self._peer_certificate())
                self._welcome(peer)
            else:
                peer = self.owner._check_welcome(message, self.dial_peer)
        except ValueError:
            self.close()  # greeting_flags failed (logged): send no flags rather than wrong ones
            return
        except handshake.HandshakeError as error:
            self.owner._count_refusal(error)
            logger.warning("handshake refused: %s", error)
            if self.dial_peer is None:
                # The reason's name only: never the cluster id or node ids (they stay in the log).
                self.transport.write(handshake.encode_refused(error.reason))  # type: ignore[union-attr]
            self.close(flush=True)
            return
        assert isinstance(message, handshake.Greeting)
        self.owner._attach(peer, self, message.flags)
        if self.buffer and self.state == _STATE_OPEN:
            rest = bytes(self.buffer)
            self.buffer.clear()
            self._receive_frames(rest)

    def _peer_certificate(self) -> Optional[Dict[str, Any]]:
        """The peer's verified certificate (``getpeercert()``), or None without TLS."""
        if self.owner._ssl_server is None or self.transport is None:
            return None
        certificate = self.transport.get_extra_info("peercert")
        return certificate if isinstance(certificate, dict) else {}

    def _welcome(self, peer: _Peer) -> None:
        owner = self.owner
        flags = greeting_flags_for(owner, peer.id)
        welcome = handshake.encode_welcome(owner._protocol_id, owner.node_id, peer.id, owner.cluster_id, flags)
        self.transport.write(welcome)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ frames

    def _receive_frames(self, data: bytes) -> None:
        peer = self.peer
        assert peer is not None
        owner = self.owner
        max_frame_bytes = owner.max_frame_bytes
        buffer = self.buffer
        if buffer:
            buffer += data
            source: Union[bytes, bytearray] = buffer
        else:
            source = data
        end = len(source)
        position = 0
        stats = peer.stats
        while end - position >= 4:
            length = int.from_bytes(source[position : position + 4], "little")
            if length < FRAME_BYTES_MIN or length > max_frame_bytes:
                stats.bad_frames += 1
                logger.warning("peer %d sent a frame length of %d bytes; disconnecting", peer.id, length)
                self.close()
                return
            if end - position < length:
                break
            frame = bytes(source[position : position + length])
            position += length
            if owner.on_arrival is not None:
                owner.on_arrival(peer.id)
            if length == len(KEEPALIVE_FRAME) and frame[5] == KEEPALIVE_PROTOCOL:
                continue  # not counted: the statistics are of protocol frames
            stats.frames_received += 1
            stats.bytes_received += length
            if not deliver_frame(owner._deliver, peer.id, frame):
                stats.bad_frames += 1
                self.close()
                return
            if self.state != _STATE_OPEN:
                return
        if source is buffer:
            del buffer[:position]
        elif position < end:
            buffer += data[position:]

    async def _write_frames(self) -> None:
        peer = self.peer
        assert peer is not None
        queue = peer.queue
        stats = peer.stats
        transport = self.transport
        try:
            while self.state == _STATE_OPEN:
                if self.write_paused:
                    self.resume_waiter = self.loop.create_future()
                    await self.resume_waiter
                    continue
                if not queue:
                    peer.frames_waiter = self.loop.create_future()
                    interval = self.owner.keepalive_interval
                    done, _ = await asyncio.wait((peer.frames_waiter,), timeout=interval)
                    if (
                        not done
                        and not queue
                        and self.state == _STATE_OPEN
                        and not self.write_paused
                        and self.loop.time() - self.last_write >= interval
                    ):
                        transport.write(KEEPALIVE_FRAME)  # type: ignore[union-attr]
                        self.last_write = self.loop.time()
                    continue
                batch = queue.take(WRITE_BATCH_BYTES_MAX)
                transport.writelines(batch)  # type: ignore[union-attr]
                self.last_write = self.loop.time()
                stats.frames_sent += len(batch)
                stats.bytes_sent += sum(map(len, batch))
                # Let readers and other writers run between batches.
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a writer bug drops this connection, not the node
            logger.exception("writer for peer %d failed", peer.id)
            self.close()

    # ------------------------------------------------------------------ closing

    def close(self, flush: bool = False) -> None:
        """Close this connection (idempotent); with `flush`, send what is buffered first."""
        if self.state == _STATE_CLOSED:
            return
        transport = self.transport
        self._finish()
        if transport is not None:
            if flush:
                transport.close()
            else:
                transport.abort()  # type: ignore[attr-defined]
        else:
            self._drop_accepted_socket()

    def _drop_accepted_socket(self) -> None:
        """Close an accepted socket that has no transport yet: directly if the loop does not own
        it yet, else by shutting it down, so the loop's TLS handshake fails at once and the loop
        closes it (never close a descriptor the loop still polls)."""
        unowned, self.unowned_socket = self.unowned_socket, None
        if unowned is not None:
            unowned.close()
        elif self.accepted_socket is not None:
            try:
                self.accepted_socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the loop

    def _finish(self) -> None:
        self.state = _STATE_CLOSED
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
        self.owner._detach(self)
        if not self.ready.done():
            self.ready.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)
        if self.writer_task is not None and self.writer_task is not asyncio.current_task(self.loop):
            self.writer_task.cancel()


class TcpTransport(Transport):
    """Frames between peers over TCP (optionally mutual TLS), one connection per pair."""

    def __init__(
        self,
        node_id: int,
        *,
        cluster_id: str,
        protocol: str,
        listen: str,
        peers: Mapping[int, str],
        ssl_server: Optional[ssl.SSLContext] = None,
        ssl_client: Optional[ssl.SSLContext] = None,
        max_frame_bytes: int = FRAME_BYTES_MAX_DEFAULT,
        queue_frames: int = 4096,
        queue_bytes: int = defaults.SEND_QUEUE_BYTES,
        connect_timeout: float = 1.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 1.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_DEFAULT,
        keepalive_interval: float = 0.1,
    ) -> None:
        self.node_id = check_node_id("node_id", node_id)
        if not isinstance(cluster_id, str) or not 1 <= len(cluster_id.encode("utf-8")) <= 255:
            raise config_error("cluster_id", f"must be a string of 1..255 UTF-8 bytes, got {cluster_id!r}")
        self.cluster_id = cluster_id
        if protocol not in PROTOCOL_IDS:
            raise config_error("protocol", f"must be one of {sorted(PROTOCOL_IDS)}, got {protocol!r}")
        self.protocol = protocol
        self._protocol_id = PROTOCOL_IDS[protocol]
        self._listen_host, self._listen_port = parse_address(listen, "listen", allow_port_zero=True)
        self._listen = listen
        if (ssl_server is None) != (ssl_client is None):
            raise config_error("ssl_client", "give both ssl_server and ssl_client (mutual TLS) or neither")
        for field, context in (("ssl_server", ssl_server), ("ssl_client", ssl_client)):
            if context is not None and not isinstance(context, ssl.SSLContext):
                raise config_error(field, f"must be an ssl.SSLContext, got {type(context).__name__}")
        self._ssl_server = ssl_server
        self._ssl_client = ssl_client
        self.max_frame_bytes = check_positive_int("max_frame_bytes", max_frame_bytes, FRAME_BYTES_LIMIT)
        if max_frame_bytes < FRAME_BYTES_MIN:
            raise config_error("max_frame_bytes", f"must be at least {FRAME_BYTES_MIN}")
        self.queue_frames = check_positive_int("queue_frames", queue_frames)
        self.queue_bytes = check_positive_int("queue_bytes", queue_bytes)
        self.connect_timeout = check_positive_seconds("connect_timeout", connect_timeout)
        self.backoff_initial = check_positive_seconds("backoff_initial", backoff_initial)
        self.backoff_max = check_positive_seconds("backoff_max", backoff_max)
        if self.backoff_max < self.backoff_initial:
            raise config_error("backoff_max", "must be at least backoff_initial")
        self.handshake_timeout = check_positive_seconds("handshake_timeout", handshake_timeout)
        self.keepalive_interval = check_positive_seconds("keepalive_interval", keepalive_interval)

        self._peers: Dict[int, _Peer] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._listeners: List[socket.socket] = []
        self._deliver: Deliver = _not_started
        #: Accepted connections still in their handshake, oldest first (a dict keeps the order).
        self._pending: Dict[_Connection, None] = {}
        self._tasks: Set[asyncio.Task[None]] = set()
        self._rejected = 0
        #: Connections refused because the peer's certificate does not name the node id it claims
        #: (or was dialed as); also counted in `rejected_connections`.
        self.identity_refusals = 0
        #: Dial attempts that did not end in an open connection (unreachable, TLS, refused...).
        self.dial_failures = 0
        #: Pending connections closed to make room for newer ones (also counted as rejected).
        self.evicted_handshakes = 0
        self._greeted: Set[int] = set()
        #: Frames given to `send` for an id that is not a peer.
        self.dropped_unknown_peer = 0
        self._started = False
        self._closed = False
        self._random = random.Random()
        self.set_peers(peers)

    # ------------------------------------------------------------------ public

    @property
    def listen_address(self) -> str:
        """The address actually listened on ("host:port"; the real port when 0 was asked)."""
        if self._listeners:
            host, port = self._listeners[0].getsockname()[:2]
            return format_address(host, port)
        return self._listen

    @property
    def rejected_connections(self) -> int:
        return self._rejected

    def greeted_peers(self) -> Set[int]:
        return set(self._greeted)

    async def start(self, deliver: Deliver) -> None:
        if self._started:
            raise RuntimeError("the transport was already started")
        if self._closed:
            raise RuntimeError("the transport is closed")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._deliver = deliver
        self._listeners = await self._open_listeners()
        self._warn_if_exposed()
        for listener in self._listeners:
            self._spawn(self._accept_loop(listener))
        for peer in self._peers.values():
            self._maybe_dial(peer)

    def send(self, to: int, frame: bytes) -> bool:
        peer = self._peers.get(to)
        if peer is None:
            self.dropped_unknown_peer += 1
            return False
        size = check_frame(frame)
        if self._closed or size > self.max_frame_bytes:
            peer.stats.dropped += 1
            return False
        connection = peer.connection
        if connection is not None and not peer.queue and not connection.write_paused:
            # Idle connection: write now rather than wake the writer task (one loop turn less on
            # every message's path). Order holds: nothing is queued ahead of this frame.
            connection.transport.write(frame)  # type: ignore[union-attr]
            connection.last_write = connection.loop.time()
            peer.stats.frames_sent += 1
            peer.stats.bytes_sent += size
            return True
        if not peer.queue.offer(frame, size):
            peer.stats.dropped += 1
            return False
        peer.wake_writer()
        return True

    def set_peers(self, peers: Mapping[int, str]) -> None:
        checked = check_peers(self.node_id, peers)
        for peer_id in list(self._peers):
            if peer_id not in checked:
                self._remove_peer(self._peers.pop(peer_id))
        for peer_id, address in checked.items():
            peer = self._peers.get(peer_id)
            if peer is not None:
                peer.address = address
                continue
            peer = _Peer(peer_id, address, SendQueue(self.queue_frames, self.queue_bytes))
            self._peers[peer_id] = peer
            if self._started and not self._closed:
                self._maybe_dial(peer)

    def disconnect(self, peer_id: int, reason: str = "") -> None:
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        peer.stats.bad_frames += 1
        if peer.connection is not None:
            logger.warning("disconnecting peer %d: %s", peer_id, reason or "bad frame")
            peer.connection.close()

    def greet_again(self, peer_id: int) -> None:
        # Closing the connection is the handshake's restart: the dialing side reconnects at once.
        peer = self._peers.get(peer_id)
        if peer is not None and peer.connection is not None:
            logger.info("greeting peer %d again (this node's greeting flags changed)", peer_id)
            peer.connection.close()

    def stats(self) -> Dict[int, Dict[str, Any]]:
        result: Dict[int, Dict[str, Any]] = {}
        for peer_id, peer in self._peers.items():
            stats = peer.stats
            result[peer_id] = {
                "connected": peer.connection is not None,
                "frames_sent": stats.frames_sent,
                "frames_received": stats.frames_received,
                "bytes_sent": stats.bytes_sent,
                "bytes_received": stats.bytes_received,
                "dropped": stats.dropped,
                "bad_frames": stats.bad_frames,
                "reconnects": stats.reconnects,
                "queued": len(peer.queue),
            }
        return result

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for peer in self._peers.values():
            if peer.dial_task is not None:
                peer.dial_task.cancel()
            if peer.connection is not None:
                peer.connection.close()
        for connection in list(self._pending):
            connection.close()
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for listener in self._listeners:
            listener.close()  # after the accept loops stopped polling it

    # ------------------------------------------------------------------ internals

    def _spawn(self, coroutine: object) -> asyncio.Task[None]:
        assert self._loop is not None
        task: asyncio.Task[None] = self._loop.create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _open_listeners(self) -> List[socket.socket]:
        """Bind and listen on every address `listen` resolves to (like `loop.create_server`)."""
        return await accept.open_listeners(self._listen_host, self._listen_port)

    def _warn_if_exposed(self) -> None:
        """Without TLS, whoever reaches the peer port can act as a member (docs/security.md):
        say so when the port is reachable from other hosts."""
        if self._ssl_server is not None:
            return
        exposed = [
            format_address(*listener.getsockname()[:2])
            for listener in self._listeners
            if not ipaddress.ip_address(listener.getsockname()[0].split("%")[0]).is_loopback
        ]
        if exposed:
            logger.warning(
                "node %d: the peer port listens on %s, not a loopback address, without [tls]: any host "
                "that can reach it can act as a member of the cluster (forge entries, vote, read every "
                "write); configure [tls] or listen on a private network only (docs/security.md)",
                self.node_id,
                ", ".join(exposed),
            )

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept connections on one listening socket until the transport closes.

        The transport accepts sockets itself (rather than `loop.create_server`) so that a
        connection is counted against `PENDING_HANDSHAKES_MAX` and can be evicted from the
        moment it is accepted, TLS handshake included."""
        await accept.accept_forever(listener, self._accept, logger, "peer")

    def _accept(self, accepted: socket.socket) -> None:
        if self._closed:
            accepted.close()
            return
        connection = _Connection(self, None, accepted)
        self._admit_pending(connection)
        connection.handshake_timer = connection.loop.call_later(
            self.handshake_timeout, connection._handshake_timed_out
        )
        self._spawn(connection._open_accepted())

    def _admit_pending(self, connection: _Connection) -> None:
        """Track a newly accepted connection; at `PENDING_HANDSHAKES_MAX`, evict the oldest."""
        while len(self._pending) >= PENDING_HANDSHAKES_MAX:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            self._rejected += 1
            self.evicted_handshakes += 1
            logger.info("too many connections in their handshake: closing the oldest")
            oldest.evict()
        self._pending[connection] = None

    def _maybe_dial(self, peer: _Peer) -> None:
        if self.node_id < peer.id and peer.dial_task is None:
            peer.dial_task = self._spawn(self._dial_loop(peer))

    def _remove_peer(self, peer: _Peer) -> None:
        if peer.dial_task is not None:
            peer.dial_task.cancel()
        if peer.connection is not None:
            peer.connection.close()
        peer.queue.clear()

    def _backoff_seconds(self, failures: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_initial * (2 ** min(failures, 30)))
        return float(ceiling / 2 + self._random.uniform(0, ceiling / 2))

    async def _dial_loop(self, peer: _Peer) -> None:
        """Keep one connection to a higher-id peer, reconnecting with jittered exponential backoff."""
        loop = self._loop
        assert loop is not None
        failures = 0
        while not self._closed and self._peers.get(peer.id) is peer:
            connection = _Connection(self, peer)
            host, port = parse_address(peer.address, "peers")
            tls = self._ssl_client
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda: connection,
                        host,
                        port,
                        ssl=tls,
                        server_hostname=host if tls is not None else None,
                        ssl_handshake_timeout=self.handshake_timeout if tls is not None else None,
                    ),
                    self.connect_timeout + (self.handshake_timeout if tls is not None else 0.0),
                )
            except (ssl.SSLError, ssl.CertificateError) as error:
                self._rejected += 1
                logger.warning("TLS handshake with peer %d failed: %s", peer.id, error)
                connection.close()
                failures += 1
                self.dial_failures += 1
                await asyncio.sleep(self._backoff_seconds(failures))
                continue
            except (OSError, asyncio.TimeoutError) as error:
                logger.debug("cannot reach peer %d at %s: %s", peer.id, peer.address, error)
                connection.close()
                failures += 1
                self.dial_failures += 1
                await asyncio.sleep(self._backoff_seconds(failures))
                continue
            if await connection.ready:
                failures = 0
                await connection.closed
            else:
                failures += 1
                self.dial_failures += 1
            await asyncio.sleep(self._backoff_seconds(failures))

    def _count_refusal(self, error: handshake.HandshakeError) -> None:
        self._rejected += 1
        if error.reason == handshake.REASON_IDENTITY:
            self.identity_refusals += 1

    def _check_identity(self, certificate: Optional[Dict[str, Any]], node_id: int) -> None:
        """With TLS, the peer's certificate must name exactly `node_id` of this cluster
        (`handshake.identity_uri`), or `HandshakeError` (REASON_IDENTITY)."""
        if certificate is None:
            return
        named = handshake.certificate_node_ids(certificate, self.cluster_id)
        if named != {node_id}:
            shown = sorted("malformed" if name is None else str(name) for name in named) or ["none"]
            raise handshake.HandshakeError(
                handshake.REASON_IDENTITY,
                f"the certificate names node(s) {', '.join(shown)} of this cluster, the peer must be node {node_id}",
            )

    def _check_hello(
        self, message: Union[handshake.Greeting, handshake.Refusal], certificate: Optional[Dict[str, Any]] = None
    ) -> _Peer:
        """The peer an accepted HELLO authenticates, or `HandshakeError`. With TLS the
        certificate is checked first, so a holder of a certificate of the CA that is not the
        node it claims learns nothing else (not even whether its cluster id is right)."""
        if not isinstance(message, handshake.Greeting) or message.kind != handshake.KIND_HELLO:
            raise handshake.HandshakeError(handshake.REASON_MALFORMED, "expected HELLO")
        self._check_identity(certificate, message.sender_id)
        if message.protocol_id != self._protocol_id:
            raise handshake.HandshakeError(
                handshake.REASON_PROTOCOL, f"protocol {message.protocol_id}, expected {self._protocol_id}"
            )
        if message.cluster_id != self.cluster_id:
            raise handshake.HandshakeError(
                handshake.REASON_CLUSTER, f"cluster {message.cluster_id!r}, expected {self.cluster_id!r}"
            )
        peer = self._peers.get(message.sender_id)
        if peer is None:
            raise handshake.HandshakeError(handshake.REASON_UNKNOWN_SENDER, f"node {message.sender_id}")
        if message.sender_id >= self.node_id:
            raise handshake.HandshakeError(
                handshake.REASON_WRONG_DIRECTION, f"node {message.sender_id} dialed node {self.node_id}"
            )
        if message.receiver_id != self.node_id:
            raise handshake.HandshakeError(
                handshake.REASON_WRONG_RECEIVER, f"meant for node {message.receiver_id}, this is {self.node_id}"
            )
        return peer

    def _check_welcome(self, message: Union[handshake.Greeting, handshake.Refusal], peer: _Peer) -> _Peer:
        if isinstance(message, handshake.Refusal):
            raise handshake.HandshakeError(
                message.reason, f"peer {peer.id} refused the connection: {message.message!r}"
            )
        if message.kind != handshake.KIND_WELCOME:
            raise handshake.HandshakeError(handshake.REASON_MALFORMED, "expected WELCOME")
        if message.protocol_id != self._protocol_id:
            raise handshake.HandshakeError(handshake.REASON_PROTOCOL, f"peer speaks protocol {message.protocol_id}")
        if message.cluster_id != self.cluster_id:
            raise handshake.HandshakeError(handshake.REASON_CLUSTER, f"peer is in cluster {message.cluster_id!r}")
        if message.sender_id != peer.id:
            raise handshake.HandshakeError(
                handshake.REASON_UNKNOWN_SENDER, f"dialed node {peer.id}, node {message.sender_id} answered"
            )
        if message.receiver_id != self.node_id:
            raise handshake.HandshakeError(handshake.REASON_WRONG_RECEIVER, f"welcome meant for {message.receiver_id}")
        if self._peers.get(peer.id) is not peer:
            raise handshake.HandshakeError(handshake.REASON_UNKNOWN_SENDER, f"node {peer.id} was removed")
        return peer

    def _attach(self, peer: _Peer, connection: _Connection, flags: int) -> None:
        """Make `connection` the peer's one connection (a newer one replaces an older one) and
        report the peer's greeting `flags`."""
        old = peer.connection
        if old is not None and old is not connection:
            logger.info("peer %d connected again; replacing the old connection", peer.id)
            old.close()
        self._pending.pop(connection, None)
        if connection.handshake_timer is not None:
            connection.handshake_timer.cancel()
        connection.peer = peer
        connection.state = _STATE_OPEN
        peer.connection = connection
        peer.stats.connected_once()
        connection.writer_task = self._spawn(connection._write_frames())
        if not connection.ready.done():
            connection.ready.set_result(True)
        self._greeted.add(peer.id)
        report_greeting(self, peer.id, flags)

    def _detach(self, connection: _Connection) -> None:
        self._pending.pop(connection, None)
        peer = connection.peer
        if peer is not None and peer.connection is connection:
            peer.connection = None


def _not_started(peer_id: int, frame: bytes) -> None:
    raise RuntimeError("the transport was not started")


__all__: List[str] = ["TcpTransport", "tls_contexts"]
