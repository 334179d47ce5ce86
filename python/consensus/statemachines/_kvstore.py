"""`KVStore`: string keys to string values with one store-wide revision, client sessions and
compare-and-set (docs/design.md §3)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Callable, Dict, ItemsView, KeysView, List, Optional, Tuple

import msgpack

from consensus.errors import storage_error
from consensus.statemachines._clock import _ReplicatedClock, _clock_field
from consensus.statemachines._codec import INT64_MAX, TTL_MS_MAX, _BadCommand, _SNAPSHOT_CHUNK_ROWS, _canonical, _check_encode_name, _check_encode_text, _decode_command, _encode, _error, _field, _name, _pack, _seal_packed, _text, _unseal
from consensus.statemachines._protocol import _Attachable
from consensus.statemachines._sessions import SESSIONS_MAX_DEFAULT, SESSION_SWEEP_MAX, SESSION_TTL_MS_DEFAULT, _Session, _decode_request_id, _restore_sessions, _with_request_id


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
            raise storage_error("corrupt", f"{tag} snapshot: negative revision")
        store = _restore_entries(_field(body, "data", list, tag), revision, tag)
        if sorted(body) == ["clients", "data", "revision"]:
            # The layout from before client sessions: its request-id table is keyed by names that
            # are not session ids, so it is dropped (a retry naming one is refused, not applied).
            clock_ms, minted, sessions = 0, 0, OrderedDict()
        else:
            clock_ms = _clock_field(body, tag)
            minted = _field(body, "sessions_minted", int, tag)
            if not 0 <= minted <= INT64_MAX:
                raise storage_error("corrupt", f"{tag} snapshot: sessions_minted out of range")
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
            raise storage_error("corrupt", f"{tag} snapshot: malformed key entry")
        store[row[0]] = (row[1], row[2])
    return store


__all__ = ["KVStore"]
