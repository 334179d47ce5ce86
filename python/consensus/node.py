"""`consensus.Node`: one replica running on asyncio.

The node owns one protocol core (sans-IO, Rust), its storage, a transport and a state machine. A
single driver task touches the core: it steps the frames that arrived, applies due ticks, hands
queued proposals and reads to the core, and then runs the Ready loop of docs/design.md §2 in one
function, `_handle_ready`: persist, then send, then apply, then advance.

While a Ready is being persisted (fsync, in a worker thread without the GIL), frames, proposals and
reads keep arriving and wait in bounded queues; the next pass hands them over together, so one
fsync covers every write that arrived meanwhile (group commit).

Entries carry a one-byte envelope: ``0x01`` + a state-machine command, ``0x03`` + the leader's
clock (u64 milliseconds, little endian) + a state-machine command, or ``0x02`` + a runtime record
(the address book of members). Snapshots carry both the application's snapshot and the address
book.

Everything a peer sends is checked at the door (docs/security.md): a frame the core refuses
(undecodable, or well-formed but invalid: a wrapped term, a gap in entries, another sender than the
connection's) is dropped and counted, and a peer that keeps sending them is disconnected; it never
stops the node. A Rust panic is a bug: it stops the node loudly (`failure` is set, `consensus serve`
exits non-zero), never leaving a zombie.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

import msgpack

from consensus import protocols
from consensus.config import parse_address
from consensus.transport.base import check_node_id
from consensus._core import (
    ConfigError,
    ConsensusError,
    DecodeError,
    NotLeaderError,
    ProposalDroppedError,
    Role,
    StorageError,
)
from consensus.errors import (
    BusyError,
    LeadershipLostError,
    NodeStoppedError,
    RequestTimeoutError,
    not_leader,
)

log = logging.getLogger("consensus.node")

ENVELOPE_COMMAND = 0x01
ENVELOPE_SYSTEM = 0x02
#: A command stamped with the leader's clock when it was proposed: the state machine's only time.
ENVELOPE_STAMPED_COMMAND = 0x03
_STAMP = struct.Struct("<Q")
STAMP_BYTES = _STAMP.size
SNAPSHOT_FORMAT = 1

#: Frames waiting for the driver, per peer; past this, that peer's frames are dropped (the
#: protocols retransmit). Each peer has its own queue and the driver takes them in turn, so a peer
#: that floods cannot starve another's heartbeats.
INBOX_FRAMES_PER_PEER_MAX = 16_384
#: Frames the driver takes from one peer's queue before moving on to the next peer.
INBOX_FRAMES_PER_TURN = 64
#: Refused frames (invalid for the core) in a row after which the peer is disconnected.
REFUSALS_BEFORE_DISCONNECT = 8
#: A persist that needs an fsync runs inline on the event loop while the recent average fsync takes
#: less than this (a thread handoff costs ~0.1-0.2 ms); on slower disks it runs in the IO thread,
#: with the GIL released, and the loop keeps serving meanwhile.
INLINE_SYNC_SECONDS_MAX = 0.0005
#: ... and bytes waiting per peer (a slow fsync must not let a fast peer fill the memory).
INBOX_BYTES_PER_PEER_MAX = 64 * 1024 * 1024
#: Read contexts in flight before the driver sweeps those nobody waits for any more.
READS_INFLIGHT_SWEEP = 1024
#: Proposals handed to the core in one call.
PROPOSAL_BATCH_MAX = 4096


@dataclass(frozen=True)
class NodeOptions:
    """Runtime settings of a node (the protocol's own are `protocols.CoreOptions`)."""

    tick_interval: float = 0.01
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    request_timeout: float = 5.0
    #: Proposals and reads waiting at once; more are refused with `BusyError`.
    max_pending: int = 10_000
    #: Take a snapshot (and compact the log) every this many applied entries; 0: never.
    snapshot_entries: int = 100_000
    phi_threshold: float = 8.0
    seed: int = 0
    #: The largest entry the core accepts (a command plus its envelope).
    max_entry_bytes: int = 8 << 20

    def core_options(self) -> protocols.CoreOptions:
        return protocols.CoreOptions(
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            seed=self.seed,
            max_entry_bytes=self.max_entry_bytes,
        )


@dataclass
class MemberAddress:
    peer: str = ""
    client: str = ""


@dataclass
class _Stats:
    proposals: int = 0
    proposals_failed: int = 0
    reads: int = 0
    elections: int = 0
    leader_changes: int = 0
    bad_frames: int = 0
    #: Frames from peers that the core refused (well-formed but invalid); dropped.
    refused_frames: int = 0
    frames_dropped: int = 0
    #: Committed entries that could not be applied (a conf change that does not decode); skipped.
    entries_skipped: int = 0
    readies: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0


@dataclass(frozen=True)
class _Skipped:
    """The result of a committed entry that could not be applied (its proposer gets `error`)."""

    error: BaseException


def _expire(future: asyncio.Future, what: str, limit: float) -> None:
    if not future.done():
        future.set_exception(RequestTimeoutError(f"{what} not answered within {limit:.3g} s"))


def _encode_system(record: Mapping[str, Any]) -> bytes:
    return bytes([ENVELOPE_SYSTEM]) + msgpack.packb(dict(record), use_bin_type=True)


class Node:
    """One replica: a protocol core driven on asyncio, with its storage, transport and state machine.

    ``members`` are the voters of a new cluster (ignored when ``storage`` already holds a
    configuration). With ``join=True`` the node joins a running cluster: ``members`` names the
    current voters and this node waits to be added (as a learner, then promoted).
    """

    def __init__(
        self,
        id: int,
        members: Sequence[int],
        state_machine: Any,
        transport: Any,
        *,
        protocol: str = "raft",
        storage: Any = None,
        options: NodeOptions = NodeOptions(),
        addresses: Optional[Mapping[int, MemberAddress]] = None,
        join: bool = False,
        health: Any = None,
        metrics: Any = None,
        start_gate: Optional[Callable[[Any], Awaitable[None]]] = None,
    ) -> None:
        self.id = id
        #: Awaited by `start` between the transport and the core (`consensus.datadir.DataDirectory.gate`).
        self._start_gate = start_gate
        self.protocol = protocol
        self.options = options
        self.state_machine = state_machine
        self.transport = transport
        self.spec = protocols.get(protocol)
        self.storage = storage if storage is not None else self.spec.memory_storage(list(members))
        self.health = health
        #: Receives latency observations: ``observe(name, seconds)`` (see `consensus.metrics`).
        self.metrics = metrics
        #: Addresses from this node's own configuration; they win over replicated ones (NAT).
        self._local_addresses: Dict[int, MemberAddress] = dict(addresses or {})
        self.addresses: Dict[int, MemberAddress] = dict(self._local_addresses)

        snapshot = self.storage.snapshot()
        applied = 0
        if snapshot.index > 0:
            self._restore_snapshot(snapshot.data)
            applied = snapshot.index
        voters = [m for m in members if m != id] if join else list(members)
        self.core = self.spec.make_core(id, voters, self.storage, applied, options.core_options())
        self.applied_index = applied
        self._snapshot_index = snapshot.index

        #: peer -> frames waiting for the driver (and their bytes); fed to the core in turns.
        self._inbox: Dict[int, Deque[bytes]] = {}
        self._inbox_bytes: Dict[int, int] = {}
        #: peer -> frames refused in a row (reset by an accepted one).
        self._refusals: Dict[int, int] = {}
        #: member -> the peer address that could not be used (logged once per address).
        self._unusable_addresses: Dict[int, str] = {}
        self._proposals: Deque[Tuple[bytes, asyncio.Future]] = deque()
        #: index -> (term, future, start time) of the proposals the core accepted at that index, in
        #: proposal order (one per index for Raft; a Paxos slot holds a batch).
        self._pending: Dict[int, Deque[Tuple[int, asyncio.Future, float]]] = {}
        self._pending_count = 0
        self._reads_waiting: List[Tuple[asyncio.Future, float]] = []
        self._reads_inflight: Dict[bytes, List[Tuple[asyncio.Future, float]]] = {}
        #: (read index, waiters) whose index is known, waiting for the application to catch up.
        self._reads_applying: List[Tuple[int, List[Tuple[asyncio.Future, float]]]] = []
        self._read_seq = 0
        self._reads_outstanding = 0
        #: Read contexts are unique across nodes and restarts: the leader matches answers by
        #: context alone, so a repeated one could be answered with another read's (older) index.
        self._read_prefix = id.to_bytes(8, "little") + os.urandom(8)
        self._conf_waiters: Dict[int, Tuple[int, asyncio.Future, float]] = {}

        self.stats = _Stats()
        self._role = self.core.role
        self._term = self.core.term
        self._leader = self.core.leader
        self._ticks_done = 0
        self._sync_seconds_avg = 0.0
        self._synced_at_tick = 0
        self._started_at = 0.0
        self._wake: Optional[asyncio.Event] = None
        self._tasks: List[asyncio.Task] = []
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"consensus-io-{id}")
        #: Snapshots are encoded and written here, beside the IO thread, so Readies never wait.
        self._snapshot_io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"consensus-snap-{id}")
        self._snapshot_task: "Optional[asyncio.Task[int]]" = None
        self._stopped = False
        self._closed = False
        self.failure: Optional[BaseException] = None
        self._done: Optional[asyncio.Future] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._advance_clock: Optional[Callable[[int], None]] = getattr(state_machine, "advance_clock", None)
        #: (clock at the start of this leadership, monotonic time then); None when not leading.
        self._clock_origin: Optional[Tuple[int, float]] = None
        attach = getattr(state_machine, "attach", None)
        if attach is not None:
            attach(self)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._done = self.loop.create_future()
        self._started_at = self.loop.time()
        self._sync_peers()
        self.transport.on_arrival = self._on_arrival
        await self.transport.start(self._on_frame)
        # --- data-directory gate (consensus.datadir): a node on a fresh data directory waits here,
        # transport up and core idle, until its peers confirm it is not a wiped member.
        if self._start_gate is not None:
            await self._start_gate(self.transport)
            self._started_at = self.loop.time()  # ticks count from here, not from the wait
        # --- end of the gate
        self._tasks = [
            asyncio.ensure_future(self._drive()),
            asyncio.ensure_future(self._ticker()),
        ]

    async def stop(self) -> None:
        """Stops the node: pending requests fail with `NodeStoppedError`; storage is closed.
        Also the cleanup after a fatal error (which stops the node at once)."""
        if self._closed:
            return
        self._closed = True
        self._stopped = True
        tasks = list(self._tasks)
        if self._snapshot_task is not None:
            tasks.append(self._snapshot_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        await self.transport.close()
        self._fail_everything(NodeStoppedError("the node stopped", indeterminate=True))
        # Waits for a snapshot being written; off the loop, which keeps serving meanwhile.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._io.shutdown, True)
        await loop.run_in_executor(None, self._snapshot_io.shutdown, True)
        close = getattr(self.storage, "close", None)
        if close is not None:
            try:
                close()
            except ConsensusError as exc:  # the storage may be poisoned after a failure
                log.warning("closing storage: %s", exc)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def wait_stopped(self) -> None:
        """Returns when the node stops; raises the fatal error if it stopped because of one."""
        assert self._done is not None, "start() first"
        await asyncio.shield(self._done)
        if self.failure is not None:
            raise self.failure

    def _fatal(self, exc: BaseException) -> None:
        """A storage failure: stop at once rather than continue with state we could not persist."""
        log.critical("node %d stopping after a fatal error: %s", self.id, exc)
        self.failure = exc
        self._stopped = True
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._fail_everything(NodeStoppedError(f"the node stopped: {exc}", indeterminate=True))
        if self.loop is not None:
            # Stop talking to peers at once; `stop()` does the rest of the cleanup.
            self.loop.create_task(self.transport.close())
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # ------------------------------------------------------------------ public API

    @property
    def role(self) -> Role:
        return self.core.role

    @property
    def term(self) -> int:
        return int(self.core.term)

    @property
    def leader(self) -> int:
        return int(self.core.leader)

    @property
    def commit_index(self) -> int:
        return int(self.core.commit_index)

    @property
    def is_leader(self) -> bool:
        return self.core.role == Role.LEADER

    def _check_running(self) -> None:
        if self._stopped:
            raise NodeStoppedError(f"the node stopped{': ' + str(self.failure) if self.failure else ''}")

    def _check_capacity(self) -> None:
        waiting = len(self._proposals) + self._pending_count + self._reads_outstanding
        if waiting >= self.options.max_pending:
            raise BusyError(f"{waiting} requests are waiting (max_pending = {self.options.max_pending})")

    async def propose(self, command: bytes, *, timeout: Optional[float] = None) -> Any:
        """Replicates `command` and returns what the state machine's `apply` returned for it.

        Raises `NotLeaderError` (with `leader_hint`) on a follower, `BusyError` when too many
        requests wait, `LeadershipLostError` / `RequestTimeoutError` when the outcome is unknown.
        The command is stamped with the leader's clock (`_clock_stamp`); a state machine with
        `advance_clock(time_ms)` is given the stamp before the command (leases, session expiry).
        """
        stamp = _STAMP.pack(self._clock_stamp())
        return await self._propose_entry(bytes([ENVELOPE_STAMPED_COMMAND]) + stamp + bytes(command), timeout)

    def _clock_stamp(self) -> int:
        """The leader's clock in milliseconds: the replicated clock when this leadership began, plus
        the monotonic time elapsed since. A step of the wall clock (NTP, a resumed VM) cannot move
        it, so it can neither freeze leases for years nor end them early; and it never goes below
        the replicated clock, so every replica's clock only moves forward. The first leader of a
        cluster starts from the wall clock (an offset, harmless: only differences matter)."""
        now = time.monotonic()
        replicated = int(getattr(self.state_machine, "clock_ms", 0) or 0)
        if self._clock_origin is None:
            self._clock_origin = (replicated or int(time.time() * 1000), now)
        base, since = self._clock_origin
        return max(base + int((now - since) * 1000), replicated)

    async def _propose_entry(self, data: bytes, timeout: Optional[float]) -> Any:
        self._check_running()
        if self.core.role != Role.LEADER:
            raise not_leader(self.core.leader)
        self._check_capacity()
        assert self.loop is not None and self._wake is not None
        future = self.loop.create_future()
        self._proposals.append((data, future))
        self._wake.set()
        return await self._await(future, timeout, "proposal")

    async def read_index(self, *, timeout: Optional[float] = None) -> int:
        """A linearizable read barrier: returns once this node has applied everything committed
        when the read began (Raft §6.4); reads of the state machine after it are linearizable.
        Works on followers too (the leader confirms the index)."""
        self._check_running()
        self._check_capacity()
        assert self.loop is not None and self._wake is not None
        future = self.loop.create_future()
        self._reads_outstanding += 1
        future.add_done_callback(self._read_finished)
        self._reads_waiting.append((future, time.perf_counter()))
        self._wake.set()
        return await self._await(future, timeout, "read")

    def _read_finished(self, _future: asyncio.Future) -> None:
        self._reads_outstanding -= 1

    async def change_membership(
        self,
        *,
        add_voters: Sequence[int] = (),
        remove_voters: Sequence[int] = (),
        add_learners: Sequence[int] = (),
        remove_learners: Sequence[int] = (),
        timeout: Optional[float] = None,
    ) -> Any:
        """Proposes a membership change; returns the configuration in force once it is applied."""
        self._check_running()
        if self.core.role != Role.LEADER:
            raise not_leader(self.core.leader)
        changes = {
            "add_voters": add_voters,
            "remove_voters": remove_voters,
            "add_learners": add_learners,
            "remove_learners": remove_learners,
        }
        for field, ids in changes.items():
            for member in ids:
                check_node_id(field, member)
        index = self._core_call(
            self.spec.propose_membership, self.core, add_voters, remove_voters, add_learners, remove_learners
        )
        assert self.loop is not None and self._wake is not None
        future = self.loop.create_future()
        self._pending.setdefault(index, deque()).append((self.core.term, future, time.perf_counter()))
        self._wake.set()
        return await self._await(future, timeout, "membership change")

    async def set_address(self, member_id: int, peer: str, client: str, *, timeout: Optional[float] = None) -> None:
        """Replicates the addresses of a member (so every node can reach a node added at runtime).
        Both must be ``"host:port"``; anything else is a `ConfigError` here, before it is proposed."""
        check_node_id("member_id", member_id)
        parse_address(peer, "peer")
        parse_address(client, "client")
        record = {"op": "address", "id": int(member_id), "peer": peer, "client": client}
        await self._propose_entry(_encode_system(record), timeout)

    async def transfer_leadership(self, to: int) -> None:
        self._check_running()
        if self.core.role != Role.LEADER:
            raise not_leader(self.core.leader)
        self._core_call(self.core.transfer_leader, to)
        assert self._wake is not None
        self._wake.set()

    async def campaign(self) -> None:
        self._check_running()
        self._core_call(self.core.campaign)
        assert self._wake is not None
        self._wake.set()

    def _core_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A call into the core from outside the driver. Errors reach the caller; a panic (a bug in
        the core: its state can no longer be trusted) stops the node, as in the driver."""
        try:
            return fn(*args)
        except Exception:
            raise
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a Rust panic
            log.critical("node %d: the core panicked", self.id, exc_info=exc)
            self._fatal(exc)
            raise NodeStoppedError(f"the node stopped: the core panicked: {exc}", indeterminate=True) from exc

    async def _await(self, future: asyncio.Future, timeout: Optional[float], what: str) -> Any:
        """Waits for `future` at most the request timeout (a timer on the future itself: cheaper
        than `wait_for`, which wraps it in another task). A caller that gives up (timeout or
        cancellation) leaves the future done, so the driver skips it when the entry applies."""
        limit = self.options.request_timeout if timeout is None else timeout
        assert self.loop is not None
        timer = self.loop.call_later(limit, _expire, future, what, limit)
        try:
            return await future
        finally:
            timer.cancel()

    def status(self) -> Dict[str, Any]:
        """The core's status plus the runtime's view: applied index, peers' health, counters."""
        s = dict(self._core_call(self.core.status))
        s["protocol"] = self.protocol
        s["applied"] = self.applied_index
        s["snapshot_index"] = self._snapshot_index
        s["members"] = sorted(set(s.get("voters", [])) | set(s.get("learners", [])))
        s["addresses"] = {i: {"peer": a.peer, "client": a.client} for i, a in sorted(self.addresses.items())}
        s["peers"] = self.peer_health()
        s["stopped"] = self._stopped
        if self.failure is not None:
            s["failure"] = str(self.failure)
        return s

    def peer_health(self) -> Dict[int, Dict[str, Any]]:
        now = time.monotonic()
        health = self.health.snapshot(now) if self.health is not None else {}
        transport = self.transport.stats()
        out: Dict[int, Dict[str, Any]] = {}
        for peer in sorted(set(health) | set(transport)):
            entry: Dict[str, Any] = {}
            entry.update(health.get(peer, {}))
            entry.update({k: v for k, v in transport.get(peer, {}).items() if k in ("connected", "dropped", "bad_frames")})
            out[peer] = entry
        return out

    # ------------------------------------------------------------------ transport

    def _on_arrival(self, peer: int) -> None:
        if self.health is not None:
            self.health.heartbeat(peer, time.monotonic())

    def _on_frame(self, peer: int, frame: bytes) -> None:
        queue = self._inbox.get(peer)
        if queue is None:
            queue = self._inbox[peer] = deque()
            self._inbox_bytes[peer] = 0
        size = len(frame)
        if len(queue) >= INBOX_FRAMES_PER_PEER_MAX or self._inbox_bytes[peer] + size > INBOX_BYTES_PER_PEER_MAX:
            self.stats.frames_dropped += 1
            return
        queue.append(frame)
        self._inbox_bytes[peer] += size
        if self._wake is not None:
            self._wake.set()

    def _sync_peers(self) -> None:
        """Points the transport at the current members (voters and learners) with known addresses.
        A node given no addresses leaves the transport's own peer list alone (the caller wired it)."""
        if not self.addresses:
            return
        members = set(self.spec.members(self.core))
        members |= set(self._local_addresses)
        peers = {m: self.addresses[m].peer for m in members if m != self.id and m in self.addresses}
        for member, address in list(peers.items()):
            try:
                parse_address(address, f"members[{member}].peer")
            except ConfigError as exc:
                # Refused where it is proposed; one that slipped through (an older version, a
                # snapshot) makes that peer unreachable until a later change fixes it, never fatal.
                if self._unusable_addresses.get(member) != address:
                    log.error("node %d: member %d has an unusable peer address; unreachable until fixed: %s", self.id, member, exc)
                    self._unusable_addresses[member] = address
                del peers[member]
        self.transport.set_peers(peers)
        if self.health is not None:
            for m in peers:
                self.health.add_peer(m)

    # ------------------------------------------------------------------ the driver

    async def _ticker(self) -> None:
        assert self.loop is not None and self._wake is not None
        interval = self.options.tick_interval
        while True:
            await asyncio.sleep(interval)
            self._wake.set()

    async def _drive(self) -> None:
        assert self._wake is not None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._feed_core()
                while self.core.has_ready():
                    await self._handle_ready()
                self._after_ready()
                await self._maybe_snapshot()
                await self._maybe_sync()
        except asyncio.CancelledError:
            raise
        except StorageError as exc:
            self._fatal(exc)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a bug (a Rust panic too) stops the node loudly
            log.critical("node %d driver failed", self.id, exc_info=exc)
            self._fatal(exc)

    def _feed_core(self) -> None:
        """Hands the core everything that arrived since the last pass (the only place besides the
        public calls that mutates it)."""
        core = self.core
        self._step_inbox()
        assert self.loop is not None
        due = int((self.loop.time() - self._started_at) / self.options.tick_interval) - self._ticks_done
        if due > 0:
            # After a long stall (a slow fsync, a paused process) tick at most one election
            # timeout's worth at once, so a stall alone does not start an election storm.
            for _ in range(min(due, self.options.election_ticks)):
                core.tick()
            self._ticks_done += due
            self._report_unreachable()
        if self._proposals:
            self._submit_proposals()
        if self._reads_waiting:
            self._submit_reads()
        self._check_timeouts()

    def _step_inbox(self) -> None:
        """Steps every waiting frame into the core, taking the peers' queues in turns. Whatever a
        peer sends, the worst outcome is a dropped frame: the core validates every field before it
        changes state, and a frame's sender must be the peer its connection authenticated as."""
        inbox = self._inbox
        step = self.core.step
        while inbox:
            for peer in list(inbox):
                queue = inbox[peer]
                for _ in range(min(len(queue), INBOX_FRAMES_PER_TURN)):
                    frame = queue.popleft()
                    self._inbox_bytes[peer] -= len(frame)
                    try:
                        step(frame, sender=peer)
                    except ConsensusError as exc:
                        self._refuse_frame(peer, exc)
                        continue
                    if self._refusals:
                        self._refusals.pop(peer, None)
                if not queue:
                    del inbox[peer]

    def _refuse_frame(self, peer: int, exc: ConsensusError) -> None:
        """A frame the core refused: dropped and counted; the peer is disconnected when its bytes
        are no message at all, or after repeated refusals."""
        if isinstance(exc, StorageError):
            raise exc
        if isinstance(exc, DecodeError):
            # Bytes that are not a message: the stream is broken or hostile; drop the connection.
            self.stats.bad_frames += 1
            log.warning("dropping an undecodable frame from peer %d: %s", peer, exc)
            self._disconnect(peer, "undecodable frame")
            return
        self.stats.refused_frames += 1
        refusals = self._refusals.get(peer, 0) + 1
        if refusals <= 3 or refusals % 1000 == 0:
            log.warning("refused a frame from peer %d: %s", peer, exc)
        if refusals >= REFUSALS_BEFORE_DISCONNECT:
            self._disconnect(peer, f"{refusals} refused frames in a row")
            refusals = 0
        self._refusals[peer] = refusals

    def _disconnect(self, peer: int, reason: str) -> None:
        disconnect = getattr(self.transport, "disconnect", None)
        if disconnect is not None:
            disconnect(peer, reason)

    def _report_unreachable(self) -> None:
        if self.health is None or self.core.role != Role.LEADER:
            return
        for peer in self.health.unavailable(time.monotonic()):
            self.core.report_unreachable(peer)

    def _submit_proposals(self) -> None:
        core = self.core
        while self._proposals:
            batch: List[Tuple[bytes, asyncio.Future]] = []
            while self._proposals and len(batch) < PROPOSAL_BATCH_MAX:
                data, future = self._proposals.popleft()
                if not future.done():
                    batch.append((data, future))
            if not batch:
                return
            try:
                first = core.propose_many([data for data, _ in batch])
            except NotLeaderError as exc:
                self._fail_batch(batch, not_leader(getattr(exc, "leader_hint", 0)))
                continue
            except ProposalDroppedError as exc:
                self._fail_batch(batch, exc)
                continue
            if first == 0:
                self._fail_batch(batch, not_leader(core.leader))
                continue
            term = core.term
            now = time.perf_counter()
            pending = self._pending
            one_index = self.spec.batch_in_one_index
            for offset, (_data, future) in enumerate(batch):
                index = first if one_index else first + offset
                waiters = pending.get(index)
                if waiters is None:
                    waiters = pending[index] = deque()
                waiters.append((term, future, now))
            self._pending_count += len(batch)
            self.stats.proposals += len(batch)

    def _fail_batch(self, batch: List[Tuple[bytes, asyncio.Future]], exc: BaseException) -> None:
        self.stats.proposals_failed += len(batch)
        for _data, future in batch:
            if not future.done():
                future.set_exception(exc)

    def _submit_reads(self) -> None:
        waiters, self._reads_waiting = self._reads_waiting, []
        self._read_seq += 1
        context = self._read_prefix + self._read_seq.to_bytes(8, "little")
        try:
            self.core.read_index(context)
        except (ProposalDroppedError, NotLeaderError) as exc:
            for future, _start in waiters:
                if not future.done():
                    future.set_exception(exc)
            return
        self._reads_inflight[context] = waiters

    def _check_timeouts(self) -> None:
        """Forgets requests whose callers gave up, so the tables stay bounded."""
        if self._pending and self._pending_count > self.options.max_pending // 2:
            for index in [i for i, ws in self._pending.items() if all(f.done() for _t, f, _s in ws)]:
                self._pending_count -= len(self._pending.pop(index))
        if self._reads_inflight and len(self._reads_inflight) > READS_INFLIGHT_SWEEP:
            # Contexts whose callers all gave up (their frames may have been lost): forget them.
            for context in [c for c, ws in self._reads_inflight.items() if all(f.done() for f, _s in ws)]:
                del self._reads_inflight[context]

    async def _handle_ready(self) -> None:
        """The Ready loop of docs/design.md §2, the one place it is written: persist, then send, then
        apply, then advance."""
        core = self.core
        rd = core.ready()
        self.stats.readies += 1
        hard_state = rd.hard_state
        send = self.transport.send
        # 1. Send what the core lets leave before the disk write (a leader's appends or accepts
        #    under a durable term; docs/design.md §2). The rule is the core's, not ours.
        for to, frame in rd.messages:
            send(to, frame)
        # 2. Persist. Durable before any message that depends on it leaves (Raft §5, Figure 2:
        #    "before responding to RPCs"). A write that needs no fsync (a commit index) is inline.
        if rd.must_sync or rd.snapshot is not None:
            started = time.perf_counter()
            if self._sync_seconds_avg < INLINE_SYNC_SECONDS_MAX and rd.snapshot is None:
                # A fast disk: handing the fsync to a thread and back costs more than the fsync.
                self.storage.persist(rd)
            else:
                assert self.loop is not None
                await self.loop.run_in_executor(self._io, self.storage.persist, rd)
            elapsed = time.perf_counter() - started
            self._sync_seconds_avg += (elapsed - self._sync_seconds_avg) / 8
            self._observe("fsync", elapsed)
        elif hard_state is not None or rd.entries:
            self.storage.persist(rd)
        # 3. Send what waited for the disk.
        for to, frame in rd.persisted_messages:
            send(to, frame)
        # 4. Apply, in order.
        snapshot = rd.snapshot
        if snapshot is not None:
            self._install_snapshot(snapshot)
        if rd.read_states:
            self._read_states(rd.read_states)
        for entry in rd.committed_entries:
            self._apply(entry)
        # Indexes that carried nothing to apply (Paxos no-op slots) are applied all the same: the
        # application stands where the Ready says.
        through = rd.applied_through
        if through > self.applied_index:
            for index in [i for i in self._pending if i <= through]:
                self._fail_unanswered(index)
            self.applied_index = through
        # 5. Advance.
        core.advance(rd)
        self._resolve_reads()

    def _observe(self, name: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(name, seconds)

    def _apply(self, entry: Any) -> None:
        index = entry.index
        result: Any = None
        if entry.kind == self.spec.conf_change_kind:
            result = self._apply_membership(entry)
        else:
            data = entry.data
            if data:
                tag = data[0]
                if tag == ENVELOPE_STAMPED_COMMAND and len(data) > STAMP_BYTES:
                    if self._advance_clock is not None:
                        self._advance_clock(_STAMP.unpack_from(data, 1)[0])
                    result = self.state_machine.apply(index, data[1 + STAMP_BYTES :])
                elif tag == ENVELOPE_COMMAND:
                    result = self.state_machine.apply(index, data[1:])
                elif tag == ENVELOPE_SYSTEM:
                    result = self._apply_system(data[1:])
                else:
                    log.error("entry %d has an unknown envelope %#x; skipped", index, tag)
        if index != self.applied_index:
            self._fail_unanswered(self.applied_index)
        self.applied_index = index
        waiters = self._pending.get(index)
        if waiters:
            term, future, started = waiters.popleft()
            self._pending_count -= 1
            if not waiters:
                del self._pending[index]
            if future.done():
                return
            if isinstance(result, _Skipped):
                future.set_exception(result.error)
            elif entry.term == term:
                future.set_result(result)
                self._observe("proposal", time.perf_counter() - started)
            else:
                future.set_exception(LeadershipLostError(f"entry {index} was replaced by a later leader's"))

    def _apply_membership(self, entry: Any) -> Any:
        """A committed membership change. One that does not decode (the cores refuse such entries
        at the door; this is the last line) is skipped and counted: stopping here would stop the
        node again on every restart, since the entry is durable."""
        try:
            result = self.spec.apply_membership(self.core, entry)
        except StorageError:
            raise
        except ConsensusError as exc:
            self.stats.entries_skipped += 1
            log.error("node %d: membership change at index %d cannot be applied; skipped: %s", self.id, entry.index, exc)
            return _Skipped(exc)
        self._sync_peers()
        return result

    def _fail_unanswered(self, index: int) -> None:
        """Proposals at `index` still waiting once the application moved past it: the value chosen
        there held fewer commands than were proposed into it (another leader's value won)."""
        waiters = self._pending.pop(index, None)
        if not waiters:
            return
        self._pending_count -= len(waiters)
        for _term, future, _s in waiters:
            if not future.done():
                future.set_exception(LeadershipLostError(f"index {index} was decided without this proposal"))

    def _apply_system(self, payload: bytes) -> Any:
        """A runtime record. One that does not decode, or names no valid member, is skipped and
        counted (it is durable: stopping on it would stop the node on every restart)."""
        try:
            record = msgpack.unpackb(payload, raw=False)
            if not isinstance(record, dict) or record.get("op") != "address":
                raise ValueError(f"unknown runtime record {record!r:.80}")
            member = check_node_id("id", record.get("id"))
            peer, client = record.get("peer"), record.get("client")
            if not isinstance(peer, str) or not isinstance(client, str):
                raise ValueError("addresses must be strings")
        except (ValueError, ConfigError, msgpack.UnpackException) as exc:
            self.stats.entries_skipped += 1
            log.error("node %d: skipped an invalid runtime record: %s", self.id, exc)
            return None
        if member not in self._local_addresses:
            self.addresses[member] = MemberAddress(peer, client)
            self._sync_peers()
        return None

    def _read_states(self, read_states: Sequence[Any]) -> None:
        for rs in read_states:
            waiters = self._reads_inflight.pop(rs.context, None)
            if waiters:
                self._reads_applying.append((rs.index, waiters))

    def _resolve_reads(self) -> None:
        if not self._reads_applying:
            return
        still: List[Tuple[int, List[Tuple[asyncio.Future, float]]]] = []
        now = time.perf_counter()
        for index, waiters in self._reads_applying:
            if index <= self.applied_index:
                for future, started in waiters:
                    if not future.done():
                        future.set_result(index)
                        self.stats.reads += 1
                        self._observe("read", now - started)
            else:
                still.append((index, waiters))
        self._reads_applying = still

    def _after_ready(self) -> None:
        """Notices role, term and leader changes: counts them and fails what they invalidate."""
        core = self.core
        role, term, leader = core.role, core.term, core.leader
        if role != self._role or term != self._term:
            if role == Role.CANDIDATE and (self._role != Role.CANDIDATE or term != self._term):
                self.stats.elections += 1
            if self._role == Role.LEADER and role != Role.LEADER:
                self._leadership_lost(leader)
        if (role != self._role or term != self._term or leader != self._leader) and self._reads_inflight:
            # Reads in flight were tied to the old leadership; the core dropped them (a step-down
            # keeps the term but forgets pending reads). Definite: a read changes nothing; retry.
            err = ProposalDroppedError("leadership changed while the read was in flight; retry")
            for waiters in self._reads_inflight.values():
                for future, _s in waiters:
                    if not future.done():
                        future.set_exception(err)
            self._reads_inflight.clear()
        if leader != self._leader and leader != 0:
            self.stats.leader_changes += 1
        if role != Role.LEADER:
            self._clock_origin = None  # the next leadership starts from the replicated clock
        self._role, self._term, self._leader = role, term, leader

    def _leadership_lost(self, leader: int) -> None:
        err = LeadershipLostError(f"node {self.id} lost its leadership (leader now {leader or 'unknown'})")
        for waiters in self._pending.values():
            for _term, future, _s in waiters:
                if not future.done():
                    future.set_exception(err)
        self._pending.clear()
        self._pending_count = 0
        while self._proposals:
            _data, future = self._proposals.popleft()
            if not future.done():
                future.set_exception(not_leader(leader))

    def _fail_everything(self, exc: BaseException) -> None:
        futures = [f for ws in self._pending.values() for _t, f, _s in ws]
        futures += [f for _d, f in self._proposals]
        futures += [f for f, _s in self._reads_waiting]
        futures += [f for ws in self._reads_inflight.values() for f, _s in ws]
        futures += [f for _i, ws in self._reads_applying for f, _s in ws]
        for future in futures:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # nobody may be waiting any more; do not warn about it
        self._pending.clear()
        self._pending_count = 0
        self._proposals.clear()
        self._reads_waiting.clear()
        self._reads_inflight.clear()
        self._reads_applying.clear()

    # ------------------------------------------------------------------ snapshots

    def snapshot_bytes(self) -> bytes:
        """The node's replicated state (application + address book) as stored in a snapshot."""
        return self.snapshot_encoder()()

    def snapshot_encoder(self) -> Callable[[], bytes]:
        """Captures the replicated state now; the returned function encodes it, on any thread.
        A state machine with `snapshot_writer()` is captured cheaply and encoded off the loop;
        one with only `snapshot()` is encoded here."""
        writer = getattr(self.state_machine, "snapshot_writer", None)
        app: Callable[[], bytes]
        if writer is not None:
            app = writer()
        else:
            data = self.state_machine.snapshot()
            app = lambda: data  # noqa: E731
        addresses = {str(i): [a.peer, a.client] for i, a in sorted(self.addresses.items())}

        def encode() -> bytes:
            return msgpack.packb({"format": SNAPSHOT_FORMAT, "app": app(), "addresses": addresses}, use_bin_type=True)

        return encode

    def _restore_snapshot(self, data: bytes) -> None:
        if not data:
            return
        try:
            envelope = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if not isinstance(envelope, dict) or envelope.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"unknown snapshot format {envelope.get('format') if isinstance(envelope, dict) else '?'}")
            app = envelope["app"]
            addresses = {int(k): MemberAddress(str(v[0]), str(v[1])) for k, v in envelope["addresses"].items()}
        except (ValueError, KeyError, TypeError, IndexError, msgpack.ExtraData) as exc:
            raise StorageError(f"snapshot data is damaged: {exc}") from exc
        self.state_machine.restore(app)
        for member, address in addresses.items():
            if member not in self._local_addresses:
                self.addresses[member] = address

    def _install_snapshot(self, snapshot: Any) -> None:
        """A snapshot from the leader replaced our log: the application restarts from it."""
        self._restore_snapshot(snapshot.data)
        self.applied_index = snapshot.index
        self._snapshot_index = snapshot.index
        self.stats.snapshots_installed += 1
        for index in [i for i in self._pending if i <= snapshot.index]:
            waiters = self._pending.pop(index)
            self._pending_count -= len(waiters)
            for _term, future, _s in waiters:
                if not future.done():
                    future.set_exception(LeadershipLostError(f"entry {index} was covered by an installed snapshot"))
        self._sync_peers()

    async def _maybe_sync(self) -> None:
        """With ``fsync = "batch"`` entries are fsynced at most every few milliseconds: the storage
        decides when, on this call, made at most once per tick."""
        if getattr(self.storage, "fsync", None) != "batch" or self._ticks_done == self._synced_at_tick:
            return
        self._synced_at_tick = self._ticks_done
        assert self.loop is not None
        await self.loop.run_in_executor(self._io, self.storage.sync)

    async def _maybe_snapshot(self) -> None:
        every = self.options.snapshot_entries
        if every <= 0 or self.applied_index - self._snapshot_index < every or self._snapshot_task is not None:
            return
        # In the background: the driver keeps persisting and applying while it is encoded and
        # written (the storage writes the file without holding its lock).
        self._start_snapshot()

    def _start_snapshot(self) -> "asyncio.Task[int]":
        if self._snapshot_task is None:
            self._snapshot_task = asyncio.ensure_future(self._snapshot())
            self._snapshot_task.add_done_callback(self._snapshot_done)
        return self._snapshot_task

    async def take_snapshot(self) -> int:
        """Snapshots the state machine at the applied index and compacts the log up to it (or
        waits for the snapshot already being taken); returns the snapshot's index. A storage
        failure stops the node, as in the Ready loop."""
        self._check_running()
        return await asyncio.shield(self._start_snapshot())

    def _snapshot_done(self, task: "asyncio.Task[int]") -> None:
        self._snapshot_task = None
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, StorageError) or (exc is not None and not isinstance(exc, Exception)):
            if not self._stopped:  # a storage failure, or a panic in the storage: stop loudly
                self._fatal(exc)
        elif exc is not None and not self._stopped:
            log.error("node %d: snapshot failed: %s", self.id, exc)

    async def _snapshot(self) -> int:
        index = self.applied_index
        if index <= self._snapshot_index:
            return self._snapshot_index
        encode = self.snapshot_encoder()
        storage = self.storage

        def write() -> None:
            storage.compact(index, encode())

        assert self.loop is not None
        try:
            await self.loop.run_in_executor(self._snapshot_io, write)
        except StorageError as exc:
            if exc.kind == "compacted":
                return self._snapshot_index  # a newer snapshot (from the leader) came first
            raise
        self._snapshot_index = max(self._snapshot_index, index)
        self.stats.snapshots_taken += 1
        return index


class BlockingNode:
    """A thread-safe synchronous facade: runs a `Node` on its own event loop in a background
    thread, for callers that are not async. Every method may be called from any thread."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"consensus-node-{node.id}", daemon=True)
        self._thread.start()
        self._call(node.start())

    def _call(self, coro: Any, timeout: Optional[float] = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def propose(self, command: bytes, *, timeout: Optional[float] = None) -> Any:
        return self._call(self.node.propose(command, timeout=timeout))

    def read_index(self, *, timeout: Optional[float] = None) -> int:
        return self._call(self.node.read_index(timeout=timeout))

    def status(self) -> Dict[str, Any]:
        async def status() -> Dict[str, Any]:
            return self.node.status()

        return self._call(status())

    def call(self, fn: Any, *args: Any) -> Any:
        """Runs ``fn(*args)`` on the node's loop (for reading the state machine consistently)."""

        async def run() -> Any:
            return fn(*args)

        return self._call(run())

    def stop(self) -> None:
        if not self._loop.is_running():
            return
        self._call(self.node.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> "BlockingNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["BlockingNode", "MemberAddress", "Node", "NodeOptions"]
