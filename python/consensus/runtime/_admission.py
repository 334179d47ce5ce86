"""Request admission: the proposals and reads callers wait on, from the moment they are accepted
until they are answered, failed or given up.

Proposals wait in a queue until the driver hands them to the core in batches; then in `pending`
under the index the core gave them, until that index is applied. Reads wait for the next pass,
then in flight under a context until the leader confirms an index, then until the application
reaches it. Everything is bounded (``max_pending``; `BusyError` past it) and a caller that gives up
(timeout, cancellation) leaves its future done, so the tables forget it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Sequence, Tuple

from consensus._core import NotLeaderError, ProposalDroppedError
from consensus.errors import BusyError, LeadershipLostError, RequestTimeoutError, not_leader, proposal_dropped
from consensus.protocols import CoreNode, CoreReadState
from consensus.runtime._stats import NodeStats

#: Read contexts in flight before the driver sweeps those nobody waits for any more.
READS_INFLIGHT_SWEEP = 1024
#: Proposals handed to the core in one call.
PROPOSAL_BATCH_MAX = 4096

Waiter = Tuple[asyncio.Future, float]


@dataclass(frozen=True)
class Skipped:
    """The result of a committed entry that could not be applied (its proposer gets `error`)."""

    error: BaseException


def _expire(future: asyncio.Future, what: str, limit: float) -> None:
    if not future.done():
        future.set_exception(RequestTimeoutError(f"{what} not answered within {limit:.3g} s"))


async def wait_for_answer(loop: asyncio.AbstractEventLoop, future: asyncio.Future, limit: float, what: str) -> Any:
    """Waits for `future` at most `limit` seconds (a timer on the future itself: cheaper than
    `wait_for`, which wraps it in another task). A caller that gives up (timeout or cancellation)
    leaves the future done, so the driver skips it when the entry applies."""
    timer = loop.call_later(limit, _expire, future, what, limit)
    try:
        return await future
    finally:
        timer.cancel()


class Admission:
    def __init__(
        self,
        node_id: int,
        max_pending: int,
        stats: NodeStats,
        *,
        batch_in_one_index: bool,
        observe: Callable[[str, float], None],
    ) -> None:
        self._max_pending = max_pending
        self._stats = stats
        self._batch_in_one_index = batch_in_one_index
        self._observe = observe
        self.proposals: Deque[Tuple[bytes, asyncio.Future]] = deque()
        #: index -> (term, future, start time) of the proposals the core accepted at that index, in
        #: proposal order (one per index for Raft; a Paxos slot holds a batch).
        self.pending: Dict[int, Deque[Tuple[int, asyncio.Future, float]]] = {}
        self.pending_count = 0
        self.reads_waiting: List[Waiter] = []
        self._reads_inflight: Dict[bytes, List[Waiter]] = {}
        #: (read index, waiters) whose index is known, waiting for the application to catch up.
        self._reads_applying: List[Tuple[int, List[Waiter]]] = []
        self._read_seq = 0
        self._reads_outstanding = 0
        #: Read contexts are unique across nodes and restarts: the leader matches answers by
        #: context alone, so a repeated one could be answered with another read's (older) index.
        self.read_prefix = node_id.to_bytes(8, "little") + os.urandom(8)

    # ------------------------------------------------------------------ callers

    def check_capacity(self) -> None:
        waiting = len(self.proposals) + self.pending_count + self._reads_outstanding
        if waiting >= self._max_pending:
            raise BusyError(f"{waiting} requests are waiting (max_pending = {self._max_pending})")

    def add_proposal(self, data: bytes, future: asyncio.Future) -> None:
        self.proposals.append((data, future))

    def add_read(self, future: asyncio.Future) -> None:
        self._reads_outstanding += 1
        future.add_done_callback(self._read_finished)
        self.reads_waiting.append((future, time.perf_counter()))

    def _read_finished(self, _future: asyncio.Future) -> None:
        self._reads_outstanding -= 1

    def expect(self, index: int, term: int, future: asyncio.Future) -> None:
        """`future` is answered when the entry the core put at `index` in `term` is applied."""
        self.pending.setdefault(index, deque()).append((term, future, time.perf_counter()))

    # ------------------------------------------------------------------ the driver hands them over

    def submit_proposals(self, core: CoreNode) -> None:
        proposals = self.proposals
        while proposals:
            batch: List[Tuple[bytes, asyncio.Future]] = []
            while proposals and len(batch) < PROPOSAL_BATCH_MAX:
                data, future = proposals.popleft()
                if not future.done():
                    batch.append((data, future))
            if not batch:
                return
            try:
                first = core.propose_many([data for data, _ in batch])
            except NotLeaderError as exc:
                self._fail_batch(batch, not_leader(exc.leader_hint))
                continue
            except ProposalDroppedError as exc:
                self._fail_batch(batch, exc)
                continue
            if first == 0:
                self._fail_batch(batch, not_leader(core.leader))
                continue
            term = core.term
            now = time.perf_counter()
            pending = self.pending
            one_index = self._batch_in_one_index
            for offset, (_data, future) in enumerate(batch):
                index = first if one_index else first + offset
                waiters = pending.get(index)
                if waiters is None:
                    waiters = pending[index] = deque()
                waiters.append((term, future, now))
            self.pending_count += len(batch)
            self._stats.proposals += len(batch)

    def _fail_batch(self, batch: List[Tuple[bytes, asyncio.Future]], exc: BaseException) -> None:
        self._stats.proposals_failed += len(batch)
        for _data, future in batch:
            if not future.done():
                future.set_exception(exc)

    def submit_reads(self, core: CoreNode) -> None:
        waiters, self.reads_waiting = self.reads_waiting, []
        self._read_seq += 1
        context = self.read_prefix + self._read_seq.to_bytes(8, "little")
        try:
            core.read_index(context)
        except (ProposalDroppedError, NotLeaderError) as exc:
            for future, _start in waiters:
                if not future.done():
                    future.set_exception(exc)
            return
        self._reads_inflight[context] = waiters

    def sweep(self) -> None:
        """Forgets requests whose callers gave up, so the tables stay bounded."""
        if self.pending and self.pending_count > self._max_pending // 2:
            for index in [i for i, ws in self.pending.items() if all(f.done() for _t, f, _s in ws)]:
                self.pending_count -= len(self.pending.pop(index))
        if self._reads_inflight and len(self._reads_inflight) > READS_INFLIGHT_SWEEP:
            # Contexts whose callers all gave up (their frames may have been lost): forget them.
            for context in [c for c, ws in self._reads_inflight.items() if all(f.done() for f, _s in ws)]:
                del self._reads_inflight[context]

    # ------------------------------------------------------------------ answers

    def answer(self, index: int, term: int, result: Any) -> None:
        """The entry at `index`, of `term`, was applied with `result`: its proposer learns it."""
        waiters = self.pending.get(index)
        if not waiters:
            return
        expected_term, future, started = waiters.popleft()
        self.pending_count -= 1
        if not waiters:
            del self.pending[index]
        if future.done():
            return
        if isinstance(result, Skipped):
            future.set_exception(result.error)
        elif term == expected_term:
            future.set_result(result)
            self._observe("proposal", time.perf_counter() - started)
        else:
            future.set_exception(LeadershipLostError(f"entry {index} was replaced by a later leader's"))

    def fail_unanswered(self, index: int) -> None:
        """Proposals at `index` still waiting once the application moved past it: the value chosen
        there held fewer commands than were proposed into it (another leader's value won)."""
        waiters = self.pending.pop(index, None)
        if not waiters:
            return
        self.pending_count -= len(waiters)
        for _term, future, _s in waiters:
            if not future.done():
                future.set_exception(LeadershipLostError(f"index {index} was decided without this proposal"))

    def decided_through(self, index: int) -> None:
        """Every index up to `index` is decided and applied: what still waits there lost."""
        for waiting in [i for i in self.pending if i <= index]:
            self.fail_unanswered(waiting)

    def covered_by_snapshot(self, index: int) -> None:
        for waiting in [i for i in self.pending if i <= index]:
            waiters = self.pending.pop(waiting)
            self.pending_count -= len(waiters)
            for _term, future, _s in waiters:
                if not future.done():
                    future.set_exception(LeadershipLostError(f"entry {waiting} was covered by an installed snapshot"))

    def read_states(self, read_states: Sequence[CoreReadState]) -> None:
        for rs in read_states:
            waiters = self._reads_inflight.pop(rs.context, None)
            if waiters:
                self._reads_applying.append((rs.index, waiters))

    def resolve_reads(self, applied_index: int) -> None:
        if not self._reads_applying:
            return
        still: List[Tuple[int, List[Waiter]]] = []
        now = time.perf_counter()
        for index, waiters in self._reads_applying:
            if index <= applied_index:
                for future, started in waiters:
                    if not future.done():
                        future.set_result(index)
                        self._stats.reads += 1
                        self._observe("read", now - started)
            else:
                still.append((index, waiters))
        self._reads_applying = still

    # ------------------------------------------------------------------ failures

    def reads_invalidated(self) -> None:
        """Reads in flight were tied to the old leadership; the core dropped them (a step-down
        keeps the term but forgets pending reads). Definite: a read changes nothing; retry."""
        if not self._reads_inflight:
            return
        err = proposal_dropped("leadership_changed", "leadership changed while the read was in flight; retry")
        for waiters in self._reads_inflight.values():
            for future, _s in waiters:
                if not future.done():
                    future.set_exception(err)
        self._reads_inflight.clear()

    def leadership_lost(self, node_id: int, leader: int) -> None:
        err = LeadershipLostError(f"node {node_id} lost its leadership (leader now {leader or 'unknown'})")
        for waiters in self.pending.values():
            for _term, future, _s in waiters:
                if not future.done():
                    future.set_exception(err)
        self.pending.clear()
        self.pending_count = 0
        while self.proposals:
            _data, future = self.proposals.popleft()
            if not future.done():
                future.set_exception(not_leader(leader))

    def fail_everything(self, exc: BaseException) -> None:
        futures: List[asyncio.Future] = [f for ws in self.pending.values() for _t, f, _s in ws]
        futures += [f for _d, f in self.proposals]
        futures += [f for f, _s in self.reads_waiting]
        futures += [f for ws in self._reads_inflight.values() for f, _s in ws]
        futures += [f for _i, ws in self._reads_applying for f, _s in ws]
        for future in futures:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # nobody may be waiting any more; do not warn about it
        self.pending.clear()
        self.pending_count = 0
        self.proposals.clear()
        self.reads_waiting.clear()
        self._reads_inflight.clear()
        self._reads_applying.clear()


__all__ = ["PROPOSAL_BATCH_MAX", "READS_INFLIGHT_SWEEP", "Admission", "Skipped", "wait_for_answer"]
