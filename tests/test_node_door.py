"""consensus.Node at the peer door: what a peer, a committed entry or a member record can do to a
running node. The worst outcome of anything from outside is a dropped frame or a skipped entry,
counted; a Rust panic stops the node loudly (issue cases 1, 3, 4 and 5 at the runtime level).
Each test runs once per protocol (`protocol` in tests/conftest.py) unless it says why not."""

from __future__ import annotations

import asyncio
from typing import Any, List, Optional, Tuple

import msgpack
import pytest

from consensus import raft
from consensus._core import ConfigError, ProtocolError
from consensus.errors import NodeStoppedError
from consensus.runtime import Node
from consensus.protocols import ProtocolSpec
from consensus.runtime._envelope import ENVELOPE_STAMPED_COMMAND, ENVELOPE_SYSTEM
from consensus.runtime._inbox import INBOX_FRAMES_PER_PEER_MAX, INBOX_FRAMES_PER_TURN, REFUSALS_BEFORE_DISCONNECT

from support import Cluster, CommittedEntry, Journal, PeerFrames, eventually, with_leader_and_follower


class RecordingCore:
    """Wraps a core: records the frames stepped into it, and refuses or panics on request."""

    def __init__(self, core: Any) -> None:
        self._core = core
        self.stepped: List[Tuple[int, bytes]] = []
        self.refuse: bool = False
        self.panic: Optional[BaseException] = None

    def step(self, frame: bytes, sender: int = 0) -> None:
        if self.panic is not None:
            raise self.panic
        self.stepped.append((sender, frame))
        if self.refuse:
            raise ProtocolError("refused for the test")
        self._core.step(frame, sender=sender)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


class FakePanic(BaseException):
    """Stands for pyo3's PanicException, which derives from BaseException."""


def test_a_flooding_peer_cannot_starve_another_peers_frames_in_the_inbox(protocol: ProtocolSpec, frames: PeerFrames) -> None:
    """The inbox is fair: each peer has its own bounded queue and the driver takes them in turns."""
    cluster = Cluster(3, protocol=protocol)
    node = cluster.nodes[1]
    recorder = RecordingCore(node.core)
    node.core = recorder
    flood = frames.keepalive(2, 1, 0)
    for _ in range(INBOX_FRAMES_PER_PEER_MAX + 100):
        node._on_frame(2, flood)
    assert node.stats.frames_dropped == 100  # the flooder's own queue is full; nobody else's
    node._on_frame(3, frames.keepalive(3, 1, 0))
    recorder.refuse = True
    node._step_inbox()
    senders = [sender for sender, _ in recorder.stepped]
    assert 3 in senders[: INBOX_FRAMES_PER_TURN + 1]
    assert len(senders) == INBOX_FRAMES_PER_PEER_MAX + 1


def test_refused_frames_are_dropped_counted_and_a_peer_that_keeps_sending_them_is_disconnected(protocol: ProtocolSpec, frames: PeerFrames) -> None:
    async def body(cluster: Cluster, leader: Node, follower: Node) -> None:
        disconnected: List[Tuple[int, str]] = []
        follower.transport.disconnect = lambda peer, reason="": disconnected.append((peer, reason))
        hostile = frames.keepalive(leader.id, follower.id, (1 << 64) - 1)  # above TERM_MAX
        for _ in range(REFUSALS_BEFORE_DISCONNECT):
            follower._on_frame(leader.id, hostile)
        await eventually(lambda: follower.stats.refused_frames >= REFUSALS_BEFORE_DISCONNECT)
        assert disconnected and disconnected[0][0] == leader.id
        assert follower.failure is None and follower.term < 1 << 62
        assert await leader.propose(b"after") is not None

    with_leader_and_follower(body, protocol=protocol)


def test_a_frame_whose_sender_differs_from_the_connection_is_refused(protocol: ProtocolSpec, frames: PeerFrames) -> None:
    async def body(cluster: Cluster, leader: Node, follower: Node) -> None:
        other = next(i for i in cluster.ids if i not in (leader.id, follower.id))
        before = follower.stats.refused_frames
        # A frame that says it comes from the leader, arriving on the other follower's connection.
        follower._on_frame(other, frames.keepalive(leader.id, follower.id, leader.term + 5))
        await eventually(lambda: follower.stats.refused_frames > before)
        assert follower.term == leader.term

    with_leader_and_follower(body, protocol=protocol)


def test_a_rust_panic_stops_the_node_loudly_instead_of_leaving_a_zombie(protocol: ProtocolSpec, frames: PeerFrames) -> None:
    async def body(cluster: Cluster, leader: Node, follower: Node) -> None:
        recorder = RecordingCore(follower.core)
        recorder.panic = FakePanic("index out of bounds")
        follower.core = recorder
        follower._on_frame(leader.id, frames.keepalive(leader.id, follower.id, leader.term))
        with pytest.raises(FakePanic):
            await asyncio.wait_for(follower.wait_stopped(), 10)
        assert isinstance(follower.failure, FakePanic)
        with pytest.raises(NodeStoppedError):
            await follower.read_index()

    with_leader_and_follower(body, protocol=protocol)


def test_a_committed_membership_change_that_does_not_decode_is_skipped_not_fatal() -> None:
    """Issue case 4: stopping on it would stop the node again on every restart (it is durable).

    Raft only: the runtime's last line is the core's `apply_conf_change`, which takes a real Raft
    entry; a Multi-Paxos entry cannot be built from Python, and the Paxos core refuses such a value
    at the door (tests/test_hostile_frames.py, case 4)."""
    cluster = Cluster(3)
    node = cluster.nodes[1]
    voters_before = sorted(node.core.status()["voters"])
    garbage = raft.Entry(1, 1, b"\xff\xfe not a conf change", raft.EntryKind.CONF_CHANGE)
    node._apply(garbage)
    assert node.stats.entries_skipped == 1
    assert node.failure is None and node.applied_index == 1
    assert sorted(node.core.status()["voters"]) == voters_before


def test_a_replicated_member_address_without_a_port_leaves_that_peer_unreachable_not_the_node_stopped(protocol: ProtocolSpec) -> None:
    """Issue case 5: applying it raised ConfigError on every replica and crash-looped the cluster."""
    cluster = Cluster(3, protocol=protocol)
    node = cluster.nodes[1]
    peers: List[dict] = []
    node.transport.set_peers = lambda p: peers.append(dict(p))
    record = {"op": "address", "id": 2, "peer": "10.0.0.4", "client": "10.0.0.4"}
    node._local_addresses.pop(2)
    node._apply_system(msgpack.packb(record))
    assert peers and 2 not in peers[-1] and 3 in peers[-1]
    assert node.failure is None


def test_member_addresses_are_validated_where_they_are_proposed(protocol: ProtocolSpec) -> None:
    async def body(cluster: Cluster, leader: Node, follower: Node) -> None:
        for peer, client in (("10.0.0.4", "10.0.0.4:8001"), ("10.0.0.4:9001", "nope"), ("h:99999", "h:1")):
            with pytest.raises(ConfigError):
                await leader.set_address(4, peer, client)
        with pytest.raises(ConfigError):
            await leader.change_membership(add_voters=[0])

    with_leader_and_follower(body, protocol=protocol)


class Clocked(Journal):
    def __init__(self) -> None:
        super().__init__()
        self.clock: List[int] = []

    def advance_clock(self, time_ms: int) -> None:
        self.clock.append(time_ms)


def test_every_replica_sees_the_leaders_clock_stamp_before_the_command(protocol: ProtocolSpec) -> None:
    """Leases and session expiry are timed by the leader's stamp, the same on every replica."""

    async def body(cluster: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"a")
        await leader.propose(b"b")
        machines = [n.state_machine for n in cluster.nodes.values()]
        await eventually(lambda: all(len(m.commands) == 2 for m in machines))
        stamps = machines[0].clock
        assert len(stamps) == 2 and stamps[0] > 1_600_000_000_000
        assert all(m.clock == stamps and m.commands == [b"a", b"b"] for m in machines)

    with_leader_and_follower(body, state_machine=Clocked, protocol=protocol)


def test_a_stamped_command_reaches_a_state_machine_without_a_clock_unchanged(protocol: ProtocolSpec) -> None:
    cluster = Cluster(1, protocol=protocol)
    node = cluster.nodes[1]
    stamped = bytes([ENVELOPE_STAMPED_COMMAND]) + (123).to_bytes(8, "little") + b"cmd"
    node._apply(CommittedEntry(1, 1, stamped))
    assert node.state_machine.commands == [b"cmd"]
    node._apply(CommittedEntry(2, 1, bytes([ENVELOPE_SYSTEM]) + b"\xc1"))  # undecodable runtime record: logged
    assert node.failure is None


def test_an_address_record_that_names_no_valid_member_is_skipped_not_fatal(protocol: ProtocolSpec) -> None:
    """A durable runtime record with `id = inf` once stopped the node on every restart."""
    cluster = Cluster(3, protocol=protocol)
    node = cluster.nodes[1]
    for record in ({"op": "address", "id": float("inf"), "peer": "h:1", "client": "h:2"},
                   {"op": "address", "id": 0, "peer": "h:1", "client": "h:2"},
                   {"op": "address", "id": 4, "peer": 7, "client": "h:2"},
                   {"op": "nonsense"}, [1, 2]):
        node._apply_system(msgpack.packb(record))
    node._apply_system(b"\xc1")
    assert node.stats.entries_skipped == 6 and node.failure is None
    assert sorted(node.addresses) == [1, 2, 3]


def test_a_wall_clock_step_on_the_leader_does_not_move_the_replicated_clock(protocol: ProtocolSpec, monkeypatch: Any) -> None:
    """Issue case 11: stamps follow the leader's monotonic time from the replicated clock, so an
    NTP step or a resumed VM can neither freeze leases for years nor end them early."""
    import time as time_module

    cluster = Cluster(1, state_machine=Clocked, protocol=protocol)
    node = cluster.nodes[1]
    first = node._clock_stamp()
    real_time = time_module.time
    monkeypatch.setattr(time_module, "time", lambda: real_time() + 10 * 365 * 86400)
    later = node._clock_stamp()
    assert first <= later < first + 60_000


def test_a_new_leadership_stamps_from_the_replicated_clock_never_below_it(protocol: ProtocolSpec) -> None:
    class Replicated(Clocked):
        clock_ms = 5_000_000_000_000

    cluster = Cluster(1, state_machine=Replicated, protocol=protocol)
    node = cluster.nodes[1]
    stamp = node._clock_stamp()
    assert Replicated.clock_ms <= stamp < Replicated.clock_ms + 60_000


def test_a_panic_while_taking_a_snapshot_stops_the_node(protocol: ProtocolSpec) -> None:
    async def body(cluster: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"x")

        class PanickingCompaction:
            def __init__(self, storage: Any) -> None:
                self._storage = storage

            def compact(self, index: int, data: bytes) -> None:
                raise FakePanic("panic in compaction")

            def __getattr__(self, name: str) -> Any:
                return getattr(self._storage, name)

        leader.storage = PanickingCompaction(leader.storage)
        with pytest.raises(FakePanic):
            await leader.take_snapshot()
        assert isinstance(leader.failure, FakePanic)

    with_leader_and_follower(body, protocol=protocol)
