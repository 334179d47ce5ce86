"""Replicated state machines: the protocol the runtime applies committed entries to, and built-ins.

Every replica applies the same committed commands in the same order, so `apply` must be a pure
function of the state and the command: no local clock, no randomness, no iteration order that
differs between processes. Time comes only from the log: a machine with `advance_clock(time_ms)` is
given the leader's stamp before each command (`_ReplicatedClock`). A malformed or unknown command is not an exception: `apply` returns an error
result (`{"error": "bad_command", "message": ...}`) and leaves the state unchanged, because an
exception on one committed entry would wedge every replica at the same index.

Commands and snapshots are msgpack (`use_bin_type=True`, strict decoding, bounded sizes), never
pickle. Snapshots are canonical (maps with sorted keys) and carry a CRC32, so two replicas with the
same state produce the same bytes and damaged bytes raise `StorageError` on `restore`.

The built-ins (`KVStore`, `ReplicatedDict`, `Counter`, `Lock`) have static `encode_*` command
builders and, once attached to a running node with `attach(proposer)`, async helpers that propose a
command and return the decoded result. An error result makes the helper raise `CommandRejectedError`.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections import OrderedDict
from typing import (
    Any,
    Callable,
    Dict,
    ItemsView,
    Iterator,
    KeysView,
    List,
    Optional,
    Protocol,
    Tuple,
    runtime_checkable,
)

import msgpack

from consensus._core import ConsensusError, StorageError

log = logging.getLogger("consensus.statemachine")

__all__ = [
    "CLOCK_MS_MAX",
    "COMMAND_BYTES_MAX",
    "CommandRejectedError",
    "Counter",
    "KVStore",
    "Lock",
    "Proposer",
    "ReplicatedDict",
    "StateMachine",
    "parse_request_id",
    "session_number",
]

#: Largest command `apply` decodes (the default peer frame bound); a larger one is a bad command.
COMMAND_BYTES_MAX = 64 << 20
#: Keys, lock names, owners and client ids are UTF-8 text of at most this many bytes.
NAME_BYTES_MAX = 1024
#: Deepest nesting of lists and maps accepted inside a ReplicatedDict value.
VALUE_DEPTH_MAX = 32
#: msgpack integers are 64-bit; a counter or token outside this range could not be snapshotted.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
#: Largest sequence number of a request id, and of a lease duration.
SEQ_MAX = INT64_MAX
TTL_MS_MAX = 1 << 40
#: Largest clock stamp `advance_clock` accepts (2^53 ms: about 285,000 years after 1970); a larger
#: one, a negative one or a non-integer is refused and counted, never applied.
CLOCK_MS_MAX = 1 << 53

SNAPSHOT_FORMAT_VERSION = 1


@runtime_checkable
class StateMachine(Protocol):
    """What the runtime applies committed entries to."""

    def apply(self, index: int, command: bytes) -> object:
        """Apply one committed command (deterministic); the result goes to the proposer."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as bytes (identical on replicas with identical state)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot; damaged bytes raise `StorageError`."""
        ...


@runtime_checkable
class Proposer(Protocol):
    """What the built-ins need from a running node (`consensus.Node` provides it)."""

    async def propose(self, command: bytes) -> object:
        """Replicate `command`; resolves with `apply()`'s result for that entry."""
        ...

    async def read_index(self) -> None:
        """Linearizable read barrier: returns once the local applied index covers the read index."""
        ...


class CommandRejectedError(ConsensusError):
    """A command was committed and applied, and the state machine answered with an error.

    `code` is the result's `error` field (`bad_command`, `request_id_reused`, `session_expired`,
    `unknown_session`, `overflow`, ...), `result` the whole error result. Nothing was
    changed by the command.
    """

    code: str
    result: Dict[str, Any]

    def __init__(self, result: Dict[str, Any]) -> None:
        self.code = str(result.get("error", "error"))
        self.result = result
        super().__init__(f"{self.code}: {result.get('message', '')}")


# ---------------------------------------------------------------------------- msgpack helpers


class _BadCommand(Exception):
    """Internal: the command cannot be applied; becomes a `bad_command` result."""


def _error(code: str, message: str) -> Dict[str, Any]:
    return {"error": code, "message": message}


def _reject_ext(code: int, data: bytes) -> object:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _unpack(data: object, limit: int) -> object:
    """Strict msgpack decoding: one object, no trailing bytes, no extension types, str map keys."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > limit:
        raise ValueError(f"{len(data)} bytes exceed the limit of {limit}")
    return msgpack.unpackb(
        bytes(data),
        raw=False,
        use_list=True,
        strict_map_key=True,
        ext_hook=_reject_ext,
        timestamp=0,
    )


def _sort_key(key: object) -> Tuple[bool, Any]:
    # Map keys are str or bytes after strict decoding; bytes sort after all strings.
    return (isinstance(key, bytes), key)


def _canonical(value: object) -> object:
    """The same value with every map's keys sorted, so equal values pack to equal bytes."""
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value, key=_sort_key)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _pack(value: object) -> bytes:
    packed = msgpack.packb(_canonical(value), use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _check_value(value: object, depth: int = 0) -> None:
    """Raise `_BadCommand` unless `value` is plain msgpack data (no extension types, bounded depth)."""
    if depth > VALUE_DEPTH_MAX:
        raise _BadCommand(f"value nested deeper than {VALUE_DEPTH_MAX}")
    if value is None or isinstance(value, (bool, str, bytes)):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= (1 << 64) - 1:
            raise _BadCommand("integer out of msgpack range")
        return
    if isinstance(value, float):
        return
    if isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, bytes)):
                raise _BadCommand("map keys must be str or bytes")
            _check_value(item, depth + 1)
        return
    raise _BadCommand(f"unsupported value type {type(value).__name__}")


def _decode_command(command: bytes, ops: Dict[str, Tuple[str, ...]]) -> Tuple[str, Dict[str, Any]]:
    """Decode `{"op": name, field: value, ...}`; `ops` names the fields each op requires.

    Unknown ops, missing or unknown fields are `_BadCommand`. `request_id` is allowed everywhere
    (each machine decides whether it uses it).
    """
    try:
        decoded = _unpack(command, COMMAND_BYTES_MAX)
    except Exception as exc:  # msgpack raises several types for malformed input
        raise _BadCommand(f"undecodable command: {exc}") from None
    if not isinstance(decoded, dict):
        raise _BadCommand("a command is a msgpack map")
    op = decoded.get("op")
    if not isinstance(op, str) or op not in ops:
        raise _BadCommand(f"unknown op {op!r}")
    required = ops[op]
    for name in required:
        if name not in decoded:
            raise _BadCommand(f"{op}: missing field {name!r}")
    extra = set(decoded) - set(required) - {"op", "request_id"}
    if extra:
        raise _BadCommand(f"{op}: unknown fields {sorted(extra, key=_sort_key)!r}")
    return op, decoded


def _name(value: object, what: str) -> str:
    """A key, lock name, owner or client id: non-empty str of at most NAME_BYTES_MAX UTF-8 bytes."""
    if not isinstance(value, str):
        raise _BadCommand(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise _BadCommand(f"{what} must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _BadCommand(f"{what} is not valid UTF-8") from None
    if size > NAME_BYTES_MAX:
        raise _BadCommand(f"{what} is {size} bytes, more than {NAME_BYTES_MAX}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _BadCommand(f"{what} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _BadCommand(f"{what} is not valid UTF-8") from None
    return value


def _int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadCommand(f"{what} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise _BadCommand(f"{what} must be in {low}..{high}, got {value}")
    return value


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


def _encode(fields: Dict[str, Any]) -> bytes:
    return _pack(fields)


def _check_encode_name(value: object, what: str) -> None:
    try:
        _name(value, what)
    except _BadCommand as exc:
        raise (TypeError if not isinstance(value, str) else ValueError)(str(exc)) from None


def _check_encode_text(value: object, what: str) -> None:
    try:
        _text(value, what)
    except _BadCommand as exc:
        raise (TypeError if not isinstance(value, str) else ValueError)(str(exc)) from None


def _check_encode_int(value: object, what: str, low: int, high: int) -> None:
    try:
        _int(value, what, low, high)
    except _BadCommand as exc:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        raise (ValueError if is_int else TypeError)(str(exc)) from None


def _seal(tag: str, body: Dict[str, Any]) -> bytes:
    """Snapshot envelope: [tag, version, crc32(body), body], all canonical msgpack."""
    return _seal_packed(tag, _pack(body))


def _seal_packed(tag: str, packed: bytes) -> bytes:
    """The envelope around an already packed (canonical) body, without copying it more than once."""
    packer = msgpack.Packer(use_bin_type=True)
    head = packer.pack_array_header(4) + packer.pack(tag) + packer.pack(SNAPSHOT_FORMAT_VERSION)
    head += packer.pack(zlib.crc32(packed)) + _bin_header(len(packed))
    return head + packed


def _bin_header(length: int) -> bytes:
    """The msgpack header of a `bin` of `length` bytes (bin 8, bin 16 or bin 32, big-endian)."""
    if length < 1 << 8:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 1 << 16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


#: Rows per piece when a large table is encoded for a snapshot.
_SNAPSHOT_CHUNK_ROWS = 2048


def _unseal(tag: str, data: bytes) -> Dict[str, Any]:
    """Open a snapshot envelope written by `_seal`; anything unexpected is `StorageError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StorageError(f"{tag} snapshot: expected bytes, got {type(data).__name__}")
    try:
        envelope = _unpack(data, len(data))
    except Exception as exc:
        raise StorageError(f"{tag} snapshot: undecodable: {exc}") from None
    if not (isinstance(envelope, list) and len(envelope) == 4):
        raise StorageError(f"{tag} snapshot: not a snapshot envelope")
    found_tag, version, crc, packed = envelope
    if found_tag != tag:
        raise StorageError(f"{tag} snapshot: holds {found_tag!r} state")
    if version != SNAPSHOT_FORMAT_VERSION:
        raise StorageError(f"{tag} snapshot: unsupported format version {version!r}")
    if not isinstance(packed, bytes) or not isinstance(crc, int) or zlib.crc32(packed) != crc:
        raise StorageError(f"{tag} snapshot: checksum mismatch")
    try:
        body = _unpack(packed, len(packed))
    except Exception as exc:
        raise StorageError(f"{tag} snapshot: undecodable body: {exc}") from None
    if not isinstance(body, dict):
        raise StorageError(f"{tag} snapshot: body is not a map")
    return body


def _field(body: Dict[str, Any], name: str, kind: type, tag: str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise StorageError(f"{tag} snapshot: field {name!r} is missing or not {kind.__name__}")
    return value


class _Attachable:
    """The async side of a built-in: a proposer to send commands through."""

    _proposer: Optional[Proposer] = None

    def attach(self, proposer: Proposer) -> None:
        """Bind the async helpers to a running node (the runtime calls this)."""
        self._proposer = proposer

    def _require_proposer(self) -> Proposer:
        if self._proposer is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a node: call attach(node) first")
        return self._proposer

    async def _propose(self, command: bytes) -> Any:
        result = await self._require_proposer().propose(command)
        if isinstance(result, dict) and "error" in result:
            raise CommandRejectedError(result)
        return result


class _ReplicatedClock:
    """The leader's clock, as replicated state: the only time a state machine may read.

    The runtime stamps every command with the leader's clock in milliseconds when it proposes it
    (the replicated clock when that leadership began plus the monotonic time since), and calls
    `advance_clock(stamp)` just before applying that command on every
    replica. The clock is the largest valid stamp applied so far: the same on every replica, never
    going backwards (a new leader with a slower clock leaves it where it is), kept in snapshots.
    A stamp outside 0..CLOCK_MS_MAX or not an integer is refused: it is counted in
    `invalid_clock_stamps` (local, not replicated) and logged, and the clock does not move.
    """

    _clock_ms: int = 0
    #: Stamps refused by `advance_clock` since this object was created (a diagnostic counter).
    invalid_clock_stamps: int = 0

    def advance_clock(self, time_ms: int) -> None:
        """Move the clock to `time_ms` if that is later; called before each stamped command."""
        if type(time_ms) is int and self._clock_ms < time_ms <= CLOCK_MS_MAX:  # the usual case
            self._clock_ms = time_ms
            return
        if isinstance(time_ms, bool) or not isinstance(time_ms, int) or not 0 <= time_ms <= CLOCK_MS_MAX:
            self._refuse_stamp(time_ms)
            return
        if time_ms > self._clock_ms:
            self._clock_ms = time_ms

    def _refuse_stamp(self, time_ms: object) -> None:
        self.invalid_clock_stamps += 1
        count = self.invalid_clock_stamps
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th, ...: a flood cannot flood the log
            log.warning(
                "%s: refused clock stamp %r (valid: integers 0..%d); %d refused so far",
                type(self).__name__, time_ms, CLOCK_MS_MAX, count,
            )

    @property
    def clock_ms(self) -> int:
        """The replicated clock: the largest valid stamp applied so far (0 before the first)."""
        return self._clock_ms


def _clock_field(body: Dict[str, Any], tag: str) -> int:
    clock_ms = _field(body, "clock_ms", int, tag)
    if not 0 <= clock_ms <= CLOCK_MS_MAX:
        raise StorageError(f"{tag} snapshot: clock_ms out of range")
    return clock_ms


# ---------------------------------------------------------------------------- KVStore

#: How long a client session lives without a request, on the replicated clock (docs/operations.md).
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


_KV_OPS: Dict[str, Tuple[str, ...]] = {
    "put": ("key", "value"),
    "delete": ("key",),
    "cas": ("key", "expected", "value"),
    "open_session": (),
}


class KVStore(_ReplicatedClock, _Attachable):
    """String keys to string values with one store-wide revision counter (docs/design.md §3).

    Every successful write increases `revision` by one and stores it as the key's modification
    revision; revisions are never reused.

    Idempotent writes use client sessions (Raft thesis §6.3, docs/operations.md): `open_session`
    mints a session id from a replicated counter; writes may then carry a `request_id`
    ("<session>:<seq>"). A retry of the last answered request of a live session returns its first
    answer without applying it again. A session expires once `session_ttl_ms` passes on the
    replicated clock (`advance_clock`) without a request naming it; a request naming a session that
    was minted but is gone answers `session_expired` and changes nothing, so a retry is never
    applied twice. At most `max_sessions` sessions are held; opening one more evicts the least
    recently used session (the thesis's rule), whose next request then answers `session_expired`
    too: a full table never locks new clients out, and nothing is applied twice. The table is kept
    least recently used first, in apply order (the replicated clock at the last request, then the
    log order of that request), so every replica evicts the same session, in O(1).
    `session_ttl_ms` and `max_sessions` must be the same on every replica.
    """

    SNAPSHOT_TAG = "consensus.kv"

    def __init__(
        self, max_sessions: int = SESSIONS_MAX_DEFAULT, session_ttl_ms: int = SESSION_TTL_MS_DEFAULT
    ) -> None:
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError("max_sessions must be a positive integer")
        if isinstance(session_ttl_ms, bool) or not isinstance(session_ttl_ms, int):
            raise ValueError("session_ttl_ms must be an integer")
        if not 1 <= session_ttl_ms <= TTL_MS_MAX:
            raise ValueError(f"session_ttl_ms must be in 1..{TTL_MS_MAX}")
        self.max_sessions = max_sessions
        self.session_ttl_ms = session_ttl_ms
        self._data: Dict[str, Tuple[str, int]] = {}
        self._revision = 0
        #: Live sessions by number, least recently used first (so the expired ones, and the one to
        #: evict when the table is full, are in front).
        self._sessions: "OrderedDict[int, _Session]" = OrderedDict()
        #: The last session number minted: every number up to it was handed out once.
        self._sessions_minted = 0

    # ------------------------------------------------------------------ commands

    @staticmethod
    def encode_open_session() -> bytes:
        """Command: open a client session; applies to `{"client": "<id>", "ttl_ms": T}`."""
        return _encode({"op": "open_session"})

    @staticmethod
    def encode_put(key: str, value: str, request_id: Optional[str] = None) -> bytes:
        """Command: set `key` to `value`."""
        _check_encode_name(key, "key")
        _check_encode_text(value, "value")
        return _encode(_with_request_id({"op": "put", "key": key, "value": value}, request_id))

    @staticmethod
    def encode_delete(key: str, request_id: Optional[str] = None) -> bytes:
        """Command: remove `key`."""
        _check_encode_name(key, "key")
        return _encode(_with_request_id({"op": "delete", "key": key}, request_id))

    @staticmethod
    def encode_cas(key: str, expected: Optional[str], value: str, request_id: Optional[str] = None) -> bytes:
        """Command: set `key` to `value` if its value is `expected` (None: only if absent)."""
        _check_encode_name(key, "key")
        if expected is not None:
            _check_encode_text(expected, "expected")
        _check_encode_text(value, "value")
        fields = {"op": "cas", "key": key, "expected": expected, "value": value}
        return _encode(_with_request_id(fields, request_id))

    # ------------------------------------------------------------------ StateMachine

    def apply(self, index: int, command: bytes) -> object:
        try:
            op, fields = _decode_command(command, _KV_OPS)
            if op == "open_session":
                if "request_id" in fields:
                    raise _BadCommand("open_session takes no request_id")
            else:
                key, args = self._write_arguments(op, fields)
                request = _decode_request_id(fields.get("request_id"))
        except _BadCommand as exc:
            return _error("bad_command", str(exc))
        self._sweep_sessions()
        if op == "open_session":
            return self._open_session()
        if request is None:
            return self._write(op, key, args)
        return self._write_once(op, key, args, *request)

    @staticmethod
    def _write_arguments(op: str, fields: Dict[str, Any]) -> Tuple[str, Tuple[Optional[str], ...]]:
        key = _name(fields["key"], "key")
        if op == "put":
            return key, (_text(fields["value"], "value"),)
        if op == "delete":
            return key, ()
        expected = fields["expected"]
        if expected is not None:
            expected = _text(expected, "expected")
        return key, (expected, _text(fields["value"], "value"))

    def _write(self, op: str, key: str, args: Tuple[Optional[str], ...]) -> Dict[str, Any]:
        if op == "put":
            return self._put(key, str(args[0]))
        if op == "delete":
            return self._delete(key)
        return self._cas(key, args[0], str(args[1]))

    def _write_once(
        self, op: str, key: str, args: Tuple[Optional[str], ...], number: int, seq: int
    ) -> Dict[str, Any]:
        """A write with a request id: applied at most once within its session's lifetime."""
        found = self._live_session(number)
        if not isinstance(found, _Session):
            return found
        session = found
        self._touch(number, session)
        fingerprint = hashlib.sha256(_pack([op, key, *args])).digest()
        if seq < session.seq:
            return _error(
                "request_id_reused",
                f"request {number}:{seq} is older than the last answered {number}:{session.seq}",
            )
        if seq == session.seq:
            if session.fingerprint == fingerprint:
                return dict(session.answer)
            return _error("request_id_reused", f"request id {number}:{seq} was used for another request")
        answer = self._write(op, key, args)
        session.seq, session.fingerprint, session.answer = seq, fingerprint, dict(answer)
        return answer

    def _put(self, key: str, value: str) -> Dict[str, Any]:
        self._revision += 1
        self._data[key] = (value, self._revision)
        return {"revision": self._revision}

    def _delete(self, key: str) -> Dict[str, Any]:
        if key not in self._data:
            return {"revision": self._revision, "deleted": False}
        self._revision += 1
        del self._data[key]
        return {"revision": self._revision, "deleted": True}

    def _cas(self, key: str, expected: Optional[str], value: str) -> Dict[str, Any]:
        current = self._data.get(key)
        matches = current is None if expected is None else current is not None and current[0] == expected
        if not matches:
            return {"succeeded": False, "revision": current[1] if current is not None else 0}
        self._revision += 1
        self._data[key] = (value, self._revision)
        return {"succeeded": True, "revision": self._revision}

    # ------------------------------------------------------------------ sessions

    def _expired(self, session: _Session) -> bool:
        return self._clock_ms - session.active_ms >= self.session_ttl_ms

    def _live_session(self, number: int) -> "_Session | Dict[str, Any]":
        """The live session `number`, or the error result for a request naming it."""
        session = self._sessions.get(number)
        if session is not None and self._expired(session):
            del self._sessions[number]
            session = None
        if session is not None:
            return session
        if number <= self._sessions_minted:
            return _error(
                "session_expired",
                f"session {number} expired (no request for {self.session_ttl_ms} ms, or evicted as the"
                f" least recently used of {self.max_sessions} sessions); open a new one."
                " Whether an earlier attempt of this request was applied cannot be known from it",
            )
        return _error("unknown_session", f"session {number} was never opened")

    def _touch(self, number: int, session: _Session) -> None:
        session.active_ms = self._clock_ms
        self._sessions.move_to_end(number)

    def _sweep_sessions(self) -> None:
        """Remove up to SESSION_SWEEP_MAX expired sessions (the least recently used come first)."""
        for _ in range(SESSION_SWEEP_MAX):
            if not self._sessions:
                return
            number, session = next(iter(self._sessions.items()))
            if not self._expired(session):
                return
            del self._sessions[number]

    def _open_session(self) -> Dict[str, Any]:
        if self._sessions_minted >= INT64_MAX:
            return _error("overflow", "session ids exhausted")
        if len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)  # the least recently used: its owner gets session_expired
        self._sessions_minted += 1
        self._sessions[self._sessions_minted] = _Session(0, b"", {}, self._clock_ms)
        return {"client": str(self._sessions_minted), "ttl_ms": self.session_ttl_ms}

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        return self.snapshot_writer()()

    def snapshot_writer(self) -> Callable[[], bytes]:
        """Captures the state now (a C-level copy of the table) and returns a function that
        encodes it later, on any thread, to exactly the bytes `snapshot()` gives. The encoding
        packs rows in chunks, so a thread doing it lets the event loop run in between."""
        revision, clock_ms, minted = self._revision, self._clock_ms, self._sessions_minted
        items = list(self._data.items())
        # The sessions' order (least recently used first) is part of the state; a list keeps it.
        sessions = _canonical(
            [[number, s.seq, s.fingerprint, s.answer, s.active_ms] for number, s in self._sessions.items()]
        )
        tag = self.SNAPSHOT_TAG

        def encode() -> bytes:
            items.sort()  # keys are unique: sorts by key
            packer = msgpack.Packer(use_bin_type=True)
            pack = packer.pack
            # The canonical body (keys sorted: clock_ms, data, revision, sessions, sessions_minted),
            # written piecewise.
            parts = [packer.pack_map_header(5), pack("clock_ms"), pack(clock_ms), pack("data")]
            parts.append(packer.pack_array_header(len(items)))
            for start in range(0, len(items), _SNAPSHOT_CHUNK_ROWS):
                chunk = items[start : start + _SNAPSHOT_CHUNK_ROWS]
                parts.append(b"".join([pack([key, value, mod]) for key, (value, mod) in chunk]))
            parts += [pack("revision"), pack(revision), pack("sessions"), pack(sessions)]
            parts += [pack("sessions_minted"), pack(minted)]
            return _seal_packed(tag, b"".join(parts))

        return encode

    def restore(self, data: bytes) -> None:
        tag = self.SNAPSHOT_TAG
        body = _unseal(tag, data)
        revision = _field(body, "revision", int, tag)
        if revision < 0:
            raise StorageError(f"{tag} snapshot: negative revision")
        store = _restore_entries(_field(body, "data", list, tag), revision, tag)
        if sorted(body) == ["clients", "data", "revision"]:
            # The layout from before client sessions: its request-id table is keyed by names that
            # are not session ids, so it is dropped (a retry naming one is refused, not applied).
            clock_ms, minted, sessions = 0, 0, OrderedDict()
        else:
            clock_ms = _clock_field(body, tag)
            minted = _field(body, "sessions_minted", int, tag)
            if not 0 <= minted <= INT64_MAX:
                raise StorageError(f"{tag} snapshot: sessions_minted out of range")
            sessions = _restore_sessions(_field(body, "sessions", list, tag), minted, clock_ms, tag)
        while len(sessions) > self.max_sessions:  # a replica configured with a smaller bound
            sessions.popitem(last=False)
        self._revision, self._data, self._sessions = revision, store, sessions
        self._clock_ms, self._sessions_minted = clock_ms, minted

    # ------------------------------------------------------------------ local reads

    def get(self, key: str) -> Optional[Tuple[str, int]]:
        """`(value, mod_revision)` of `key` in the local replica, or None."""
        return self._data.get(key)

    @property
    def revision(self) -> int:
        """The store-wide revision: the number of successful writes so far."""
        return self._revision

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def keys(self) -> KeysView[str]:
        return self._data.keys()

    def items(self) -> ItemsView[str, Tuple[str, int]]:
        """Live view of `key -> (value, mod_revision)`."""
        return self._data.items()

    @property
    def session_count(self) -> int:
        """Sessions the table holds (at most `max_sessions`; some may have expired, not yet swept)."""
        return len(self._sessions)

    @property
    def sessions_minted(self) -> int:
        """How many session ids were ever handed out (the last one minted)."""
        return self._sessions_minted

    # ------------------------------------------------------------------ async helpers

    async def open_session(self) -> str:
        """Replicate the opening of a client session; returns its id, for `request_id`s."""
        result: Dict[str, Any] = await self._propose(self.encode_open_session())
        return str(result["client"])

    async def put(self, key: str, value: str, request_id: Optional[str] = None) -> Dict[str, Any]:
        """Replicate a put; returns `{"revision": R}`."""
        result: Dict[str, Any] = await self._propose(self.encode_put(key, value, request_id))
        return result

    async def delete(self, key: str, request_id: Optional[str] = None) -> Dict[str, Any]:
        """Replicate a delete; returns `{"revision": R, "deleted": bool}`."""
        result: Dict[str, Any] = await self._propose(self.encode_delete(key, request_id))
        return result

    async def cas(
        self, key: str, expected: Optional[str], value: str, request_id: Optional[str] = None
    ) -> Dict[str, Any]:
        """Replicate a compare-and-set; returns `{"succeeded": bool, "revision": R}`."""
        result: Dict[str, Any] = await self._propose(self.encode_cas(key, expected, value, request_id))
        return result

    async def get_linearizable(self, key: str) -> Optional[Tuple[str, int]]:
        """Read barrier (ReadIndex), then the local value: sees every write acknowledged before."""
        await self._require_proposer().read_index()
        return self.get(key)


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


def _restore_entries(rows: List[Any], revision: int, tag: str) -> Dict[str, Tuple[str, int]]:
    store: Dict[str, Tuple[str, int]] = {}
    for row in rows:
        if not (
            isinstance(row, list)
            and len(row) == 3
            and isinstance(row[0], str)
            and isinstance(row[1], str)
            and isinstance(row[2], int)
            and not isinstance(row[2], bool)
            and 1 <= row[2] <= revision
            and row[0] not in store
        ):
            raise StorageError(f"{tag} snapshot: malformed key entry")
        store[row[0]] = (row[1], row[2])
    return store


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
            raise StorageError(f"{tag} snapshot: malformed session entry")
        last_active = row[4]
        sessions[row[0]] = _Session(row[1], row[2], row[3], row[4])
    return sessions


# ---------------------------------------------------------------------------- ReplicatedDict

_DICT_OPS: Dict[str, Tuple[str, ...]] = {"set": ("key", "value"), "pop": ("key",), "clear": ()}


class ReplicatedDict(_Attachable):
    """A dict of str keys to msgpack-able values (None, bool, int, float, str, bytes, lists, maps).

    Results: set → None; pop → `{"found": bool, "value": v}` (value only when found); clear → the
    number of keys removed.
    """

    SNAPSHOT_TAG = "consensus.dict"

    def __init__(self) -> None:
        self._data: Dict[str, Any] = {}

    @staticmethod
    def encode_set(key: str, value: Any) -> bytes:
        """Command: `d[key] = value`."""
        _check_encode_name(key, "key")
        try:
            packed = _encode({"op": "set", "key": key, "value": value})
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"value is not msgpack-able: {exc}") from None
        try:
            _check_value(_unpack(packed, COMMAND_BYTES_MAX))
        except _BadCommand as exc:
            raise ValueError(str(exc)) from None
        return packed

    @staticmethod
    def encode_pop(key: str) -> bytes:
        """Command: remove `key`."""
        _check_encode_name(key, "key")
        return _encode({"op": "pop", "key": key})

    @staticmethod
    def encode_clear() -> bytes:
        """Command: remove every key."""
        return _encode({"op": "clear"})

    def apply(self, index: int, command: bytes) -> object:
        try:
            op, fields = _decode_command(command, _DICT_OPS)
            if op == "clear":
                removed = len(self._data)
                self._data = {}
                return removed
            key = _name(fields["key"], "key")
            if op == "set":
                value = fields["value"]
                _check_value(value)
                self._data[key] = value
                return None
        except _BadCommand as exc:
            return _error("bad_command", str(exc))
        if key in self._data:
            return {"found": True, "value": self._data.pop(key)}
        return {"found": False}

    def snapshot(self) -> bytes:
        return _seal(self.SNAPSHOT_TAG, {"data": self._data})

    def restore(self, data: bytes) -> None:
        body = _unseal(self.SNAPSHOT_TAG, data)
        items = _field(body, "data", dict, self.SNAPSHOT_TAG)
        try:
            for key, value in items.items():
                _name(key, "key")
                _check_value(value)
        except _BadCommand as exc:
            raise StorageError(f"{self.SNAPSHOT_TAG} snapshot: {exc}") from None
        self._data = dict(items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def items(self) -> ItemsView[str, Any]:
        return self._data.items()

    async def set(self, key: str, value: Any) -> None:
        """Replicate `d[key] = value`."""
        await self._propose(self.encode_set(key, value))

    async def pop(self, key: str, default: Any = None) -> Any:
        """Replicate the removal of `key`; returns its value, or `default` if it was absent."""
        result = await self._propose(self.encode_pop(key))
        return result["value"] if result.get("found") else default

    async def clear(self) -> int:
        """Replicate the removal of every key; returns how many were removed."""
        removed: int = await self._propose(self.encode_clear())
        return removed


# ---------------------------------------------------------------------------- Counter

_COUNTER_OPS: Dict[str, Tuple[str, ...]] = {"add": ("n",), "set": ("n",)}


class Counter(_Attachable):
    """A 64-bit signed integer. add(n) and set(n) both return the new value; overflow is refused."""

    SNAPSHOT_TAG = "consensus.counter"

    def __init__(self) -> None:
        self._value = 0

    @staticmethod
    def encode_add(n: int) -> bytes:
        """Command: add `n` (may be negative)."""
        _check_encode_int(n, "n", INT64_MIN, INT64_MAX)
        return _encode({"op": "add", "n": n})

    @staticmethod
    def encode_set(n: int) -> bytes:
        """Command: set the value to `n`."""
        _check_encode_int(n, "n", INT64_MIN, INT64_MAX)
        return _encode({"op": "set", "n": n})

    def apply(self, index: int, command: bytes) -> object:
        try:
            op, fields = _decode_command(command, _COUNTER_OPS)
            n = _int(fields["n"], "n", INT64_MIN, INT64_MAX)
        except _BadCommand as exc:
            return _error("bad_command", str(exc))
        new_value = self._value + n if op == "add" else n
        if not INT64_MIN <= new_value <= INT64_MAX:
            return _error("overflow", f"{self._value} + {n} leaves the 64-bit range")
        self._value = new_value
        return new_value

    def snapshot(self) -> bytes:
        return _seal(self.SNAPSHOT_TAG, {"value": self._value})

    def restore(self, data: bytes) -> None:
        body = _unseal(self.SNAPSHOT_TAG, data)
        value = _field(body, "value", int, self.SNAPSHOT_TAG)
        if not INT64_MIN <= value <= INT64_MAX:
            raise StorageError(f"{self.SNAPSHOT_TAG} snapshot: value out of range")
        self._value = value

    @property
    def value(self) -> int:
        return self._value

    async def add(self, n: int) -> int:
        """Replicate an addition; returns the new value."""
        result: int = await self._propose(self.encode_add(n))
        return result

    async def set(self, n: int) -> int:
        """Replicate an assignment; returns the new value."""
        result: int = await self._propose(self.encode_set(n))
        return result


# ---------------------------------------------------------------------------- Lock

_LOCK_OPS: Dict[str, Tuple[str, ...]] = {
    "acquire": ("name", "owner", "ttl_ms"),
    "release": ("name", "owner", "token"),
}


class _Lease:
    __slots__ = ("owner", "token", "expires_ms")

    def __init__(self, owner: str, token: int, expires_ms: int) -> None:
        self.owner = owner
        self.token = token
        self.expires_ms = expires_ms


class Lock(_ReplicatedClock, _Attachable):
    """Named leases with fencing tokens.

    Leases are timed by the replicated clock (`advance_clock`, fed by the leader's stamps), never
    by a caller: an acquire carries no time, and its lease runs until `clock_ms + ttl_ms`. A lease
    is live while `clock_ms < expires_ms`; an expired lease can be taken by another owner. Two
    owners therefore never hold a name at the same clock reading, whatever the callers' clocks
    say. A machine whose clock is never advanced (no stamping runtime) never expires a lease:
    only `release` frees it. Every granted acquisition of a free or expired lock gets a new token,
    larger than every token before it (of any lock); a live holder that acquires again renews its
    lease and keeps its token. Resources guarded by a lock should refuse writes carrying a token
    lower than one they have seen: the replicated clock is the leader's, so a holder
    judging its lease by its own clock may overrun it, and the token is what keeps it out.

    At most `max_locks` names are held at once (same bound on every replica); when full, expired
    leases are dropped first, then a new name is refused with `too_many_locks`.
    """

    SNAPSHOT_TAG = "consensus.lock"

    def __init__(self, max_locks: int = 100_000) -> None:
        if isinstance(max_locks, bool) or not isinstance(max_locks, int) or max_locks < 1:
            raise ValueError("max_locks must be a positive integer")
        self.max_locks = max_locks
        self._leases: Dict[str, _Lease] = {}
        self._last_token = 0

    @staticmethod
    def encode_acquire(name: str, owner: str, ttl_ms: int) -> bytes:
        """Command: take or renew `name` for `owner` until the replicated clock + `ttl_ms`."""
        _check_encode_name(name, "name")
        _check_encode_name(owner, "owner")
        _check_encode_int(ttl_ms, "ttl_ms", 1, TTL_MS_MAX)
        return _encode({"op": "acquire", "name": name, "owner": owner, "ttl_ms": ttl_ms})

    @staticmethod
    def encode_release(name: str, owner: str, token: int) -> bytes:
        """Command: release `name` if `owner` holds it with `token`."""
        _check_encode_name(name, "name")
        _check_encode_name(owner, "owner")
        _check_encode_int(token, "token", 1, INT64_MAX)
        return _encode({"op": "release", "name": name, "owner": owner, "token": token})

    def apply(self, index: int, command: bytes) -> object:
        try:
            op, fields = _decode_command(command, _LOCK_OPS)
            name = _name(fields["name"], "name")
            owner = _name(fields["owner"], "owner")
            if op == "acquire":
                ttl_ms = _int(fields["ttl_ms"], "ttl_ms", 1, TTL_MS_MAX)
            else:
                token = _int(fields["token"], "token", 1, INT64_MAX)
        except _BadCommand as exc:
            return _error("bad_command", str(exc))
        if op == "acquire":
            return self._acquire(name, owner, ttl_ms)
        lease = self._leases.get(name)
        if lease is None or lease.owner != owner or lease.token != token:
            return {"released": False}
        del self._leases[name]
        return {"released": True}

    def _acquire(self, name: str, owner: str, ttl_ms: int) -> Dict[str, Any]:
        expires_ms = self._clock_ms + ttl_ms
        lease = self._leases.get(name)
        live = lease is not None and self._clock_ms < lease.expires_ms
        if lease is not None and live:
            if lease.owner != owner:
                return {"acquired": False, "holder": lease.owner, "expires_ms": lease.expires_ms}
            lease.expires_ms = expires_ms
            return {"acquired": True, "token": lease.token, "expires_ms": expires_ms}
        if lease is None and len(self._leases) >= self.max_locks:
            self._drop_expired()
            if len(self._leases) >= self.max_locks:
                return _error("too_many_locks", f"{self.max_locks} locks are held")
        if self._last_token >= INT64_MAX:
            return _error("overflow", "fencing tokens exhausted")
        self._last_token += 1
        self._leases[name] = _Lease(owner, self._last_token, expires_ms)
        return {"acquired": True, "token": self._last_token, "expires_ms": expires_ms}

    def _drop_expired(self) -> None:
        expired = [name for name, lease in self._leases.items() if lease.expires_ms <= self._clock_ms]
        for name in expired:
            del self._leases[name]

    def snapshot(self) -> bytes:
        body = {
            "clock_ms": self._clock_ms,
            "last_token": self._last_token,
            "leases": [
                [name, lease.owner, lease.token, lease.expires_ms] for name, lease in sorted(self._leases.items())
            ],
        }
        return _seal(self.SNAPSHOT_TAG, body)

    def restore(self, data: bytes) -> None:
        tag = self.SNAPSHOT_TAG
        body = _unseal(tag, data)
        clock_ms = _clock_field(body, tag)
        last_token = _field(body, "last_token", int, tag)
        rows = _field(body, "leases", list, tag)
        leases: Dict[str, _Lease] = {}
        for row in rows:
            if not (
                isinstance(row, list)
                and len(row) == 4
                and isinstance(row[0], str)
                and row[0] not in leases
                and isinstance(row[1], str)
                and isinstance(row[2], int)
                and 1 <= row[2] <= last_token
                and isinstance(row[3], int)
            ):
                raise StorageError(f"{tag} snapshot: malformed lease")
            leases[row[0]] = _Lease(row[1], row[2], row[3])
        self._clock_ms, self._last_token, self._leases = clock_ms, last_token, leases

    # ------------------------------------------------------------------ local reads

    def holder(self, name: str) -> Optional[Tuple[str, int, int]]:
        """`(owner, token, expires_ms)` of a live lease on `name` at the machine's clock, or None."""
        lease = self._leases.get(name)
        if lease is None or lease.expires_ms <= self._clock_ms:
            return None
        return lease.owner, lease.token, lease.expires_ms

    # ------------------------------------------------------------------ async helpers

    async def acquire(self, name: str, owner: str, ttl_ms: int) -> Dict[str, Any]:
        """Replicate an acquire; the lease runs `ttl_ms` on the replicated (leader's) clock."""
        result: Dict[str, Any] = await self._propose(self.encode_acquire(name, owner, ttl_ms))
        return result

    async def release(self, name: str, owner: str, token: int) -> Dict[str, Any]:
        """Replicate a release; returns `{"released": bool}`."""
        result: Dict[str, Any] = await self._propose(self.encode_release(name, owner, token))
        return result

