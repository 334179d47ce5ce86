"""The public surface of docs/design.md §3 and what bad input does to it: typed errors, never a panic."""

from __future__ import annotations

import random

import pytest

import consensus
from consensus import raft
from consensus.testing import LocalCluster
from consensus.protocols import ProtocolSpec

from support import PeerFrames, core_of, drain


def test_public_names_exist():
    assert consensus.__version__
    for name in ["FOLLOWER", "PRE_CANDIDATE", "CANDIDATE", "LEADER", "LEARNER"]:
        assert hasattr(consensus.Role, name)
    for error in [
        consensus.NotLeaderError,
        consensus.ProposalDroppedError,
        consensus.ConfigError,
        consensus.DecodeError,
        consensus.StorageError,
        consensus.ProtocolError,
    ]:
        assert issubclass(error, consensus.ConsensusError)
    for name in ["RaftNode", "Config", "Entry", "EntryKind", "HardState", "MemoryStorage", "Message", "MessageType",
                 "decode", "ConfChange", "ConfState", "Snapshot", "ReadState", "Ready"]:
        assert hasattr(raft, name), name


def test_message_round_trips_through_the_wire_format():
    entries = [raft.Entry(7, 2, b"x" * 10), raft.Entry(8, 3, b"", raft.EntryKind.CONF_CHANGE)]
    message = raft.Message(
        type=raft.MessageType.APPEND_ENTRIES, from_=1, to=2, term=3, log_term=2, index=6, commit=5,
        entries=entries, reject=False, reject_hint=0, context=b"ctx",
    )
    decoded = raft.decode(message.encode())
    assert decoded == message
    assert decoded.entries[0].data == b"x" * 10
    assert decoded.entries[1].kind == raft.EntryKind.CONF_CHANGE


def test_garbage_frames_raise_decode_error_and_never_panic(protocol: ProtocolSpec, frames: PeerFrames):
    node = core_of(protocol, 1, [1, 2, 3])
    rng = random.Random(7)
    valid = frames.keepalive(2, 1, 1)
    samples = [b"", b"\x00", b"\xff" * 3, b"\xff" * 64, valid[:-1], valid + b"\x00"]
    for _ in range(2000):
        samples.append(bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80))))
        flipped = bytearray(valid)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        samples.append(bytes(flipped))
    for frame in samples:
        with pytest.raises(consensus.DecodeError):
            node.step(frame)
    # The node is unharmed and still works.
    node.step(valid)
    assert node.leader == 2


def test_frame_addressed_to_another_node_is_a_protocol_error():
    node = raft.RaftNode(id=1, voters=[1, 2, 3])
    frame = raft.Message(type=raft.MessageType.HEARTBEAT, from_=2, to=3, term=1).encode()
    with pytest.raises(consensus.ProtocolError):
        node.step(frame)


def test_message_without_term_is_a_protocol_error():
    node = raft.RaftNode(id=1, voters=[1, 2, 3])
    frame = raft.Message(type=raft.MessageType.APPEND_ENTRIES, from_=2, to=1, term=0).encode()
    with pytest.raises(consensus.ProtocolError):
        node.step(frame)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"election_tick": 0}, "election_tick"),
        ({"election_tick": 1, "heartbeat_tick": 1}, "election_tick"),
        ({"heartbeat_tick": 0}, "heartbeat_tick"),
        ({"heartbeat_tick": -1}, "heartbeat_tick"),
        ({"max_inflight_msgs": 0}, "max_inflight_msgs"),
        ({"max_size_per_msg": 0}, "max_size_per_msg"),
        ({"max_uncommitted_bytes": 0}, "max_uncommitted_bytes"),
        ({"max_entry_bytes": 0}, "max_entry_bytes"),
        ({"max_committed_entries_per_ready": 0}, "max_committed_entries_per_ready"),
        ({"max_pending_reads": 0}, "max_pending_reads"),
        ({"read_only_option": "fast"}, "read_only_option"),
        ({"read_only_option": "lease_based", "check_quorum": False}, "read_only_option"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_field(kwargs, field):
    with pytest.raises(consensus.ConfigError) as info:
        raft.Config(**kwargs)
    assert field in str(info.value)
    assert info.value.field == field


def test_unknown_config_field_is_a_type_error():
    with pytest.raises(TypeError):
        raft.Config(election_ticks=10)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": 0, "voters": [1, 2, 3]},
        {"id": -1, "voters": [1, 2, 3]},
        {"id": 1, "voters": []},
        {"id": 1, "voters": [1, 2], "learners": [2]},
        {"id": 1, "voters": [0, 1]},
    ],
)
def test_inconsistent_node_arguments_raise_config_error(kwargs):
    with pytest.raises(consensus.ConfigError):
        raft.RaftNode(**kwargs)


def test_oversized_proposal_is_dropped():
    cluster = LocalCluster(3, configure=lambda i: raft.Config(seed=i, max_entry_bytes=1024))
    cluster.elect(1)
    with pytest.raises(consensus.ProposalDroppedError):
        cluster.node(1).propose(b"x" * 1025)
    assert cluster.node(1).propose(b"x" * 1024) > 0


def test_proposal_without_leader_is_dropped(protocol: ProtocolSpec):
    """On a core built as the runtime builds it (proposal forwarding off): with no leader known
    there is nobody to forward to or to name, so proposals and reads are dropped (docs/paxos.md,
    "with no known leader, `ProposalDropped`")."""
    node = core_of(protocol, 1, [1, 2, 3])
    with pytest.raises(consensus.ProposalDroppedError):
        node.propose(b"data")
    with pytest.raises(consensus.ProposalDroppedError):
        node.read_index(b"ctx")


def test_advance_with_a_stale_ready_is_a_protocol_error(protocol: ProtocolSpec):
    node = core_of(protocol, 1, [1])
    node.campaign()
    rd = node.ready()
    node.storage.persist(rd)
    node.advance(rd)
    node.propose(b"a")
    with pytest.raises(consensus.ProtocolError):
        node.advance(rd)
    rd2 = node.ready()
    with pytest.raises(consensus.ProtocolError):
        node.ready()  # the previous Ready was not advanced
    node.storage.persist(rd2)
    node.advance(rd2)


def test_garbage_conf_change_bytes_raise_decode_error():
    with pytest.raises(consensus.DecodeError):
        raft.ConfChange.decode(b"\x09garbage")


def test_bad_entry_types_in_propose_many_raise_type_error(protocol: ProtocolSpec):
    node = core_of(protocol, 1, [1])
    node.campaign()
    drain(node)
    assert node.role == consensus.Role.LEADER
    with pytest.raises(TypeError):
        node.propose_many([b"ok", 3])  # type: ignore[list-item]


def test_propose_many_accepts_a_numpy_array_one_entry_per_row():
    np = pytest.importorskip("numpy")
    cluster = LocalCluster(3)
    cluster.elect(1)
    rows = np.arange(4 * 8, dtype=np.uint8).reshape(4, 8)
    first = cluster.node(1).propose_many(rows)
    cluster.stabilize()
    applied = cluster.members[2].applied
    by_index = {index: data for index, _term, data in applied}
    assert [by_index[first + i] for i in range(4)] == [bytes(row) for row in rows.tolist()]
    # A non-contiguous view is copied correctly too.
    first = cluster.node(1).propose_many(rows[:, ::2])
    cluster.stabilize()
    by_index = {index: data for index, _term, data in cluster.members[3].applied}
    assert by_index[first] == bytes(rows[0, ::2].tolist())


def test_status_reports_the_documented_keys():
    cluster = LocalCluster(3)
    cluster.elect(2)
    status = cluster.node(2).status()
    for key in ["id", "role", "term", "vote", "leader", "commit", "applied", "first_index", "last_index",
                "voters", "learners", "progress"]:
        assert key in status
    assert status["role"] == "leader"
    assert set(status["progress"]) == {1, 2, 3}
    assert {"match", "next", "state"} <= set(status["progress"][1])


def test_node_restarts_from_non_empty_storage():
    cluster = LocalCluster(3)
    cluster.elect(1)
    cluster.propose(b"before")
    term = cluster.node(2).term
    cluster.crash(2)
    node = cluster.restart(2)
    assert node.term == term
    assert node.commit_index >= 2
    cluster.stabilize()
    assert b"before" in cluster.applied_data(2)


# ------------------------------------------------------------------ typed reasons (never message text)


def dropped_reason(call, *args) -> str:
    """The `.reason` of the `ProposalDroppedError` that `call(*args)` raises."""
    with pytest.raises(consensus.ProposalDroppedError) as info:
        call(*args)
    return info.value.reason


def test_raft_dropped_proposal_names_no_leader_as_its_reason():
    node = raft.RaftNode(id=1, voters=[1, 2, 3])
    assert dropped_reason(node.propose, b"data") == "no_leader"
    assert dropped_reason(node.read_index, b"ctx") == "no_leader"
    node.campaign()  # an election in progress is no leader either
    assert dropped_reason(node.propose, b"data") == "no_leader"


def test_raft_dropped_proposal_names_its_limit_as_its_reason():
    node = raft.RaftNode(id=1, voters=[1], config=raft.Config(max_entry_bytes=64, max_uncommitted_bytes=100))
    node.campaign()
    assert node.role == consensus.Role.LEADER
    assert dropped_reason(node.propose, b"x" * 65) == "entry_too_large"
    assert dropped_reason(node.read_index, b"c" * ((1 << 20) + 1)) == "context_too_large"
    node.propose(b"x" * 60)
    assert dropped_reason(node.propose, b"y" * 60) == "uncommitted_bytes"


def test_raft_dropped_proposal_during_a_transfer_and_past_the_read_cap_name_their_reasons():
    cluster = LocalCluster(3, configure=lambda i: raft.Config(seed=i, max_pending_reads=1))
    cluster.elect(1)
    cluster.isolate(2)
    cluster.isolate(3)
    leader = cluster.node(1)
    leader.read_index(b"first")
    assert dropped_reason(leader.read_index, b"second") == "too_many_pending_reads"
    leader.transfer_leader(3)
    assert dropped_reason(leader.propose, b"late") == "transfer_in_progress"


def test_paxos_dropped_proposal_names_its_reason():
    from consensus import paxos

    assert dropped_reason(paxos.PaxosNode(id=1, members=[1, 2, 3]).propose, b"data") == "no_leader"
    assert dropped_reason(paxos.PaxosNode(id=1, members=[1, 2, 3]).read_index, b"ctx") == "no_leader"
    config = paxos.Config(max_entry_bytes=64, max_uncommitted_bytes=100, max_pending_reads=1)
    node = paxos.PaxosNode(id=1, members=[1], config=config)
    node.campaign()
    assert node.role == consensus.Role.LEADER
    assert dropped_reason(node.propose, b"x" * 65) == "entry_too_large"
    node.propose(b"x" * 60)
    assert dropped_reason(node.propose, b"y" * 60) == "uncommitted_bytes"


def test_storage_error_for_an_index_already_compacted_has_kind_compacted(protocol: ProtocolSpec):
    node = core_of(protocol, 1, [1])
    node.campaign()
    node.propose(b"a")
    while node.has_ready():
        rd = node.ready()
        node.storage.persist(rd)
        node.advance(rd)
    node.storage.compact(1)
    with pytest.raises(consensus.StorageError) as info:
        node.storage.compact(1)
    assert info.value.kind == "compacted"


def test_errors_raised_in_python_carry_the_default_reason_and_kind():
    assert consensus.ProposalDroppedError("x").reason == "unknown"
    assert consensus.StorageError("x").kind == "other"


class DroppingNode:
    """Just enough of a `Node` for `KVService`: a leader whose every proposal is dropped with
    `reason` and a message that names a different reason."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason, self.message = reason, message
        self.id = self.leader = 1
        self.is_leader = True
        self.metrics = None
        self.addresses: dict = {}

    async def propose(self, command: bytes) -> object:
        err = consensus.ProposalDroppedError(self.message)
        err.reason = self.reason
        raise err


@pytest.mark.parametrize(
    "reason,message,status,code",
    [
        ("uncommitted_bytes", "entry larger than max_entry_bytes", 429, "busy"),
        ("too_many_pending_reads", "no leader is known", 429, "busy"),
        ("entry_too_large", "too many uncommitted bytes", 413, "too_large"),
        ("too_many_entries", "no leader", 413, "too_large"),
        ("context_too_large", "uncommitted", 413, "too_large"),
        ("no_leader", "too many uncommitted bytes (max_uncommitted_bytes)", 503, "no_leader"),
        ("transfer_in_progress", "a command exceeds max_entry_bytes", 503, "no_leader"),
    ],
)
def test_http_status_of_a_dropped_proposal_follows_its_reason_not_its_message(reason, message, status, code):
    import asyncio

    import aiohttp
    from aiohttp.test_utils import TestServer

    from consensus.service import KVService
    from consensus.statemachines import KVStore

    async def scenario() -> None:
        kv = KVStore()
        server = TestServer(KVService(DroppingNode(reason, message), kv).app)
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.put(server.make_url("/v1/kv/k"), json={"value": "v"}) as resp:
                    body = await resp.json()
                    assert (resp.status, body["code"], body["indeterminate"]) == (status, code, False)
        finally:
            await server.close()

    asyncio.run(scenario())


def test_snapshot_task_treats_a_storage_error_of_kind_compacted_as_a_newer_snapshot_not_a_failure():
    """The runtime tells "a newer snapshot came first" from damage by `StorageError.kind`: a
    message that never says "compacted" still counts, one that says it with another kind fails."""
    import asyncio

    from consensus.runtime import Node
    from consensus.transport import MemoryNetwork
    from support import Journal

    class RefusingStorage:
        def __init__(self, kind: str, message: str) -> None:
            self.kind, self.message = kind, message

        def compact(self, index: int, data: bytes) -> None:
            err = consensus.StorageError(self.message)
            err.kind = self.kind
            raise err

    async def snapshot(kind: str, message: str) -> int:
        node = Node(1, [1], Journal(), MemoryNetwork().transport(1))
        node.loop = asyncio.get_running_loop()
        node.applied_index = 5
        node.storage = RefusingStorage(kind, message)
        try:
            return await node._snapshot()
        finally:
            node._snapshot_io.shutdown(wait=True)

    assert asyncio.run(snapshot("compacted", "a newer snapshot is already held")) == 0
    with pytest.raises(consensus.StorageError):
        asyncio.run(snapshot("io", "index 5 was compacted"))
