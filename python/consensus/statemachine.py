"""Replicated state machines: the protocol the runtime applies committed entries to, and built-ins.

Every replica applies the same committed commands in the same order, so `apply` must be a pure
function of the state and the command: no clock, no randomness, no iteration order that differs
between processes. A malformed or unknown command is not an exception: `apply` returns an error
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
import time
import zlib
from collections import OrderedDict
from typing import (
    Any,
    Callable,
    Dict,
    ItemsView,
    Iterator,
    KeysView,
    Optional,
    Protocol,
    Tuple,
    runtime_checkable,
)

import msgpack

from consensus._core import ConsensusError, StorageError

__all__ = [
    "COMMAND_BYTES_MAX",
    "CommandRejectedError",
    "Counter",
    "KVStore",
    "Lock",
    "Proposer",
    "ReplicatedDict",
    "StateMachine",
    "parse_request_id",
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
#: Largest sequence number of a request id, a lease duration and a clock reading.
SEQ_MAX = INT64_MAX
TTL_MS_MAX = 1 << 40
NOW_MS_MAX = 1 << 62

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

    `code` is the result's `error` field (`bad_command`, `request_id_reused`, `overflow`, ...),
    `result` the whole error result. Nothing was changed by the command.
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
    """Split `"client:seq"` (client non-empty, seq a positive integer); ValueError otherwise."""
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
    try:
        _name(client, "request_id client")
    except _BadCommand as exc:
        raise ValueError(str(exc)) from None
    return client, seq


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


# ---------------------------------------------------------------------------- KVStore


class _ClientRecord:
    """The last answered request of one client (Raft thesis §6.3)."""

    __slots__ = ("seq", "fingerprint", "answer", "index")

    def __init__(self, seq: int, fingerprint: bytes, answer: Dict[str, Any], index: int) -> None:
        self.seq = seq
        self.fingerprint = fingerprint
        self.answer = answer
        #: Log index of that request; eviction removes the client whose last request is oldest.
        self.index = index


_KV_OPS: Dict[str, Tuple[str, ...]] = {
    "put": ("key", "value"),
    "delete": ("key",),
    "cas": ("key", "expected", "value"),
}


class KVStore(_Attachable):
    """String keys to string values with one store-wide revision counter (DESIGN.md §3).

    Every successful write increases `revision` by one and stores it as the key's modification
    revision; revisions are never reused. Writes may carry a `request_id` ("client:seq") that makes
    retries idempotent; the table of answered requests is replicated state (it is in snapshots) and
    holds at most `max_clients` clients (every replica must use the same bound).
    """

    SNAPSHOT_TAG = "consensus.kv"

    def __init__(self, max_clients: int = 100_000) -> None:
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ValueError("max_clients must be a positive integer")
        self.max_clients = max_clients
        self._data: Dict[str, Tuple[str, int]] = {}
        self._revision = 0
        #: Clients in the order of their last request (oldest first): the eviction order.
        self._clients: "OrderedDict[str, _ClientRecord]" = OrderedDict()

    # ------------------------------------------------------------------ commands

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
            key = _name(fields["key"], "key")
            if op == "put":
                args: Tuple[object, ...] = (_text(fields["value"], "value"),)
            elif op == "delete":
                args = ()
            else:
                expected = fields["expected"]
                if expected is not None:
                    expected = _text(expected, "expected")
                args = (expected, _text(fields["value"], "value"))
            request_id = fields.get("request_id")
            client: Optional[str] = None
            seq = 0
            if request_id is not None:
                try:
                    client, seq = parse_request_id(request_id)
                except ValueError as exc:
                    raise _BadCommand(str(exc)) from None
        except _BadCommand as exc:
            return _error("bad_command", str(exc))

        fingerprint = b""
        if client is not None:
            fingerprint = hashlib.sha256(_pack([op, key, *args])).digest()
            record = self._clients.get(client)
            if record is not None:
                if seq < record.seq:
                    return _error(
                        "request_id_reused",
                        f"request {client}:{seq} is older than the last answered {client}:{record.seq}",
                    )
                if seq == record.seq:
                    if record.fingerprint == fingerprint:
                        return dict(record.answer)
                    return _error("request_id_reused", f"request id {client}:{seq} was used for another request")

        if op == "put":
            answer = self._put(key, str(args[0]))
        elif op == "delete":
            answer = self._delete(key)
        else:
            answer = self._cas(key, args[0] if args[0] is None else str(args[0]), str(args[1]))

        if client is not None:
            self._remember(client, _ClientRecord(seq, fingerprint, dict(answer), index))
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

    def _remember(self, client: str, record: _ClientRecord) -> None:
        self._clients.pop(client, None)
        self._clients[client] = record
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def snapshot(self) -> bytes:
        return self.snapshot_writer()()

    def snapshot_writer(self) -> Callable[[], bytes]:
        """Captures the state now (a C-level copy of the table) and returns a function that
        encodes it later, on any thread, to exactly the bytes `snapshot()` gives. The encoding
        packs rows in chunks, so a thread doing it lets the event loop run in between."""
        revision = self._revision
        items = list(self._data.items())
        # Eviction order (oldest first) is part of the state; a list keeps it.
        clients = _canonical(
            [[client, r.seq, r.fingerprint, r.answer, r.index] for client, r in self._clients.items()]
        )
        tag = self.SNAPSHOT_TAG

        def encode() -> bytes:
            items.sort()  # keys are unique: sorts by key
            packer = msgpack.Packer(use_bin_type=True)
            # The canonical body {"clients", "data", "revision"} (keys sorted), written piecewise.
            parts = [packer.pack_map_header(3), packer.pack("clients"), packer.pack(clients), packer.pack("data")]
            parts.append(packer.pack_array_header(len(items)))
            pack = packer.pack
            for start in range(0, len(items), _SNAPSHOT_CHUNK_ROWS):
                chunk = items[start : start + _SNAPSHOT_CHUNK_ROWS]
                parts.append(b"".join([pack([key, value, mod]) for key, (value, mod) in chunk]))
            parts += [packer.pack("revision"), packer.pack(revision)]
            return _seal_packed(tag, b"".join(parts))

        return encode

    def restore(self, data: bytes) -> None:
        tag = self.SNAPSHOT_TAG
        body = _unseal(tag, data)
        revision = _field(body, "revision", int, tag)
        rows = _field(body, "data", list, tag)
        client_rows = _field(body, "clients", list, tag)
        if revision < 0:
            raise StorageError(f"{tag} snapshot: negative revision")
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
        clients: "OrderedDict[str, _ClientRecord]" = OrderedDict()
        for row in client_rows:
            if not (
                isinstance(row, list)
                and len(row) == 5
                and isinstance(row[0], str)
                and row[0] not in clients
                and isinstance(row[1], int)
                and isinstance(row[2], bytes)
                and isinstance(row[3], dict)
                and isinstance(row[4], int)
            ):
                raise StorageError(f"{tag} snapshot: malformed client entry")
            clients[row[0]] = _ClientRecord(row[1], row[2], row[3], row[4])
        while len(clients) > self.max_clients:
            clients.popitem(last=False)
        self._revision, self._data, self._clients = revision, store, clients

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
    def client_count(self) -> int:
        """How many clients the request-id table holds (at most `max_clients`)."""
        return len(self._clients)

    # ------------------------------------------------------------------ async helpers

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
    "acquire": ("name", "owner", "ttl_ms", "now_ms"),
    "release": ("name", "owner", "token"),
}


class _Lease:
    __slots__ = ("owner", "token", "expires_ms")

    def __init__(self, owner: str, token: int, expires_ms: int) -> None:
        self.owner = owner
        self.token = token
        self.expires_ms = expires_ms


class Lock(_Attachable):
    """Named leases with fencing tokens.

    Time comes only from commands: each acquire carries the proposer's `now_ms`, and the machine's
    clock is the largest `now_ms` applied so far, so every replica sees the same clock. A lease is
    live while `clock < expires_ms`; an expired lease can be taken by another owner. Every granted
    acquisition of a free or expired lock gets a new token, larger than every token before it (of
    any lock); a live holder that acquires again renews its lease and keeps its token. Resources
    guarded by a lock should refuse writes carrying a token lower than one they have seen.

    At most `max_locks` names are held at once (same bound on every replica); when full, expired
    leases are dropped first, then a new name is refused with `too_many_locks`.
    """

    SNAPSHOT_TAG = "consensus.lock"

    def __init__(self, max_locks: int = 100_000) -> None:
        if isinstance(max_locks, bool) or not isinstance(max_locks, int) or max_locks < 1:
            raise ValueError("max_locks must be a positive integer")
        self.max_locks = max_locks
        self._leases: Dict[str, _Lease] = {}
        self._clock_ms = 0
        self._last_token = 0

    @staticmethod
    def encode_acquire(name: str, owner: str, ttl_ms: int, now_ms: int) -> bytes:
        """Command: take or renew `name` for `owner` until `max(clock, now_ms) + ttl_ms`."""
        _check_encode_name(name, "name")
        _check_encode_name(owner, "owner")
        _check_encode_int(ttl_ms, "ttl_ms", 1, TTL_MS_MAX)
        _check_encode_int(now_ms, "now_ms", 0, NOW_MS_MAX)
        return _encode({"op": "acquire", "name": name, "owner": owner, "ttl_ms": ttl_ms, "now_ms": now_ms})

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
                now_ms = _int(fields["now_ms"], "now_ms", 0, NOW_MS_MAX)
            else:
                token = _int(fields["token"], "token", 1, INT64_MAX)
        except _BadCommand as exc:
            return _error("bad_command", str(exc))
        if op == "acquire":
            return self._acquire(name, owner, ttl_ms, now_ms)
        lease = self._leases.get(name)
        if lease is None or lease.owner != owner or lease.token != token:
            return {"released": False}
        del self._leases[name]
        return {"released": True}

    def _acquire(self, name: str, owner: str, ttl_ms: int, now_ms: int) -> Dict[str, Any]:
        self._clock_ms = max(self._clock_ms, now_ms)
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
        clock_ms = _field(body, "clock_ms", int, tag)
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

    @property
    def clock_ms(self) -> int:
        """The largest `now_ms` applied so far."""
        return self._clock_ms

    def holder(self, name: str) -> Optional[Tuple[str, int, int]]:
        """`(owner, token, expires_ms)` of a live lease on `name` at the machine's clock, or None."""
        lease = self._leases.get(name)
        if lease is None or lease.expires_ms <= self._clock_ms:
            return None
        return lease.owner, lease.token, lease.expires_ms

    # ------------------------------------------------------------------ async helpers

    async def acquire(
        self, name: str, owner: str, ttl_ms: int, *, now_ms: Optional[int] = None
    ) -> Dict[str, Any]:
        """Replicate an acquire stamped with this process's wall clock (or `now_ms`)."""
        stamp = int(time.time() * 1000) if now_ms is None else now_ms
        result: Dict[str, Any] = await self._propose(self.encode_acquire(name, owner, ttl_ms, stamp))
        return result

    async def release(self, name: str, owner: str, token: int) -> Dict[str, Any]:
        """Replicate a release; returns `{"released": bool}`."""
        result: Dict[str, Any] = await self._propose(self.encode_release(name, owner, token))
        return result

