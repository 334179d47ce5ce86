"""consensus.Node running Multi-Paxos: the same runtime, tests and transport as Raft (docs/design.md §1:
the protocols are interchangeable behind one interface)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Dict, List

import pytest

import consensus
from consensus import paxos
from consensus.runtime import Node, NodeOptions
from consensus.transport import MemoryNetwork

from support import Journal, eventually, run

FAST = NodeOptions(tick_interval=0.002, election_ticks=10, heartbeat_ticks=1)


def cluster(options: NodeOptions = FAST) -> "tuple[MemoryNetwork, Dict[int, Node]]":
    net = MemoryNetwork()
    nodes = {i: Node(i, [1, 2, 3], Journal(), net.transport(i), protocol="paxos", options=options) for i in (1, 2, 3)}
    return net, nodes


def test_paxos_nodes_elect_batch_concurrent_proposals_into_slots_and_answer_each() -> None:
    async def scenario() -> None:
        net, nodes = cluster()
        for node in nodes.values():
            await node.start()
        try:
            await eventually(lambda: any(n.is_leader for n in nodes.values()))
            leader = next(n for n in nodes.values() if n.is_leader)
            results = await asyncio.gather(*(leader.propose(b"c%d" % i) for i in range(200)))
            assert sorted(r["count"] for r in results) == list(range(1, 201))
            slots = {r["index"] for r in results}
            assert len(slots) < 200, "concurrent commands share slots (batching)"
            await eventually(lambda: all(len(n.state_machine.commands) == 200 for n in nodes.values()))
            assert len({tuple(n.state_machine.commands) for n in nodes.values()}) == 1
        finally:
            for node in nodes.values():
                await node.stop()

    run(scenario)


def test_paxos_follower_refuses_with_the_leader_hint_and_serves_linearizable_reads() -> None:
    async def scenario() -> None:
        net, nodes = cluster()
        for node in nodes.values():
            await node.start()
        try:
            await eventually(lambda: any(n.is_leader for n in nodes.values()))
            leader = next(n for n in nodes.values() if n.is_leader)
            result = await leader.propose(b"w")
            follower = next(n for n in nodes.values() if n is not leader)
            await eventually(lambda: follower.leader == leader.id)
            with pytest.raises(consensus.NotLeaderError) as info:
                await follower.propose(b"x")
            assert info.value.leader_hint == leader.id
            assert await follower.read_index() >= result["index"]
            assert follower.state_machine.commands[-1] == b"w"
        finally:
            for node in nodes.values():
                await node.stop()

    run(scenario)


def test_paxos_majority_elects_a_new_leader_when_the_leader_is_cut_off() -> None:
    async def scenario() -> None:
        net, nodes = cluster()
        for node in nodes.values():
            await node.start()
        try:
            await eventually(lambda: any(n.is_leader for n in nodes.values()))
            old = next(n for n in nodes.values() if n.is_leader)
            await old.propose(b"before")
            net.isolate(old.id)
            others = [n for n in nodes.values() if n is not old]
            await eventually(lambda: any(n.is_leader for n in others), timeout=20)
            new = next(n for n in others if n.is_leader)
            await new.propose(b"after")
            net.heal()
            await eventually(lambda: old.state_machine.commands[-1:] == [b"after"], timeout=20)
            assert old.state_machine.commands == new.state_machine.commands
        finally:
            for node in nodes.values():
                await node.stop()

    run(scenario)


def test_paxos_leadership_transfer_hands_over_to_the_target_through_the_runtime() -> None:
    """docs/paxos.md §7.1: the leader brings the target up to date and sends it TIMEOUT_NOW; the
    target runs Phase 1 at once and leads, and the log carries on."""

    async def scenario() -> None:
        net, nodes = cluster()
        for node in nodes.values():
            await node.start()
        try:
            await eventually(lambda: any(n.is_leader for n in nodes.values()))
            old = next(n for n in nodes.values() if n.is_leader)
            await old.propose(b"before")
            target = next(n for n in nodes.values() if n is not old)
            await old.transfer_leadership(target.id)
            await eventually(lambda: target.is_leader and old.leader == target.id)
            await target.propose(b"after")
            await eventually(lambda: all(n.state_machine.commands == [b"before", b"after"] for n in nodes.values()))
        finally:
            for node in nodes.values():
                await node.stop()

    run(scenario)


def test_paxos_transfer_leader_misuse_gets_typed_errors() -> None:
    node = paxos.PaxosNode(id=1, members=[1, 2, 3])
    with pytest.raises(consensus.NotLeaderError) as not_leader:
        node.transfer_leader(2)
    assert not_leader.value.leader_hint == 0
    single = paxos.PaxosNode(id=1, members=[1])
    single.campaign()
    assert single.role == consensus.Role.LEADER
    for to in (1, 7):
        with pytest.raises(consensus.ConfigError) as info:
            single.transfer_leader(to)
        assert info.value.field == "to"
    assert single.status()["lead_transferee"] == 0
    assert int(paxos.MessageType.TIMEOUT_NOW) == 13 and int(paxos.MessageType.PROMISE_PAGE) == 14


def test_paxos_ballots_order_by_round_then_node_and_bad_input_gets_typed_errors() -> None:
    assert paxos.Ballot(2, 1) > paxos.Ballot(1, 9) > paxos.Ballot(1, 3)
    node = paxos.PaxosNode(id=1, members=[1, 2, 3])
    with pytest.raises(consensus.DecodeError):
        node.step(b"\x00" * 40)
    with pytest.raises(consensus.DecodeError):
        paxos.decode(b"garbage")
    with pytest.raises(consensus.ConfigError) as info:
        paxos.Config(election_tick=1, heartbeat_tick=1)
    assert info.value.field == "election_tick"
    with pytest.raises(consensus.ConfigError) as info:
        paxos.PaxosNode(id=0, members=[1])
    assert info.value.field == "id"


def test_paxos_ready_loop_in_process_commits_on_every_node() -> None:
    """The Ready contract of DESIGN §2, driven by hand as in the Raft quickstart."""
    nodes = {i: paxos.PaxosNode(id=i, members=[1, 2, 3], config=paxos.Config(seed=i)) for i in (1, 2, 3)}
    applied: Dict[int, List[bytes]] = {i: [] for i in nodes}

    def loop() -> None:
        busy = True
        while busy:
            busy = False
            for i, node in nodes.items():
                if node.has_ready():
                    busy = True
                    rd = node.ready()
                    node.storage.persist(rd)
                    for to, frame in rd.messages + rd.persisted_messages:
                        nodes[to].step(frame)
                    applied[i].extend(e.data for e in rd.committed_entries)
                    node.advance(rd)

    nodes[1].campaign()
    loop()
    assert nodes[1].role == consensus.Role.LEADER
    nodes[1].propose_many([b"a", b"b", b"c"])
    loop()
    for _ in range(3):
        for node in nodes.values():
            node.tick()
        loop()
    assert all(applied[i] == [b"a", b"b", b"c"] for i in nodes)
    # Every acceptor persisted its promise of the leader's ballot and the decided slot.
    for node in nodes.values():
        assert node.storage.hard_state().promised == nodes[1].ballot
        assert node.storage.hard_state().commit >= 1


SNAPSHOTTING = NodeOptions(tick_interval=0.002, election_ticks=10, heartbeat_ticks=1, snapshot_entries=5)


def test_paxos_file_storage_nodes_snapshot_in_background_and_restart_from_disk(tmp_path: Path) -> None:
    """Paxos Made Live §5.5: snapshots taken while the log keeps growing; a lagging replica catches
    up from a snapshot; every replica restarts from its disk with the same state, three times."""
    async def scenario() -> None:
        for round_ in range(3):
            net = MemoryNetwork()
            storages = {i: paxos.FileStorage(tmp_path / f"n{i}", segment_bytes=4096) for i in (1, 2, 3)}
            nodes: Dict[int, Node] = {
                i: Node(i, [1, 2, 3], Journal(), net.transport(i), protocol="paxos", options=SNAPSHOTTING, storage=storages[i])
                for i in (1, 2, 3)
            }
            for node in nodes.values():
                await node.start()
            try:
                await eventually(lambda: any(n.is_leader for n in nodes.values()), timeout=30)
                leader = next(n for n in nodes.values() if n.is_leader)
                lagging = next(i for i in nodes if nodes[i] is not leader)
                net.isolate(lagging)
                for wave in range(20):
                    await asyncio.gather(*(leader.propose(b"r%d-w%d-c%d" % (round_, wave, c)) for c in range(10)))
                net.heal()
                expected = 200 * (round_ + 1)
                await eventually(lambda: all(len(n.state_machine.commands) == expected for n in nodes.values()), timeout=30)
                assert len({tuple(n.state_machine.commands) for n in nodes.values()}) == 1
                assert not any(n.status()["stopped"] for n in nodes.values())
                assert any(n.stats.snapshots_taken for n in nodes.values())
                # Cut off while the others compacted far past it: it caught up from a snapshot.
                assert nodes[lagging].stats.snapshots_installed > 0
            finally:
                for node in nodes.values():
                    await node.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))
