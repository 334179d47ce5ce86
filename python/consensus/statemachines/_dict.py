"""`ReplicatedDict`: a dict of str keys to msgpack-able values."""

from __future__ import annotations

from typing import Any, Dict, ItemsView, Iterator, Tuple

from consensus.errors import storage_error
from consensus.statemachines._codec import COMMAND_BYTES_MAX, _BadCommand, _check_encode_name, _check_value, _decode_command, _encode, _error, _field, _name, _seal, _unpack, _unseal
from consensus.statemachines._protocol import _Attachable


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
            raise storage_error("corrupt", f"{self.SNAPSHOT_TAG} snapshot: {exc}") from None
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




__all__ = ["ReplicatedDict"]
