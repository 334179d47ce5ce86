"""An in-process cluster: several nodes of one protocol wired by an in-memory network.

It runs the Ready loop of docs/design.md §2 for every node (persist, then send, then apply, then
advance) and lets a caller cut links, crash and restart nodes, and inspect what each node
applied. The demo, the tests and the Python benchmarks drive clusters through it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple, Union

from consensus import raft
from consensus._core import Role

#: Upper bound on delivery rounds in one `stabilize()`: a cluster that keeps talking longer has a
#: livelock, which is a bug worth an exception rather than a hang.
STABILIZE_ROUNDS_MAX = 10_000

#: What a member persists into.
Storage = Union[raft.MemoryStorage, raft.FileStorage]


class ClusterStuckError(RuntimeError):
    """`stabilize()` or `wait_for` ran out of rounds."""


@dataclass
class Member:
    """One node of the cluster with what survives a crash (its storage) and what it applied."""

    id: int
    storage: Storage
    node: Optional[raft.RaftNode]
    applied: List[Tuple[int, int, bytes]] = field(default_factory=list)
    read_states: List[raft.ReadState] = field(default_factory=list)
    #: Every Ready this member persisted, in order (hard state, entry count), for tests that
    #: check persist-before-send.
    persisted_log: List[Tuple[Optional[raft.HardState], int]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.node is not None


class LocalCluster:
    """N Raft nodes connected by an in-memory network that delivers frames in order."""

    def __init__(
        self,
        size: int = 3,
        *,
        config: Optional[raft.Config] = None,
        learners: Iterable[int] = (),
        configure: Optional[Callable[[int], raft.Config]] = None,
        storage_factory: Optional[Callable[[int], Storage]] = None,
    ) -> None:
        self.voters = list(range(1, size + 1))
        self.learners = list(learners)
        self._config_for = configure or (lambda node_id: config or raft.Config(seed=node_id))
        #: Builds each member's storage (default: a fresh `MemoryStorage`).
        self._storage_for: Callable[[int], Storage] = storage_factory or (lambda _node_id: raft.MemoryStorage())
        self.members: Dict[int, Member] = {}
        self.inbox: Deque[Tuple[int, int, bytes]] = deque()
        #: Directed links that drop everything: (from, to).
        self.cut: Set[Tuple[int, int]] = set()
        self.frames_sent = 0
        for node_id in self.voters + self.learners:
            self.add_member(node_id)

    # ------------------------------------------------------------------ membership

    def add_member(self, node_id: int, *, voters: Optional[List[int]] = None) -> Member:
        storage = self._storage_for(node_id)
        node = raft.RaftNode(
            id=node_id,
            voters=voters if voters is not None else self.voters,
            learners=[] if voters is not None else self.learners,
            config=self._config_for(node_id),
            storage=storage,
        )
        member = Member(node_id, storage, node)
        self.members[node_id] = member
        return member

    def node(self, node_id: int) -> raft.RaftNode:
        node = self.members[node_id].node
        if node is None:
            raise RuntimeError(f"node {node_id} is down")
        return node

    def crash(self, node_id: int) -> None:
        """Drops the node and everything it had not persisted; its storage survives."""
        self.members[node_id].node = None
        self.inbox = deque(m for m in self.inbox if m[1] != node_id)

    def restart(self, node_id: int) -> raft.RaftNode:
        """Rebuilds the node from its storage; the application restores from the snapshot and
        re-applies the committed entries above it."""
        member = self.members[node_id]
        member.storage = self._reopen(member.storage)
        snapshot = member.storage.snapshot()
        member.applied = [a for a in member.applied if a[0] <= snapshot.index]
        member.node = raft.RaftNode(
            id=node_id,
            voters=self.voters,
            config=self._config_for(node_id),
            storage=member.storage,
            applied=snapshot.index,
        )
        return member.node

    @staticmethod
    def _reopen(storage: Storage) -> Storage:
        """What a restarted process finds: a `FileStorage` is closed and read back from disk; a
        `MemoryStorage` is kept as it is (it stands for a disk that never loses anything)."""
        if isinstance(storage, raft.FileStorage):
            return storage.reopen()
        return storage

    def close(self) -> None:
        """Closes every member's `FileStorage` (a no-op for in-memory storage)."""
        for member in self.members.values():
            if isinstance(member.storage, raft.FileStorage):
                member.storage.close()

    # ------------------------------------------------------------------ network

    def isolate(self, node_id: int) -> None:
        for other in self.members:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def heal(self) -> None:
        self.cut.clear()

    def _send(self, sender: int, to: int, frame: bytes) -> None:
        self.frames_sent += 1
        if (sender, to) in self.cut or to not in self.members or not self.members[to].alive:
            return
        self.inbox.append((sender, to, frame))

    # ------------------------------------------------------------------ Ready loop

    def process_ready(self, member: Member) -> bool:
        """Runs one Ready cycle for a member. Returns whether there was anything to do."""
        node = member.node
        if node is None or not node.has_ready():
            return False
        rd = node.ready()
        # 1. Send what may leave before the disk write (a leader's appends).
        for to, frame in rd.messages:
            self._send(member.id, to, frame)
        # 2. Persist (the in-memory storage is "durable" for this cluster).
        member.storage.persist(rd)
        member.persisted_log.append((rd.hard_state, len(rd.entries)))
        # 3. Send what waited for the disk.
        for to, frame in rd.persisted_messages:
            self._send(member.id, to, frame)
        # 4. Apply, in order.
        snapshot = rd.snapshot
        if snapshot is not None:
            member.applied = [(snapshot.index, snapshot.term, b"<snapshot>")]
        for entry in rd.committed_entries:
            if entry.kind == raft.EntryKind.CONF_CHANGE:
                node.apply_conf_change(entry)
            member.applied.append((entry.index, entry.term, entry.data))
        member.read_states.extend(rd.read_states)
        # 5. Advance.
        node.advance(rd)
        return True

    def deliver_one(self) -> bool:
        if not self.inbox:
            return False
        _sender, to, frame = self.inbox.popleft()
        member = self.members.get(to)
        if member is not None and member.node is not None:
            member.node.step(frame)
        return True

    def stabilize(self, rounds_max: int = STABILIZE_ROUNDS_MAX) -> None:
        """Runs Ready loops and delivers messages until nothing is left to do."""
        for _ in range(rounds_max):
            progressed = False
            for member in self.members.values():
                progressed |= self.process_ready(member)
            while self.deliver_one():
                progressed = True
            if not progressed:
                return
        raise ClusterStuckError(f"cluster still busy after {rounds_max} rounds")

    def tick(self, times: int = 1) -> None:
        """Ticks every live node `times` times, stabilizing after each tick."""
        for _ in range(times):
            for member in self.members.values():
                if member.node is not None:
                    member.node.tick()
                    if isinstance(member.storage, raft.FileStorage):
                        # The runtime's tick is what bounds the `batch` fsync window.
                        member.storage.sync()
            self.stabilize()

    # ------------------------------------------------------------------ conveniences

    def leader(self) -> Optional[int]:
        """The id of a live leader of the highest term, if any."""
        best: Optional[Tuple[int, int]] = None
        for member in self.members.values():
            node = member.node
            if node is not None and node.role == Role.LEADER:
                if best is None or node.term > best[0]:
                    best = (node.term, member.id)
        return None if best is None else best[1]

    def elect(self, node_id: int) -> None:
        """Makes `node_id` campaign and stabilizes; raises if it did not win."""
        self.node(node_id).campaign()
        self.stabilize()
        if self.leader() != node_id:
            raise ClusterStuckError(f"node {node_id} did not become leader")

    def wait_for_leader(self, ticks_max: int = 500) -> int:
        for _ in range(ticks_max):
            leader = self.leader()
            if leader is not None and all(
                m.node is None or m.node.leader == leader for m in self.members.values() if (m.id, leader) not in self.cut
            ):
                return leader
            self.tick()
        raise ClusterStuckError(f"no leader after {ticks_max} ticks")

    def propose(self, data: bytes, via: Optional[int] = None) -> int:
        node_id = via if via is not None else self.leader()
        if node_id is None:
            raise ClusterStuckError("no leader to propose to")
        index = self.node(node_id).propose(data)
        self.stabilize()
        return index

    def applied_data(self, node_id: int) -> List[bytes]:
        """The application payloads a member applied, in order (empty entries skipped)."""
        return [data for (_i, _t, data) in self.members[node_id].applied if data]
