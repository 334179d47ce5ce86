"""The backup file of `consensus snapshot save` / `restore`: a node's replicated state at an index.

Layout (integers little-endian)::

    0   8   magic b"CNSBKUP1"
    8   8   index (u64): the applied index the state covers
    16  8   term (u64) of that index's leader when saved
    24  4   n (u32), then n voter ids (u64 each): the configuration when saved
    ..  8   length (u64) of the state, then the state (the node's snapshot bytes)
    ..  32  SHA-256 of every byte before it

A damaged or truncated file raises `consensus.StorageError`; nothing is restored from it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Sequence, Tuple

from consensus.errors import storage_error

MAGIC = b"CNSBKUP1"
DIGEST_BYTES = 32
VOTERS_MAX = 1 << 16


@dataclass(frozen=True)
class Backup:
    index: int
    term: int
    voters: Tuple[int, ...]
    state: bytes


def encode(*, index: int, term: int, cluster_voters: Sequence[int], state: bytes) -> bytes:
    voters = list(cluster_voters)
    body = b"".join(
        [
            MAGIC,
            struct.pack("<QQI", index, term, len(voters)),
            struct.pack(f"<{len(voters)}Q", *voters),
            struct.pack("<Q", len(state)),
            state,
        ]
    )
    return body + hashlib.sha256(body).digest()


def decode(blob: bytes) -> Backup:
    if len(blob) < len(MAGIC) + 20 + 8 + DIGEST_BYTES or blob[: len(MAGIC)] != MAGIC:
        raise storage_error("corrupt", "not a consensus backup file (bad magic or too short)")
    body, digest = blob[:-DIGEST_BYTES], blob[-DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise storage_error("corrupt", "backup file is damaged: SHA-256 mismatch")
    offset = len(MAGIC)
    index, term, count = struct.unpack_from("<QQI", body, offset)
    offset += 20
    if count > VOTERS_MAX or offset + 8 * count + 8 > len(body):
        raise storage_error("corrupt", "backup file is damaged: voter list out of bounds")
    voters = struct.unpack_from(f"<{count}Q", body, offset)
    offset += 8 * count
    (length,) = struct.unpack_from("<Q", body, offset)
    offset += 8
    if offset + length != len(body):
        raise storage_error("corrupt", "backup file is damaged: state length does not match the file")
    return Backup(index=index, term=term, voters=tuple(voters), state=bytes(body[offset:]))


__all__ = [
    "DIGEST_BYTES",
    "MAGIC",
    "VOTERS_MAX",
    "Backup",
    "decode",
    "encode",
]
