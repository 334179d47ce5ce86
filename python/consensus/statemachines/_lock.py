"""`Lock`: named leases with fencing tokens, timed by the replicated clock."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from consensus.errors import storage_error
from consensus.statemachines._clock import _ReplicatedClock, _clock_field
from consensus.statemachines._codec import INT64_MAX, TTL_MS_MAX, _BadCommand, _check_encode_int, _check_encode_name, _decode_command, _encode, _error, _field, _int, _name, _seal, _unseal
from consensus.statemachines._protocol import _Attachable


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
                raise storage_error("corrupt", f"{tag} snapshot: malformed lease")
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


__all__ = ["Lock"]
