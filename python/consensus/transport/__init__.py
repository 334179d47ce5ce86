"""Peer transports: asyncio TCP (optionally mutual TLS) and an in-memory network for tests.

Both move whole core frames (docs/wire-format.md §2) and never decode them; connections start
with the handshake of docs/wire-format.md §9.
"""

from consensus.transport.base import Transport
from consensus.transport.memory import MemoryNetwork, MemoryTransport
from consensus.transport.tcp import TcpTransport, tls_contexts

__all__ = ["MemoryNetwork", "MemoryTransport", "TcpTransport", "Transport", "tls_contexts"]
