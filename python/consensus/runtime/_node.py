"""`consensus.Node`: one replica running on asyncio.

The node owns one protocol core (sans-IO, Rust), its storage, a transport and a state machine. A
single driver task touches the core: it steps the frames that arrived, applies due ticks, hands
queued proposals and reads to the core, and then runs the Ready loop of docs/design.md §2 in one
function, `_handle_ready`: send what may leave now, persist, send the rest, apply, advance.

While a Ready is being persisted (fsync, in a worker thread without the GIL), frames, proposals and
reads keep arriving and wait in bounded queues; the next pass hands them over together, so one
fsync covers every write that arrived meanwhile (group commit).

`Node` composes the runtime's parts, one idea a module: the door for peers' frames (`_inbox`),
request admission (`_admission`: pending proposals and reads, capacity, timeouts), the entry
envelope and the leader's clock (`_envelope`), membership and the address book (`_membership`)
and snapshots (`_snapshots`). This module holds the lifecycle, the public API and the driver.

A Rust panic is a bug: it stops the node loudly (`failure` is set, `consensus serve`
exits non-zero), never leaving a zombie.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence

from consensus import protocols
from consensus._core import ConsensusError, Role, StorageError
from consensus.config import parse_address
from consensus.errors import NodeStoppedError, not_leader
from consensus.protocols import CoreEntry, CoreNode, CoreSnapshot, CoreStorage, MemberSet
from consensus.runtime._admission import Admission, wait_for_answer
from consensus.runtime._envelope import (
    ENVELOPE_COMMAND,
    ENVELOPE_STAMPED_COMMAND,
    ENVELOPE_SYSTEM,
    STAMP,
    STAMP_BYTES,
    LeaderClock,
    address_record,
    stamped_command,
)
from consensus.runtime._health import PeerHealth
from consensus.runtime._inbox import Inbox
from consensus.runtime._membership import MemberAddress, Membership
from consensus.runtime._options import NodeOptions
from consensus.runtime._snapshots import Snapshots, decode_snapshot, snapshot_encoder
from consensus.runtime._stats import LatencyObserver, NodeStats
from consensus.statemachines import StateMachine
from consensus.transport.base import Transport, check_node_id

log = logging.getLogger("consensus.node")

#: A persist that needs an fsync runs inline on the event loop while the recent average fsync takes
#: less than this (a thread handoff costs ~0.1-0.2 ms); on slower disks it runs in the IO thread,
#: with the GIL released, and the loop keeps serving meanwhile.
INLINE_SYNC_SECONDS_MAX = 0.0005


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
        state_machine: StateMachine,
        transport: Transport,
        *,
        protocol: str = "raft",
        storage: Optional[CoreStorage] = None,
        options: NodeOptions = NodeOptions(),
        addresses: Optional[Mapping[int, MemberAddress]] = None,
        join: bool = False,
        health: Optional[PeerHealth] = None,
        metrics: Optional[LatencyObserver] = None,
        start_gate: Optional[Callable[[Transport], Awaitable[None]]] = None,
    ) -> None:
        self.id = id
        #: Awaited by `start` between the transport and the core (`consensus.runtime.DataDirectory.gate`).
        self._start_gate = start_gate
        self.protocol = protocol
        self.options = options
        self.state_machine = state_machine
        self.transport = transport
        self.spec = protocols.get(protocol)
        self.storage: CoreStorage = storage if storage is not None else self.spec.memory_storage(list(members))
        self.health = health
        #: Receives latency observations: ``observe(name, seconds)`` (see `consensus.service.NodeMetrics`).
        self.metrics = metrics
        self.stats = NodeStats()
        self._membership = Membership(id, self.spec, transport, health, self.stats, addresses or {})
        self.addresses: Dict[int, MemberAddress] = self._membership.addresses
        self._local_addresses: Dict[int, MemberAddress] = self._membership.local

        snapshot = self.storage.snapshot()
        applied = 0
        if snapshot.index > 0:
            self._restore_snapshot(snapshot.data)
            applied = snapshot.index
        voters = [m for m in members if m != id] if join else list(members)
        self.core: CoreNode = self.spec.make_core(id, voters, self.storage, applied, options.core_options())
        self._membership.core = self.core
        self.applied_index = applied
        self._snapshots = Snapshots(self, snapshot.index)
        self._admission = Admission(
            id, options.max_pending, self.stats, batch_in_one_index=self.spec.batch_in_one_index, observe=self._observe
        )
        self._inbox = Inbox(self.stats, self._poke, self._disconnect)
        #: The transport's delivery callback.
        self._on_frame: Callable[[int, bytes], None] = self._inbox.on_frame
        self._clock = LeaderClock(state_machine)

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
        self._stopped = False
        self._closed = False
        self.failure: Optional[BaseException] = None
        self._done: Optional[asyncio.Future] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._advance_clock: Optional[Callable[[int], None]] = getattr(state_machine, "advance_clock", None)
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
        # --- data-directory gate (consensus.runtime.DataDirectory): a node on a fresh data
        # directory waits here, transport up and core idle, until its peers confirm it is not a
        # wiped member.
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
        if self._snapshots.task is not None:
            tasks.append(self._snapshots.task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        await self.transport.close()
        self._admission.fail_everything(NodeStoppedError("the node stopped", indeterminate=True))
        # Waits for a snapshot being written; off the loop, which keeps serving meanwhile.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._io.shutdown, True)
        await loop.run_in_executor(None, self._snapshots.io.shutdown, True)
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
        self._admission.fail_everything(NodeStoppedError(f"the node stopped: {exc}", indeterminate=True))
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

    async def propose(self, command: bytes, *, timeout: Optional[float] = None) -> Any:
        """Replicates `command` and returns what the state machine's `apply` returned for it.

        Raises `NotLeaderError` (with `leader_hint`) on a follower, `BusyError` when too many
        requests wait, `LeadershipLostError` / `RequestTimeoutError` when the outcome is unknown.
        The command is stamped with the leader's clock (`_envelope.LeaderClock`); a state machine
        with `advance_clock(time_ms)` is given the stamp before the command (leases, session expiry).
        """
        return await self._propose_entry(stamped_command(self._clock.stamp(), command), timeout)

    def _clock_stamp(self) -> int:
        return self._clock.stamp()

    async def _propose_entry(self, data: bytes, timeout: Optional[float]) -> Any:
        self._check_running()
        if self.core.role != Role.LEADER:
            raise not_leader(self.core.leader)
        self._admission.check_capacity()
        assert self.loop is not None and self._wake is not None
        future = self.loop.create_future()
        self._admission.add_proposal(data, future)
        self._wake.set()
        return await self._await(future, timeout, "proposal")

    async def read_index(self, *, timeout: Optional[float] = None) -> int:
        """A linearizable read barrier: returns once this node has applied everything committed
        when the read began (Raft §6.4); reads of the state machine after it are linearizable.
        Works on followers too (the leader confirms the index)."""
        self._check_running()
        self._admission.check_capacity()
        assert self.loop is not None and self._wake is not None
        future = self.loop.create_future()
        self._admission.add_read(future)
        self._wake.set()
        result: int = await self._await(future, timeout, "read")
        return result

    async def change_membership(
        self,
        *,
        add_voters: Sequence[int] = (),
        remove_voters: Sequence[int] = (),
        add_learners: Sequence[int] = (),
        remove_learners: Sequence[int] = (),
        timeout: Optional[float] = None,
    ) -> MemberSet:
        """Proposes a membership change; returns the configuration in force once it is applied
        (`MemberSet`: voters, learners, outgoing voters)."""
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
        self._admission.expect(index, self.core.term, future)
        self._wake.set()
        return await self._await(future, timeout, "membership change")

    async def set_address(self, member_id: int, peer: str, client: str, *, timeout: Optional[float] = None) -> None:
        """Replicates the addresses of a member (so every node can reach a node added at runtime).
        Both must be ``"host:port"``; anything else is a `ConfigError` here, before it is proposed."""
        check_node_id("member_id", member_id)
        parse_address(peer, "peer")
        parse_address(client, "client")
        await self._propose_entry(address_record(member_id, peer, client), timeout)

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
        limit = self.options.request_timeout if timeout is None else timeout
        assert self.loop is not None
        return await wait_for_answer(self.loop, future, limit, what)

    def status(self) -> Dict[str, Any]:
        """The core's status plus the runtime's view: applied index, peers' health, counters."""
        s = dict(self._core_call(self.core.status))
        s["protocol"] = self.protocol
        s["applied"] = self.applied_index
        s["snapshot_index"] = self._snapshots.index
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

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _disconnect(self, peer: int, reason: str) -> None:
        self.transport.disconnect(peer, reason)

    def _sync_peers(self) -> None:
        self._membership.sync_peers()

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
                self._snapshots.maybe_start()
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
        admission = self._admission
        if admission.proposals:
            admission.submit_proposals(core)
        if admission.reads_waiting:
            admission.submit_reads(core)
        admission.sweep()

    def _step_inbox(self) -> None:
        self._inbox.step_into(self.core.step)

    def _report_unreachable(self) -> None:
        if self.health is None or self.core.role != Role.LEADER:
            return
        for peer in self.health.unavailable(time.monotonic()):
            self.core.report_unreachable(peer)

    async def _handle_ready(self) -> None:
        """The Ready loop of docs/design.md §2: send what may leave now, persist, send the rest, apply,
        advance."""
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
            self._admission.read_states(rd.read_states)
        for entry in rd.committed_entries:
            self._apply(entry)
        # Indexes that carried nothing to apply (Paxos no-op slots) are applied all the same: the
        # application stands where the Ready says.
        through = rd.applied_through
        if through > self.applied_index:
            self._admission.decided_through(through)
            self.applied_index = through
        # 5. Advance.
        core.advance(rd)
        self._admission.resolve_reads(self.applied_index)

    def _observe(self, name: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(name, seconds)

    def _apply(self, entry: CoreEntry) -> None:
        index = entry.index
        result: Any = None
        if entry.kind == self.spec.conf_change_kind:
            result = self._membership.apply_change(entry)
        else:
            data = entry.data
            if data:
                tag = data[0]
                if tag == ENVELOPE_STAMPED_COMMAND and len(data) > STAMP_BYTES:
                    if self._advance_clock is not None:
                        self._advance_clock(STAMP.unpack_from(data, 1)[0])
                    result = self.state_machine.apply(index, data[1 + STAMP_BYTES :])
                elif tag == ENVELOPE_COMMAND:
                    result = self.state_machine.apply(index, data[1:])
                elif tag == ENVELOPE_SYSTEM:
                    self._apply_system(data[1:])
                else:
                    log.error("entry %d has an unknown envelope %#x; skipped", index, tag)
        if index != self.applied_index:
            self._admission.fail_unanswered(self.applied_index)
        self.applied_index = index
        self._admission.answer(index, entry.term, result)

    def _apply_system(self, payload: bytes) -> None:
        self._membership.apply_record(payload)

    def _after_ready(self) -> None:
        """Notices role, term and leader changes: counts them and fails what they invalidate."""
        core = self.core
        role, term, leader = core.role, core.term, core.leader
        if role != self._role or term != self._term:
            if role == Role.CANDIDATE and (self._role != Role.CANDIDATE or term != self._term):
                self.stats.elections += 1
            if self._role == Role.LEADER and role != Role.LEADER:
                self._admission.leadership_lost(self.id, leader)
        if role != self._role or term != self._term or leader != self._leader:
            self._admission.reads_invalidated()
        if leader != self._leader and leader != 0:
            self.stats.leader_changes += 1
        if role != Role.LEADER:
            self._clock.leadership_ended()
        self._role, self._term, self._leader = role, term, leader

    # ------------------------------------------------------------------ snapshots

    def snapshot_bytes(self) -> bytes:
        """The node's replicated state (application + address book) as stored in a snapshot."""
        return self.snapshot_encoder()()

    def snapshot_encoder(self) -> Callable[[], bytes]:
        """Captures the replicated state now; the returned function encodes it, on any thread."""
        return snapshot_encoder(self.state_machine, self.addresses)

    def _restore_snapshot(self, data: bytes) -> None:
        if not data:
            return
        app, addresses = decode_snapshot(data)
        self.state_machine.restore(app)
        self._membership.learn(addresses)

    def _install_snapshot(self, snapshot: CoreSnapshot) -> None:
        """A snapshot from the leader replaced our log: the application restarts from it."""
        self._restore_snapshot(snapshot.data)
        self.applied_index = snapshot.index
        self._snapshots.installed(snapshot.index)
        self._admission.covered_by_snapshot(snapshot.index)
        self._sync_peers()

    async def _maybe_sync(self) -> None:
        """With ``fsync = "batch"`` entries are fsynced at most every few milliseconds: the storage
        decides when, on this call, made at most once per tick."""
        sync = getattr(self.storage, "sync", None)
        if sync is None or getattr(self.storage, "fsync", None) != "batch" or self._ticks_done == self._synced_at_tick:
            return
        self._synced_at_tick = self._ticks_done
        assert self.loop is not None
        await self.loop.run_in_executor(self._io, sync)

    async def take_snapshot(self) -> int:
        """Snapshots the state machine at the applied index and compacts the log up to it (or
        waits for the snapshot already being taken); returns the snapshot's index. A storage
        failure stops the node, as in the Ready loop."""
        self._check_running()
        return await asyncio.shield(self._snapshots.start())

    async def _snapshot(self) -> int:
        return await self._snapshots.take()

    @property
    def _read_prefix(self) -> bytes:
        return self._admission.read_prefix

    @property
    def _snapshot_io(self) -> concurrent.futures.ThreadPoolExecutor:
        return self._snapshots.io


__all__ = ["INLINE_SYNC_SECONDS_MAX", "Node"]
