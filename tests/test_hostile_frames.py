"""Well-formed but hostile peer frames at the bindings (issue 9, cases 1-4): each is refused with
a typed error (`ProtocolError`), never a panic, and leaves the node as it was. The frames are built
with `raft.Message(...).encode()` / `paxos.Message(...).encode()`, which accept any field value.
See docs/wire-format.md, "Validation at the door"."""

from __future__ import annotations

import pytest

import consensus
from consensus import paxos, raft

from support import drain

# docs/wire-format.md: the highest term (and ballot round) a node accepts or campaigns at.
TERM_MAX = 2**63 - 1
U64_MAX = 2**64 - 1

RaftType = raft.MessageType
PaxosType = paxos.MessageType


# ------------------------------------------------------------------------------------------ Raft


def raft_follower() -> raft.RaftNode:
    """Node 2 of {1, 2, 3}, following leader 1 at term 1 with entry 1 appended."""
    node = raft.RaftNode(id=2, voters=[1, 2, 3])
    append = raft.Message(
        type=RaftType.APPEND_ENTRIES, from_=1, to=2, term=1, index=0, log_term=0,
        entries=[raft.Entry(1, 1, b"first")],
    )
    node.step(append.encode())
    drain(node)
    assert (node.term, node.leader, node.last_index) == (1, 1, 1)
    return node


def raft_state(node: raft.RaftNode):
    return (node.term, node.vote, node.leader, node.commit_index, node.last_index, node.role,
            [(e.index, e.term) for e in node.log_entries()], node.has_ready())


def assert_raft_refused(node: raft.RaftNode, message: raft.Message, **step_kwargs) -> None:
    before = raft_state(node)
    with pytest.raises(consensus.ProtocolError):
        node.step(message.encode(), **step_kwargs)
    assert raft_state(node) == before


def test_case_1_raft_frame_with_term_0_or_to_another_node_or_from_0_or_itself_is_a_protocol_error():
    node = raft_follower()
    for kind in [RaftType.HEARTBEAT, RaftType.APPEND_ENTRIES, RaftType.REQUEST_VOTE, RaftType.TIMEOUT_NOW]:
        assert_raft_refused(node, raft.Message(type=kind, from_=1, to=2, term=0))
    assert_raft_refused(node, raft.Message(type=RaftType.HEARTBEAT, from_=1, to=3, term=1))
    assert_raft_refused(node, raft.Message(type=RaftType.HEARTBEAT, from_=0, to=2, term=1))
    assert_raft_refused(node, raft.Message(type=RaftType.HEARTBEAT, from_=2, to=2, term=1))


def test_case_1_raft_forwarded_proposal_without_a_term_is_still_taken_by_the_leader():
    leader = raft.RaftNode(id=1, voters=[1])
    leader.campaign()
    drain(leader)
    assert leader.role == consensus.Role.LEADER
    last = leader.last_index
    propose = raft.Message(type=RaftType.PROPOSE, from_=2, to=1, term=0, entries=[raft.Entry(0, 0, b"fwd")])
    leader.step(propose.encode())
    assert leader.last_index == last + 1


def test_raft_step_with_sender_refuses_a_frame_whose_from_is_not_the_connections_node():
    node = raft_follower()
    heartbeat = raft.Message(type=RaftType.HEARTBEAT, from_=1, to=2, term=1)
    assert_raft_refused(node, heartbeat, sender=3)
    before = raft_state(node)
    with pytest.raises(consensus.ProtocolError):
        node.step_many([heartbeat.encode()], sender=3)
    assert raft_state(node) == before
    node.step(heartbeat.encode(), sender=1)
    node.step_many([heartbeat.encode()], sender=1)


def test_case_2_raft_heartbeat_at_term_2_64_minus_1_is_refused_and_the_term_never_wraps():
    node = raft_follower()
    for term in [U64_MAX, TERM_MAX + 1]:
        assert_raft_refused(node, raft.Message(type=RaftType.HEARTBEAT, from_=1, to=2, term=term))
        assert_raft_refused(node, raft.Message(type=RaftType.REQUEST_VOTE, from_=3, to=2, term=term))
    assert node.term == 1


def test_case_2_raft_node_at_term_max_cannot_campaign_and_says_so():
    node = raft.RaftNode(id=2, voters=[1, 2, 3])
    node.step(raft.Message(type=RaftType.HEARTBEAT, from_=1, to=2, term=TERM_MAX).encode())
    drain(node)
    assert node.term == TERM_MAX
    with pytest.raises(consensus.ProtocolError):
        node.campaign()
    node.tick_many(100)
    drain(node)
    assert node.term == TERM_MAX
    assert node.role == consensus.Role.FOLLOWER


def append(index: int, log_term: int, term: int, entries) -> raft.Message:
    return raft.Message(
        type=RaftType.APPEND_ENTRIES, from_=1, to=2, term=term, index=index, log_term=log_term,
        entries=[raft.Entry(i, t, b"x") for i, t in entries],
    )


def test_case_3_raft_append_not_starting_at_index_plus_one_is_a_protocol_error_not_a_panic():
    node = raft_follower()
    # Before validation, this frame panicked in the core (PanicException, a BaseException).
    assert_raft_refused(node, append(1, 1, 1, [(1, 1)]))
    assert_raft_refused(node, append(1, 1, 1, [(3, 1)]))
    assert_raft_refused(node, append(1, 1, 1, [(2, 1), (4, 1)]))
    assert_raft_refused(node, append(1, 1, 2, [(2, 2), (3, 1)]))
    assert_raft_refused(node, append(1, 1, 1, [(2, 2)]))
    node.step(append(1, 1, 1, [(2, 1)]).encode())
    assert node.last_index == 2


def test_case_4_raft_append_carrying_a_conf_change_that_does_not_decode_is_refused():
    node = raft_follower()
    garbage = raft.Entry(2, 1, b"\x09garbage", raft.EntryKind.CONF_CHANGE)
    message = raft.Message(type=RaftType.APPEND_ENTRIES, from_=1, to=2, term=1, index=1, log_term=1, entries=[garbage])
    assert_raft_refused(node, message)


def test_case_4_raft_apply_conf_change_with_a_payload_that_does_not_decode_is_a_config_error_and_changes_nothing():
    node = raft.RaftNode(id=1, voters=[1, 2, 3])
    before = node.conf_state
    garbage = raft.Entry(5, 1, b"\x01\x02garbage", raft.EntryKind.CONF_CHANGE)
    with pytest.raises(consensus.ConfigError) as raised:
        node.apply_conf_change(garbage)
    assert raised.value.field == "conf_change"
    assert node.conf_state == before
    assert node.storage.conf_state() == before


# ----------------------------------------------------------------------------------- Multi-Paxos


def paxos_follower() -> paxos.PaxosNode:
    """Node 2 of {1, 2, 3}, following leader 1 at ballot 1.1 with slot 1 accepted."""
    node = paxos.PaxosNode(id=2, members=[1, 2, 3])
    ballot = paxos.Ballot(1, 1)
    accept = paxos.Message(PaxosType.ACCEPT, 1, 2, ballot, slots=[(1, ballot, 1, 1, [b"first"])])
    node.step(accept.encode())
    drain(node)
    assert (node.ballot, node.leader, node.last_index) == (ballot, 1, 1)
    return node


def paxos_state(node: paxos.PaxosNode):
    return (node.ballot, node.leader, node.commit_index, node.last_index, node.role, node.has_ready())


def assert_paxos_refused(node: paxos.PaxosNode, message: paxos.Message, **step_kwargs) -> None:
    before = paxos_state(node)
    with pytest.raises(consensus.ProtocolError):
        node.step(message.encode(), **step_kwargs)
    assert paxos_state(node) == before


def test_case_1_paxos_frame_with_round_0_or_to_another_node_or_from_0_or_itself_is_a_protocol_error():
    node = paxos_follower()
    ballot = paxos.Ballot(1, 1)
    assert_paxos_refused(node, paxos.Message(PaxosType.COMMIT, 1, 2, paxos.Ballot(0, 1)))
    assert_paxos_refused(node, paxos.Message(PaxosType.COMMIT, 1, 3, ballot))
    assert_paxos_refused(node, paxos.Message(PaxosType.COMMIT, 0, 2, ballot))
    assert_paxos_refused(node, paxos.Message(PaxosType.COMMIT, 2, 2, ballot))


def test_paxos_step_with_sender_refuses_a_frame_whose_from_is_not_the_connections_node():
    node = paxos_follower()
    commit = paxos.Message(PaxosType.COMMIT, 1, 2, paxos.Ballot(1, 1))
    assert_paxos_refused(node, commit, sender=3)
    with pytest.raises(consensus.ProtocolError):
        node.step_many([commit.encode()], sender=3)
    node.step(commit.encode(), sender=1)


def test_case_2_paxos_prepare_at_round_2_64_minus_1_is_refused_and_the_promise_never_goes_down():
    node = paxos_follower()
    for round_ in [U64_MAX, TERM_MAX + 1]:
        assert_paxos_refused(node, paxos.Message(PaxosType.PREPARE, 3, 2, paxos.Ballot(round_, 3), index=1))
        assert_paxos_refused(node, paxos.Message(PaxosType.NACK, 3, 2, paxos.Ballot(round_, 3)))


def test_case_2_paxos_acceptor_at_round_term_max_cannot_campaign_and_keeps_its_promise():
    node = paxos_follower()
    top = paxos.Ballot(TERM_MAX, 3)
    node.step(paxos.Message(PaxosType.PREPARE, 3, 2, top, index=1).encode())
    drain(node)
    assert node.ballot == top
    with pytest.raises(consensus.ProtocolError):
        node.campaign()
    node.tick_many(100)
    drain(node)
    assert node.ballot == top


def test_case_3_paxos_accept_with_a_gap_or_out_of_order_slots_is_a_protocol_error():
    node = paxos_follower()
    b = paxos.Ballot(1, 1)
    for slots in [[2, 4], [3, 2], [0, 1]]:
        message = paxos.Message(PaxosType.ACCEPT, 1, 2, b, slots=[(s, b, 1, 1, [b"x"]) for s in slots])
        assert_paxos_refused(node, message)


def test_case_4_paxos_membership_value_that_does_not_decode_is_refused():
    node = paxos_follower()
    b = paxos.Ballot(1, 1)
    message = paxos.Message(PaxosType.ACCEPT, 1, 2, b, slots=[(2, b, 2, 1, [b"junk"])])
    assert_paxos_refused(node, message)
