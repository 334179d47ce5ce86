"""Listening sockets whose connections the caller accepts itself.

`loop.create_server` hands a connection to the caller only when it is established, after the
TLS handshake: until then it holds a descriptor that no limit counts. The peer port
(`consensus.transport.tcp`) and the client port (`consensus.server`) accept sockets here instead,
count each one from the moment it is accepted, and give it to the loop with
`loop.connect_accepted_socket` (TLS included) once they have admitted it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable, List, Set, Tuple

#: The listen backlog (the kernel's queue of connections not yet accepted).
LISTEN_BACKLOG = 128
#: After an accept fails (out of file descriptors...), the listener waits this long to retry.
ACCEPT_RETRY_SECONDS = 0.1


async def open_listeners(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> List[socket.socket]:
    """Bind and listen on every address `host:port` resolves to, like `loop.create_server`
    (SO_REUSEADDR; an IPv6 socket takes IPv6 only); non-blocking sockets, ready to accept."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: List[socket.socket] = []
    bound: Set[Tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in bound:
                continue
            bound.add((family, address))
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(backlog)
            listener.setblocking(False)
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


async def accept_forever(
    listener: socket.socket, on_accepted: Callable[[socket.socket], None], log: logging.Logger, what: str
) -> None:
    """Accept connections on `listener` until cancelled; each new (non-blocking) socket goes to
    `on_accepted`, which owns it from then on. A failed accept (out of descriptors, a connection
    reset before it was accepted...) is logged and retried after `ACCEPT_RETRY_SECONDS`.

    Cancel the task before closing `listener`: the loop must stop polling a descriptor first."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            accepted, _ = await loop.sock_accept(listener)
        except OSError as error:
            log.warning("accepting a %s connection failed: %s", what, error)
            await asyncio.sleep(ACCEPT_RETRY_SECONDS)
            continue
        accepted.setblocking(False)
        on_accepted(accepted)


__all__ = [
    "ACCEPT_RETRY_SECONDS",
    "LISTEN_BACKLOG",
    "accept_forever",
    "open_listeners",
]
