"""Built-in state machines: results, revision rules, idempotent requests, determinism, snapshots."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, Callable, List, Optional, Tuple

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import StorageError
from consensus.statemachines import (
    CLOCK_MS_MAX,
    SESSION_SWEEP_MAX,
    CommandRejectedError,
    Counter,
    KVStore,
    Lock,
    Proposer,
    ReplicatedDict,
    StateMachine,
)


def step(sm: Any, index: int, command: Any) -> object:
    """Apply a command (bytes); anything else is a leader's clock stamp, given to advance_clock."""
    if isinstance(command, bytes):
        return sm.apply(index, command)
    sm.advance_clock(command)
    return ("clock", sm.clock_ms)


def apply_all(sm: Any, commands: List[Any], start: int = 1) -> List[object]:
    return [step(sm, start + i, command) for i, command in enumerate(commands)]


class LocalProposer:
    """A Proposer that applies each command to the machine at once, with increasing indexes."""

    def __init__(self, sm: Any) -> None:
        self.sm = sm
        self.index = 0
        self.read_barriers = 0

    async def propose(self, command: bytes) -> object:
        self.index += 1
        return self.sm.apply(self.index, command)

    async def read_index(self) -> None:
        self.read_barriers += 1


def test_builtins_satisfy_the_protocols() -> None:
    for sm in (KVStore(), ReplicatedDict(), Counter(), Lock()):
        assert isinstance(sm, StateMachine)
    assert isinstance(LocalProposer(Counter()), Proposer)


# ------------------------------------------------------------------------ KVStore


def test_kv_put_get_and_revision() -> None:
    kv = KVStore()
    assert kv.apply(1, KVStore.encode_put("a", "1")) == {"revision": 1}
    assert kv.apply(2, KVStore.encode_put("b", "2")) == {"revision": 2}
    assert kv.apply(3, KVStore.encode_put("a", "3")) == {"revision": 3}
    assert kv.get("a") == ("3", 3)
    assert kv.get("b") == ("2", 2)
    assert kv.get("missing") is None
    assert kv.revision == 3 and len(kv) == 2
    assert sorted(kv.keys()) == ["a", "b"]
    assert sorted(kv.items()) == [("a", ("3", 3)), ("b", ("2", 2))]


def test_kv_delete_present_advances_revision_absent_does_not() -> None:
    kv = KVStore()
    kv.apply(1, KVStore.encode_put("a", "1"))
    assert kv.apply(2, KVStore.encode_delete("a")) == {"revision": 2, "deleted": True}
    assert kv.get("a") is None
    # docs/design.md §3: deleting an absent key answers the current revision and does not advance it.
    assert kv.apply(3, KVStore.encode_delete("a")) == {"revision": 2, "deleted": False}
    assert kv.revision == 2
    # Revisions are never reused: the next write gets 3, not a number a deleted key had.
    assert kv.apply(4, KVStore.encode_put("a", "x")) == {"revision": 3}


def test_kv_cas_rules() -> None:
    kv = KVStore()
    # expected None: succeed only if absent.
    assert kv.apply(1, KVStore.encode_cas("k", None, "v1")) == {"succeeded": True, "revision": 1}
    # Failed CAS answers the key's modification revision and changes nothing.
    assert kv.apply(2, KVStore.encode_cas("k", None, "v2")) == {"succeeded": False, "revision": 1}
    kv.apply(3, KVStore.encode_put("other", "o"))
    assert kv.apply(4, KVStore.encode_cas("k", "wrong", "v2")) == {"succeeded": False, "revision": 1}
    assert kv.revision == 2 and kv.get("k") == ("v1", 1)
    assert kv.apply(5, KVStore.encode_cas("k", "v1", "v2")) == {"succeeded": True, "revision": 3}
    assert kv.get("k") == ("v2", 3)
    # Failed CAS on an absent key: revision 0.
    assert kv.apply(6, KVStore.encode_cas("absent", "x", "y")) == {"succeeded": False, "revision": 0}
    assert kv.revision == 3


def test_kv_empty_string_value_is_distinct_from_absent() -> None:
    kv = KVStore()
    kv.apply(1, KVStore.encode_put("k", ""))
    assert kv.apply(2, KVStore.encode_cas("k", None, "x")) == {"succeeded": False, "revision": 1}
    assert kv.apply(3, KVStore.encode_cas("k", "", "x")) == {"succeeded": True, "revision": 2}


# ------------------------------------------------------------------------ replicated clock


@pytest.mark.parametrize("make", [KVStore, Lock])
def test_replicated_clock_takes_the_largest_stamp_and_never_goes_back(make: Callable[[], Any]) -> None:
    sm = make()
    assert sm.clock_ms == 0
    sm.advance_clock(1000)
    sm.advance_clock(400)  # a new leader with a slower clock
    assert sm.clock_ms == 1000
    sm.advance_clock(CLOCK_MS_MAX)
    assert sm.clock_ms == CLOCK_MS_MAX and sm.invalid_clock_stamps == 0


@pytest.mark.parametrize("make", [KVStore, Lock])
@pytest.mark.parametrize("stamp", [1 << 62, CLOCK_MS_MAX + 1, (1 << 64) - 1, -1, True, 1.5, "5", None])
def test_invalid_clock_stamp_is_refused_and_counted(make: Callable[[], Any], stamp: Any) -> None:
    sm = make()
    sm.advance_clock(1000)
    sm.advance_clock(stamp)
    assert sm.clock_ms == 1000 and sm.invalid_clock_stamps == 1
    sm.advance_clock(2000)  # later valid stamps still move it
    assert sm.clock_ms == 2000


@pytest.mark.parametrize("make", [KVStore, Lock])
def test_clock_is_in_snapshots_and_restored(make: Callable[[], Any]) -> None:
    sm = make()
    sm.advance_clock(123_456)
    copy = make()
    copy.restore(sm.snapshot())
    assert copy.clock_ms == 123_456 and copy.snapshot() == sm.snapshot()


@pytest.mark.parametrize("make", [KVStore, Lock])
def test_snapshot_with_a_clock_out_of_range_is_refused(make: Callable[[], Any]) -> None:
    sm = make()
    sm.advance_clock(5)
    body = msgpack.unpackb(msgpack.unpackb(sm.snapshot())[3])
    body["clock_ms"] = CLOCK_MS_MAX + 1
    packed_body = msgpack.packb(body, use_bin_type=True)
    forged = msgpack.packb([make.SNAPSHOT_TAG, 1, zlib.crc32(packed_body), packed_body], use_bin_type=True)
    with pytest.raises(StorageError):
        make().restore(forged)


# ------------------------------------------------------------------------ idempotent requests (sessions)


def open_session(kv: KVStore, index: int = 1) -> str:
    result = kv.apply(index, KVStore.encode_open_session())
    assert isinstance(result, dict) and "error" not in result, result
    return str(result["client"])


def error_code(result: object) -> str:
    assert isinstance(result, dict) and "error" in result, result
    return str(result["error"])


def test_sessions_are_minted_from_a_replicated_counter() -> None:
    kv = KVStore(session_ttl_ms=60_000)
    assert kv.apply(1, KVStore.encode_open_session()) == {"client": "1", "ttl_ms": 60_000}
    assert kv.apply(2, KVStore.encode_open_session()) == {"client": "2", "ttl_ms": 60_000}
    assert kv.sessions_minted == 2 and kv.session_count == 2 and kv.revision == 0


def test_retry_with_same_request_id_returns_first_answer_without_applying_again() -> None:
    kv = KVStore()
    c = open_session(kv)
    first = kv.apply(2, KVStore.encode_put("k", "v", request_id=f"{c}:1"))
    assert first == {"revision": 1}
    kv.apply(3, KVStore.encode_put("k", "other"))
    assert kv.apply(4, KVStore.encode_put("k", "v", request_id=f"{c}:1")) == first
    assert kv.get("k") == ("other", 2) and kv.revision == 2


def test_retried_cas_returns_its_first_answer_even_when_state_moved_on() -> None:
    kv = KVStore()
    c = open_session(kv)
    cas = KVStore.encode_cas("k", None, "v", request_id=f"{c}:1")
    assert kv.apply(2, cas) == {"succeeded": True, "revision": 1}
    # Applied again it would fail; the retry gets the original success.
    assert kv.apply(3, cas) == {"succeeded": True, "revision": 1}
    delete = KVStore.encode_delete("k", request_id=f"{c}:2")
    assert kv.apply(4, delete) == {"revision": 2, "deleted": True}
    assert kv.apply(5, delete) == {"revision": 2, "deleted": True}


def test_same_request_id_with_different_request_is_refused() -> None:
    kv = KVStore()
    c = open_session(kv)
    kv.apply(2, KVStore.encode_put("k", "v", request_id=f"{c}:5"))
    for command in (
        KVStore.encode_put("k", "different", request_id=f"{c}:5"),
        KVStore.encode_put("other", "v", request_id=f"{c}:5"),
        KVStore.encode_delete("k", request_id=f"{c}:5"),
    ):
        assert error_code(kv.apply(3, command)) == "request_id_reused"
    assert kv.get("k") == ("v", 1) and kv.revision == 1 and kv.get("other") is None


def test_stale_sequence_number_is_refused() -> None:
    kv = KVStore()
    c, d = open_session(kv, 1), open_session(kv, 2)
    kv.apply(3, KVStore.encode_put("k", "v1", request_id=f"{c}:1"))
    kv.apply(4, KVStore.encode_put("k", "v2", request_id=f"{c}:2"))
    assert error_code(kv.apply(5, KVStore.encode_put("k", "v1", request_id=f"{c}:1"))) == "request_id_reused"
    assert kv.get("k") == ("v2", 2)
    # Sequence numbers may skip; sessions are independent.
    assert kv.apply(6, KVStore.encode_put("k", "v9", request_id=f"{c}:9")) == {"revision": 3}
    assert kv.apply(7, KVStore.encode_put("k", "w", request_id=f"{d}:1")) == {"revision": 4}


def test_failed_writes_with_request_ids_are_remembered_too() -> None:
    kv = KVStore()
    c = open_session(kv)
    failed = kv.apply(2, KVStore.encode_cas("k", "x", "y", request_id=f"{c}:1"))
    assert failed == {"succeeded": False, "revision": 0}
    kv.apply(3, KVStore.encode_put("k", "x"))
    assert kv.apply(4, KVStore.encode_cas("k", "x", "y", request_id=f"{c}:1")) == failed


def test_retry_after_its_session_expired_gets_session_expired_and_changes_nothing() -> None:
    """Issue 9, case 10: a retry is never applied twice, however late it comes."""
    kv = KVStore(session_ttl_ms=1000)
    kv.advance_clock(10_000)
    c = open_session(kv)
    put = KVStore.encode_put("k", "v", request_id=f"{c}:1")
    assert kv.apply(2, put) == {"revision": 1}
    kv.apply(3, KVStore.encode_put("k", "moved on"))
    kv.advance_clock(10_999)
    assert kv.apply(4, put) == {"revision": 1}  # still live: answered from the table
    kv.advance_clock(10_999 + 1000)  # 1000 ms without a request naming the session
    result = kv.apply(5, put)
    assert error_code(result) == "session_expired"
    assert kv.get("k") == ("moved on", 2) and kv.revision == 2
    # Any later request in that session is refused the same way; nothing is applied.
    assert error_code(kv.apply(6, KVStore.encode_put("k", "new", request_id=f"{c}:2"))) == "session_expired"
    assert kv.revision == 2 and kv.session_count == 0


def test_a_session_in_use_stays_alive() -> None:
    kv = KVStore(session_ttl_ms=1000)
    c = open_session(kv)
    for seq in range(1, 6):
        kv.advance_clock(seq * 900)  # each request comes within the lifetime of the previous one
        assert kv.apply(seq + 1, KVStore.encode_put("k", str(seq), request_id=f"{c}:{seq}")) == {"revision": seq}
    assert kv.session_count == 1


def test_request_naming_a_session_never_opened_is_refused_as_unknown() -> None:
    kv = KVStore()
    c = open_session(kv)
    assert c == "1"
    assert error_code(kv.apply(2, KVStore.encode_put("k", "v", request_id="2:1"))) == "unknown_session"
    assert kv.revision == 0 and kv.sessions_minted == 1


def test_a_full_session_table_evicts_the_least_recently_used_and_its_retry_is_refused_not_reapplied() -> None:
    """Issue 9, case 10: the old table evicted the oldest client silently, so its retry applied twice;
    the next one refused every new client with `busy` until sessions expired. Now the least recently
    used session is evicted and a retry in it answers `session_expired`."""
    kv = KVStore(max_sessions=3, session_ttl_ms=1000)
    first = open_session(kv, 1)
    assert kv.apply(2, KVStore.encode_put("k", "first", request_id=f"{first}:1")) == {"revision": 1}
    second = open_session(kv, 3)
    open_session(kv, 4)
    assert kv.apply(5, KVStore.encode_put("k", "first", request_id=f"{first}:1")) == {"revision": 1}  # used again
    assert open_session(kv, 6) == "4"  # evicts `second`, now the least recently used
    assert kv.session_count == 3
    assert error_code(kv.apply(7, KVStore.encode_put("k", "x", request_id=f"{second}:1"))) == "session_expired"
    assert kv.apply(8, KVStore.encode_put("k", "first", request_id=f"{first}:1")) == {"revision": 1}
    assert kv.revision == 1 and kv.get("k") == ("first", 1)


def test_a_flood_of_session_opens_never_locks_out_a_new_client_nor_reapplies_an_evicted_write() -> None:
    kv = KVStore(max_sessions=3, session_ttl_ms=1000)
    victim = open_session(kv, 1)
    assert kv.apply(2, KVStore.encode_put("k", "v", request_id=f"{victim}:1")) == {"revision": 1}
    for index in range(3, 103):  # an attacker opening sessions far past the cap, at one instant
        assert "client" in kv.apply(index, KVStore.encode_open_session())
    assert kv.session_count == 3 and kv.sessions_minted == 101
    newcomer = open_session(kv, 103)
    assert kv.apply(104, KVStore.encode_put("n", "v", request_id=f"{newcomer}:1")) == {"revision": 2}
    assert error_code(kv.apply(105, KVStore.encode_put("k", "v", request_id=f"{victim}:1"))) == "session_expired"
    assert kv.revision == 2


def test_eviction_picks_the_same_session_on_a_replica_restored_from_a_snapshot() -> None:
    """The least-recently-used order is replicated state: it survives a snapshot, so a replica that
    restored one evicts exactly the session the others evict."""
    live, restored = KVStore(max_sessions=3), KVStore(max_sessions=3)
    sessions = [open_session(live, index) for index in (1, 2, 3)]
    live.apply(4, KVStore.encode_put("k", "v", request_id=f"{sessions[0]}:1"))  # 1 is now the most recent
    restored.restore(live.snapshot())
    for kv in (live, restored):
        assert open_session(kv, 5) == "4"
        assert error_code(kv.apply(6, KVStore.encode_put("k", "v", request_id=f"{sessions[1]}:1"))) == "session_expired"
        assert kv.apply(7, KVStore.encode_put("k", "v", request_id=f"{sessions[0]}:1")) == {"revision": 1}
    assert live.snapshot() == restored.snapshot()


def test_expired_sessions_free_their_slots() -> None:
    kv = KVStore(max_sessions=2, session_ttl_ms=1000)
    open_session(kv, 1)
    kept = open_session(kv, 2)
    kv.advance_clock(600)
    kv.apply(3, KVStore.encode_put("k", "v", request_id=f"{kept}:1"))  # keeps its session alive
    kv.advance_clock(1000)  # the first session expired, the second has 600 ms left
    assert open_session(kv, 4) == "3"
    assert kv.session_count == 2
    assert kv.apply(5, KVStore.encode_put("k", "v", request_id=f"{kept}:1")) == {"revision": 1}


def test_expired_sessions_are_swept_with_bounded_work_per_command() -> None:
    kv = KVStore(session_ttl_ms=10)
    for index in range(1, 3 * SESSION_SWEEP_MAX + 1):
        open_session(kv, index)
    kv.advance_clock(10)
    kv.apply(100, KVStore.encode_put("k", "v"))
    assert kv.session_count == 2 * SESSION_SWEEP_MAX
    kv.apply(101, KVStore.encode_delete("k"))
    assert kv.session_count == SESSION_SWEEP_MAX


def test_sessions_and_clock_survive_snapshot_and_restore() -> None:
    kv = KVStore(session_ttl_ms=1000)
    kv.advance_clock(500)
    c = open_session(kv)
    kv.apply(2, KVStore.encode_put("k", "v", request_id=f"{c}:1"))
    copy = KVStore(session_ttl_ms=1000)
    copy.restore(kv.snapshot())
    assert copy.clock_ms == 500 and copy.sessions_minted == 1 and copy.snapshot() == kv.snapshot()
    assert copy.apply(3, KVStore.encode_put("k", "v", request_id=f"{c}:1")) == {"revision": 1}
    assert error_code(copy.apply(4, KVStore.encode_put("k", "x", request_id=f"{c}:1"))) == "request_id_reused"
    assert copy.revision == 1
    # The minted counter came back too: the session, once expired, is known to have existed.
    copy.advance_clock(1500)
    assert error_code(copy.apply(5, KVStore.encode_put("k", "v", request_id=f"{c}:1"))) == "session_expired"
    assert open_session(copy, 6) == "2"


@pytest.mark.parametrize(
    "request_id", ["", "c", ":1", "1:0", "1:-1", "1:x", "1:1.5", "1:", 7, "c:1", "01:1", "host:42:7", "-1:1"]
)
def test_malformed_request_id_is_refused(request_id: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        KVStore.encode_put("k", "v", request_id=request_id)
    kv = KVStore()
    open_session(kv)
    raw = msgpack.packb({"op": "put", "key": "k", "value": "v", "request_id": request_id}, use_bin_type=True)
    assert error_code(kv.apply(2, raw)) == "bad_command"
    assert kv.revision == 0


def test_kv_async_session_helper() -> None:
    async def scenario() -> Tuple[str, str]:
        kv = KVStore()
        kv.attach(LocalProposer(kv))
        return await kv.open_session(), await kv.open_session()

    assert asyncio.run(scenario()) == ("1", "2")


# ------------------------------------------------------------------------ malformed commands


def packed(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


MALFORMED: List[bytes] = [
    b"",
    b"\xc1",  # never-used msgpack byte
    b"\x92\x01",  # truncated array
    packed({"op": "put", "key": "k", "value": "v"}) + b"\x00",  # trailing bytes
    packed([1, 2, 3]),
    packed("put"),
    packed({"op": "nope"}),
    packed({"op": 1}),
    packed({"key": "k"}),
    packed({"op": "put", "key": "k"}),
    packed({"op": "put", "key": "k", "value": "v", "extra": 1}),
    packed({"op": "put", "key": 1, "value": "v"}),
    packed({"op": "put", "key": "", "value": "v"}),
    packed({"op": "put", "key": "k" * 1025, "value": "v"}),
    packed({"op": "put", "key": "k", "value": b"bytes"}),
    packed({"op": "put", "key": "k", "value": None}),
    packed({"op": "cas", "key": "k", "expected": 3, "value": "v"}),
    packed({"op": "delete", "key": b"k"}),
    packed({"op": "add", "n": "1"}),
    packed({"op": "open_session", "request_id": "1:1"}),
    packed({"op": "acquire", "name": "l", "owner": "o", "ttl_ms": 10, "now_ms": 1 << 62}),
    packed({1: "int key"}),
    b"\xd4\x05\x00",  # extension type
    b"\xa2\xff\xfe",  # invalid UTF-8 string
    b"\x91" * 5000,  # deep nesting
]


@pytest.mark.parametrize("make", [KVStore, ReplicatedDict, Counter, Lock])
@pytest.mark.parametrize("command", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_command_returns_error_and_changes_nothing(make: Callable[[], Any], command: bytes) -> None:
    sm = make()
    populate(sm)
    before = sm.snapshot()
    result = sm.apply(100, command)
    assert isinstance(result, dict) and result["error"] == "bad_command" and result["message"]
    assert sm.snapshot() == before


def test_non_bytes_command_is_a_bad_command() -> None:
    kv = KVStore()
    result = kv.apply(1, "put")  # type: ignore[arg-type]
    assert isinstance(result, dict) and result["error"] == "bad_command"


def populate(sm: Any) -> None:
    if isinstance(sm, KVStore):
        sm.advance_clock(1000)
        commands = [KVStore.encode_open_session(), KVStore.encode_put("a", "1", request_id="1:1")]
        apply_all(sm, commands + [KVStore.encode_put("b", "2")])
    elif isinstance(sm, ReplicatedDict):
        apply_all(sm, [ReplicatedDict.encode_set("a", {"x": [1, 2.5, None, b"raw"]})])
    elif isinstance(sm, Counter):
        apply_all(sm, [Counter.encode_add(5)])
    else:
        sm.advance_clock(10)
        apply_all(sm, [Lock.encode_acquire("l", "o", 1000)])


@pytest.mark.parametrize(
    "encode",
    [
        lambda: KVStore.encode_put(1, "v"),  # type: ignore[arg-type]
        lambda: KVStore.encode_put("", "v"),
        lambda: KVStore.encode_put("k", b"v"),  # type: ignore[arg-type]
        lambda: KVStore.encode_cas("k", 1, "v"),  # type: ignore[arg-type]
        lambda: ReplicatedDict.encode_set("k", object()),
        lambda: ReplicatedDict.encode_set("k", {1: "int key"}),
        lambda: Counter.encode_add(1 << 63),
        lambda: Counter.encode_add(True),
        lambda: Lock.encode_acquire("l", "o", 0),
        lambda: Lock.encode_acquire("l", "o", 10, 5),  # type: ignore[call-arg]  # no caller clock
        lambda: Lock.encode_release("l", "o", 0),
    ],
)
def test_encoders_refuse_bad_arguments(encode: Callable[[], bytes]) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode()


SHARED_INDEX_COMMANDS = [
    pytest.param(
        lambda: KVStore(),
        [1000, KVStore.encode_open_session(), KVStore.encode_put("a", "1", request_id="1:1"),
         KVStore.encode_put("a", "1", request_id="1:1"), KVStore.encode_cas("a", "1", "2"),
         KVStore.encode_put("b", "x"), KVStore.encode_delete("b")],
        id="kv",
    ),
    pytest.param(
        ReplicatedDict,
        [ReplicatedDict.encode_set("a", [1]), ReplicatedDict.encode_set("b", 2), ReplicatedDict.encode_pop("a"),
         ReplicatedDict.encode_clear()],
        id="dict",
    ),
    pytest.param(Counter, [Counter.encode_add(5), Counter.encode_add(-2), Counter.encode_set(9), Counter.encode_add(1)], id="counter"),
    pytest.param(
        Lock,
        [10, Lock.encode_acquire("l", "o1", 100), Lock.encode_acquire("l", "o2", 100), 200,
         Lock.encode_acquire("l", "o2", 100), Lock.encode_release("l", "o2", 2)],
        id="lock",
    ),
]


@pytest.mark.parametrize("make, commands", SHARED_INDEX_COMMANDS)
def test_commands_sharing_one_index_give_the_results_of_one_command_per_index(make: Callable[[], Any], commands: List[Any]) -> None:
    """A Multi-Paxos slot holds a batch (`ProtocolSpec.batch_in_one_index`), so the runtime applies
    several commands with the same index; Raft gives each its own. A built-in's results and state
    depend on the commands and their order only, so replicas agree whichever protocol runs them."""
    one_per_index, batched = make(), make()
    expected = apply_all(one_per_index, commands)
    assert [step(batched, 1 + i // 3, command) for i, command in enumerate(commands)] == expected
    assert batched.snapshot() == one_per_index.snapshot()


# ------------------------------------------------------------------------ snapshots


@pytest.mark.parametrize("make", [KVStore, ReplicatedDict, Counter, Lock])
def test_snapshot_restore_round_trip(make: Callable[[], Any]) -> None:
    sm = make()
    populate(sm)
    copy = make()
    copy.restore(sm.snapshot())
    assert copy.snapshot() == sm.snapshot()


@pytest.mark.parametrize("make", [KVStore, ReplicatedDict, Counter, Lock])
def test_damaged_snapshot_raises_storage_error_and_keeps_state(make: Callable[[], Any]) -> None:
    sm = make()
    populate(sm)
    data = sm.snapshot()
    target = make()
    populate(target)
    target.apply(50, _one_more_command(target))
    before = target.snapshot()
    damaged = [data[:cut] for cut in range(len(data))]
    damaged += [data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :] for i in range(len(data))]
    damaged += [data + b"\x00", b"", b"garbage"]
    for blob in damaged:
        with pytest.raises(StorageError):
            target.restore(blob)
        assert target.snapshot() == before


def _one_more_command(sm: Any) -> bytes:
    if isinstance(sm, KVStore):
        return KVStore.encode_put("z", "z")
    if isinstance(sm, ReplicatedDict):
        return ReplicatedDict.encode_set("z", 1)
    if isinstance(sm, Counter):
        return Counter.encode_add(1)
    return Lock.encode_acquire("z", "o", 5)


def test_snapshot_of_another_machine_is_refused() -> None:
    counter = Counter()
    with pytest.raises(StorageError):
        KVStore().restore(counter.snapshot())
    with pytest.raises(StorageError):
        Lock().restore(ReplicatedDict().snapshot())


def test_snapshot_bytes_do_not_depend_on_insertion_order() -> None:
    # Same final state (a=("3", 3), b=("2", 2), revision 3) reached with keys first inserted in
    # different orders: the snapshots must be byte-identical.
    one, two = KVStore(), KVStore()
    apply_all(one, [KVStore.encode_put("a", "1"), KVStore.encode_put("b", "2"), KVStore.encode_put("a", "3")])
    apply_all(two, [KVStore.encode_put("b", "1"), KVStore.encode_put("b", "2"), KVStore.encode_put("a", "3")])
    assert one.get("a") == two.get("a") and one.get("b") == two.get("b") and one.revision == two.revision
    assert one.snapshot() == two.snapshot()
    d1, d2 = ReplicatedDict(), ReplicatedDict()
    d1.apply(1, ReplicatedDict.encode_set("x", 1))
    d1.apply(2, ReplicatedDict.encode_set("y", 2))
    d2.apply(1, ReplicatedDict.encode_set("y", 2))
    d2.apply(2, ReplicatedDict.encode_set("x", 1))
    assert d1.snapshot() == d2.snapshot()


# ------------------------------------------------------------------------ determinism (hypothesis)

keys = st.sampled_from(["a", "b", "c", "ü"])
texts = st.sampled_from(["", "x", "y", "zz"])
request_ids = st.one_of(st.none(), st.builds(lambda c, s: f"{c}:{s}", st.integers(1, 4), st.integers(1, 4)))
#: Leader clock stamps: mostly small steps, some invalid (too large, negative).
clock_stamps = st.one_of(st.integers(0, 300), st.sampled_from([1 << 62, -1, CLOCK_MS_MAX + 1]))
kv_commands = st.one_of(
    st.builds(KVStore.encode_put, keys, texts, request_ids),
    st.builds(KVStore.encode_delete, keys, request_ids),
    st.builds(KVStore.encode_cas, keys, st.one_of(st.none(), texts), texts, request_ids),
    st.just(KVStore.encode_open_session()),
    clock_stamps,
    st.binary(max_size=12),
)
plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1), st.floats(allow_nan=False),
              st.text(max_size=4), st.binary(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)
dict_commands = st.one_of(
    st.builds(ReplicatedDict.encode_set, keys, plain_values),
    st.builds(ReplicatedDict.encode_pop, keys),
    st.just(ReplicatedDict.encode_clear()),
    st.binary(max_size=12),
)
counter_commands = st.one_of(
    st.builds(Counter.encode_add, st.integers(-(1 << 63), (1 << 63) - 1)),
    st.builds(Counter.encode_set, st.integers(-(1 << 63), (1 << 63) - 1)),
)
lock_commands = st.one_of(
    st.builds(Lock.encode_acquire, keys, st.sampled_from(["o1", "o2", "o3"]), st.integers(1, 50)),
    st.builds(Lock.encode_release, keys, st.sampled_from(["o1", "o2", "o3"]), st.integers(1, 6)),
    clock_stamps,
)


def check_replicas_agree(make: Callable[[], Any], commands: List[Any], cut: int) -> None:
    first, second = make(), make()
    results_first = apply_all(first, commands)
    results_second = apply_all(second, commands)
    assert results_first == results_second
    assert first.snapshot() == second.snapshot()
    # A replica that restored a snapshot part way through ends in the same state.
    cut = min(cut, len(commands))
    late = make()
    prefix = make()
    apply_all(prefix, commands[:cut])
    late.restore(prefix.snapshot())
    assert apply_all(late, commands[cut:], start=cut + 1) == results_first[cut:]
    assert late.snapshot() == first.snapshot()


@settings(max_examples=60, deadline=None)
@given(st.lists(kv_commands, max_size=40), st.integers(0, 40))
def test_kv_replicas_fed_the_same_commands_agree(commands: List[Any], cut: int) -> None:
    check_replicas_agree(lambda: KVStore(max_sessions=2, session_ttl_ms=50), commands, cut)


@settings(max_examples=60, deadline=None)
@given(st.lists(dict_commands, max_size=30), st.integers(0, 30))
def test_dict_replicas_fed_the_same_commands_agree(commands: List[bytes], cut: int) -> None:
    check_replicas_agree(ReplicatedDict, commands, cut)


@settings(max_examples=40, deadline=None)
@given(st.lists(counter_commands, max_size=20), st.integers(0, 20))
def test_counter_replicas_fed_the_same_commands_agree(commands: List[bytes], cut: int) -> None:
    check_replicas_agree(Counter, commands, cut)


@settings(max_examples=60, deadline=None)
@given(st.lists(lock_commands, max_size=40), st.integers(0, 40))
def test_lock_replicas_fed_the_same_commands_agree(commands: List[Any], cut: int) -> None:
    check_replicas_agree(lambda: Lock(max_locks=2), commands, cut)


@settings(max_examples=60, deadline=None)
@given(st.lists(kv_commands, max_size=40))
def test_kv_revision_counts_successful_writes_and_mod_revisions_are_unique(commands: List[Any]) -> None:
    kv = KVStore()
    produced: List[int] = []
    for index, command in enumerate(commands, 1):
        before = kv.revision
        result = step(kv, index, command)
        assert kv.revision in (before, before + 1)
        if kv.revision == before + 1:
            assert isinstance(result, dict) and result["revision"] == kv.revision
            produced.append(kv.revision)
    assert produced == list(range(1, kv.revision + 1))
    mods = [mod for _, (_, mod) in kv.items()]
    assert len(mods) == len(set(mods)) and all(1 <= m <= kv.revision for m in mods)


# ------------------------------------------------------------------------ ReplicatedDict and Counter


def test_replicated_dict_commands() -> None:
    d = ReplicatedDict()
    assert d.apply(1, ReplicatedDict.encode_set("a", [1, {"n": None}])) is None
    assert d.apply(2, ReplicatedDict.encode_set("b", b"\x00")) is None
    assert d["a"] == [1, {"n": None}] and "b" in d and len(d) == 2
    assert d.apply(3, ReplicatedDict.encode_pop("a")) == {"found": True, "value": [1, {"n": None}]}
    assert d.apply(4, ReplicatedDict.encode_pop("a")) == {"found": False}
    assert d.get("a", "default") == "default"
    assert d.apply(5, ReplicatedDict.encode_clear()) == 1
    assert len(d) == 0 and list(d.items()) == []


def test_counter_commands_and_overflow() -> None:
    c = Counter()
    assert c.apply(1, Counter.encode_add(5)) == 5
    assert c.apply(2, Counter.encode_add(-7)) == -2
    assert c.apply(3, Counter.encode_set((1 << 63) - 1)) == (1 << 63) - 1
    result = c.apply(4, Counter.encode_add(1))
    assert isinstance(result, dict) and result["error"] == "overflow"
    assert c.value == (1 << 63) - 1
    c.restore(c.snapshot())
    assert c.value == (1 << 63) - 1


# ------------------------------------------------------------------------ Lock


def acquire(lock: Lock, index: int, name: str, owner: str, ttl_ms: int) -> Any:
    return lock.apply(index, Lock.encode_acquire(name, owner, ttl_ms))


def test_lock_acquire_contend_release() -> None:
    lock = Lock()
    lock.advance_clock(1000)
    assert acquire(lock, 1, "db", "alice", 100) == {"acquired": True, "token": 1, "expires_ms": 1100}
    lock.advance_clock(1050)
    assert acquire(lock, 2, "db", "bob", 100) == {"acquired": False, "holder": "alice", "expires_ms": 1100}
    assert lock.holder("db") == ("alice", 1, 1100)
    # Re-acquire by the holder renews the lease and keeps the token.
    lock.advance_clock(1060)
    assert acquire(lock, 3, "db", "alice", 100) == {"acquired": True, "token": 1, "expires_ms": 1160}
    assert lock.apply(4, Lock.encode_release("db", "bob", 1)) == {"released": False}
    assert lock.apply(5, Lock.encode_release("db", "alice", 2)) == {"released": False}
    assert lock.apply(6, Lock.encode_release("db", "alice", 1)) == {"released": True}
    assert lock.holder("db") is None
    assert acquire(lock, 7, "db", "bob", 100)["token"] == 2


def test_expired_lease_moves_to_another_owner_with_a_larger_token() -> None:
    lock = Lock()
    lock.advance_clock(1000)
    assert acquire(lock, 1, "db", "alice", 100)["token"] == 1
    assert acquire(lock, 2, "other", "carol", 10_000)["token"] == 2
    # At 1100 alice's lease has expired: bob takes it with a token larger than every earlier one.
    lock.advance_clock(1100)
    assert acquire(lock, 3, "db", "bob", 100) == {"acquired": True, "token": 3, "expires_ms": 1200}
    # alice's stale token no longer releases anything: that is the fencing.
    assert lock.apply(4, Lock.encode_release("db", "alice", 1)) == {"released": False}
    assert lock.holder("db") == ("bob", 3, 1200)


def test_a_caller_can_no_longer_pass_a_clock() -> None:
    """Issue 9, case 11: leases were timed by the caller's `now_ms`."""
    with pytest.raises(TypeError):
        Lock.encode_acquire("db", "alice", 100, 1 << 62)  # type: ignore[call-arg]
    lock = Lock()
    lock.advance_clock(1000)
    acquire(lock, 1, "db", "alice", 100)
    # A hand-made acquire carrying a clock is a bad command: it neither steals nor moves time.
    forged = packed({"op": "acquire", "name": "db", "owner": "mallory", "ttl_ms": 100, "now_ms": 1 << 62})
    assert lock.apply(2, forged)["error"] == "bad_command"  # type: ignore[index]
    assert lock.clock_ms == 1000 and lock.holder("db") == ("alice", 1, 1100)

    async def scenario() -> None:
        lock.attach(LocalProposer(lock))
        await lock.acquire("db", "bob", 100, now_ms=1 << 62)  # type: ignore[call-arg]

    with pytest.raises(TypeError):
        asyncio.run(scenario())


def test_a_huge_stamp_neither_freezes_nor_rewinds_the_lock_clock() -> None:
    """Issue 9, case 11: `now_ms = 2^62` froze the clock, so leases never expired again."""
    lock = Lock()
    lock.advance_clock(1000)
    acquire(lock, 1, "db", "alice", 100)
    lock.advance_clock(1 << 62)  # refused: the clock stays, the lease keeps its meaning
    assert lock.clock_ms == 1000 and lock.invalid_clock_stamps == 1
    assert acquire(lock, 2, "db", "bob", 100)["acquired"] is False
    lock.advance_clock(900)  # a slower leader cannot rewind it either
    assert lock.clock_ms == 1000
    lock.advance_clock(1100)  # time still moves: the lease expires when it should
    assert acquire(lock, 3, "db", "bob", 100) == {"acquired": True, "token": 2, "expires_ms": 1200}


@settings(max_examples=100, deadline=None)
@given(st.lists(lock_commands, max_size=60))
def test_two_owners_never_hold_a_lock_at_the_same_clock_reading(commands: List[Any]) -> None:
    """Issue 9, case 11: judged by the replicated clock, a lease is exclusive until it expires."""
    lock = Lock(max_locks=2)
    held: dict = {}  # name -> (owner, token, expires_ms) as the answers told it
    for index, command in enumerate(commands, 1):
        result = step(lock, index, command)
        if not isinstance(command, bytes):
            continue
        decoded = msgpack.unpackb(command)
        if decoded["op"] == "release":
            if result == {"released": True}:
                del held[decoded["name"]]
            continue
        if isinstance(result, dict) and result.get("acquired"):
            previous = held.get(decoded["name"])
            if previous is not None and previous[2] > lock.clock_ms:
                assert previous[0] == decoded["owner"] and previous[1] == result["token"]
            held[decoded["name"]] = (decoded["owner"], result["token"], result["expires_ms"])


def test_lock_tokens_strictly_increase_across_all_grants() -> None:
    lock = Lock()
    tokens: List[int] = []
    now = 0
    for index in range(30):
        now += 7
        lock.advance_clock(now)
        result = acquire(lock, index + 1, f"l{index % 3}", f"o{index % 4}", 10)
        assert isinstance(result, dict)
        if result["acquired"] and (not tokens or result["token"] != tokens[-1]):
            if result["token"] not in tokens:
                tokens.append(result["token"])
    assert tokens == sorted(tokens) and len(tokens) == len(set(tokens)) and len(tokens) > 3


def test_lock_table_is_bounded_and_drops_expired_leases_first() -> None:
    lock = Lock(max_locks=2)
    acquire(lock, 1, "a", "o", 10)
    acquire(lock, 2, "b", "o", 1000)
    lock.advance_clock(5)
    assert acquire(lock, 3, "c", "o", 10)["error"] == "too_many_locks"
    # Once "a" expired, its slot is reused.
    lock.advance_clock(20)
    assert acquire(lock, 4, "c", "o", 10) == {"acquired": True, "token": 3, "expires_ms": 30}
    assert lock.holder("a") is None and lock.holder("b") is not None


def test_lock_survives_snapshot_with_clock_and_token_counter() -> None:
    lock = Lock()
    lock.advance_clock(1000)
    acquire(lock, 1, "db", "alice", 100)
    lock.apply(2, Lock.encode_release("db", "alice", 1))
    copy = Lock()
    copy.restore(lock.snapshot())
    assert copy.clock_ms == 1000
    # Tokens are never reused, even after a restore.
    assert acquire(copy, 3, "db", "bob", 100) == {"acquired": True, "token": 2, "expires_ms": 1100}


# ------------------------------------------------------------------------ async helpers


def test_kv_async_helpers_through_a_proposer() -> None:
    async def scenario() -> Tuple[Any, ...]:
        kv = KVStore()
        proposer = LocalProposer(kv)
        kv.attach(proposer)
        session = await kv.open_session()
        put = await kv.put("k", "v", request_id=f"{session}:1")
        retry = await kv.put("k", "v", request_id=f"{session}:1")
        cas = await kv.cas("k", "v", "w")
        failed_cas = await kv.cas("k", "nope", "x")
        read = await kv.get_linearizable("k")
        deleted = await kv.delete("k")
        gone = await kv.get_linearizable("k")
        with pytest.raises(CommandRejectedError) as info:
            await kv.put("k", "other", request_id=f"{session}:1")
        return put, retry, cas, failed_cas, read, deleted, gone, proposer.read_barriers, info.value

    put, retry, cas, failed_cas, read, deleted, gone, barriers, rejected = asyncio.run(scenario())
    assert put == retry == {"revision": 1}
    assert cas == {"succeeded": True, "revision": 2}
    assert failed_cas == {"succeeded": False, "revision": 2}
    assert read == ("w", 2)
    assert deleted == {"revision": 3, "deleted": True}
    assert gone is None and barriers == 2
    assert rejected.code == "request_id_reused" and rejected.result["error"] == "request_id_reused"


def test_other_async_helpers_through_a_proposer() -> None:
    async def scenario() -> Tuple[Any, ...]:
        d, c, lock = ReplicatedDict(), Counter(), Lock()
        for sm in (d, c, lock):
            sm.attach(LocalProposer(sm))
        await d.set("a", {"x": 1})
        popped = await d.pop("a")
        missing = await d.pop("a", "default")
        await d.set("b", 2)
        cleared = await d.clear()
        added = await c.add(5)
        assigned = await c.set(-3)
        got = await lock.acquire("db", "alice", 60_000)
        blocked = await lock.acquire("db", "bob", 60_000)
        released = await lock.release("db", "alice", got["token"])
        return popped, missing, cleared, added, assigned, c.value, got, blocked, released

    popped, missing, cleared, added, assigned, value, got, blocked, released = asyncio.run(scenario())
    assert popped == {"x": 1} and missing == "default" and cleared == 1
    assert (added, assigned, value) == (5, -3, -3)
    assert got["acquired"] is True and got["token"] == 1
    assert blocked["acquired"] is False and blocked["holder"] == "alice"
    assert released == {"released": True}


def test_async_helper_without_attach_raises() -> None:
    async def scenario() -> Optional[object]:
        return await Counter().add(1)

    with pytest.raises(RuntimeError):
        asyncio.run(scenario())


# ------------------------------------------------------------------------ sessions over HTTP


class LeaderStub:
    """Just enough of a `Node` for `KVService`: a leader that applies each command at once,
    stamped with `now_ms` as the runtime stamps commands with the leader's clock."""

    def __init__(self, kv: KVStore) -> None:
        self.kv = kv
        self.now_ms = 1000
        self.index = 0
        self.id = self.leader = 1
        self.is_leader = True
        self.metrics: Any = None
        self.addresses: dict = {}
        #: Set to a number of ms: the next write is applied, then the answer is lost (a timeout)
        #: and the leader's clock jumps by that much.
        self.lose_next_answer_and_skip_ms = 0

    async def propose(self, command: bytes) -> object:
        from consensus.errors import RequestTimeoutError

        self.index += 1
        self.kv.advance_clock(self.now_ms)
        result = self.kv.apply(self.index, command)
        skip, self.lose_next_answer_and_skip_ms = self.lose_next_answer_and_skip_ms, 0
        if skip:
            self.now_ms += skip
            raise RequestTimeoutError("the answer was lost")
        return result

    async def read_index(self) -> None:
        return None


def serve_kv(kv: KVStore, scenario: Callable[[LeaderStub, str], Any]) -> None:
    """Run `scenario(stub, base_url)` against an in-process KV service over `kv`."""
    from aiohttp.test_utils import TestServer

    from consensus.service import KVService

    async def main() -> None:
        stub = LeaderStub(kv)
        server = TestServer(KVService(stub, kv).app)
        await server.start_server()
        try:
            await scenario(stub, str(server.make_url("")).rstrip("/"))
        finally:
            await server.close()

    asyncio.run(main())


def test_http_session_route_and_request_id_errors() -> None:
    import aiohttp

    kv = KVStore(session_ttl_ms=1000)

    async def scenario(stub: LeaderStub, url: str) -> None:
        async with aiohttp.ClientSession() as http:

            async def call(method: str, path: str, body: Any = None, rid: Optional[str] = None) -> Tuple[int, Any]:
                headers = {"X-Request-Id": rid} if rid else {}
                async with http.request(method, url + path, json=body, headers=headers) as resp:
                    return resp.status, await resp.json()

            assert await call("POST", "/v1/sessions") == (200, {"client": "1", "ttl_ms": 1000})
            first = await call("PUT", "/v1/kv/k", {"value": "v"}, "1:1")
            assert first == (200, {"revision": 1}) and await call("PUT", "/v1/kv/k", {"value": "v"}, "1:1") == first
            status, body = await call("PUT", "/v1/kv/k", {"value": "x"}, "1:1")
            assert (status, body["code"]) == (409, "request_id_reused")
            for not_a_session in ("c1:1", "7:1"):  # not a session id; a session never opened
                status, body = await call("PUT", "/v1/kv/k", {"value": "x"}, not_a_session)
                assert (status, body["code"], body["indeterminate"]) == (400, "bad_request", False)
            stub.now_ms += 1000
            status, body = await call("PUT", "/v1/kv/k", {"value": "v"}, "1:1")
            assert (status, body["code"], body["indeterminate"]) == (409, "session_expired", False)
            assert kv.revision == 1 and kv.get("k") == ("v", 1)

    serve_kv(kv, scenario)


def test_http_opening_a_session_at_the_cap_succeeds_and_the_evicted_session_gets_a_definite_session_expired() -> None:
    import aiohttp

    kv = KVStore(max_sessions=1)

    async def scenario(stub: LeaderStub, url: str) -> None:
        async with aiohttp.ClientSession() as http:
            for expected in ("1", "2"):
                async with http.post(url + "/v1/sessions") as resp:
                    assert (resp.status, (await resp.json())["client"]) == (200, expected)
            async with http.put(url + "/v1/kv/k", json={"value": "v"}, headers={"X-Request-Id": "1:1"}) as resp:
                body = await resp.json()
                assert (resp.status, body["code"], body["indeterminate"]) == (409, "session_expired", False)
            assert kv.revision == 0

    serve_kv(kv, scenario)


def test_kv_client_opens_sessions_lazily_and_one_per_request_in_flight() -> None:
    from consensus.service import KVClient

    kv = KVStore()

    async def scenario(stub: LeaderStub, url: str) -> None:
        async with KVClient([url], retry_for=1.0) as client:
            assert await client.get("a") is None and kv.sessions_minted == 0  # reads need none
            assert await client.put("a", "1") == 1
            assert await client.put("a", "2") == 2
            assert kv.sessions_minted == 1
            await asyncio.gather(*(client.put(f"k{i}", "v") for i in range(3)))
            assert kv.sessions_minted == 3  # the idle session and two more for the concurrent writes

    serve_kv(kv, scenario)


def test_kv_client_resends_in_a_new_session_only_when_every_earlier_answer_was_definite() -> None:
    """A write whose session expired (or was evicted) before it arrived was not applied: the
    client carries it in a new session, and it is applied exactly once."""
    from consensus.service import KVClient

    kv = KVStore(session_ttl_ms=60_000)

    async def scenario(stub: LeaderStub, url: str) -> None:
        async with KVClient([url], retry_for=1.0) as client:
            assert await client.put("a", "1") == 1
            stub.now_ms += 60_000  # the leader's clock says the session expired; the client's does not
            assert await client.put("a", "2") == 2
            assert kv.get("a") == ("2", 2) and kv.revision == 2
            assert kv.sessions_minted == 2

    serve_kv(kv, scenario)


def test_session_expired_after_an_indeterminate_attempt_says_the_write_may_have_been_applied() -> None:
    from consensus.service import KVClient, SessionExpiredError

    kv = KVStore(session_ttl_ms=60_000)

    async def scenario(stub: LeaderStub, url: str) -> None:
        async with KVClient([url], retry_for=5.0) as client:
            assert await client.put("a", "1") == 1
            stub.lose_next_answer_and_skip_ms = 60_000  # applied, answer lost, then the session expires
            with pytest.raises(SessionExpiredError) as info:
                await client.put("a", "2")
            assert info.value.after_indeterminate is True
            assert kv.get("a") == ("2", 2) and kv.revision == 2  # applied once, by the first attempt

    serve_kv(kv, scenario)


def test_kv_client_renews_a_session_idle_for_half_its_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    import consensus.service._client as client_module
    from consensus.service import KVClient

    kv = KVStore(session_ttl_ms=60_000)
    now = [100.0]
    monkeypatch.setattr(client_module, "_monotonic", lambda: now[0])

    async def scenario(stub: LeaderStub, url: str) -> None:
        async with KVClient([url], retry_for=1.0) as client:
            assert await client.put("a", "1") == 1
            now[0] += 29.0
            assert await client.put("a", "2") == 2 and kv.sessions_minted == 1
            now[0] += 30.0  # idle for half the lifetime: renewed before the service could expire it
            stub.now_ms += 60_000  # without the renewal this write would get session_expired
            assert await client.put("a", "3") == 3 and kv.sessions_minted == 2

    serve_kv(kv, scenario)


def test_a_snapshot_from_before_sessions_restores_its_data_without_the_old_request_table() -> None:
    body = {"clients": [["c1", 1, b"f" * 32, {"revision": 1}, 1]], "data": [["k", "v", 1]], "revision": 1}
    packed_body = msgpack.packb(body, use_bin_type=True)
    old = msgpack.packb([KVStore.SNAPSHOT_TAG, 1, zlib.crc32(packed_body), packed_body], use_bin_type=True)
    kv = KVStore()
    kv.restore(old)
    assert kv.get("k") == ("v", 1) and kv.revision == 1
    assert kv.session_count == 0 and kv.sessions_minted == 0 and kv.clock_ms == 0
    retry = msgpack.packb({"op": "put", "key": "k", "value": "v", "request_id": "c1:1"}, use_bin_type=True)
    assert error_code(kv.apply(2, retry)) == "bad_command" and kv.revision == 1
