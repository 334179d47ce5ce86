"""What the runtime needs to know about each protocol, in one table.

`consensus.Node` drives every core through the same methods (``tick``, ``step``, ``propose_many``,
``read_index``, ``ready``, ``advance``, ...). The few things that differ — how to build the core
and its storage, how membership changes are expressed — live here, so the runtime has no
per-protocol branches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Sequence

from consensus import paxos, raft
from consensus._core import ConfigError


@dataclass(frozen=True)
class CoreOptions:
    """Protocol settings shared by every core (ticks are logical; the runtime sets their length)."""

    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    seed: int = 0
    max_entry_bytes: int = 8 << 20


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    #: `(data_dir, fsync)` -> a durable storage that reopens what was persisted there.
    open_storage: Callable[[str, str], Any]
    #: `(members)` -> an in-memory storage for a member of a new cluster of `members`.
    memory_storage: Callable[[Sequence[int]], Any]
    #: `(id, voters, storage, applied, options)` -> the core node.
    make_core: Callable[[int, Sequence[int], Any, int, CoreOptions], Any]
    #: `(core, add_voters, remove_voters, add_learners, remove_learners)` -> proposes a membership
    #: change; returns the index whose application completes it.
    propose_membership: Callable[..., int]
    #: `(core, entry)` -> applies a committed membership entry; returns the configuration.
    apply_membership: Callable[[Any, Any], Any]
    #: `(core)` -> every member the node talks to (voters, learners, outgoing voters).
    members: Callable[[Any], Sequence[int]]
    conf_change_kind: Any
    snapshot: Callable[..., Any]
    conf_state: Callable[..., Any]
    #: Whether `propose_many` puts the whole batch at one index (Paxos: a slot holds a batch), so
    #: several commands are applied with the same index; otherwise one index per command (Raft).
    batch_in_one_index: bool = False
    #: Whether members can be non-voting learners. A Multi-Paxos acceptor takes part in every new
    #: slot at once, whatever it missed before (slots are independent), so a new node joins as an
    #: acceptor directly and learns the decided slots it lacks by catch-up.
    has_learners: bool = True


def _raft_core(node_id: int, voters: Sequence[int], storage: Any, applied: int, options: CoreOptions) -> Any:
    config = raft.Config(
        election_tick=options.election_ticks,
        heartbeat_tick=options.heartbeat_ticks,
        pre_vote=options.pre_vote,
        check_quorum=options.check_quorum,
        # The runtime answers writes on a follower itself (forward over HTTP or redirect), so the
        # core reports NotLeader instead of forwarding a proposal whose outcome nobody would await.
        disable_proposal_forwarding=True,
        max_entry_bytes=options.max_entry_bytes,
        seed=options.seed or node_id,
    )
    return raft.RaftNode(id=node_id, voters=list(voters), config=config, storage=storage, applied=applied)


def _raft_storage(data_dir: str, fsync: str) -> Any:
    return raft.FileStorage(os.fspath(data_dir), fsync=fsync)


def _raft_propose_membership(
    core: Any, add_voters: Sequence[int], remove_voters: Sequence[int], add_learners: Sequence[int], remove_learners: Sequence[int]
) -> int:
    change = raft.ConfChange(
        add_voters=list(add_voters),
        remove_voters=list(remove_voters),
        add_learners=list(add_learners),
        remove_learners=list(remove_learners),
    )
    return int(core.propose_conf_change(change))


def _raft_members(core: Any) -> Sequence[int]:
    conf = core.conf_state
    return sorted(set(conf.voters) | set(conf.learners) | set(conf.voters_outgoing))


RAFT = ProtocolSpec(
    name="raft",
    open_storage=_raft_storage,
    memory_storage=lambda members: raft.MemoryStorage(),
    make_core=_raft_core,
    propose_membership=_raft_propose_membership,
    apply_membership=lambda core, entry: core.apply_conf_change(entry),
    members=_raft_members,
    conf_change_kind=raft.EntryKind.CONF_CHANGE,
    snapshot=raft.Snapshot,
    conf_state=raft.ConfState,
)

def _paxos_core(node_id: int, voters: Sequence[int], storage: Any, applied: int, options: CoreOptions) -> Any:
    config = paxos.Config(
        election_tick=options.election_ticks,
        heartbeat_tick=options.heartbeat_ticks,
        check_quorum=options.check_quorum,
        disable_proposal_forwarding=True,
        max_entry_bytes=options.max_entry_bytes,
        seed=options.seed or node_id,
    )
    return paxos.PaxosNode(id=node_id, members=list(voters), config=config, storage=storage, applied=applied)


def _paxos_storage(data_dir: str, fsync: str) -> Any:
    return paxos.FileStorage(os.fspath(data_dir), fsync=fsync)


def _paxos_propose_membership(
    core: Any, add_voters: Sequence[int], remove_voters: Sequence[int], add_learners: Sequence[int], remove_learners: Sequence[int]
) -> int:
    if add_learners or remove_learners:
        err = ConfigError("learners: Multi-Paxos members are all acceptors; add or remove voters")
        err.field = "learners"
        raise err
    members = (set(core.members) | set(add_voters)) - set(remove_voters)
    return int(core.propose_reconfig(sorted(members)))


def _paxos_apply_membership(core: Any, entry: Any) -> Any:
    # The core installs the configuration itself, alpha slots later (the α-window); the caller
    # gets the member list it will install, in Raft's shape.
    return raft.ConfState(voters=list(entry.reconfig()[1]), learners=[], voters_outgoing=[])


PAXOS = ProtocolSpec(
    name="paxos",
    open_storage=_paxos_storage,
    memory_storage=lambda members: paxos.MemoryStorage(list(members)),
    make_core=_paxos_core,
    propose_membership=_paxos_propose_membership,
    apply_membership=_paxos_apply_membership,
    members=lambda core: list(core.members),
    conf_change_kind=paxos.EntryKind.CONF_CHANGE,
    snapshot=paxos.Snapshot,
    conf_state=lambda voters, learners, outgoing: list(voters),
    batch_in_one_index=True,
    has_learners=False,
)

PROTOCOLS: Dict[str, ProtocolSpec] = {"raft": RAFT, "paxos": PAXOS}

#: Named by the configuration surface; they plug in here as their cores land.
PLANNED = ("zab",)


def get(name: str) -> ProtocolSpec:
    spec = PROTOCOLS.get(name)
    if spec is not None:
        return spec
    if name in PLANNED:
        err = ConfigError(f"protocol: {name!r} is not available in this version (available: {sorted(PROTOCOLS)})")
    else:
        err = ConfigError(f"protocol: unknown protocol {name!r} (available: {sorted(PROTOCOLS)})")
    err.field = "protocol"
    raise err
