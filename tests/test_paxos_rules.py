"""Multi-Paxos's own rules at the core (`consensus.paxos`), where they differ from Raft's: ballots,
the Ready contract driven by hand, and the typed errors of a misused leadership transfer. What the
runtime does with either protocol is tested once for both in tests/test_node.py; Raft's rules are
in tests/test_raft_paper.py and tests/test_raft_scenarios.py."""

from __future__ import annotations

from typing import Dict, List

import pytest

import consensus
from consensus import paxos


def test_transfer_leader_off_a_follower_to_itself_or_to_a_stranger_gets_typed_errors() -> None:
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


def test_ballots_order_by_round_then_node_and_bad_input_gets_typed_errors() -> None:
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


def test_hand_driven_ready_loop_commits_on_every_acceptor_after_it_persisted_the_promise() -> None:
    """The Ready contract of docs/design.md §2, driven by hand as in the Raft quickstart."""
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
