"""Built-in state machines: results, revision rules, idempotent requests, determinism, snapshots."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Optional, Tuple

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import StorageError
from consensus.statemachine import (
    CommandRejectedError,
    Counter,
    KVStore,
    Lock,
    Proposer,
    ReplicatedDict,
    StateMachine,
)


def apply_all(sm: Any, commands: List[bytes], start: int = 1) -> List[object]:
    return [sm.apply(start + i, command) for i, command in enumerate(commands)]


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
    # DESIGN.md §3: deleting an absent key answers the current revision and does not advance it.
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


# ------------------------------------------------------------------------ idempotent requests


def test_retry_with_same_request_id_returns_first_answer_without_applying_again() -> None:
    kv = KVStore()
    first = kv.apply(1, KVStore.encode_put("k", "v", request_id="c1:1"))
    assert first == {"revision": 1}
    kv.apply(2, KVStore.encode_put("k", "other"))
    assert kv.apply(3, KVStore.encode_put("k", "v", request_id="c1:1")) == first
    assert kv.get("k") == ("other", 2) and kv.revision == 2


def test_retried_cas_returns_its_first_answer_even_when_state_moved_on() -> None:
    kv = KVStore()
    cas = KVStore.encode_cas("k", None, "v", request_id="c:1")
    assert kv.apply(1, cas) == {"succeeded": True, "revision": 1}
    # Applied again it would fail; the retry gets the original success.
    assert kv.apply(2, cas) == {"succeeded": True, "revision": 1}
    delete = KVStore.encode_delete("k", request_id="c:2")
    assert kv.apply(3, delete) == {"revision": 2, "deleted": True}
    assert kv.apply(4, delete) == {"revision": 2, "deleted": True}


def test_same_request_id_with_different_request_is_refused() -> None:
    kv = KVStore()
    kv.apply(1, KVStore.encode_put("k", "v", request_id="c:5"))
    for command in (
        KVStore.encode_put("k", "different", request_id="c:5"),
        KVStore.encode_put("other", "v", request_id="c:5"),
        KVStore.encode_delete("k", request_id="c:5"),
    ):
        result = kv.apply(2, command)
        assert isinstance(result, dict) and result["error"] == "request_id_reused"
    assert kv.get("k") == ("v", 1) and kv.revision == 1 and kv.get("other") is None


def test_stale_sequence_number_is_refused() -> None:
    kv = KVStore()
    kv.apply(1, KVStore.encode_put("k", "v1", request_id="c:1"))
    kv.apply(2, KVStore.encode_put("k", "v2", request_id="c:2"))
    result = kv.apply(3, KVStore.encode_put("k", "v1", request_id="c:1"))
    assert isinstance(result, dict) and result["error"] == "request_id_reused"
    assert kv.get("k") == ("v2", 2)
    # Sequence numbers may skip; other clients are independent.
    assert kv.apply(4, KVStore.encode_put("k", "v9", request_id="c:9")) == {"revision": 3}
    assert kv.apply(5, KVStore.encode_put("k", "w", request_id="d:1")) == {"revision": 4}


def test_request_table_survives_snapshot_and_restore() -> None:
    kv = KVStore()
    kv.apply(1, KVStore.encode_put("k", "v", request_id="c:1"))
    copy = KVStore()
    copy.restore(kv.snapshot())
    assert copy.apply(2, KVStore.encode_put("k", "v", request_id="c:1")) == {"revision": 1}
    refused = copy.apply(3, KVStore.encode_put("k", "x", request_id="c:1"))
    assert isinstance(refused, dict) and refused["error"] == "request_id_reused"
    assert copy.revision == 1 and copy.snapshot() == kv.snapshot()


def test_client_table_is_bounded_and_evicts_the_oldest_client() -> None:
    kv = KVStore(max_clients=2)
    kv.apply(1, KVStore.encode_put("k", "a", request_id="a:1"))
    kv.apply(2, KVStore.encode_put("k", "b", request_id="b:1"))
    kv.apply(3, KVStore.encode_put("k", "a2", request_id="a:2"))  # a is now newer than b
    kv.apply(4, KVStore.encode_put("k", "c", request_id="c:1"))  # evicts b, the oldest
    assert kv.client_count == 2
    # a and c are remembered: retries return the stored answers.
    assert kv.apply(5, KVStore.encode_put("k", "a2", request_id="a:2")) == {"revision": 3}
    assert kv.apply(6, KVStore.encode_put("k", "c", request_id="c:1")) == {"revision": 4}
    # b was forgotten: its retry is applied again (the documented cost of the bound).
    assert kv.apply(7, KVStore.encode_put("k", "b", request_id="b:1")) == {"revision": 5}
    # The eviction order is replicated state: a restored replica evicts the same client next.
    other = KVStore(max_clients=2)
    other.restore(kv.snapshot())
    for sm in (kv, other):
        sm.apply(8, KVStore.encode_put("k", "d", request_id="d:1"))
    assert other.snapshot() == kv.snapshot()


def test_failed_writes_with_request_ids_are_remembered_too() -> None:
    kv = KVStore()
    failed = kv.apply(1, KVStore.encode_cas("k", "x", "y", request_id="c:1"))
    assert failed == {"succeeded": False, "revision": 0}
    kv.apply(2, KVStore.encode_put("k", "x"))
    assert kv.apply(3, KVStore.encode_cas("k", "x", "y", request_id="c:1")) == failed


@pytest.mark.parametrize("request_id", ["", "c", ":1", "c:0", "c:-1", "c:x", "c:1.5", "c:", 7])
def test_malformed_request_id_is_refused(request_id: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        KVStore.encode_put("k", "v", request_id=request_id)
    kv = KVStore()
    raw = msgpack.packb({"op": "put", "key": "k", "value": "v", "request_id": request_id}, use_bin_type=True)
    result = kv.apply(1, raw)
    assert isinstance(result, dict) and result["error"] == "bad_command"
    assert kv.revision == 0


def test_client_id_may_contain_colons() -> None:
    kv = KVStore()
    kv.apply(1, KVStore.encode_put("k", "v", request_id="host:42:7"))
    assert kv.apply(2, KVStore.encode_put("k", "v", request_id="host:42:7")) == {"revision": 1}


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
        apply_all(sm, [KVStore.encode_put("a", "1", request_id="c:1"), KVStore.encode_put("b", "2")])
    elif isinstance(sm, ReplicatedDict):
        apply_all(sm, [ReplicatedDict.encode_set("a", {"x": [1, 2.5, None, b"raw"]})])
    elif isinstance(sm, Counter):
        apply_all(sm, [Counter.encode_add(5)])
    else:
        apply_all(sm, [Lock.encode_acquire("l", "o", 1000, 10)])


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
        lambda: Lock.encode_acquire("l", "o", 0, 1),
        lambda: Lock.encode_acquire("l", "o", 10, -1),
        lambda: Lock.encode_release("l", "o", 0),
    ],
)
def test_encoders_refuse_bad_arguments(encode: Callable[[], bytes]) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode()


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
    return Lock.encode_acquire("z", "o", 5, 20)


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
request_ids = st.one_of(st.none(), st.builds(lambda c, s: f"{c}:{s}", st.sampled_from(["p", "q", "r"]),
                                             st.integers(1, 4)))
kv_commands = st.one_of(
    st.builds(KVStore.encode_put, keys, texts, request_ids),
    st.builds(KVStore.encode_delete, keys, request_ids),
    st.builds(KVStore.encode_cas, keys, st.one_of(st.none(), texts), texts, request_ids),
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
    st.builds(Lock.encode_acquire, keys, st.sampled_from(["o1", "o2"]), st.integers(1, 50), st.integers(0, 200)),
    st.builds(Lock.encode_release, keys, st.sampled_from(["o1", "o2"]), st.integers(1, 6)),
)


def check_replicas_agree(make: Callable[[], Any], commands: List[bytes], cut: int) -> None:
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
def test_kv_replicas_fed_the_same_commands_agree(commands: List[bytes], cut: int) -> None:
    check_replicas_agree(lambda: KVStore(max_clients=2), commands, cut)


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
def test_lock_replicas_fed_the_same_commands_agree(commands: List[bytes], cut: int) -> None:
    check_replicas_agree(lambda: Lock(max_locks=2), commands, cut)


@settings(max_examples=60, deadline=None)
@given(st.lists(kv_commands, max_size=40))
def test_kv_revision_counts_successful_writes_and_mod_revisions_are_unique(commands: List[bytes]) -> None:
    kv = KVStore()
    produced: List[int] = []
    for index, command in enumerate(commands, 1):
        before = kv.revision
        result = kv.apply(index, command)
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


def test_lock_acquire_contend_release() -> None:
    lock = Lock()
    granted = lock.apply(1, Lock.encode_acquire("db", "alice", ttl_ms=100, now_ms=1000))
    assert granted == {"acquired": True, "token": 1, "expires_ms": 1100}
    assert lock.apply(2, Lock.encode_acquire("db", "bob", 100, 1050)) == {
        "acquired": False,
        "holder": "alice",
        "expires_ms": 1100,
    }
    assert lock.holder("db") == ("alice", 1, 1100)
    # Re-acquire by the holder renews the lease and keeps the token.
    assert lock.apply(3, Lock.encode_acquire("db", "alice", 100, 1060)) == {
        "acquired": True,
        "token": 1,
        "expires_ms": 1160,
    }
    assert lock.apply(4, Lock.encode_release("db", "bob", 1)) == {"released": False}
    assert lock.apply(5, Lock.encode_release("db", "alice", 2)) == {"released": False}
    assert lock.apply(6, Lock.encode_release("db", "alice", 1)) == {"released": True}
    assert lock.holder("db") is None
    assert lock.apply(7, Lock.encode_acquire("db", "bob", 100, 1070))["token"] == 2  # type: ignore[index]


def test_expired_lease_moves_to_another_owner_with_a_larger_token() -> None:
    lock = Lock()
    first = lock.apply(1, Lock.encode_acquire("db", "alice", 100, 1000))
    assert first["token"] == 1  # type: ignore[index]
    other = lock.apply(2, Lock.encode_acquire("other", "carol", 10_000, 1000))
    assert other["token"] == 2  # type: ignore[index]
    # At 1100 alice's lease has expired: bob takes it with a token larger than every earlier one.
    taken = lock.apply(3, Lock.encode_acquire("db", "bob", 100, 1100))
    assert taken == {"acquired": True, "token": 3, "expires_ms": 1200}
    # alice's stale token no longer releases anything: that is the fencing.
    assert lock.apply(4, Lock.encode_release("db", "alice", 1)) == {"released": False}
    assert lock.holder("db") == ("bob", 3, 1200)


def test_lock_clock_never_goes_backwards() -> None:
    lock = Lock()
    lock.apply(1, Lock.encode_acquire("db", "alice", 100, 5000))
    # A proposer with a slow clock cannot rewind time and steal or extend past the machine's clock.
    assert lock.apply(2, Lock.encode_acquire("db", "bob", 100, 10)) == {
        "acquired": False,
        "holder": "alice",
        "expires_ms": 5100,
    }
    renewed = lock.apply(3, Lock.encode_acquire("x", "bob", 100, 10))
    assert renewed == {"acquired": True, "token": 2, "expires_ms": 5100}
    assert lock.clock_ms == 5000


def test_lock_tokens_strictly_increase_across_all_grants() -> None:
    lock = Lock()
    tokens: List[int] = []
    now = 0
    for step in range(30):
        now += 7
        result = lock.apply(step + 1, Lock.encode_acquire(f"l{step % 3}", f"o{step % 4}", 10, now))
        assert isinstance(result, dict)
        if result["acquired"] and (not tokens or result["token"] != tokens[-1]):
            if result["token"] not in tokens:
                tokens.append(result["token"])
    assert tokens == sorted(tokens) and len(tokens) == len(set(tokens)) and len(tokens) > 3


def test_lock_table_is_bounded_and_drops_expired_leases_first() -> None:
    lock = Lock(max_locks=2)
    lock.apply(1, Lock.encode_acquire("a", "o", 10, 0))
    lock.apply(2, Lock.encode_acquire("b", "o", 1000, 0))
    refused = lock.apply(3, Lock.encode_acquire("c", "o", 10, 5))
    assert isinstance(refused, dict) and refused["error"] == "too_many_locks"
    # Once "a" expired, its slot is reused.
    assert lock.apply(4, Lock.encode_acquire("c", "o", 10, 20)) == {"acquired": True, "token": 3, "expires_ms": 30}
    assert lock.holder("a") is None and lock.holder("b") is not None


def test_lock_survives_snapshot_with_clock_and_token_counter() -> None:
    lock = Lock()
    lock.apply(1, Lock.encode_acquire("db", "alice", 100, 1000))
    lock.apply(2, Lock.encode_release("db", "alice", 1))
    copy = Lock()
    copy.restore(lock.snapshot())
    assert copy.clock_ms == 1000
    # Tokens are never reused, even after a restore.
    assert copy.apply(3, Lock.encode_acquire("db", "bob", 100, 0))["token"] == 2  # type: ignore[index]


# ------------------------------------------------------------------------ async helpers


def test_kv_async_helpers_through_a_proposer() -> None:
    async def scenario() -> Tuple[Any, ...]:
        kv = KVStore()
        proposer = LocalProposer(kv)
        kv.attach(proposer)
        put = await kv.put("k", "v", request_id="c:1")
        retry = await kv.put("k", "v", request_id="c:1")
        cas = await kv.cas("k", "v", "w")
        failed_cas = await kv.cas("k", "nope", "x")
        read = await kv.get_linearizable("k")
        deleted = await kv.delete("k")
        gone = await kv.get_linearizable("k")
        with pytest.raises(CommandRejectedError) as info:
            await kv.put("k", "other", request_id="c:1")
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
