"""Raft scenarios beyond the paper's core rules: the extensions of Ongaro's thesis and of the
reference libraries (PreVote, CheckQuorum, ReadIndex, leadership transfer, snapshots, joint
consensus, learners, flow control, proposal limits). Each test is named after the behaviour it
checks and cites where the behaviour comes from.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import pytest

from consensus import NotLeaderError, ProposalDroppedError, Role, raft
from consensus.testing import LocalCluster, Member

from support import flush, send

MT = raft.MessageType
ELECTION_TICK = 10


# ---------------------------------------------------------------------------- helpers


def config(seed: int = 0, **overrides) -> raft.Config:
    settings = dict(election_tick=ELECTION_TICK, heartbeat_tick=1, seed=seed)
    settings.update(overrides)
    return raft.Config(**settings)


class RecordingCluster(LocalCluster):
    """A LocalCluster that keeps every frame sent, decoded, with its sender."""

    def __init__(self, size: int = 3, **options) -> None:
        self.sent: List[Tuple[int, int, raft.Message]] = []
        overrides = options.pop("overrides", {})
        options.setdefault("configure", lambda node_id: config(seed=node_id, **overrides))
        super().__init__(size, **options)

    def _send(self, sender: int, to: int, frame: bytes) -> None:
        self.sent.append((sender, to, raft.decode(frame)))
        super()._send(sender, to, frame)

    def sent_of(self, msg_type: raft.MessageType, to: int | None = None) -> List[raft.Message]:
        return [m for (_s, t, m) in self.sent if m.type == msg_type and (to is None or t == to)]


def cluster(size: int = 3, **overrides) -> RecordingCluster:
    return RecordingCluster(size, overrides=overrides)


def elect(c: LocalCluster, node_id: int) -> None:
    c.elect(node_id)
    c.tick()  # one heartbeat round so that every follower knows the leader


def readies(node: raft.RaftNode) -> List[raft.Ready]:
    out = []
    while node.has_ready():
        rd = node.ready()
        node.storage.persist(rd)
        out.append(rd)
        node.advance(rd)
    return out


def single_leader(voters: Sequence[int] = (1, 2, 3), **overrides) -> raft.RaftNode:
    """Node 1 elected leader of term 1 by crafted votes (no PreVote, no CheckQuorum)."""
    overrides.setdefault("pre_vote", False)
    overrides.setdefault("check_quorum", False)
    node = raft.RaftNode(id=1, voters=list(voters), config=config(**overrides))
    node.campaign()
    flush(node)
    send(node, MT.REQUEST_VOTE_RESPONSE, 2, term=1)
    flush(node)
    assert node.role == Role.LEADER
    return node


def storage_with(log_terms: Sequence[int], term: int, commit: int = 0) -> raft.MemoryStorage:
    storage = raft.MemoryStorage()
    storage.append([raft.Entry(i + 1, t, b"e%d" % (i + 1)) for i, t in enumerate(log_terms)])
    storage.set_hard_state(raft.HardState(max(term, *log_terms), 0, commit))
    return storage


# ---------------------------------------------------------------------------- PreVote


def test_prevote_partitioned_node_rejoining_does_not_bump_term_or_disrupt_leader():
    """Raft thesis §9.6 (PreVote): an isolated node cannot win a pre-election, so its term stays
    put; when it rejoins, the leader and the cluster's term are unchanged."""
    c = cluster(3, pre_vote=True, check_quorum=True)
    leader = c.wait_for_leader()
    term = c.node(leader).term
    follower = next(n for n in (1, 2, 3) if n != leader)
    c.sent.clear()
    c.isolate(follower)
    c.tick(10 * ELECTION_TICK)
    assert c.node(follower).term == term
    assert c.node(follower).role in (Role.FOLLOWER, Role.PRE_CANDIDATE)
    c.heal()
    c.tick(3 * ELECTION_TICK)
    assert c.leader() == leader
    assert all(c.node(n).term == term for n in (1, 2, 3))
    assert c.sent_of(MT.REQUEST_VOTE) == []  # no real election was ever started
    assert [m.from_ for m in c.sent_of(MT.REQUEST_PRE_VOTE)] and {m.from_ for m in c.sent_of(MT.REQUEST_PRE_VOTE)} == {follower}


def test_prevote_losing_pre_candidate_becomes_follower_at_its_old_term():
    """Raft thesis §9.6: a pre-candidate asks for term+1 without moving to it; rejected by a
    majority it returns to follower at the term it had."""
    storage = raft.MemoryStorage()
    storage.set_hard_state(raft.HardState(2, 0, 0))
    node = raft.RaftNode(id=1, voters=[1, 2, 3], config=config(pre_vote=True, check_quorum=False), storage=storage)
    node.campaign()
    requests = [m for m in flush(node) if m.type == MT.REQUEST_PRE_VOTE]
    assert node.role == Role.PRE_CANDIDATE
    assert node.term == 2 and node.vote == 0
    assert sorted((m.to, m.term) for m in requests) == [(2, 3), (3, 3)]
    send(node, MT.REQUEST_PRE_VOTE_RESPONSE, 2, term=2, reject=True)
    send(node, MT.REQUEST_PRE_VOTE_RESPONSE, 3, term=2, reject=True)
    flush(node)
    assert node.role == Role.FOLLOWER
    assert node.term == 2
    assert storage.hard_state().term == 2


def test_prevote_winning_pre_candidate_campaigns_for_real_at_the_next_term():
    """Raft thesis §9.6: a pre-candidate granted a majority of pre-votes becomes a candidate of
    term+1 and asks for real votes."""
    node = raft.RaftNode(id=1, voters=[1, 2, 3], config=config(pre_vote=True, check_quorum=False))
    node.campaign()
    flush(node)
    send(node, MT.REQUEST_PRE_VOTE_RESPONSE, 2, term=1)
    sent = flush(node)
    assert node.role == Role.CANDIDATE
    assert node.term == 1
    assert sorted(m.to for m in sent if m.type == MT.REQUEST_VOTE and m.term == 1) == [2, 3]


# ---------------------------------------------------------------------------- CheckQuorum


def test_check_quorum_isolated_leader_steps_down_after_an_election_timeout():
    """Raft thesis §6.2 (CheckQuorum): a leader that has not heard from a quorum within an
    election timeout steps down; the rest elect a new leader."""
    c = cluster(3, pre_vote=True, check_quorum=True)
    leader = c.wait_for_leader()
    c.isolate(leader)
    c.tick(2 * ELECTION_TICK + 1)
    assert c.node(leader).role != Role.LEADER
    others = [n for n in (1, 2, 3) if n != leader]
    c.tick(3 * ELECTION_TICK)
    assert c.leader() in others


def test_check_quorum_follower_in_vote_lease_ignores_disruptive_candidate():
    """Raft thesis §4.2.3: a follower that heard from its leader within the minimum election
    timeout neither grants a vote nor adopts the candidate's higher term."""
    follower = raft.RaftNode(id=2, voters=[1, 2, 3], config=config(pre_vote=False, check_quorum=True))
    send(follower, MT.HEARTBEAT, 1, term=1)
    flush(follower)
    assert follower.leader == 1
    send(follower, MT.REQUEST_VOTE, 3, term=5, index=100, log_term=4)
    sent = flush(follower)
    assert follower.term == 1
    assert follower.vote == 0
    assert not [m for m in sent if m.type == MT.REQUEST_VOTE_RESPONSE and not m.reject]
    # Once the lease ran out (no heartbeat for an election timeout) the same request is granted.
    for _ in range(ELECTION_TICK):
        follower.tick()
    flush(follower)
    send(follower, MT.REQUEST_VOTE, 3, term=5, index=100, log_term=4)
    granted = [m for m in flush(follower) if m.type == MT.REQUEST_VOTE_RESPONSE and not m.reject]
    assert [m.to for m in granted] == [3]


def test_check_quorum_timeout_now_campaign_overrides_the_vote_lease():
    """Raft thesis §3.10: votes requested in a leadership-transfer election (after TimeoutNow)
    are granted even inside the vote lease."""
    follower = raft.RaftNode(id=2, voters=[1, 2, 3], config=config(pre_vote=True, check_quorum=True))
    send(follower, MT.HEARTBEAT, 1, term=1)
    flush(follower)
    send(follower, MT.REQUEST_VOTE, 3, term=2, index=0, log_term=0, context=b"CampaignTransfer")
    granted = [m for m in flush(follower) if m.type == MT.REQUEST_VOTE_RESPONSE and not m.reject]
    assert [m.to for m in granted] == [3]
    assert follower.term == 2 and follower.vote == 3
    # And the transferee itself campaigns at once on TimeoutNow, skipping the pre-election.
    target = raft.RaftNode(id=3, voters=[1, 2, 3], config=config(pre_vote=True, check_quorum=True))
    send(target, MT.HEARTBEAT, 1, term=1)
    flush(target)
    send(target, MT.TIMEOUT_NOW, 1, term=1)
    requests = [m for m in flush(target) if m.type == MT.REQUEST_VOTE]
    assert target.role == Role.CANDIDATE and target.term == 2
    assert sorted(m.to for m in requests) == [1, 2]
    assert all(m.context == b"CampaignTransfer" for m in requests)


def test_forget_leader_lets_follower_grant_a_pre_vote_at_once():
    """etcd-io/raft ForgetLeader: a follower inside its lease refuses pre-votes; after forgetting
    its leader it grants one immediately (the way out of the PreVote + CheckQuorum trap)."""
    follower = raft.RaftNode(id=2, voters=[1, 2, 3], config=config(pre_vote=True, check_quorum=True))
    send(follower, MT.HEARTBEAT, 1, term=1)
    flush(follower)
    send(follower, MT.REQUEST_PRE_VOTE, 3, term=2, index=0, log_term=0)
    assert not [m for m in flush(follower) if m.type == MT.REQUEST_PRE_VOTE_RESPONSE and not m.reject]
    follower.forget_leader()
    assert follower.leader == 0
    send(follower, MT.REQUEST_PRE_VOTE, 3, term=2, index=0, log_term=0)
    answers = [m for m in flush(follower) if m.type == MT.REQUEST_PRE_VOTE_RESPONSE]
    assert [(m.to, m.reject, m.term) for m in answers] == [(3, False, 2)]
    assert follower.term == 1  # a pre-vote never moves the voter's term


# ---------------------------------------------------------------------------- ReadIndex


def test_read_index_leader_answers_with_commit_index_after_heartbeat_quorum():
    """Raft thesis §6.4: the leader records its commit index, confirms leadership with a round of
    heartbeats, and answers once a majority acknowledged."""
    node = single_leader()
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=1)  # commits the no-op
    flush(node)
    assert node.commit_index == 1
    node.read_index(b"r1")
    rds = readies(node)
    assert all(not rd.read_states for rd in rds)
    beats = [m for rd in rds for m in map(raft.decode, (f for _t, f in rd.messages + rd.persisted_messages)) if m.type == MT.HEARTBEAT]
    assert sorted(m.to for m in beats if m.context == b"r1") == [2, 3]
    send(node, MT.HEARTBEAT_RESPONSE, 3, term=1, context=b"r1")
    states = [s for rd in readies(node) for s in rd.read_states]
    assert [(s.index, s.context) for s in states] == [(1, b"r1")]


def test_read_index_new_leader_answers_only_after_committing_an_entry_of_its_term():
    """Raft thesis §6.4 step 1: a new leader does not know the latest commit index until an entry
    of its own term commits; reads wait for that."""
    node = single_leader()
    node.read_index(b"early")
    send(node, MT.HEARTBEAT_RESPONSE, 2, term=1, context=b"early")
    send(node, MT.HEARTBEAT_RESPONSE, 3, term=1, context=b"early")
    assert all(not rd.read_states for rd in readies(node))
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=1)  # the no-op of term 1 commits
    flush(node)
    send(node, MT.HEARTBEAT_RESPONSE, 2, term=1, context=b"early")
    states = [s for rd in readies(node) for s in rd.read_states]
    assert [(s.index, s.context) for s in states] == [(1, b"early")]


def test_read_index_duplicate_contexts_are_answered_safely():
    """ReadIndex with a context already pending does not break the read queue: every answer for
    it carries the commit index and later reads still work."""
    c = cluster(3)
    elect(c, 1)
    leader = c.node(1)
    leader.read_index(b"dup")
    leader.read_index(b"dup")
    c.stabilize()
    leader.read_index(b"next")
    c.stabilize()
    states = c.members[1].read_states
    commit = leader.commit_index
    assert {s.context for s in states} == {b"dup", b"next"}
    assert all(s.index == commit for s in states)


def test_read_index_on_follower_is_forwarded_and_answered():
    """Raft thesis §6.4: a follower asks the leader for its read index and serves the read once
    it applied that far."""
    c = cluster(3)
    elect(c, 1)
    c.propose(b"x")
    c.tick()
    c.node(2).read_index(b"follower-read")
    c.stabilize()
    states = c.members[2].read_states
    assert [(s.index, s.context) for s in states] == [(c.node(1).commit_index, b"follower-read")]
    assert c.sent_of(MT.READ_INDEX, to=1)
    assert c.sent_of(MT.READ_INDEX_RESPONSE, to=2)


def test_read_index_without_known_leader_raises_proposal_dropped():
    """docs/design.md §3: read_index on a node that knows no leader raises ProposalDroppedError."""
    node = raft.RaftNode(id=1, voters=[1, 2, 3], config=config())
    with pytest.raises(ProposalDroppedError):
        node.read_index(b"r")


def test_read_index_lease_based_answers_at_once():
    """Raft thesis §6.4.1: with lease-based reads the leader answers from its commit index without a
    heartbeat round."""
    node = single_leader(read_only_option="lease_based", check_quorum=True)
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=1)
    flush(node)
    node.read_index(b"lease")
    rd = node.ready()
    assert [(s.index, s.context) for s in rd.read_states] == [(1, b"lease")]
    assert not [m for m in map(raft.decode, (f for _t, f in rd.messages + rd.persisted_messages)) if m.type == MT.HEARTBEAT]
    node.advance(rd)


# ---------------------------------------------------------------------------- leadership transfer


def test_transfer_leader_to_up_to_date_follower_uses_timeout_now():
    """Raft thesis §3.10: the leader sends TimeoutNow to an up-to-date transferee, which campaigns
    at once and wins."""
    c = cluster(3)
    elect(c, 1)
    c.propose(b"x")
    c.node(1).transfer_leader(2)
    c.stabilize()
    assert c.leader() == 2
    assert c.sent_of(MT.TIMEOUT_NOW, to=2)
    assert c.node(1).role == Role.FOLLOWER
    c.tick()
    assert c.node(1).leader == 2 and c.node(3).leader == 2


def test_transfer_leader_to_lagging_follower_first_catches_it_up():
    """Raft thesis §3.10: a transferee that lacks entries is brought up to date before TimeoutNow."""
    c = cluster(3)
    elect(c, 1)
    c.cut.add((1, 3))
    for i in range(5):
        c.propose(b"p%d" % i)
    assert c.node(3).last_index < c.node(1).last_index
    c.heal()
    c.sent.clear()
    c.node(1).transfer_leader(3)
    c.stabilize()
    assert c.leader() == 3
    kinds = [m.type for (_s, to, m) in c.sent if to == 3 and m.type in (MT.APPEND_ENTRIES, MT.TIMEOUT_NOW)]
    assert MT.TIMEOUT_NOW in kinds
    assert MT.APPEND_ENTRIES in kinds[: kinds.index(MT.TIMEOUT_NOW)]
    c.propose(b"after")
    c.tick()
    assert c.applied_data(3) == [b"p0", b"p1", b"p2", b"p3", b"p4", b"after"]


def test_transfer_leader_in_progress_drops_proposals():
    """Raft thesis §3.10: while a transfer is in progress the leader refuses new proposals."""
    c = cluster(3)
    elect(c, 1)
    c.isolate(3)
    c.propose(b"x")  # 3 now lags, so the transfer cannot finish at once
    c.node(1).transfer_leader(3)
    c.stabilize()
    assert c.node(1).status()["lead_transferee"] == 3
    with pytest.raises(ProposalDroppedError):
        c.node(1).propose(b"refused")


def test_transfer_leader_is_abandoned_after_an_election_timeout_when_target_is_down():
    """Raft thesis §3.10: if the transfer does not complete within an election timeout the leader
    aborts it and accepts proposals again."""
    c = cluster(3)
    elect(c, 1)
    c.crash(3)
    c.node(1).transfer_leader(3)
    c.stabilize()
    with pytest.raises(ProposalDroppedError):
        c.node(1).propose(b"during")
    c.tick(ELECTION_TICK + 1)
    assert c.leader() == 1
    assert c.node(1).status()["lead_transferee"] == 0
    c.propose(b"after")
    c.tick()
    assert c.applied_data(2) == [b"after"]


# ---------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("how", ["isolated", "restarted"])
def test_snapshot_lagging_follower_receives_install_snapshot_then_catches_up(how):
    """Raft §7: when the leader has compacted entries a follower needs, it sends its snapshot;
    the follower installs it (rd.snapshot) and then receives the entries after it."""
    c = cluster(3)
    elect(c, 1)
    c.propose(b"a")
    if how == "isolated":
        c.isolate(3)
    else:
        c.crash(3)
    for i in range(6):
        c.propose(b"s%d" % i)
    c.tick()
    leader_storage = c.members[1].storage
    applied = c.node(1).applied_index
    leader_storage.compact(applied, b"state@%d" % applied)
    assert leader_storage.first_index() == applied + 1
    if how == "isolated":
        c.heal()
    else:
        c.restart(3)
    c.tick(3)
    assert c.sent_of(MT.INSTALL_SNAPSHOT, to=3)
    snap = c.members[3].storage.snapshot()
    assert (snap.index, snap.data) == (applied, b"state@%d" % applied)
    assert c.members[3].applied[0] == (applied, snap.term, b"<snapshot>")
    c.propose(b"after")
    c.tick()
    assert c.applied_data(3)[-1] == b"after"
    assert c.node(3).commit_index == c.node(1).commit_index
    assert c.node(3).storage.snapshot().conf_state.voters == [1, 2, 3]


def test_snapshot_stale_snapshot_is_ignored():
    """Raft §7: a snapshot at or below what the follower already committed changes nothing."""
    storage = storage_with([1, 1, 1, 1, 1], term=1, commit=5)
    node = raft.RaftNode(id=2, voters=[1, 2, 3], config=config(), storage=storage)
    flush(node)
    stale = raft.Snapshot(3, 1, raft.ConfState(voters=[1, 2, 3]), b"old")
    send(node, MT.INSTALL_SNAPSHOT, 1, term=1, snapshot=stale)
    rds = readies(node)
    assert all(rd.snapshot is None for rd in rds)
    answers = [m for rd in rds for m in map(raft.decode, (f for _t, f in rd.messages + rd.persisted_messages))]
    assert [(m.type, m.reject, m.index) for m in answers] == [(MT.APPEND_ENTRIES_RESPONSE, False, 5)]
    assert node.first_index == 1 and node.last_index == 5
    assert node.storage.snapshot().index == 0


# ---------------------------------------------------------------------------- membership


class ConfRecordingCluster(RecordingCluster):
    """Records each member's (voters, voters_outgoing) after every Ready it processed."""

    def __init__(self, *args, **kwargs) -> None:
        self.configs: List[Tuple[int, List[int], List[int]]] = []
        super().__init__(*args, **kwargs)

    def process_ready(self, member: Member) -> bool:
        did = super().process_ready(member)
        if did and member.node is not None:
            status = member.node.status()
            self.configs.append((member.id, sorted(status["voters"]), sorted(status["voters_outgoing"])))
        return did


def test_joint_consensus_adding_two_voters_enters_and_leaves_joint_config():
    """Raft thesis §4.3: changing more than one voter goes through a joint configuration
    C_old,new, which the leader leaves automatically once it committed."""
    c = ConfRecordingCluster(3)
    elect(c, 1)
    c.add_member(4, voters=c.voters)
    c.add_member(5, voters=c.voters)
    c.node(1).propose_conf_change(raft.ConfChange(add_voters=[4, 5]))
    c.stabilize()
    c.tick(3)
    assert (1, [1, 2, 3, 4, 5], [1, 2, 3]) in c.configs
    for node_id in range(1, 6):
        status = c.node(node_id).status()
        assert sorted(status["voters"]) == [1, 2, 3, 4, 5], node_id
        assert status["voters_outgoing"] == [], node_id
    c.propose(b"five")
    c.tick()
    assert all(c.applied_data(n)[-1] == b"five" for n in range(1, 6))
    # The new voters count: with 1 and 2 down, {3, 4, 5} is a majority of five.
    c.crash(1)
    c.crash(2)
    assert c.wait_for_leader() in (3, 4, 5)


def test_conf_change_only_one_pending_at_a_time():
    """Raft thesis §4.1: the leader accepts a new configuration change only once the previous one
    is applied; a second one meanwhile raises ProposalDroppedError."""
    c = cluster(3)
    elect(c, 1)
    c.add_member(4, voters=c.voters)
    leader = c.node(1)
    leader.propose_conf_change(raft.ConfChange(add_learners=[4]))
    with pytest.raises(ProposalDroppedError):
        leader.propose_conf_change(raft.ConfChange(add_voters=[4]))
    c.stabilize()
    c.tick()
    leader.propose_conf_change(raft.ConfChange(add_voters=[4]))
    c.stabilize()
    c.tick()
    assert sorted(leader.status()["voters"]) == [1, 2, 3, 4]


def test_conf_change_removed_leader_steps_down_and_rest_elect_a_new_one():
    """Raft thesis §4.2.2: a leader removed from the configuration steps down once the change is
    applied; the remaining voters carry on."""
    c = cluster(3)
    elect(c, 1)
    c.propose(b"before")
    c.node(1).propose_conf_change(raft.ConfChange(remove_voters=[1]))
    c.stabilize()
    c.tick()
    assert c.node(1).role != Role.LEADER
    for _ in range(5 * ELECTION_TICK):
        if c.leader() is not None:
            break
        c.tick()
    leader = c.leader()
    assert leader in (2, 3)
    assert c.node(leader).term > 1
    assert sorted(c.node(leader).status()["voters"]) == [2, 3]
    c.propose(b"after")
    c.tick()
    assert c.applied_data(2)[-1] == b"after" and c.applied_data(3)[-1] == b"after"


def test_learner_receives_entries_but_never_campaigns():
    """Raft thesis §4.2.1: a learner (non-voting member) replicates the log but never starts an
    election, and its role is LEARNER."""
    c = RecordingCluster(3, learners=[4])
    leader = c.wait_for_leader()
    assert leader != 4
    c.propose(b"x")
    c.tick()
    assert c.node(4).role == Role.LEARNER
    assert c.applied_data(4) == [b"x"]
    term = c.node(4).term
    c.isolate(4)
    c.tick(10 * ELECTION_TICK)
    assert c.node(4).role == Role.LEARNER
    assert c.node(4).term == term
    c.node(4).campaign()
    c.stabilize()
    assert c.node(4).role == Role.LEARNER
    assert not [m for (s, _t, m) in c.sent if s == 4 and m.type in (MT.REQUEST_VOTE, MT.REQUEST_PRE_VOTE)]


def test_learner_promotion_makes_it_a_voter():
    """Raft thesis §4.2.1: promoting a caught-up learner makes it a voter that may lead."""
    c = RecordingCluster(3, learners=[4])
    c.wait_for_leader()
    c.propose(b"x")
    leader = c.leader()
    c.node(leader).propose_conf_change(raft.ConfChange(add_voters=[4]))
    c.stabilize()
    c.tick()
    assert c.node(4).role == Role.FOLLOWER
    assert 4 in c.node(4).status()["voters"]
    assert c.node(4).status()["learners"] == []
    c.node(leader).transfer_leader(4)
    c.stabilize()
    assert c.leader() == 4
    c.propose(b"by-4")
    c.tick()
    for node_id in (1, 2, 3, 4):
        normal = [d for d in c.applied_data(node_id) if d in (b"x", b"by-4")]
        assert normal == [b"x", b"by-4"], node_id


# ---------------------------------------------------------------------------- replication


def test_fast_backtracking_repairs_long_divergent_log_in_few_rounds():
    """Raft §5.3 (optimisation) / thesis §3.5: a follower with a long suffix of an old term is
    repaired with a handful of AppendEntries, not one round per divergent entry."""
    divergent = 60
    c = RecordingCluster(3, overrides=dict(pre_vote=False, check_quorum=False))
    logs = {1: [1] + [3] * divergent, 2: [1] + [3] * divergent, 3: [1] + [2] * divergent}
    for node_id, log in logs.items():
        storage = storage_with(log, term=3)
        node = raft.RaftNode(id=node_id, voters=[1, 2, 3], config=c._config_for(node_id), storage=storage)
        c.members[node_id] = Member(node_id, storage, node)
    elect(c, 1)
    c.tick(3)
    appends = c.sent_of(MT.APPEND_ENTRIES, to=3)
    rejections = [m for m in c.sent_of(MT.APPEND_ENTRIES_RESPONSE, to=1) if m.from_ == 3 and m.reject]
    assert [e.term for e in c.node(3).log_entries()] == [e.term for e in c.node(1).log_entries()]
    assert len(rejections) <= 3
    assert len([m for m in appends if m.entries]) <= 5 < divergent


def test_flow_control_max_inflight_msgs_bounds_unacknowledged_appends():
    """etcd-io/raft flow control: in replicate state the leader keeps at most max_inflight_msgs
    appends unacknowledged per follower, and sends more as acknowledgements come back."""
    node = single_leader(max_inflight_msgs=3)
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=1)  # follower 2: replicate state
    flush(node)
    sent = []
    for i in range(10):
        node.propose(b"p%d" % i)
        sent += flush(node)
    to_2 = [m for m in sent if m.type == MT.APPEND_ENTRIES and m.to == 2]
    assert len(to_2) == 3
    assert node.status()["progress"][2]["inflight"] == 3
    last_acked = to_2[0].entries[-1].index
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=last_acked)
    more = [m for m in flush(node) if m.type == MT.APPEND_ENTRIES and m.to == 2]
    assert len(more) == 1  # one slot freed, one more append
    assert more[0].index == to_2[-1].entries[-1].index  # it continues where the pipeline stopped
    assert node.status()["progress"][2]["inflight"] == 3


def test_flow_control_max_inflight_bytes_bounds_unacknowledged_payload():
    """etcd-io/raft MaxInflightBytes: in replicate state the leader stops sending to a follower
    once the unacknowledged payload reaches max_inflight_bytes, whatever the message count."""
    node = single_leader(max_inflight_msgs=100, max_inflight_bytes=250)
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=1)  # follower 2: replicate state
    flush(node)
    sent = []
    for i in range(10):
        node.propose(b"x" * 100)
        sent += flush(node)
    to_2 = [m for m in sent if m.type == MT.APPEND_ENTRIES and m.to == 2 and m.entries]
    assert len(to_2) == 3  # 100 + 100 + 100 bytes: the third fills the 250-byte budget
    assert node.status()["progress"][2]["inflight"] == 3
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=to_2[0].entries[-1].index)
    more = [m for m in flush(node) if m.type == MT.APPEND_ENTRIES and m.to == 2 and m.entries]
    assert len(more) == 1


def test_flow_control_max_size_per_msg_splits_appends():
    """etcd-io/raft max_size_per_msg: an append carries at most that many payload bytes (but at
    least one entry), so a large backlog goes out in several messages."""
    c = cluster(3, max_size_per_msg=20)
    elect(c, 1)
    c.sent.clear()
    c.node(1).propose_many([b"%08d" % i for i in range(12)])
    c.stabilize()
    appends = [m for m in c.sent_of(MT.APPEND_ENTRIES) if m.entries]
    assert all(len(m.entries) == 1 or sum(len(e.data) for e in m.entries) <= 20 for m in appends)
    assert max(len(m.entries) for m in appends) <= 2
    assert len([m for m in appends if m.to == 2]) >= 6
    c.tick()
    assert c.applied_data(3) == [b"%08d" % i for i in range(12)]


# ---------------------------------------------------------------------------- proposals


def test_propose_on_follower_forwards_to_leader_and_returns_zero():
    """docs/design.md §3: a follower forwards a proposal to the leader and returns 0."""
    c = cluster(3)
    elect(c, 1)
    assert c.node(2).propose(b"fwd") == 0
    c.stabilize()
    c.tick()
    assert c.sent_of(MT.PROPOSE, to=1)
    assert all(c.applied_data(n) == [b"fwd"] for n in (1, 2, 3))


def test_propose_with_forwarding_disabled_raises_not_leader_with_hint():
    """docs/design.md §3: with disable_proposal_forwarding a follower raises NotLeaderError naming the
    leader it knows."""
    c = cluster(3, disable_proposal_forwarding=True)
    elect(c, 1)
    with pytest.raises(NotLeaderError) as info:
        c.node(3).propose(b"x")
    assert info.value.leader_hint == 1
    assert not c.sent_of(MT.PROPOSE)


def test_propose_uncommitted_cap_drops_proposals_until_entries_commit():
    """etcd-io/raft MaxUncommittedEntriesSize: when followers do not answer, the leader refuses
    proposals beyond max_uncommitted_bytes, and accepts them again once entries commit."""
    node = single_leader(max_uncommitted_bytes=100)
    assert node.propose(b"x" * 60) == 2
    flush(node)
    with pytest.raises(ProposalDroppedError):
        node.propose(b"y" * 60)
    assert node.status()["uncommitted_bytes"] == 60
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=2)
    flush(node)
    assert node.commit_index == 2
    assert node.status()["uncommitted_bytes"] == 0
    assert node.propose(b"y" * 60) == 3


def test_max_committed_entries_per_ready_caps_committed_entries():
    """docs/design.md §3 limits: no Ready hands out more than max_committed_entries_per_ready committed
    entries; the rest follow in later Readies, in order."""
    node = raft.RaftNode(id=2, voters=[1, 2, 3], config=config(max_committed_entries_per_ready=3))
    entries = [raft.Entry(i, 1, b"%d" % i) for i in range(1, 11)]
    send(node, MT.APPEND_ENTRIES, 1, term=1, index=0, log_term=0, entries=entries, commit=10)
    batches = [rd.committed_entries for rd in readies(node)]
    assert all(len(b) <= 3 for b in batches)
    assert [e.index for b in batches for e in b] == list(range(1, 11))


def test_max_committed_bytes_per_ready_caps_committed_payload():
    """docs/design.md §3 limits: a Ready's committed entries carry at most max_committed_bytes_per_ready
    payload bytes (but at least one entry); the rest follow in later Readies, in order."""
    node = raft.RaftNode(id=2, voters=[1, 2, 3], config=config(max_committed_bytes_per_ready=25))
    entries = [raft.Entry(i, 1, b"0123456789") for i in range(1, 11)]
    send(node, MT.APPEND_ENTRIES, 1, term=1, index=0, log_term=0, entries=entries, commit=10)
    batches = [rd.committed_entries for rd in readies(node)]
    assert all(sum(len(e.data) for e in b) <= 25 for b in batches)
    assert max(len(b) for b in batches) == 2
    assert [e.index for b in batches for e in b] == list(range(1, 11))


def test_restart_with_applied_skips_already_applied_entries():
    """docs/design.md §3 restart: committed entries above `applied` are delivered again; those at or below
    it are not."""
    def committed_after_restart(applied: int) -> List[int]:
        storage = storage_with([1] * 5, term=1, commit=5)
        node = raft.RaftNode(id=2, voters=[1, 2, 3], config=config(), storage=storage, applied=applied)
        return [e.index for rd in readies(node) for e in rd.committed_entries]

    assert committed_after_restart(0) == [1, 2, 3, 4, 5]
    assert committed_after_restart(3) == [4, 5]
    assert committed_after_restart(5) == []
