"""The envelope of every entry the runtime proposes, and the clock it stamps commands with.

An entry's first byte says what follows: ``0x01`` + a state-machine command, ``0x03`` + the
leader's clock (u64 milliseconds, little endian) + a state-machine command, or ``0x02`` + a
runtime record (msgpack; today the addresses of a member). The bytes are replicated and durable:
the tags and the layout never change.
"""

from __future__ import annotations

import struct
import time
from typing import Any, Mapping, Optional, Tuple

import msgpack

from consensus._core import ConfigError
from consensus.transport.base import check_node_id

ENVELOPE_COMMAND = 0x01
ENVELOPE_SYSTEM = 0x02
#: A command stamped with the leader's clock when it was proposed: the state machine's only time.
ENVELOPE_STAMPED_COMMAND = 0x03
STAMP = struct.Struct("<Q")
STAMP_BYTES = STAMP.size


def stamped_command(stamp_ms: int, command: bytes) -> bytes:
    return bytes([ENVELOPE_STAMPED_COMMAND]) + STAMP.pack(stamp_ms) + bytes(command)


def system_record(record: Mapping[str, Any]) -> bytes:
    return bytes([ENVELOPE_SYSTEM]) + msgpack.packb(dict(record), use_bin_type=True)


def address_record(member_id: int, peer: str, client: str) -> bytes:
    """The runtime record that replicates a member's addresses."""
    return system_record({"op": "address", "id": int(member_id), "peer": peer, "client": client})


def decode_address_record(payload: bytes) -> Tuple[int, str, str]:
    """`(member, peer, client)` of a runtime record; ValueError when it is not a valid one (it is
    durable, so the caller skips it rather than stopping)."""
    try:
        record = msgpack.unpackb(payload, raw=False)
        if not isinstance(record, dict) or record.get("op") != "address":
            raise ValueError(f"unknown runtime record {record!r:.80}")
        member = check_node_id("id", record.get("id"))
    except (ConfigError, msgpack.UnpackException) as exc:
        raise ValueError(str(exc)) from exc
    peer, client = record.get("peer"), record.get("client")
    if not isinstance(peer, str) or not isinstance(client, str):
        raise ValueError("addresses must be strings")
    return member, peer, client


class LeaderClock:
    """The leader's clock in milliseconds: the replicated clock when this leadership began, plus
    the monotonic time elapsed since. A step of the wall clock (NTP, a resumed VM) cannot move it,
    so it can neither freeze leases for years nor end them early; and it never goes below the
    replicated clock, so every replica's clock only moves forward. The first leader of a cluster
    starts from the wall clock (an offset, harmless: only differences matter)."""

    def __init__(self, state_machine: object) -> None:
        self._state_machine = state_machine
        #: (clock at the start of this leadership, monotonic time then); None when not leading.
        self._origin: Optional[Tuple[int, float]] = None

    def stamp(self) -> int:
        now = time.monotonic()
        replicated = int(getattr(self._state_machine, "clock_ms", 0) or 0)
        if self._origin is None:
            self._origin = (replicated or int(time.time() * 1000), now)
        base, since = self._origin
        return max(base + int((now - since) * 1000), replicated)

    def leadership_ended(self) -> None:
        """The next leadership starts from the replicated clock."""
        self._origin = None


__all__ = [
    "ENVELOPE_COMMAND",
    "ENVELOPE_STAMPED_COMMAND",
    "ENVELOPE_SYSTEM",
    "STAMP",
    "STAMP_BYTES",
    "LeaderClock",
    "address_record",
    "decode_address_record",
    "stamped_command",
    "system_record",
]
