"""A Hypothesis state machine that drives a 3-node cluster through the bindings with random
ticks, proposals, crashes, restarts, partitions and message delivery, checking Raft's safety
properties after every step (Figure 3: election safety, state machine safety, leader
completeness of applied entries) and that nothing raises except the documented errors."""

from __future__ import annotations

from typing import Dict, List, Tuple

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import consensus
from consensus import raft
from consensus.testing import LocalCluster

NODES = [1, 2, 3]


class RaftClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cluster = LocalCluster(3, configure=lambda i: raft.Config(election_tick=5, seed=11))
        self.leaders_by_term: Dict[int, int] = {}
        self.chosen: Dict[int, Tuple[int, bytes]] = {}
        self.counter = 0

    def _live(self) -> List[int]:
        return [m.id for m in self.cluster.members.values() if m.alive]

    @rule(times=st.integers(1, 12))
    def tick(self, times: int) -> None:
        self.cluster.tick(times)

    @rule(node=st.sampled_from(NODES), count=st.integers(1, 5))
    def propose(self, node: int, count: int) -> None:
        member = self.cluster.members[node]
        if member.node is None:
            return
        batch = []
        for _ in range(count):
            self.counter += 1
            batch.append(f"v{self.counter}".encode())
        try:
            member.node.propose_many(batch)
        except consensus.ProposalDroppedError:
            pass
        self.cluster.stabilize()

    @precondition(lambda self: len(self._live()) == 3)
    @rule(node=st.sampled_from(NODES))
    def crash(self, node: int) -> None:
        self.cluster.crash(node)

    @rule(node=st.sampled_from(NODES))
    def restart(self, node: int) -> None:
        if not self.cluster.members[node].alive:
            self.cluster.restart(node)

    @rule(node=st.sampled_from(NODES))
    def isolate(self, node: int) -> None:
        self.cluster.isolate(node)

    @rule()
    def heal(self) -> None:
        self.cluster.heal()

    @rule(node=st.sampled_from(NODES))
    def campaign(self, node: int) -> None:
        member = self.cluster.members[node]
        if member.node is not None:
            member.node.campaign()
            self.cluster.stabilize()

    @invariant()
    def election_safety(self) -> None:
        for member in self.cluster.members.values():
            node = member.node
            if node is not None and node.role == consensus.Role.LEADER:
                previous = self.leaders_by_term.setdefault(node.term, member.id)
                assert previous == member.id, f"two leaders in term {node.term}: {previous} and {member.id}"

    @invariant()
    def state_machine_safety(self) -> None:
        for member in self.cluster.members.values():
            for index, term, data in member.applied:
                if data == b"<snapshot>":
                    continue
                chosen = self.chosen.setdefault(index, (term, data))
                assert chosen == (term, data), f"index {index}: {chosen} vs {(term, data)} on node {member.id}"

    @invariant()
    def applied_indexes_are_contiguous(self) -> None:
        for member in self.cluster.members.values():
            indexes = [index for index, _t, _d in member.applied]
            assert indexes == sorted(indexes)
            assert len(set(indexes)) == len(indexes)

    def teardown(self) -> None:
        # Liveness after healing: a leader emerges and a fresh write commits everywhere.
        for node_id in NODES:
            if not self.cluster.members[node_id].alive:
                self.cluster.restart(node_id)
        self.cluster.heal()
        leader = self.cluster.wait_for_leader(ticks_max=300)
        self.cluster.node(leader).propose(b"final")
        self.cluster.tick(5)
        for node_id in NODES:
            assert b"final" in self.cluster.applied_data(node_id)


TestRaftCluster = RaftClusterMachine.TestCase
TestRaftCluster.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
