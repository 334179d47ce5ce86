"""What the runtime needs to know about each protocol, in one table: the registry.

`consensus.Node` drives every core through the same methods (``tick``, ``step``, ``propose_many``,
``read_index``, ``ready``, ``advance``, ...), written down here as `CoreNode` and `CoreReady`. The
few things that differ — how to build the core and its storage, how membership changes are
expressed, the id the peer handshake carries — live in each protocol's `ProtocolSpec`, so the
runtime has no per-protocol branches. A new protocol is one more entry in `PROTOCOLS`; the
configuration (`consensus.config`) and the transports take the list from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union

from consensus import defaults, paxos, raft
from consensus._core import PROTOCOLS as CORE_PROTOCOLS
from consensus._core import RaftReadState, Role
from consensus.errors import config_error


#: name -> protocol id on the wire and in the peer handshake, as the compiled core states them
#: (`consensus_core::ProtocolId`, the one place); each spec below takes its id from here.
WIRE_IDS: Dict[str, int] = dict(CORE_PROTOCOLS)


class CoreEntry(Protocol):
    """A committed entry (Raft: one command at an index; Paxos: a slot's value)."""

    @property
    def index(self) -> int: ...
    @property
    def term(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def kind(self) -> raft.EntryKind: ...


class CoreHardState(Protocol):
    @property
    def term(self) -> int: ...
    @property
    def vote(self) -> int: ...


class CoreSnapshot(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def data(self) -> bytes: ...


#: The answer to a read-index request: the context it was asked with and the index to wait for.
CoreReadState = RaftReadState


class CoreReady(Protocol):
    """One batch of work from a core (docs/design.md §2): send `messages`, persist, send
    `persisted_messages`, apply, then advance."""

    @property
    def messages(self) -> List[Tuple[int, bytes]]: ...
    @property
    def persisted_messages(self) -> List[Tuple[int, bytes]]: ...
    @property
    def applied_through(self) -> int: ...
    @property
    def entries(self) -> Sequence[object]: ...
    @property
    def committed_entries(self) -> Sequence[CoreEntry]: ...
    @property
    def hard_state(self) -> Optional[CoreHardState]: ...
    @property
    def snapshot(self) -> Optional[CoreSnapshot]: ...
    @property
    def read_states(self) -> List[CoreReadState]: ...
    @property
    def must_sync(self) -> bool: ...
    @property
    def role(self) -> Optional[Role]: ...
    @property
    def leader(self) -> int: ...


class CoreNode(Protocol):
    """The sans-IO core as the runtime drives it (`raft.RaftNode`, `paxos.PaxosNode`).

    `advance` takes back the very Ready that `ready` returned; each core's binding accepts only its
    own Ready type, which a Protocol cannot say without a type parameter per protocol, so its
    parameter is `Any` (as is `persist`'s in `CoreStorage`)."""

    @property
    def id(self) -> int: ...
    @property
    def role(self) -> Role: ...
    @property
    def term(self) -> int: ...
    @property
    def leader(self) -> int: ...
    @property
    def commit_index(self) -> int: ...
    def tick(self) -> None: ...
    def step(self, frame: bytes, *, sender: Optional[int] = None) -> None: ...
    def propose_many(self, batch: Sequence[bytes]) -> int: ...
    def read_index(self, ctx: bytes) -> None: ...
    def has_ready(self) -> bool: ...
    def ready(self) -> CoreReady: ...
    def advance(self, rd: Any) -> None: ...
    def status(self) -> Dict[str, Any]: ...
    def transfer_leader(self, to: int) -> None: ...
    def campaign(self) -> None: ...
    def report_unreachable(self, to: int) -> None: ...


class CoreStorage(Protocol):
    """A core's storage as the runtime uses it (`persist` takes the Ready of its own protocol)."""

    def persist(self, rd: Any) -> None: ...
    def snapshot(self) -> CoreSnapshot: ...
    def hard_state(self) -> CoreHardState: ...
    def compact(self, index: int, data: Optional[bytes] = None) -> None: ...
    def last_index(self) -> int: ...


class DurableStorage(CoreStorage, Protocol):
    """A storage on disk (`ProtocolSpec.open_storage`): it also restores a backup, syncs, closes."""

    @property
    def fsync(self) -> str: ...
    def apply_snapshot(self, snapshot: Any) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class MemberSet:
    """The configuration a membership change put in force, the same shape for every protocol
    (a Multi-Paxos configuration is all voters)."""

    voters: List[int]
    learners: List[int] = field(default_factory=list)
    #: The outgoing voters while a Raft joint configuration is in force.
    voters_outgoing: List[int] = field(default_factory=list)


@dataclass(frozen=True)
class CoreOptions:
    """Protocol settings shared by every core (ticks are logical; the runtime sets their length)."""

    election_ticks: int = defaults.ELECTION_TICKS
    heartbeat_ticks: int = defaults.HEARTBEAT_TICKS
    pre_vote: bool = True
    check_quorum: bool = True
    seed: int = 0
    max_entry_bytes: int = defaults.MAX_ENTRY_BYTES


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    #: The id the peer handshake carries (docs/wire-format.md §9): both ends must run the same protocol.
    protocol_id: int
    #: `(data_dir, fsync)` -> a durable storage that reopens what was persisted there.
    open_storage: Callable[[str, str], DurableStorage]
    #: `(members)` -> an in-memory storage for a member of a new cluster of `members`.
    memory_storage: Callable[[Sequence[int]], CoreStorage]
    #: `(id, voters, storage, applied, options)` -> the core node.
    make_core: Callable[[int, Sequence[int], CoreStorage, int, CoreOptions], CoreNode]
    #: `(core, add_voters, remove_voters, add_learners, remove_learners)` -> proposes a membership
    #: change; returns the index whose application completes it.
    propose_membership: Callable[[CoreNode, Sequence[int], Sequence[int], Sequence[int], Sequence[int]], int]
    #: `(core, entry)` -> applies a committed membership entry; returns the configuration.
    apply_membership: Callable[[CoreNode, CoreEntry], MemberSet]
    #: `(core)` -> every member the node talks to (voters, learners, outgoing voters).
    members: Callable[[CoreNode], Sequence[int]]
    #: The kind of a committed entry that changes the membership.
    conf_change_kind: raft.EntryKind
    #: `(index, term, ...)` -> a snapshot object of this protocol (backups, tests).
    snapshot: Callable[..., object]
    #: `(voters, learners, outgoing)` -> the configuration a membership change reports.
    conf_state: Callable[..., object]
    #: Whether `propose_many` puts the whole batch at one index (Paxos: a slot holds a batch), so
    #: several commands are applied with the same index; otherwise one index per command (Raft).
    batch_in_one_index: bool = False
    #: Whether members can be non-voting learners. A Multi-Paxos acceptor takes part in every new
    #: slot at once, whatever it missed before (slots are independent), so a new node joins as an
    #: acceptor directly and learns the decided slots it lacks by catch-up.
    has_learners: bool = True


def _expect(value: object, kind: Any, what: str) -> Any:
    """`value`, checked to be of this protocol's `kind`: each spec's functions receive the runtime's
    protocol-neutral types back, and hand them to bindings that accept only their own."""
    if not isinstance(value, kind):
        raise TypeError(f"{what}: got {type(value).__name__}")
    return value


def _raft_node(core: CoreNode) -> raft.RaftNode:
    node: raft.RaftNode = _expect(core, raft.RaftNode, "a Raft core")
    return node


def _raft_core(node_id: int, voters: Sequence[int], storage: CoreStorage, applied: int, options: CoreOptions) -> CoreNode:
    own: Union[raft.MemoryStorage, raft.FileStorage] = _expect(
        storage, (raft.MemoryStorage, raft.FileStorage), "a Raft core needs raft.MemoryStorage or raft.FileStorage"
    )
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
    return raft.RaftNode(id=node_id, voters=list(voters), config=config, storage=own, applied=applied)


def _raft_storage(data_dir: str, fsync: str) -> DurableStorage:
    return raft.FileStorage(os.fspath(data_dir), fsync=fsync)


def _raft_propose_membership(
    core: CoreNode, add_voters: Sequence[int], remove_voters: Sequence[int], add_learners: Sequence[int], remove_learners: Sequence[int]
) -> int:
    change = raft.ConfChange(
        add_voters=list(add_voters),
        remove_voters=list(remove_voters),
        add_learners=list(add_learners),
        remove_learners=list(remove_learners),
    )
    return int(_raft_node(core).propose_conf_change(change))


def _raft_members(core: CoreNode) -> Sequence[int]:
    conf = _raft_node(core).conf_state
    return sorted(set(conf.voters) | set(conf.learners) | set(conf.voters_outgoing))


def _raft_apply_membership(core: CoreNode, entry: CoreEntry) -> MemberSet:
    conf = _raft_node(core).apply_conf_change(_expect(entry, raft.Entry, "a Raft entry"))
    return MemberSet(list(conf.voters), list(conf.learners), list(conf.voters_outgoing))


RAFT = ProtocolSpec(
    name="raft",
    protocol_id=WIRE_IDS["raft"],
    open_storage=_raft_storage,
    memory_storage=lambda members: raft.MemoryStorage(),
    make_core=_raft_core,
    propose_membership=_raft_propose_membership,
    apply_membership=_raft_apply_membership,
    members=_raft_members,
    conf_change_kind=raft.EntryKind.CONF_CHANGE,
    snapshot=raft.Snapshot,
    conf_state=raft.ConfState,
)

def _paxos_node(core: CoreNode) -> paxos.PaxosNode:
    node: paxos.PaxosNode = _expect(core, paxos.PaxosNode, "a Paxos core")
    return node


def _paxos_core(node_id: int, voters: Sequence[int], storage: CoreStorage, applied: int, options: CoreOptions) -> CoreNode:
    own: Union[paxos.MemoryStorage, paxos.FileStorage] = _expect(
        storage, (paxos.MemoryStorage, paxos.FileStorage), "a Paxos core needs paxos.MemoryStorage or paxos.FileStorage"
    )
    config = paxos.Config(
        election_tick=options.election_ticks,
        heartbeat_tick=options.heartbeat_ticks,
        check_quorum=options.check_quorum,
        disable_proposal_forwarding=True,
        max_entry_bytes=options.max_entry_bytes,
        seed=options.seed or node_id,
    )
    return paxos.PaxosNode(id=node_id, members=list(voters), config=config, storage=own, applied=applied)


def _paxos_storage(data_dir: str, fsync: str) -> DurableStorage:
    return paxos.FileStorage(os.fspath(data_dir), fsync=fsync)


def _paxos_propose_membership(
    core: CoreNode, add_voters: Sequence[int], remove_voters: Sequence[int], add_learners: Sequence[int], remove_learners: Sequence[int]
) -> int:
    if add_learners or remove_learners:
        raise config_error("learners", "Multi-Paxos members are all acceptors; add or remove voters")
    node = _paxos_node(core)
    members = (set(node.members) | set(add_voters)) - set(remove_voters)
    return int(node.propose_reconfig(sorted(members)))


def _paxos_apply_membership(core: CoreNode, entry: CoreEntry) -> MemberSet:
    # The core installs the configuration itself, alpha slots later (the α-window); the caller
    # gets the member list it will install.
    reconfig: paxos.Entry = _expect(entry, paxos.Entry, "a Paxos entry")
    return MemberSet(voters=list(reconfig.reconfig()[1]))


PAXOS = ProtocolSpec(
    name="paxos",
    protocol_id=WIRE_IDS["paxos"],
    open_storage=_paxos_storage,
    memory_storage=lambda members: paxos.MemoryStorage(list(members)),
    make_core=_paxos_core,
    propose_membership=_paxos_propose_membership,
    apply_membership=_paxos_apply_membership,
    members=lambda core: list(_paxos_node(core).members),
    conf_change_kind=paxos.EntryKind.CONF_CHANGE,
    snapshot=paxos.Snapshot,
    conf_state=lambda voters, learners, outgoing: list(voters),
    batch_in_one_index=True,
    has_learners=False,
)

PROTOCOLS: Dict[str, ProtocolSpec] = {spec.name: spec for spec in (RAFT, PAXOS)}

#: Named by the configuration surface, with the handshake id reserved for them; refused until their
#: cores land (then they move into `PROTOCOLS`).
PLANNED: Dict[str, int] = {"zab": 3}


def protocol_ids() -> Dict[str, int]:
    """name -> the handshake's protocol id, for every protocol this version runs."""
    return {name: spec.protocol_id for name, spec in PROTOCOLS.items()}


def get(name: str) -> ProtocolSpec:
    spec = PROTOCOLS.get(name)
    if spec is not None:
        return spec
    if name in PLANNED:
        raise config_error("protocol", f"{name!r} is not available in this version (available: {sorted(PROTOCOLS)})")
    raise config_error("protocol", f"unknown protocol {name!r} (available: {sorted(PROTOCOLS)})")


__all__ = [
    "MemberSet",
    "PAXOS",
    "PLANNED",
    "PROTOCOLS",
    "RAFT",
    "WIRE_IDS",
    "CoreEntry",
    "CoreHardState",
    "CoreNode",
    "CoreOptions",
    "CoreReadState",
    "CoreReady",
    "CoreSnapshot",
    "CoreStorage",
    "DurableStorage",
    "ProtocolSpec",
    "get",
    "protocol_ids",
]
