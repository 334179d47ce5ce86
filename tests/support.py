"""Helpers shared by the test modules (imported as `support`; pytest puts tests/ on the path).

Waits are bounded only so that a bug fails its test instead of hanging it: they assert nothing
about time.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

from consensus import paxos, protocols, raft
from consensus.runtime import MemberAddress, Node, NodeOptions
from consensus.protocols import ProtocolSpec
from consensus.transport import MemoryNetwork

#: How long one test's event loop may run before the test fails as hung.
RUN_BOUND_SECONDS = 120.0


def run(test: Union[Awaitable[Any], Callable[[], Awaitable[Any]]], bound: float = RUN_BOUND_SECONDS) -> Any:
    """Runs a coroutine (or a function returning one) on a fresh event loop, bounded."""
    coroutine = test if inspect.isawaitable(test) else test()
    return asyncio.run(asyncio.wait_for(coroutine, bound))


async def eventually(check: Callable[[], bool], what: str = "the condition", timeout: float = 30.0) -> None:
    """Returns once `check()` holds; fails the test naming `what` if it does not within `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


def event_loop_factories() -> List[Any]:
    """pytest params of the event loops the runtime supports: the stdlib's and uvloop's."""
    import pytest

    factories: List[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        factories.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip(reason="uvloop not installed")))
    else:
        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


def run_on(new_loop: Callable[[], asyncio.AbstractEventLoop], coroutine: Awaitable[Any], bound: float = RUN_BOUND_SECONDS) -> Any:
    """Runs `coroutine` on a loop from `new_loop` (one of `event_loop_factories`), bounded."""
    loop = new_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coroutine, bound))
    finally:
        loop.close()


class Journal:
    """A state machine that records every command and answers with its index."""

    def __init__(self) -> None:
        self.commands: List[bytes] = []

    def apply(self, index: int, command: bytes) -> Any:
        self.commands.append(command)
        return {"index": index, "count": len(self.commands)}

    def snapshot(self) -> bytes:
        return b"\n".join(self.commands)

    def restore(self, data: bytes) -> None:
        self.commands = data.split(b"\n") if data else []


def frame(sender: int, to: int, seq: int) -> bytes:
    """A real Raft frame whose `commit` field carries a sequence number (for transport tests)."""
    return raft.Message(type=raft.MessageType.HEARTBEAT, from_=sender, to=to, term=1, commit=seq).encode()


def seq_of(data: bytes) -> int:
    return raft.decode(data).commit


class Inbox:
    """A transport's deliver() callback that decodes like a node would and records (peer, seq)."""

    def __init__(self) -> None:
        self.received: List[Tuple[int, int]] = []

    def __call__(self, peer: int, data: bytes) -> None:
        self.received.append((peer, seq_of(data)))  # raft.decode raises DecodeError on garbage

    def from_peer(self, peer: int) -> List[int]:
        return [seq for sender, seq in self.received if sender == peer]


# ----------------------------------------------------------------- in-process clusters of consensus.Node

#: Runtime options of the in-process clusters: fast ticks, so elections take milliseconds.
FAST = NodeOptions(tick_interval=0.002, election_ticks=10, heartbeat_ticks=1, request_timeout=5.0)


def open_file_storage(protocol: ProtocolSpec, path: Any, fsync: str = "always", **settings: Any) -> Any:
    """The protocol's durable storage at `path`. `settings` (e.g. a small `segment_bytes`, so a
    test crosses WAL segments) go to the same storage class, which the spec does not pass on."""
    storage = protocol.open_storage(os.fspath(path), fsync)
    if not settings:
        return storage
    storage.close()
    return type(storage)(os.fspath(path), fsync=fsync, **settings)


class Cluster:
    """N `consensus.Node`s of one protocol on the in-memory transport, each with its own storage
    (kept across a restart: `make(i)` builds node `i` again on the storage it had)."""

    def __init__(
        self,
        size: int = 3,
        options: NodeOptions = FAST,
        storages: Optional[Dict[int, Any]] = None,
        state_machine: Callable[[], Any] = Journal,
        protocol: ProtocolSpec = protocols.RAFT,
    ) -> None:
        self.protocol = protocol
        self.state_machine = state_machine
        self.net = MemoryNetwork()
        self.options = options
        self.ids = list(range(1, size + 1))
        self.nodes: Dict[int, Node] = {}
        self.storages: Dict[int, Any] = storages or {}
        for i in self.ids:
            self.nodes[i] = self.make(i)

    def make(self, i: int, *, join: bool = False, members: Optional[List[int]] = None) -> Node:
        members = members or self.ids
        if i not in self.storages:
            self.storages[i] = self.protocol.memory_storage(members)
        return Node(
            i,
            members,
            self.state_machine(),
            self.net.transport(i),
            protocol=self.protocol.name,
            storage=self.storages[i],
            options=self.options,
            addresses={m: MemberAddress(f"mem:{m}", f"mem:{m}") for m in members},
            join=join,
        )

    async def start(self) -> None:
        for node in self.nodes.values():
            await node.start()

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.stop()

    async def leader(self, timeout: float = 10.0) -> Node:
        """The node that leads (among those still running), once there is one."""
        running = lambda: [n for n in self.nodes.values() if n.is_leader and not n._stopped]  # noqa: E731
        await eventually(lambda: bool(running()), "a leader", timeout)
        return running()[0]

    def others(self, node: Node) -> List[Node]:
        return [n for n in self.nodes.values() if n is not node]


def run_cluster(cluster: Cluster, body: Callable[[Cluster, Node, Node], Awaitable[None]]) -> None:
    """Starts `cluster`, runs `body(cluster, leader, a follower)` once it elected, then stops it."""

    async def test() -> None:
        await cluster.start()
        try:
            leader = await cluster.leader()
            await body(cluster, leader, cluster.others(leader)[0])
        finally:
            await cluster.stop()

    run(test)


def with_leader_and_follower(body: Callable[[Cluster, Node, Node], Awaitable[None]], **cluster_args: Any) -> None:
    """Runs `body(cluster, leader, follower)` on a started 3-node in-process cluster."""
    run_cluster(Cluster(3, **cluster_args), body)


# ------------------------------------------------------------------ peer frames, per protocol

class PeerFrames:
    """What runtime tests need to know about one protocol's peer frames:

    - `keepalive(sender, to, term)`: the leader's keep-alive (Raft: a heartbeat; Multi-Paxos: a
      commit notice) at `term` (Paxos: the ballot round). A term above the wire format's TERM_MAX
      makes a well-formed frame every core refuses at the door.
    - `promise_kept(frame, to, storage)`: for a frame that promises something about its sender's
      disk (docs/design.md §2, the persist barrier), `(kind, whether the sender's storage already
      holds it)`, kind being "ack" (entries or slots accepted) or "vote" (a vote or a promise);
      None for any other frame."""

    def __init__(
        self,
        keepalive: Callable[[int, int, int], bytes],
        promise_kept: Callable[[bytes, int, Any], Optional[Tuple[str, bool]]],
    ) -> None:
        self.keepalive = keepalive
        self.promise_kept = promise_kept


def _raft_keepalive(sender: int, to: int, term: int) -> bytes:
    return raft.Message(type=raft.MessageType.HEARTBEAT, from_=sender, to=to, term=term).encode()


def _raft_promise_kept(frame: bytes, to: int, storage: Any) -> Optional[Tuple[str, bool]]:
    msg = raft.decode(frame)
    if msg.type == raft.MessageType.APPEND_ENTRIES_RESPONSE and not msg.reject:
        return "ack", storage.last_index() >= msg.index
    if msg.type == raft.MessageType.REQUEST_VOTE_RESPONSE and not msg.reject:
        hs = storage.hard_state()
        return "vote", hs.vote == to and hs.term >= msg.term
    return None


def _paxos_keepalive(sender: int, to: int, term: int) -> bytes:
    return paxos.Message(paxos.MessageType.COMMIT, sender, to, paxos.Ballot(term, sender)).encode()


def _paxos_promise_kept(frame: bytes, to: int, storage: Any) -> Optional[Tuple[str, bool]]:
    msg = paxos.decode(frame)
    if msg.type in (paxos.MessageType.PROMISE, paxos.MessageType.PROMISE_PAGE):
        return "vote", storage.hard_state().promised >= msg.ballot
    if msg.type == paxos.MessageType.ACCEPTED:
        # Slots the acceptor already knew decided (at or below its commit) keep the ballot they
        # were decided at: the chosen value, durable since. Only the ones it accepted now count.
        slots = range(max(msg.index, msg.commit + 1), msg.last_index + 1)
        return "ack", all(storage.accepted_ballot(slot) == msg.ballot for slot in slots)
    return None


#: Peer frames per protocol of the registry; a protocol added there needs its entry here.
PEER_FRAMES: Dict[str, PeerFrames] = {
    "raft": PeerFrames(_raft_keepalive, _raft_promise_kept),
    "paxos": PeerFrames(_paxos_keepalive, _paxos_promise_kept),
}


def peer_frames(protocol: ProtocolSpec) -> PeerFrames:
    if protocol.name not in PEER_FRAMES:
        raise AssertionError(f"tests/support.py: add the peer frames of protocol {protocol.name!r} to PEER_FRAMES")
    return PEER_FRAMES[protocol.name]


def catches_up_through_a_contiguous_log(protocol: ProtocolSpec) -> bool:
    """Whether a member that missed entries must get them in log order (Raft's Log Matching), so
    that once the leader compacted past them only a snapshot brings it up to date. The registry
    names no such capability; it goes with `has_learners`: a protocol that makes a new member
    catch up before it counts is one whose members replicate a contiguous log, while a
    Multi-Paxos acceptor takes every new slot at once, whatever it missed (slots are independent)."""
    return protocol.has_learners


@dataclass(frozen=True)
class CommittedEntry:
    """The fields the runtime reads from a committed entry, of any protocol (for `Node._apply`)."""

    index: int
    term: int
    data: bytes
    kind: Any = raft.EntryKind.NORMAL


# ------------------------------------------------------------------ cores driven by hand

def core_of(protocol: ProtocolSpec, node_id: int, members: List[int], options: Optional[protocols.CoreOptions] = None) -> Any:
    """A core of the protocol (`RaftNode`, `PaxosNode`, ...) on a fresh in-memory storage, built the
    way the runtime builds it."""
    storage = protocol.memory_storage(members)
    return protocol.make_core(node_id, members, storage, 0, options or protocols.CoreOptions())


def drain(node: Any) -> None:
    """Runs a core's Ready loop into its own storage (its messages are dropped)."""
    while node.has_ready():
        node.persist_and_advance(node.ready())


# ------------------------------------------------------------------ Raft messages by hand (Raft's rules)

def send(node: raft.RaftNode, msg_type: raft.MessageType, from_: int, term: int, **fields: Any) -> None:
    """Steps a Raft message from `from_` into `node` (tests of Raft's rules)."""
    node.step(raft.Message(type=msg_type, from_=from_, to=node.id, term=term, **fields).encode())


def flush(node: raft.RaftNode) -> List[raft.Message]:
    """Runs a Raft node's Ready loop until it is quiet (persisting into its storage) and returns
    the messages it sent, decoded."""
    sent: List[raft.Message] = []
    while node.has_ready():
        rd = node.ready()
        node.storage.persist(rd)
        sent.extend(raft.decode(frame) for _to, frame in rd.messages + rd.persisted_messages)
        node.advance(rd)
    return sent
