"""Client sessions (Raft thesis §6.3): request ids ``"client:seq"``, the last answer per session,
expiry on the replicated clock. `KVStore` keeps them; the HTTP API parses request ids with them."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from consensus.errors import storage_error
from consensus.statemachines._codec import INT64_MAX, SEQ_MAX, _BadCommand


def parse_request_id(request_id: object) -> Tuple[str, int]:
    """Split `"client:seq"` into the client session id and the sequence number; ValueError unless
    the client is a session id as `KVStore` mints them (a positive decimal number, no leading zero)
    and seq a positive integer."""
    if not isinstance(request_id, str):
        raise ValueError("request_id must be a string 'client:seq'")
    client, sep, seq_text = request_id.rpartition(":")
    if not sep or not client:
        raise ValueError(f"request_id {request_id!r} is not 'client:seq'")
    if not seq_text.isdigit() or not seq_text.isascii() or len(seq_text) > 19:
        raise ValueError(f"request_id {request_id!r}: seq must be a positive integer")
    seq = int(seq_text)
    if not 1 <= seq <= SEQ_MAX:
        raise ValueError(f"request_id {request_id!r}: seq must be in 1..{SEQ_MAX}")
    session_number(client)
    return client, seq


def session_number(client: str) -> int:
    """The number of a session id (`"17"` -> 17); ValueError unless it is one `KVStore` could mint."""
    canonical = client.isascii() and client.isdigit() and not client.startswith("0") and len(client) <= 19
    if not canonical or int(client) > INT64_MAX:
        raise ValueError(f"client {client[:40]!r} is not a session id (open one with POST /v1/sessions)")
    return int(client)


SESSION_TTL_MS_DEFAULT = 60 * 60 * 1000
#: Sessions held at once; opening one more evicts the least recently used (docs/operations.md).
SESSIONS_MAX_DEFAULT = 100_000
#: Expired sessions removed per applied command, at most: the sweep's work per apply is bounded.
SESSION_SWEEP_MAX = 8


class _Session:
    """A client session (Raft thesis §6.3): its last answered request and when it was last used."""

    __slots__ = ("seq", "fingerprint", "answer", "active_ms")

    def __init__(self, seq: int, fingerprint: bytes, answer: Dict[str, Any], active_ms: int) -> None:
        #: Sequence number of the last answered request (0 before the first).
        self.seq = seq
        self.fingerprint = fingerprint
        self.answer = answer
        #: Replicated clock at the session's last request (or its opening).
        self.active_ms = active_ms


def _with_request_id(fields: Dict[str, Any], request_id: Optional[str]) -> Dict[str, Any]:
    if request_id is not None:
        parse_request_id(request_id)
        fields["request_id"] = request_id
    return fields


def _decode_request_id(request_id: object) -> Optional[Tuple[int, int]]:
    """`(session number, seq)` of a command's request id, None without one; `_BadCommand` if bad."""
    if request_id is None:
        return None
    try:
        client, seq = parse_request_id(request_id)
    except ValueError as exc:
        raise _BadCommand(str(exc)) from None
    return session_number(client), seq


def _restore_sessions(rows: List[Any], minted: int, clock_ms: int, tag: str) -> "OrderedDict[int, _Session]":
    """Sessions in their snapshot order, which must be least recently used first."""
    sessions: "OrderedDict[int, _Session]" = OrderedDict()
    last_active = 0
    for row in rows:
        if not (
            isinstance(row, list)
            and len(row) == 5
            and all(isinstance(row[i], int) and not isinstance(row[i], bool) for i in (0, 1, 4))
            and 1 <= row[0] <= minted
            and row[0] not in sessions
            and 0 <= row[1] <= SEQ_MAX
            and isinstance(row[2], bytes)
            and isinstance(row[3], dict)
            and last_active <= row[4] <= clock_ms
        ):
            raise storage_error("corrupt", f"{tag} snapshot: malformed session entry")
        last_active = row[4]
        sessions[row[0]] = _Session(row[1], row[2], row[3], row[4])
    return sessions


__all__ = ["SESSIONS_MAX_DEFAULT", "SESSION_SWEEP_MAX", "SESSION_TTL_MS_DEFAULT", "parse_request_id", "session_number"]
