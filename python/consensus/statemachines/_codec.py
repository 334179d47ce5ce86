"""How the built-ins encode commands and snapshots: strict, bounded, canonical msgpack (never
pickle). A malformed command is `_BadCommand` (it becomes a `bad_command` result, never an
exception out of `apply`); a damaged snapshot is `StorageError`."""

from __future__ import annotations

import zlib
from typing import Any, Dict, Tuple

import msgpack

from consensus import defaults
from consensus.errors import storage_error

#: Largest command `apply` decodes (the default peer frame bound); a larger one is a bad command.
COMMAND_BYTES_MAX = defaults.FRAME_BYTES_MAX
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

SNAPSHOT_FORMAT_VERSION = 1


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
        raise storage_error("corrupt", f"{tag} snapshot: expected bytes, got {type(data).__name__}")
    try:
        envelope = _unpack(data, len(data))
    except Exception as exc:
        raise storage_error("corrupt", f"{tag} snapshot: undecodable: {exc}") from None
    if not (isinstance(envelope, list) and len(envelope) == 4):
        raise storage_error("corrupt", f"{tag} snapshot: not a snapshot envelope")
    found_tag, version, crc, packed = envelope
    if found_tag != tag:
        raise storage_error("corrupt", f"{tag} snapshot: holds {found_tag!r} state")
    if version != SNAPSHOT_FORMAT_VERSION:
        raise storage_error("corrupt", f"{tag} snapshot: unsupported format version {version!r}")
    if not isinstance(packed, bytes) or not isinstance(crc, int) or zlib.crc32(packed) != crc:
        raise storage_error("corrupt", f"{tag} snapshot: checksum mismatch")
    try:
        body = _unpack(packed, len(packed))
    except Exception as exc:
        raise storage_error("corrupt", f"{tag} snapshot: undecodable body: {exc}") from None
    if not isinstance(body, dict):
        raise storage_error("corrupt", f"{tag} snapshot: body is not a map")
    return body


def _field(body: Dict[str, Any], name: str, kind: type, tag: str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise storage_error("corrupt", f"{tag} snapshot: field {name!r} is missing or not {kind.__name__}")
    return value


__all__ = ["COMMAND_BYTES_MAX"]
