"""`consensus serve`: one node process assembled from its configuration.

Storage (file WAL in ``data_dir``), the TCP peer transport (mutual TLS when ``[tls]`` is set),
failure detectors, the node and the HTTP KV service; SIGTERM or SIGINT stops it cleanly. A fatal
storage error stops the node and the process exits non-zero instead of serving with state it
could not persist.

The client API is served over HTTPS with ``[client_tls]`` (client certificates required when it
names a ``ca``), checks bearer tokens with ``[auth]`` (`consensus.auth`), holds at most
``client_connections_max`` connections, counted from the moment they are accepted (those in
their TLS handshake included; one more is closed at once, answered 503 without TLS), and closes
a connection idle for ``client_idle_timeout_ms`` (also one still sending its request head).
At startup the open-files limit is raised to its hard limit, and a configuration whose
connections could exhaust it is refused (`check_descriptor_budget`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import socket
import ssl
from typing import Callable, List, Optional, Set, Tuple

from aiohttp import web

from consensus import defaults, protocols
from consensus.errors import config_error
from consensus.config import ClientTlsConfig, NodeConfig
from consensus.runtime._datadir import DataDirectory, storage_is_empty
from consensus.runtime._health import PeerHealth
from consensus.service._http import KVService
from consensus.runtime._node import MemberAddress, Node, NodeOptions
from consensus.statemachines._kvstore import KVStore
from consensus.transport import TcpTransport, accept, tls_contexts
from consensus.transport.tcp import PENDING_HANDSHAKES_MAX

try:
    import resource
except ImportError:  # Windows: no descriptor limit to raise or check
    resource = None  # type: ignore[assignment]

log = logging.getLogger("consensus.server")

#: Exit codes of `consensus serve`.
EXIT_OK = 0
EXIT_FATAL = 1
#: A TLS handshake on the client port that takes longer than this is abandoned.
CLIENT_TLS_HANDSHAKE_SECONDS = 10.0
#: What a connection over client_connections_max receives before it is closed.
_BUSY_BODY = b'{"error": "too many client connections; retry shortly", "code": "busy", "indeterminate": false}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


#: File descriptors a node needs besides its client and peer connections: the WAL's segments,
#: snapshots, the data directory, connections that forward requests to the leader, logging.
DESCRIPTOR_MARGIN = 256


def client_tls_contexts(client_tls: ClientTlsConfig) -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context of the client API, client context that forwarding to the leader dials
    with): TLS 1.2 or later; with `ca`, client certificates signed by it are required, forwarding
    presents this node's own certificate and checks the leader's against `ca` (else against the
    system's trust store). An unusable file raises ConfigError naming the field."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    forward = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    forward.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        server.load_cert_chain(client_tls.cert, client_tls.key)
    except (ssl.SSLError, OSError) as exc:
        raise config_error("client_tls.cert", f"cannot load the certificate and key: {exc}") from None
    if client_tls.ca is not None:
        try:
            server.load_verify_locations(cafile=client_tls.ca)
            forward.load_verify_locations(cafile=client_tls.ca)
        except (ssl.SSLError, OSError) as exc:
            raise config_error("client_tls.ca", f"cannot load the CA: {exc}") from None
        server.verify_mode = ssl.CERT_REQUIRED
        forward.load_cert_chain(client_tls.cert, client_tls.key)
    return server, forward


def _refuse(sock: socket.socket, answer_busy: bool) -> None:
    """Close a connection over the cap at once, without reading it; `answer_busy` (plain HTTP
    only: a TLS client could not read it before a handshake) first sends the 503 busy answer."""
    if answer_busy:
        try:
            sock.send(BUSY_RESPONSE)  # a fresh socket's send buffer takes it whole
        except OSError:
            pass
    sock.close()


class ConnectionGate:
    """The client port's listener: it accepts connections itself and serves at most `limit` at
    once.

    A connection is counted from the moment it is accepted, while its TLS handshake runs (which
    `CLIENT_TLS_HANDSHAKE_SECONDS` bounds) too, and released when it closes or its handshake fails:
    sockets that never finish a handshake cannot hold descriptors beyond the cap. One over the
    cap is closed at once (without TLS after a 503 busy answer) and counted in `refused`.
    The accepting itself is shared with the peer port (`consensus.transport.accept`)."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        limit: int,
        ssl_context: Optional[ssl.SSLContext] = None,
        handshake_timeout: float = CLIENT_TLS_HANDSHAKE_SECONDS,
    ) -> None:
        self.factory = factory
        self.limit = limit
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        #: Connections counted against `limit`: established or still in their TLS handshake.
        self.open = 0
        self.refused = 0
        self.listeners: List[socket.socket] = []
        #: Connections accepted but not established yet (in their TLS handshake).
        self._handshaking: Set[_Gated] = set()
        self._tasks: Set["asyncio.Task[None]"] = set()
        self._accept_tasks: List["asyncio.Task[None]"] = []
        self._closed = False

    @property
    def handshaking(self) -> int:
        """How many of the `open` connections are still in their TLS handshake."""
        return len(self._handshaking)

    async def listen(self, host: str, port: int, backlog: int = accept.LISTEN_BACKLOG) -> None:
        self.listeners = await accept.open_listeners(host, port, backlog)
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            self._accept_tasks.append(loop.create_task(accept.accept_forever(listener, self.admit, log, "client")))

    def admit(self, sock: socket.socket) -> None:
        """Count a just accepted socket and hand it to the loop, or refuse it over the cap."""
        if self._closed:
            sock.close()
            return
        if self.open >= self.limit:
            self.refused += 1
            _refuse(sock, answer_busy=self.ssl_context is None)
            return
        self.open += 1
        gated = _Gated(self, sock)
        self._handshaking.add(gated)
        task = asyncio.get_running_loop().create_task(self._hand_over(gated))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_over(self, gated: "_Gated") -> None:
        """Give an admitted socket to the loop; with TLS the loop runs the handshake first."""
        sock = gated.socket
        assert sock is not None
        try:
            if self._closed:
                sock.close()
                return
            gated.handed_over = True
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: gated,
                sock,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.handshake_timeout if self.ssl_context is not None else None,
            )
        except (OSError, asyncio.TimeoutError, ValueError, RuntimeError) as error:
            # The loop closed the socket (ssl.SSLError is an OSError).
            log.debug("a client connection failed before it was established: %s", error)
        finally:
            if gated.inner is None:
                gated.release()

    async def close(self) -> None:
        """Stop accepting and end the connections still in their handshake (established ones
        belong to the HTTP server, which closes them)."""
        if self._closed:
            return
        self._closed = True
        for task in self._accept_tasks:
            task.cancel()
        await asyncio.gather(*self._accept_tasks, return_exceptions=True)
        for listener in self.listeners:
            listener.close()  # after the accept loops stopped polling it
        for gated in list(self._handshaking):
            gated.abort_handshake()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _Gated(asyncio.Protocol):
    """One admitted connection: passes every event to the HTTP protocol once established, and
    releases its place in the gate exactly once."""

    def __init__(self, gate: ConnectionGate, sock: socket.socket) -> None:
        self.gate = gate
        #: The accepted socket, until the connection is established.
        self.socket: Optional[socket.socket] = sock
        #: True once the loop owns the socket (then it is never closed here, only shut down).
        self.handed_over = False
        self.inner: Optional[asyncio.Protocol] = None
        self.counted = True

    def release(self) -> None:
        self.socket = None
        self.gate._handshaking.discard(self)
        if self.counted:
            self.counted = False
            self.gate.open -= 1

    def abort_handshake(self) -> None:
        """Make a pending TLS handshake fail at once: the loop then closes the socket."""
        if self.socket is not None and self.handed_over:
            try:
                self.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the loop closed it already

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.socket = None
        self.gate._handshaking.discard(self)
        if self.gate._closed:
            transport.abort()  # type: ignore[attr-defined]
            return
        self.inner = self.gate.factory()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.release()
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> Optional[bool]:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class ClientSite(web.BaseSite):
    """The client API's listening sockets, with the connection gate accepting on them."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, limit: int, ssl_context: Optional[ssl.SSLContext] = None
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port = host, port
        self.gate: Optional[ConnectionGate] = None
        self._limit = limit

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (the one the kernel chose when asked for port 0)."""
        assert self.gate is not None and self.gate.listeners, "the site is not started"
        return int(self.gate.listeners[0].getsockname()[1])

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.gate = ConnectionGate(server, self._limit, self._ssl_context, CLIENT_TLS_HANDSHAKE_SECONDS)
        await self.gate.listen(self._host, self._port, self._backlog)

    async def stop(self) -> None:
        if self.gate is not None:
            await self.gate.close()
        await super().stop()


def split_address(address: str) -> "tuple[str, int]":
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def node_options(cfg: NodeConfig) -> NodeOptions:
    return NodeOptions(
        tick_interval=cfg.tick_ms / 1000.0,
        election_ticks=cfg.election_ticks,
        heartbeat_ticks=cfg.heartbeat_ticks,
        pre_vote=cfg.pre_vote,
        check_quorum=cfg.check_quorum,
        request_timeout=cfg.request_timeout_ms / 1000.0,
        max_pending=cfg.max_pending_requests,
        snapshot_entries=cfg.snapshot_entries,
        phi_threshold=cfg.phi_threshold,
        # A value of max_value_bytes plus its key, request id and envelope always fits an entry.
        max_entry_bytes=max(defaults.MAX_ENTRY_BYTES, cfg.max_value_bytes + (64 << 10)),
    )


def storage_path(cfg: NodeConfig) -> str:
    return os.path.join(cfg.data_dir, cfg.protocol)


def open_data_dir(cfg: NodeConfig, *, join: bool = False) -> DataDirectory:
    """The node's data directory, its identity checked (ConfigError for another cluster, node or
    protocol; StorageError for a damaged identity file). ``join`` (`serve --join`) means
    ``initial_state = "existing"``."""
    return DataDirectory(
        cfg.data_dir,
        cluster_id=cfg.cluster_id,
        node_id=cfg.id,
        protocol=cfg.protocol,
        members=cfg.member_ids,
        initial_state="existing" if join else cfg.initial_state,
    )


def build_node(cfg: NodeConfig, *, join: bool = False) -> "tuple[Node, KVStore]":
    spec = protocols.get(cfg.protocol)
    os.makedirs(cfg.data_dir, exist_ok=True)
    directory = open_data_dir(cfg, join=join)  # before the storage is opened (or created)
    storage = spec.open_storage(storage_path(cfg), cfg.fsync)
    try:
        directory.prepare(storage_is_empty(storage))
    except BaseException:
        storage.close()
        raise
    ssl_server = ssl_client = None
    if cfg.tls is not None:
        ssl_server, ssl_client = tls_contexts(cfg.tls.cert, cfg.tls.key, cfg.tls.ca)
    me = cfg.self_member
    transport = TcpTransport(
        cfg.id,
        cluster_id=cfg.cluster_id,
        protocol=cfg.protocol,
        listen=cfg.peer_listen or me.peer,
        peers=cfg.peers,
        ssl_server=ssl_server,
        ssl_client=ssl_client,
        max_frame_bytes=cfg.max_frame_bytes,
        queue_frames=cfg.send_queue_frames,
    )
    directory.attach(transport)
    health = PeerHealth(cfg.peers.keys(), timeout=cfg.election_timeout_seconds, phi_threshold=cfg.phi_threshold)
    kv = KVStore()
    node = Node(
        cfg.id,
        [m.id for m in cfg.members],
        kv,
        transport,
        protocol=cfg.protocol,
        storage=storage,
        options=node_options(cfg),
        addresses={m.id: MemberAddress(m.peer, m.client) for m in cfg.members},
        join=directory.initial_state == "existing",
        health=health,
        start_gate=directory.start_gate,
    )
    return node, kv


def client_port_warnings(cfg: NodeConfig, host: str) -> "list[str]":
    """What an operator must know about a client port on `host` that is not loopback: without
    [auth] every client may do everything, and without [client_tls] tokens travel in clear text."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = False  # a host name: assume others can reach it
    if loopback:
        return []
    warnings = []
    if cfg.auth is None:
        warnings.append(
            f"the client port listens on {host}, not a loopback address, without [auth]: any client that "
            "can reach it may do everything, membership changes included (docs/security.md)"
        )
    if cfg.client_tls is None:
        warnings.append(
            f"the client port listens on {host}, not a loopback address, without [client_tls]: requests, "
            "answers and tokens travel in clear text (docs/security.md)"
        )
    return warnings


def build_service(cfg: NodeConfig, node: Node, kv: KVStore) -> "tuple[KVService, Optional[ssl.SSLContext]]":
    """The KV service of `node` as `cfg` configures its client API, and the server TLS context."""
    server_ssl = forward_ssl = None
    if cfg.client_tls is not None:
        server_ssl, forward_ssl = client_tls_contexts(cfg.client_tls)
    service = KVService(
        node,
        kv,
        forward=cfg.forward,
        max_value_bytes=cfg.max_value_bytes,
        request_timeout=cfg.request_timeout_ms / 1000.0,
        tokens=cfg.auth.tokens if cfg.auth is not None else None,
        metrics_public=cfg.metrics_public,
        scheme="https" if server_ssl is not None else "http",
        forward_ssl=forward_ssl,
    )
    return service, server_ssl


def client_runner(service: KVService, idle_timeout: float) -> web.AppRunner:
    """The aiohttp runner of the client API: no access log (it could carry request details), and
    an idle connection, or one still sending its request head, closed after `idle_timeout` s."""
    return web.AppRunner(service.app, access_log=None, handle_signals=False, keepalive_timeout=idle_timeout)


async def serve(cfg: NodeConfig, *, join: bool = False, stop: Optional[asyncio.Event] = None) -> int:
    node, kv = build_node(cfg, join=join)
    service, server_ssl = build_service(cfg, node, kv)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    if not await start_node(node, stop):
        await node.stop()
        return EXIT_OK
    runner = client_runner(service, cfg.client_idle_timeout_ms / 1000.0)
    try:
        await runner.setup()
        host, port = split_address(cfg.client_listen or cfg.self_member.client)
        site = ClientSite(runner, host, port, limit=cfg.client_connections_max, ssl_context=server_ssl)
        await site.start()
        service.connection_gate = site.gate
    except BaseException:
        await runner.cleanup()
        await node.stop()
        raise
    log.info(
        "node %d serving clients on %s (%s), peers on %s",
        cfg.id,
        site.name,
        f"{len(service.tokens)} tokens" if service.tokens is not None else "no tokens: every client may do everything",
        cfg.peer_listen or cfg.self_member.peer,
    )
    for warning in client_port_warnings(cfg, host):
        log.warning("node %d: %s", cfg.id, warning)
    stopped = asyncio.ensure_future(node.wait_stopped())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({stopped, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = EXIT_OK
    if stopped.done() and stopped.exception() is not None:
        log.critical("node %d stopped: %s", cfg.id, stopped.exception())
        code = EXIT_FATAL
    stopping.cancel()
    stopped.cancel()
    await runner.cleanup()
    await node.stop()
    return code


async def start_node(node: Node, stop: asyncio.Event) -> bool:
    """Starts `node`; False if `stop` was set first (a node on a fresh data directory waits for its
    peers at the data-directory gate, `consensus.datadir`). A refused start is logged, the node
    stopped, and the error raised (`consensus serve` exits non-zero)."""
    starting = asyncio.ensure_future(node.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
    if starting.cancelled():
        return False
    error = starting.exception()
    if error is not None:
        log.critical("node %d did not start: %s: %s", node.id, type(error).__name__, error)
        await node.stop()
        raise error
    return True


def raise_descriptor_limit() -> Optional[int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the hard limit is never changed); the
    soft limit then in force, or None where there is no such limit (Windows, or unlimited)."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and soft != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:  # macOS refuses an unlimited soft limit
            log.warning("cannot raise the open-files limit from %d to %s: %s", soft, hard, error)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def descriptors_needed(cfg: NodeConfig) -> int:
    """File descriptors a node may hold at once: every client connection (those in their TLS
    handshake included), the peer port's pending handshakes, one connection per member and
    `DESCRIPTOR_MARGIN`."""
    return cfg.client_connections_max + PENDING_HANDSHAKES_MAX + len(cfg.members) + DESCRIPTOR_MARGIN


#: The fewest client connections the default cap is lowered to on a host with few descriptors.
CLIENT_CONNECTIONS_MIN = 64


def check_descriptor_budget(cfg: NodeConfig) -> NodeConfig:
    """Raise the open-files limit, then fit the client connection cap into it: out of descriptors,
    the next WAL segment could not be created and the node would stop. The default cap is lowered
    to what fits (with a warning); a cap set in the file that does not fit is a ConfigError on
    client_connections_max. Returns the configuration to run with."""
    limit = raise_descriptor_limit()
    needed = descriptors_needed(cfg)
    if limit is None or needed <= limit:
        return cfg
    others = needed - cfg.client_connections_max
    default = next(f.default for f in dataclasses.fields(NodeConfig) if f.name == "client_connections_max")
    if cfg.client_connections_max == default and limit - others >= CLIENT_CONNECTIONS_MIN:
        log.warning(
            "the open-files limit is %d: serving at most %d client connections (default %d)",
            limit, limit - others, default,
        )
        return dataclasses.replace(cfg, client_connections_max=limit - others)
    raise config_error(
        "client_connections_max",
        f"{cfg.client_connections_max} client connections need {needed} file descriptors with the "
        f"{others} the node needs besides ({PENDING_HANDSHAKES_MAX} pending peer handshakes, "
        f"{len(cfg.members)} members, {DESCRIPTOR_MARGIN} for the WAL, snapshots and the data directory), "
        f"but the open-files limit is {limit} (RLIMIT_NOFILE, raised to its hard limit): set "
        f"client_connections_max to at most {max(limit - others, 0)} or raise the hard limit "
        "(ulimit -Hn, LimitNOFILE= of a systemd unit)",
    )


def run(cfg: NodeConfig, *, join: bool = False) -> int:
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format=f"%(asctime)s n{cfg.id} %(levelname)s %(name)s: %(message)s",
    )
    cfg = check_descriptor_budget(cfg)
    try:
        import uvloop  # a dependency where it exists (not on Windows); same code, faster loop
    except ImportError:
        return asyncio.run(serve(cfg, join=join))
    if os.environ.get("CONSENSUS_EVENT_LOOP", "") == "asyncio":  # to compare, or to debug
        return asyncio.run(serve(cfg, join=join))
    log.info("event loop: uvloop %s", uvloop.__version__)
    return uvloop.run(serve(cfg, join=join))


__all__ = [
    "BUSY_RESPONSE",
    "CLIENT_CONNECTIONS_MIN",
    "CLIENT_TLS_HANDSHAKE_SECONDS",
    "DESCRIPTOR_MARGIN",
    "EXIT_FATAL",
    "EXIT_OK",
    "ClientSite",
    "ConnectionGate",
    "build_node",
    "build_service",
    "check_descriptor_budget",
    "client_port_warnings",
    "client_runner",
    "client_tls_contexts",
    "descriptors_needed",
    "node_options",
    "open_data_dir",
    "raise_descriptor_limit",
    "run",
    "serve",
    "split_address",
    "start_node",
    "storage_path",
]
