"""The rules of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable Consensus
Algorithm", 2014), section by section.

Each test names the rule it checks and cites its section. Single-node tests craft peer messages
with `raft.Message(...).encode()` and read the node's answers from its Ready; multi-node tests run
an in-process `LocalCluster`. PreVote and CheckQuorum are off unless a test says otherwise: they
are extensions that change the paper's plain voting rules.
"""

from __future__ import annotations

from typing import List, Sequence

import pytest

from consensus import Role, raft
from consensus.testing import LocalCluster, Member

from support import flush, send

MT = raft.MessageType
ELECTION_TICK = 10


# ---------------------------------------------------------------------------- helpers


def plain_config(seed: int = 0, **overrides) -> raft.Config:
    """The paper's algorithm: no PreVote, no CheckQuorum."""
    settings = dict(election_tick=ELECTION_TICK, heartbeat_tick=1, pre_vote=False, check_quorum=False, seed=seed)
    settings.update(overrides)
    return raft.Config(**settings)


def storage_with(log_terms: Sequence[int] = (), term: int = 0, vote: int = 0, commit: int = 0) -> raft.MemoryStorage:
    """A storage holding a log whose entry i+1 has term log_terms[i], and a hard state."""
    storage = raft.MemoryStorage()
    if log_terms:
        storage.append([raft.Entry(i + 1, t, b"e%d" % (i + 1)) for i, t in enumerate(log_terms)])
    term = max([term, *log_terms]) if log_terms else term
    if term or vote or commit:
        storage.set_hard_state(raft.HardState(term, vote, commit))
    return storage


def new_node(
    node_id: int = 1,
    voters: Sequence[int] = (1, 2, 3),
    log_terms: Sequence[int] = (),
    term: int = 0,
    vote: int = 0,
    commit: int = 0,
    **config,
) -> raft.RaftNode:
    return raft.RaftNode(
        id=node_id,
        voters=list(voters),
        config=plain_config(**config),
        storage=storage_with(log_terms, term, vote, commit),
    )


def of_type(messages: List[raft.Message], msg_type: raft.MessageType) -> List[raft.Message]:
    return [m for m in messages if m.type == msg_type]


def log_terms(node: raft.RaftNode) -> List[int]:
    return [e.term for e in node.log_entries()]


def make_leader(node: raft.RaftNode, granting: Sequence[int] = (2,)) -> None:
    """Campaigns and feeds the node enough vote grants to win."""
    node.campaign()
    flush(node)
    for peer in granting:
        send(node, MT.REQUEST_VOTE_RESPONSE, peer, node.term)
    flush(node)
    assert node.role == Role.LEADER


def plain_cluster(size: int = 3) -> LocalCluster:
    return LocalCluster(size, configure=lambda node_id: plain_config(seed=node_id))


def install_log(cluster: LocalCluster, node_id: int, log: Sequence[int], term: int) -> None:
    """Replaces a member by one restarted from a storage holding `log` (entry terms)."""
    storage = storage_with(log, term=term)
    node = raft.RaftNode(id=node_id, voters=cluster.voters, config=cluster._config_for(node_id), storage=storage)
    cluster.members[node_id] = Member(node_id, storage, node)


def elect(cluster: LocalCluster, node_id: int) -> None:
    cluster.elect(node_id)
    # One heartbeat round so that every follower learns who leads.
    cluster.tick()


# ---------------------------------------------------------------------------- §5.1 terms


def test_5_1_message_with_higher_term_turns_leader_into_follower_of_that_term():
    """Raft §5.1: a server that sees a larger term updates its term and reverts to follower."""
    node = new_node()
    make_leader(node)
    assert node.term == 1
    send(node, MT.APPEND_ENTRIES, 3, term=4, index=0, log_term=0)
    flush(node)
    assert node.role == Role.FOLLOWER
    assert node.term == 4
    assert node.leader == 3


def test_5_1_candidate_seeing_higher_term_in_vote_response_becomes_follower():
    """Raft §5.1: a candidate that learns of a higher term (here from a vote rejection) steps down."""
    node = new_node()
    node.campaign()
    flush(node)
    assert node.role == Role.CANDIDATE and node.term == 1
    send(node, MT.REQUEST_VOTE_RESPONSE, 2, term=7, reject=True)
    flush(node)
    assert node.role == Role.FOLLOWER
    assert node.term == 7
    assert node.vote == 0


def test_5_1_node_with_stale_term_rejects_vote_request():
    """Raft §5.1: a request with a stale term is rejected; the receiver keeps its term and vote."""
    node = new_node(term=5)
    send(node, MT.REQUEST_VOTE, 2, term=3, index=10, log_term=3)
    sent = flush(node)
    assert not [m for m in of_type(sent, MT.REQUEST_VOTE_RESPONSE) if not m.reject]
    assert node.term == 5
    assert node.vote == 0


def test_5_1_stale_append_entries_is_not_accepted():
    """Raft §5.1: AppendEntries from a deposed leader (stale term) appends nothing and does not
    make its sender the leader."""
    node = new_node(log_terms=[1], term=5)
    send(node, MT.APPEND_ENTRIES, 2, term=3, index=1, log_term=1, entries=[raft.Entry(2, 3, b"x")], commit=2)
    sent = flush(node)
    assert node.last_index == 1
    assert node.commit_index == 0
    assert node.leader == 0
    assert node.term == 5
    assert not [m for m in of_type(sent, MT.APPEND_ENTRIES_RESPONSE) if not m.reject and m.index >= 2]


def test_5_1_responses_carry_the_responders_current_term():
    """Raft §5.1: servers exchange current terms in every RPC, including responses."""
    node = new_node(node_id=2, term=3)
    send(node, MT.REQUEST_VOTE, 1, term=4, index=0, log_term=0)
    votes = of_type(flush(node), MT.REQUEST_VOTE_RESPONSE)
    assert [(m.term, m.reject) for m in votes] == [(4, False)]
    send(node, MT.APPEND_ENTRIES, 1, term=4, index=0, log_term=0, entries=[raft.Entry(1, 4, b"a")])
    appends = of_type(flush(node), MT.APPEND_ENTRIES_RESPONSE)
    assert [(m.term, m.reject, m.index) for m in appends] == [(4, False, 1)]


def test_5_1_leader_steps_down_on_response_with_higher_term():
    """Raft §5.1: a leader that learns from a response that its term is out of date becomes a
    follower of the newer term."""
    node = new_node()
    make_leader(node)
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=9, index=0)
    flush(node)
    assert node.role == Role.FOLLOWER
    assert node.term == 9


# ---------------------------------------------------------------------------- §5.2 elections


def test_5_2_election_timeout_starts_election_with_new_term_and_own_vote():
    """Raft §5.2: a follower that hears nothing for an election timeout increments its term,
    votes for itself and asks every other server for its vote with its last log position."""
    node = new_node(log_terms=[1, 1, 2], term=2)
    for _ in range(2 * ELECTION_TICK):
        node.tick()
    sent = flush(node)
    assert node.role == Role.CANDIDATE
    assert node.term == 3
    assert node.vote == 1
    requests = of_type(sent, MT.REQUEST_VOTE)
    assert sorted(m.to for m in requests) == [2, 3]
    assert all((m.term, m.index, m.log_term) == (3, 3, 2) for m in requests)


def test_5_2_candidate_wins_only_with_votes_from_a_majority():
    """Raft §5.2: a candidate becomes leader once a majority of the full cluster voted for it
    (here 3 of 5, counting its own vote)."""
    node = new_node(voters=(1, 2, 3, 4, 5))
    node.campaign()
    flush(node)
    send(node, MT.REQUEST_VOTE_RESPONSE, 2, term=1)
    send(node, MT.REQUEST_VOTE_RESPONSE, 3, term=1, reject=True)
    flush(node)
    assert node.role == Role.CANDIDATE
    send(node, MT.REQUEST_VOTE_RESPONSE, 4, term=1)
    flush(node)
    assert node.role == Role.LEADER
    assert node.leader == 1


def test_5_2_one_vote_per_term_first_come_first_served():
    """Raft §5.2: a server votes for at most one candidate per term, the first that asks."""
    node = new_node(voters=(1, 2, 3))
    send(node, MT.REQUEST_VOTE, 2, term=1, index=0, log_term=0)
    first = of_type(flush(node), MT.REQUEST_VOTE_RESPONSE)
    send(node, MT.REQUEST_VOTE, 3, term=1, index=0, log_term=0)
    second = of_type(flush(node), MT.REQUEST_VOTE_RESPONSE)
    assert [(m.to, m.reject) for m in first] == [(2, False)]
    assert [(m.to, m.reject) for m in second] == [(3, True)]
    assert node.vote == 2


def test_5_2_repeated_vote_request_from_same_candidate_is_granted_again():
    """Raft §5.2: a retransmitted RequestVote from the candidate we voted for gets the same answer
    (votedFor is this candidate)."""
    node = new_node()
    for _ in range(2):
        send(node, MT.REQUEST_VOTE, 2, term=1, index=0, log_term=0)
        answers = of_type(flush(node), MT.REQUEST_VOTE_RESPONSE)
        assert [(m.to, m.term, m.reject) for m in answers] == [(2, 1, False)]
    assert node.vote == 2


def test_5_2_candidate_becomes_follower_on_append_from_leader_of_same_term():
    """Raft §5.2: a candidate that receives AppendEntries from a leader of its own term recognises
    that leader and returns to follower."""
    node = new_node()
    node.campaign()
    flush(node)
    send(node, MT.APPEND_ENTRIES, 2, term=1, index=0, log_term=0, entries=[raft.Entry(1, 1)])
    sent = flush(node)
    assert node.role == Role.FOLLOWER
    assert node.term == 1
    assert node.leader == 2
    assert [(m.reject, m.index) for m in of_type(sent, MT.APPEND_ENTRIES_RESPONSE)] == [(False, 1)]


def test_5_2_split_vote_times_out_into_new_election_with_higher_term():
    """Raft §5.2: when no candidate wins, each candidate times out and starts a new election with
    a higher term."""
    node = new_node()
    node.campaign()
    flush(node)
    send(node, MT.REQUEST_VOTE_RESPONSE, 2, term=1, reject=True)  # 1 grant, 1 reject: undecided
    flush(node)
    assert node.term == 1
    for _ in range(2 * ELECTION_TICK):
        node.tick()
    sent = flush(node)
    assert node.role == Role.CANDIDATE
    assert node.term == 2
    assert sorted(m.to for m in of_type(sent, MT.REQUEST_VOTE) if m.term == 2) == [2, 3]


def ticks_until_campaign(node: raft.RaftNode) -> int:
    for ticks in range(1, 10 * ELECTION_TICK):
        node.tick()
        if node.role != Role.FOLLOWER:
            return ticks
    raise AssertionError("node never campaigned")


def test_5_2_randomized_election_timeouts_are_in_range_and_differ_between_nodes():
    """Raft §5.2: election timeouts are chosen at random from [election_tick, 2*election_tick),
    so nodes of one configuration (one seed) time out at different ticks."""
    timeouts = []
    for node_id in range(1, 8):
        node = raft.RaftNode(id=node_id, voters=list(range(1, 8)), config=plain_config(seed=42))
        timeouts.append(ticks_until_campaign(node))
    assert all(ELECTION_TICK <= t < 2 * ELECTION_TICK for t in timeouts), timeouts
    assert len(set(timeouts)) > 1, timeouts
    # Each new term draws again: successive timeouts of one node are not all equal either.
    node = raft.RaftNode(id=1, voters=[1, 2, 3], config=plain_config(seed=42))
    redraws = [ticks_until_campaign(node)]
    for _ in range(6):
        before = node.term
        redraws.append(ticks_until_campaign_again(node, before))
    assert all(ELECTION_TICK <= t < 2 * ELECTION_TICK for t in redraws), redraws
    assert len(set(redraws)) > 1, redraws


def ticks_until_campaign_again(node: raft.RaftNode, term: int) -> int:
    for ticks in range(1, 10 * ELECTION_TICK):
        node.tick()
        if node.term > term:
            return ticks
    raise AssertionError("candidate never started a new election")


def test_5_2_election_is_deterministic_for_a_seed():
    """Raft §5.2 with docs/design.md §1: the randomized timeout comes from a PRNG seeded by (seed, id), so
    the same seed gives the same timeout."""
    first = ticks_until_campaign(raft.RaftNode(id=3, voters=[1, 2, 3], config=plain_config(seed=7)))
    again = ticks_until_campaign(raft.RaftNode(id=3, voters=[1, 2, 3], config=plain_config(seed=7)))
    assert first == again


def test_5_2_new_leader_sends_append_entries_to_every_follower_at_once():
    """Raft §5.2: once a candidate wins it sends AppendEntries (its no-op or heartbeats) to all
    other servers to establish its authority and prevent new elections."""
    node = new_node()
    node.campaign()
    flush(node)
    send(node, MT.REQUEST_VOTE_RESPONSE, 2, term=1)
    sent = flush(node)
    assert node.role == Role.LEADER
    announced = {m.to for m in sent if m.type in (MT.APPEND_ENTRIES, MT.HEARTBEAT) and m.term == 1}
    assert announced == {2, 3}


def test_8_new_leader_appends_noop_entry_of_its_term():
    """Raft §8: a new leader appends a blank no-op entry of its term at the start of its term."""
    node = new_node(log_terms=[1, 1], term=1)
    make_leader(node)
    entries = node.log_entries()
    assert [(e.index, e.term) for e in entries] == [(1, 1), (2, 1), (3, 2)]
    assert entries[-1].data == b""
    assert entries[-1].kind == raft.EntryKind.NORMAL


# ---------------------------------------------------------------------------- §5.4.1 election restriction


def test_5_4_1_vote_denied_to_candidate_whose_last_term_is_lower():
    """Raft §5.4.1: a voter denies its vote if its last log term is higher than the candidate's,
    even if the candidate's log is longer."""
    node = new_node(node_id=2, log_terms=[1, 2], term=2)
    send(node, MT.REQUEST_VOTE, 1, term=3, index=5, log_term=1)
    answers = of_type(flush(node), MT.REQUEST_VOTE_RESPONSE)
    assert [m.reject for m in answers] == [True]
    assert node.vote == 0
    assert node.term == 3  # the higher term is adopted even though the vote is denied


def test_5_4_1_vote_denied_to_candidate_with_same_last_term_and_shorter_log():
    """Raft §5.4.1: with equal last terms, the longer log is more up to date."""
    node = new_node(node_id=2, log_terms=[1, 2, 2], term=2)
    send(node, MT.REQUEST_VOTE, 1, term=3, index=2, log_term=2)
    answers = of_type(flush(node), MT.REQUEST_VOTE_RESPONSE)
    assert [m.reject for m in answers] == [True]
    assert node.vote == 0


def test_5_4_1_vote_granted_to_candidate_with_higher_last_term_and_shorter_log():
    """Raft §5.4.1: a higher last term wins over length; an equal log is up to date too."""
    node = new_node(node_id=2, log_terms=[1, 1, 1, 1], term=1)
    send(node, MT.REQUEST_VOTE, 1, term=3, index=2, log_term=2)
    assert [m.reject for m in of_type(flush(node), MT.REQUEST_VOTE_RESPONSE)] == [False]
    equal = new_node(node_id=2, log_terms=[1, 2], term=2)
    send(equal, MT.REQUEST_VOTE, 3, term=3, index=2, log_term=2)
    assert [m.reject for m in of_type(flush(equal), MT.REQUEST_VOTE_RESPONSE)] == [False]
    assert equal.vote == 3


# ---------------------------------------------------------------------------- §5.3 log replication


def test_5_3_follower_appends_entries_after_matching_previous_entry():
    """Raft §5.3: a follower whose log matches at (prevLogIndex, prevLogTerm) appends the new
    entries and acknowledges the last of them."""
    node = new_node(node_id=2, log_terms=[1], term=1)
    new = [raft.Entry(2, 2, b"b"), raft.Entry(3, 2, b"c")]
    send(node, MT.APPEND_ENTRIES, 1, term=2, index=1, log_term=1, entries=new)
    answers = of_type(flush(node), MT.APPEND_ENTRIES_RESPONSE)
    assert [(m.reject, m.index) for m in answers] == [(False, 3)]
    assert log_terms(node) == [1, 2, 2]
    assert [e.data for e in node.storage.entries(1, 4)] == [b"e1", b"b", b"c"]


def test_5_3_consistency_check_rejects_mismatched_previous_entry():
    """Raft §5.3: if the follower has no entry at prevLogIndex with prevLogTerm it refuses the new
    entries; the rejection names the rejected index."""
    node = new_node(node_id=2, log_terms=[1, 1], term=2)
    send(node, MT.APPEND_ENTRIES, 1, term=3, index=2, log_term=2, entries=[raft.Entry(3, 3, b"x")])
    missing = new_node(node_id=2, log_terms=[1], term=2)
    send(missing, MT.APPEND_ENTRIES, 1, term=3, index=5, log_term=3, entries=[raft.Entry(6, 3, b"x")])
    for follower, rejected_index in ((node, 2), (missing, 5)):
        answers = of_type(flush(follower), MT.APPEND_ENTRIES_RESPONSE)
        assert [(m.reject, m.index) for m in answers] == [(True, rejected_index)]
        assert follower.last_index <= 2
        assert all(e.term < 3 for e in follower.log_entries())


def test_5_3_conflicting_suffix_is_truncated_and_replaced():
    """Raft §5.3: if an existing entry conflicts with a new one (same index, different term) the
    follower deletes it and all that follow it, and appends the leader's entries."""
    node = new_node(node_id=2, log_terms=[1, 1, 2, 2, 2], term=2)
    send(node, MT.APPEND_ENTRIES, 1, term=3, index=2, log_term=1, entries=[raft.Entry(3, 3, b"new")])
    answers = of_type(flush(node), MT.APPEND_ENTRIES_RESPONSE)
    assert [(m.reject, m.index) for m in answers] == [(False, 3)]
    assert log_terms(node) == [1, 1, 3]
    storage = node.storage
    assert storage.last_index() == 3
    assert [(e.index, e.term, e.data) for e in storage.entries(1, 4)] == [(1, 1, b"e1"), (2, 1, b"e2"), (3, 3, b"new")]


def test_5_3_append_of_entries_already_present_does_not_truncate_later_ones():
    """Raft §5.3: only a *conflicting* entry truncates the log: an append whose entries all match
    keeps what follows them (a delayed, reordered AppendEntries must not shorten the log)."""
    node = new_node(node_id=2, log_terms=[1, 1, 1, 1], term=1)
    send(node, MT.APPEND_ENTRIES, 1, term=1, index=1, log_term=1, entries=[raft.Entry(2, 1, b"e2")])
    answers = of_type(flush(node), MT.APPEND_ENTRIES_RESPONSE)
    assert [(m.reject, m.index) for m in answers] == [(False, 2)]
    assert log_terms(node) == [1, 1, 1, 1]


def test_5_3_leader_commits_entry_replicated_on_a_majority():
    """Raft §5.3: the leader commits an entry of its term once a majority stored it, and applies it."""
    node = new_node()
    make_leader(node)
    index = node.propose(b"x")
    assert index == 2
    flush(node)
    assert node.commit_index == 0
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=1, index=2)
    applied = []
    while node.has_ready():
        rd = node.ready()
        node.storage.persist(rd)
        applied.extend(e.data for e in rd.committed_entries)
        node.advance(rd)
    assert node.commit_index == 2
    assert applied == [b"", b"x"]


def test_5_3_commit_index_is_propagated_to_followers():
    """Raft §5.3: the leader sends its commit index in AppendEntries, and followers apply entries
    up to it (bounded by what they hold)."""
    follower = new_node(node_id=2)
    entries = [raft.Entry(1, 1, b"a"), raft.Entry(2, 1, b"b")]
    send(follower, MT.APPEND_ENTRIES, 1, term=1, index=0, log_term=0, entries=entries, commit=1)
    applied = []
    while follower.has_ready():
        rd = follower.ready()
        follower.storage.persist(rd)
        applied.extend(e.data for e in rd.committed_entries)
        follower.advance(rd)
    assert follower.commit_index == 1
    assert applied == [b"a"]

    cluster = plain_cluster(3)
    elect(cluster, 1)
    cluster.propose(b"v1")
    cluster.propose(b"v2")
    cluster.tick()  # the next round carries the new commit index
    for node_id in (1, 2, 3):
        assert cluster.node(node_id).commit_index == cluster.node(1).commit_index
        assert cluster.applied_data(node_id) == [b"v1", b"v2"]


FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7_FOLLOWERS = {
    2: [1, 1, 1, 4, 4, 5, 5, 6, 6],  # (a) missing an entry
    3: [1, 1, 1, 4],  # (b) missing many
    4: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  # (c) one extra uncommitted entry
    5: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # (d) extra entries of a later term
    6: [1, 1, 1, 4, 4, 4, 4],  # (e) missing and conflicting entries of term 4
    7: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  # (f) conflicting entries of terms 2 and 3
}


def test_5_3_figure_7_leader_forces_every_follower_log_to_match_its_own():
    """Raft §5.3, Figure 7: a leader of term 8 brings followers that miss entries, hold extra
    uncommitted entries, or hold conflicting entries of older terms to exactly its log."""
    cluster = LocalCluster(7, configure=lambda node_id: plain_config(seed=node_id))
    install_log(cluster, 1, FIGURE_7_LEADER, term=7)
    for node_id, log in FIGURE_7_FOLLOWERS.items():
        install_log(cluster, node_id, log, term=7)
    elect(cluster, 1)  # granted by (a), (b), (e), (f): 5 of 7
    assert cluster.node(1).term == 8
    cluster.propose(b"after")
    cluster.tick(3)
    expected = FIGURE_7_LEADER + [8, 8]
    for node_id in range(1, 8):
        node = cluster.node(node_id)
        assert log_terms(node) == expected, f"node {node_id}"
        stored = node.storage.entries(1, node.storage.last_index() + 1)
        assert [e.term for e in stored] == expected, f"storage of node {node_id}"
        assert node.commit_index == len(expected)


# ---------------------------------------------------------------------------- §5.4 safety


def test_5_4_2_figure_8_old_term_entry_not_committed_by_counting_replicas():
    """Raft §5.4.2, Figure 8: a leader never commits an entry of an earlier term by counting
    replicas, even on a majority; it commits it only by committing an entry of its current term."""
    node = new_node(log_terms=[1, 2], term=3)  # entry 2 is from our own earlier term 2
    make_leader(node)
    assert node.term == 4
    assert log_terms(node) == [1, 2, 4]
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=4, index=2)  # {1, 2} hold entry 2: a majority
    flush(node)
    assert node.commit_index == 0
    send(node, MT.APPEND_ENTRIES_RESPONSE, 2, term=4, index=3)  # now the term-4 no-op is on a majority
    flush(node)
    assert node.commit_index == 3


def test_5_4_2_figure_8_uncommitted_entry_on_a_minority_is_overwritten_and_never_applied():
    """Raft §5.4.2, Figure 8 (a)-(b)-(d): S1 replicates an entry only to S2 and crashes; S5 is
    elected with votes of S3 and S4 and replicates its own entry at that index. The old entry is
    overwritten everywhere (it was never committed) and no node ever applies it."""
    cluster = plain_cluster(5)
    elect(cluster, 1)
    cluster.propose(b"t1")
    cluster.tick()
    for peer in (3, 4, 5):
        cluster.cut |= {(1, peer), (peer, 1)}
    lost_index = cluster.node(1).propose(b"lost")
    cluster.stabilize()
    assert [e.data for e in cluster.node(2).log_entries()][lost_index - 1] == b"lost"
    cluster.crash(1)
    cluster.heal()
    cluster.node(5).campaign()
    cluster.stabilize()
    assert cluster.leader() == 5  # S3, S4 grant; S2 (longer log) refuses
    cluster.propose(b"kept")
    cluster.restart(1)
    cluster.tick(3)
    for node_id in range(1, 6):
        assert cluster.applied_data(node_id) == [b"t1", b"kept"], node_id
        assert b"lost" not in [e.data for e in cluster.node(node_id).log_entries()]


def test_5_4_leader_completeness_candidate_missing_committed_entries_cannot_win():
    """Raft §5.4: a leader's log holds every committed entry, because voters deny candidates that
    lack them (§5.4.1); the node that has them wins instead."""
    cluster = plain_cluster(3)
    elect(cluster, 1)
    cluster.isolate(3)
    for i in range(3):
        cluster.propose(b"c%d" % i)
    cluster.tick()
    committed = [(e.index, e.term, e.data) for e in cluster.node(1).log_entries()][: cluster.node(1).commit_index]
    cluster.crash(1)
    cluster.heal()
    cluster.node(3).campaign()
    cluster.stabilize()
    assert cluster.leader() != 3
    cluster.node(2).campaign()
    cluster.stabilize()
    assert cluster.leader() == 2
    new_log = [(e.index, e.term, e.data) for e in cluster.node(2).log_entries()]
    assert new_log[: len(committed)] == committed


def test_5_4_3_state_machine_safety_every_node_applies_the_same_sequence():
    """Raft §5.4.3: no two servers apply different entries at one index, across leader changes,
    crashes and partitions."""
    cluster = plain_cluster(5)
    cluster.wait_for_leader()
    written = 0
    for round_ in range(6):
        leader = cluster.wait_for_leader()
        for _ in range(3):
            cluster.propose(b"w%d" % written, via=leader)
            written += 1
        if round_ % 2 == 0:
            cluster.isolate(leader)
            cluster.tick(3 * ELECTION_TICK)
            cluster.heal()
        else:
            cluster.crash(leader)
            cluster.tick(3 * ELECTION_TICK)
            cluster.restart(leader)
    cluster.wait_for_leader()
    cluster.propose(b"final")
    cluster.tick(5)
    sequences = [[(i, t, d) for (i, t, d) in cluster.members[n].applied] for n in range(1, 6)]
    longest = max(sequences, key=len)
    for seq in sequences:
        assert seq == longest[: len(seq)]
        assert [i for (i, _t, _d) in seq] == list(range(1, len(seq) + 1))
    assert all(cluster.applied_data(n)[-1] == b"final" for n in range(1, 6))
    assert len(set(cluster.applied_data(1))) == len(cluster.applied_data(1))


# ---------------------------------------------------------------------------- §5.5 crashes


def test_5_5_restarted_follower_keeps_term_and_vote_from_storage():
    """Raft §5.5 (Figure 2, persistent state): currentTerm and votedFor survive a restart, so a
    restarted server cannot vote twice in one term."""
    storage = raft.MemoryStorage()
    node = raft.RaftNode(id=2, voters=[1, 2, 3], config=plain_config(), storage=storage)
    send(node, MT.REQUEST_VOTE, 1, term=5, index=0, log_term=0)
    assert [m.reject for m in of_type(flush(node), MT.REQUEST_VOTE_RESPONSE)] == [False]
    restarted = raft.RaftNode(id=2, voters=[1, 2, 3], config=plain_config(), storage=storage)
    assert restarted.term == 5
    assert restarted.vote == 1
    send(restarted, MT.REQUEST_VOTE, 3, term=5, index=0, log_term=0)
    assert [m.reject for m in of_type(flush(restarted), MT.REQUEST_VOTE_RESPONSE)] == [True]
    send(restarted, MT.REQUEST_VOTE, 1, term=5, index=0, log_term=0)
    assert [m.reject for m in of_type(flush(restarted), MT.REQUEST_VOTE_RESPONSE)] == [False]


def test_5_5_redelivered_append_entries_is_idempotent():
    """Raft §5.5: RPCs are idempotent: a follower that receives the same AppendEntries again keeps
    one copy of the entries and acknowledges the same index."""
    entries = [raft.Entry(1, 1, b"a"), raft.Entry(2, 1, b"b")]
    node = new_node(node_id=2)
    message = raft.Message(type=MT.APPEND_ENTRIES, from_=1, to=2, term=1, index=0, log_term=0, entries=entries)
    acks = []
    for _ in range(3):
        node.step(message.encode())
        acks += [(m.reject, m.index) for m in of_type(flush(node), MT.APPEND_ENTRIES_RESPONSE)]
    assert acks == [(False, 2)] * 3
    assert [(e.index, e.data) for e in node.log_entries()] == [(1, b"a"), (2, b"b")]
    assert node.storage.last_index() == 2
    # Redelivered below the commit index: still accepted (the answer may name the commit index),
    # and nothing is rewritten or applied twice.
    committing = raft.Message(type=MT.APPEND_ENTRIES, from_=1, to=2, term=1, index=0, log_term=0, commit=2,
                              entries=entries)
    applied = []
    for _ in range(3):
        node.step(committing.encode())
        while node.has_ready():
            rd = node.ready()
            node.storage.persist(rd)
            applied += [e.data for e in rd.committed_entries]
            assert all(not m.reject for m in map(raft.decode, (f for _t, f in rd.messages + rd.persisted_messages)))
            node.advance(rd)
    assert applied == [b"a", b"b"]
    assert node.commit_index == 2
    assert [(e.index, e.data) for e in node.log_entries()] == [(1, b"a"), (2, b"b")]


def test_5_5_crashed_follower_catches_up_after_restart():
    """Raft §5.5: a crashed follower misses entries; after it restarts from its storage the leader
    retries until it has them all."""
    cluster = plain_cluster(3)
    elect(cluster, 1)
    cluster.propose(b"before")
    cluster.crash(3)
    cluster.propose(b"during-1")
    cluster.propose(b"during-2")
    restarted = cluster.restart(3)
    assert restarted.term == cluster.node(1).term
    cluster.tick(3)
    assert cluster.applied_data(3) == [b"before", b"during-1", b"during-2"]


# ---------------------------------------------------------------------------- §5.6 timing


def test_5_6_heartbeats_keep_followers_from_campaigning():
    """Raft §5.2/§5.6: while a leader sends heartbeats within the election timeout, no follower
    starts an election."""
    cluster = plain_cluster(3)
    elect(cluster, 1)
    term = cluster.node(1).term
    cluster.tick(20 * ELECTION_TICK)
    for node_id in (1, 2, 3):
        node = cluster.node(node_id)
        assert node.term == term
        assert node.leader == 1
    assert cluster.node(1).role == Role.LEADER


def test_5_6_followers_elect_a_new_leader_after_the_leader_stops():
    """Raft §5.2/§5.6: when heartbeats stop, a follower times out and a new leader of a higher term
    is elected."""
    cluster = plain_cluster(3)
    elect(cluster, 1)
    term = cluster.node(1).term
    cluster.crash(1)
    leader = cluster.wait_for_leader()
    assert leader in (2, 3)
    assert cluster.node(leader).term > term


# ---------------------------------------------------------------------------- persist before send


def test_persist_before_send_vote_grant_ready_is_synced_with_the_vote():
    """Raft §5.5 / Figure 2: votedFor is updated on stable storage before responding, so the Ready
    carrying a vote grant has must_sync and a hard state holding that vote and term."""
    node = new_node(node_id=2)
    send(node, MT.REQUEST_VOTE, 1, term=3, index=0, log_term=0)
    rd = node.ready()
    grants = [m for _to, f in rd.messages + rd.persisted_messages for m in [raft.decode(f)] if m.type == MT.REQUEST_VOTE_RESPONSE]
    assert [m.reject for m in grants] == [False]
    assert rd.must_sync
    assert rd.hard_state is not None
    assert (rd.hard_state.term, rd.hard_state.vote) == (3, 1)


def test_persist_before_send_append_response_ready_carries_the_entries():
    """Raft Figure 2: a follower acknowledges entries only once they are stable: the Ready with the
    success response holds those entries and must be synced."""
    node = new_node(node_id=2)
    entries = [raft.Entry(1, 1, b"a"), raft.Entry(2, 1, b"b")]
    send(node, MT.APPEND_ENTRIES, 1, term=1, index=0, log_term=0, entries=entries)
    rd = node.ready()
    acks = [raft.decode(f) for _to, f in rd.messages + rd.persisted_messages]
    assert [(m.type, m.index) for m in acks] == [(MT.APPEND_ENTRIES_RESPONSE, 2)]
    assert rd.must_sync
    assert [(e.index, e.term) for e in rd.entries] == [(1, 1), (2, 1)]
    assert rd.hard_state is not None and rd.hard_state.term == 1


def test_persist_before_send_commit_only_change_needs_no_sync():
    """docs/design.md §3: a commit-index change alone does not need an fsync (it can be recovered)."""
    node = new_node(node_id=2)
    send(node, MT.APPEND_ENTRIES, 1, term=1, index=0, log_term=0, entries=[raft.Entry(1, 1, b"a")])
    flush(node)
    send(node, MT.HEARTBEAT, 1, term=1, commit=1)
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 1
    assert not rd.must_sync
    node.storage.persist(rd)
    node.advance(rd)


class PersistCheckingCluster(LocalCluster):
    """Runs the Ready loop and checks, for every message a node sends, that what it promises is
    already in the state persisted by the Ready that carries it."""

    violations: List[str]

    def process_ready(self, member: Member) -> bool:
        if not hasattr(self, "violations"):
            self.violations = []
        node = member.node
        if node is None or not node.has_ready():
            return False
        rd = node.ready()
        before = member.storage.hard_state()
        member.storage.persist(rd)
        after = member.storage.hard_state()
        for to, frame in rd.messages + rd.persisted_messages:
            m = raft.decode(frame)
            if m.type == MT.REQUEST_VOTE_RESPONSE and not m.reject:
                if (after.term, after.vote) != (m.term, to):
                    self.violations.append(f"{member.id} granted {to} at {m.term} with stored {after}")
                if (before.term, before.vote) != (after.term, after.vote) and not rd.must_sync:
                    self.violations.append(f"{member.id} vote grant in an unsynced Ready")
            if m.type == MT.REQUEST_VOTE and (after.term, after.vote) != (m.term, member.id):
                self.violations.append(f"{member.id} asked for votes before storing its own vote")
            if m.type == MT.APPEND_ENTRIES_RESPONSE and not m.reject and m.index > 0:
                stored = member.storage.last_index()
                if stored < m.index:
                    self.violations.append(f"{member.id} acked {m.index} with only {stored} stored")
                if rd.entries and not rd.must_sync:
                    self.violations.append(f"{member.id} acked entries in an unsynced Ready")
            self._send(member.id, to, frame)
        for entry in rd.committed_entries:
            if entry.kind == raft.EntryKind.CONF_CHANGE:
                node.apply_conf_change(entry)
            member.applied.append((entry.index, entry.term, entry.data))
        node.advance(rd)
        return True


def test_persist_before_send_holds_in_every_ready_of_a_cluster_run():
    """Raft Figure 2 / docs/design.md §2: across elections, replication and failover, every vote grant,
    vote request and append acknowledgement leaves in a Ready that persists what it promises."""
    cluster = PersistCheckingCluster(3, configure=lambda node_id: plain_config(seed=node_id))
    cluster.violations = []
    leader = cluster.wait_for_leader()
    for i in range(5):
        cluster.propose(b"p%d" % i)
    cluster.crash(leader)
    new_leader = cluster.wait_for_leader()
    cluster.propose(b"after")
    cluster.restart(leader)
    cluster.tick(5)
    assert new_leader != leader
    assert cluster.applied_data(leader)[-1] == b"after"
    assert cluster.violations == []
