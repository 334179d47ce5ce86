"""`consensus serve`: one node process assembled from its configuration.

Storage (file WAL in ``data_dir``), the TCP peer transport (mutual TLS when ``[tls]`` is set),
failure detectors, the node and the HTTP KV service; SIGTERM or SIGINT stops it cleanly. A fatal
storage error stops the node and the process exits non-zero instead of serving with state it
could not persist.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Optional

from aiohttp import web

from consensus import protocols
from consensus.config import NodeConfig
from consensus.detector import PeerHealth
from consensus.kv import KVService
from consensus.node import MemberAddress, Node, NodeOptions
from consensus.statemachine import KVStore
from consensus.transport import TcpTransport, tls_contexts

log = logging.getLogger("consensus.server")

#: Exit codes of `consensus serve`.
EXIT_OK = 0
EXIT_FATAL = 1


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
        max_entry_bytes=max(8 << 20, cfg.max_value_bytes + (64 << 10)),
    )


def storage_path(cfg: NodeConfig) -> str:
    return os.path.join(cfg.data_dir, cfg.protocol)


def build_node(cfg: NodeConfig, *, join: bool = False) -> "tuple[Node, KVStore]":
    spec = protocols.get(cfg.protocol)
    os.makedirs(cfg.data_dir, exist_ok=True)
    storage = spec.open_storage(storage_path(cfg), cfg.fsync)
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
        join=join,
        health=health,
    )
    return node, kv


async def serve(cfg: NodeConfig, *, join: bool = False, stop: Optional[asyncio.Event] = None) -> int:
    node, kv = build_node(cfg, join=join)
    service = KVService(
        node,
        kv,
        forward=cfg.forward,
        max_value_bytes=cfg.max_value_bytes,
        request_timeout=cfg.request_timeout_ms / 1000.0,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    await node.start()
    runner = web.AppRunner(service.app, access_log=None, handle_signals=False)
    try:
        await runner.setup()
        host, port = split_address(cfg.client_listen or cfg.self_member.client)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        await node.stop()
        raise
    log.info("node %d serving clients on %s:%d, peers on %s", cfg.id, host, port, cfg.peer_listen or cfg.self_member.peer)
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


def run(cfg: NodeConfig, *, join: bool = False) -> int:
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format=f"%(asctime)s n{cfg.id} %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop  # a dependency where it exists (not on Windows); same code, faster loop
    except ImportError:
        return asyncio.run(serve(cfg, join=join))
    if os.environ.get("CONSENSUS_EVENT_LOOP", "") == "asyncio":  # to compare, or to debug
        return asyncio.run(serve(cfg, join=join))
    log.info("event loop: uvloop %s", uvloop.__version__)
    return uvloop.run(serve(cfg, join=join))
