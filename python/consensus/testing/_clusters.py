"""Local clusters, for the demo, the tests and the benchmarks.

`LocalCluster`: several cores of one protocol in this process, wired by an in-memory network. It
runs the Ready loop of docs/design.md §2 for every node (persist, then send, then apply, then
advance) and lets a caller cut links, crash and restart nodes, and inspect what each node applied.

`ProcessCluster`: real node processes (`consensus serve`) on loopback: configuration files,
start, SIGKILL, restart, stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from consensus import raft
from consensus._core import Role
from consensus.config import toml_value

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


def free_ports(count: int) -> List[int]:
    """Ports the kernel just handed out (closed again; free unless someone races for them)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _toml_value(value: object) -> str:
    """A setting as TOML: numbers and booleans as they are, anything else (paths) as its text."""
    return toml_value(value if isinstance(value, (bool, int, float)) else str(value))


@dataclass
class ProcessNode:
    id: int
    peer: str
    client: str
    config_path: str
    data_dir: str
    log_path: str
    process: Optional[subprocess.Popen] = None
    log_file: Optional[IO[bytes]] = None
    #: Written to its file: "new" for the first members, "existing" for one added at runtime
    #: (what an empty data_dir means; docs/operations.md, "Data directories and initial_state").
    initial_state: str = "new"
    #: "https" when the cluster serves clients with [client_tls].
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.client}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ProcessCluster:
    """``size`` nodes of one protocol, each a `consensus serve` process with its own TOML file."""

    size: int = 3
    protocol: str = "raft"
    base_dir: Optional[str] = None
    settings: Dict[str, object] = field(default_factory=dict)
    tls: Optional[Dict[str, str]] = None
    nodes: Dict[int, ProcessNode] = field(default_factory=dict)
    cluster_id: str = "local"
    #: More tables for every node's file, e.g. {"client_tls": {...}, "auth": {...}}; as in `tls`,
    #: "{id}" in a value stands for the node's id.
    tables: Dict[str, Dict[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="consensus-cluster-")
            self.base_dir = self._tmp.name
        os.makedirs(self.base_dir, exist_ok=True)
        for node_id in range(1, self.size + 1):
            self._describe(node_id)
        for node_id in self.nodes:
            self.write_config(node_id)

    def _describe(self, node_id: int) -> ProcessNode:
        peer_port, client_port = free_ports(2)
        assert self.base_dir is not None
        node = ProcessNode(
            id=node_id,
            peer=f"127.0.0.1:{peer_port}",
            client=f"127.0.0.1:{client_port}",
            config_path=os.path.join(self.base_dir, f"node{node_id}.toml"),
            data_dir=os.path.join(self.base_dir, f"data{node_id}"),
            log_path=os.path.join(self.base_dir, f"node{node_id}.log"),
            scheme="https" if "client_tls" in self.tables else "http",
        )
        self.nodes[node_id] = node
        return node

    def write_config(self, node_id: int, members: Optional[Sequence[int]] = None) -> str:
        node = self.nodes[node_id]
        lines = [
            f"id = {node_id}",
            f"protocol = {_toml_value(self.protocol)}",
            f"data_dir = {_toml_value(node.data_dir)}",
            f"cluster_id = {_toml_value(self.cluster_id)}",
            f"initial_state = {_toml_value(node.initial_state)}",
        ]
        lines += [f"{k} = {_toml_value(v)}" for k, v in self.settings.items()]
        for member_id in members if members is not None else sorted(self.nodes):
            member = self.nodes[member_id]
            lines += ["", "[[members]]", f"id = {member_id}", f'peer = "{member.peer}"', f'client = "{member.client}"']
        if self.tls is not None:
            # "{id}" in a path stands for the node's id: a certificate per node.
            lines += ["", "[tls]"] + [f"{k} = {_toml_value(str(v).format(id=node_id))}" for k, v in self.tls.items()]
        for table, values in self.tables.items():
            lines += ["", f"[{table}]"]
            lines += [f"{k} = {_toml_value(v.format(id=node_id) if isinstance(v, str) else v)}" for k, v in values.items()]
        with open(node.config_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return node.config_path

    def add_node(self) -> ProcessNode:
        """Describes one more node (config lists every node, itself included, and says
        initial_state = "existing"); not started."""
        node = self._describe(max(self.nodes) + 1)
        node.initial_state = "existing"
        self.write_config(node.id)
        return node

    def wipe(self, node_id: int) -> None:
        """Removes the node's data directory (stop it first): a disk replaced, or an operator's mistake."""
        shutil.rmtree(self.nodes[node_id].data_dir, ignore_errors=True)

    @property
    def urls(self) -> List[str]:
        return [n.url for n in self.nodes.values()]

    def start(self, node_id: int, *, join: bool = False) -> ProcessNode:
        node = self.nodes[node_id]
        if node.alive:
            return node
        node.log_file = open(node.log_path, "ab")
        command = [sys.executable, "-m", "consensus", "serve", "--config", node.config_path]
        if join:
            command.append("--join")
        node.process = subprocess.Popen(command, stdout=node.log_file, stderr=subprocess.STDOUT)
        return node

    def start_all(self) -> None:
        for node_id in sorted(self.nodes):
            self.start(node_id)

    def kill(self, node_id: int) -> None:
        """SIGKILL: no shutdown, no flush; only what was fsynced survives."""
        node = self.nodes[node_id]
        if node.process is not None and node.alive:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()
        self._close_log(node)

    def stop(self, node_id: int, timeout: float = 10.0) -> Optional[int]:
        node = self.nodes[node_id]
        code = None
        if node.process is not None:
            if node.alive:
                node.process.send_signal(signal.SIGTERM)
                try:
                    node.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
            code = node.process.returncode
        self._close_log(node)
        return code

    def stop_all(self) -> None:
        for node_id in sorted(self.nodes):
            self.stop(node_id)

    def _close_log(self, node: ProcessNode) -> None:
        if node.log_file is not None:
            node.log_file.close()
            node.log_file = None

    def log_tail(self, node_id: int, lines: int = 30) -> str:
        try:
            with open(self.nodes[node_id].log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_exit(self, node_id: int, timeout: float) -> Optional[int]:
        node = self.nodes[node_id]
        if node.process is None:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                return node.process.returncode
            time.sleep(0.05)
        return None

    def cleanup(self) -> None:
        self.stop_all()
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()

    def __enter__(self) -> "ProcessCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


__all__ = [
    "STABILIZE_ROUNDS_MAX",
    "ClusterStuckError",
    "LocalCluster",
    "Member",
    "ProcessCluster",
    "ProcessNode",
    "Storage",
    "free_ports",
]
