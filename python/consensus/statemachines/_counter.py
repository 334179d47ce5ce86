"""`Counter`: a replicated 64-bit signed integer."""

from __future__ import annotations

from typing import Dict, Tuple

from consensus.errors import storage_error
from consensus.statemachines._codec import INT64_MAX, INT64_MIN, _BadCommand, _check_encode_int, _decode_command, _encode, _error, _field, _int, _seal, _unseal
from consensus.statemachines._protocol import _Attachable


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
            raise storage_error("corrupt", f"{self.SNAPSHOT_TAG} snapshot: value out of range")
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




__all__ = ["Counter"]
