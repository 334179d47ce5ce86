"""pytest-benchmark: a 3-node in-process cluster of Raft or Multi-Paxos cores driven from Python,
committing 128-byte entries in proposal batches of 1, 64 and 1024.

The loop is the Ready loop of docs/design.md §2 with nothing else in it (no LocalCluster): propose a
batch on the leader, then, until every node has applied the batch, for each node with a Ready:
persist it into the node's MemoryStorage, deliver its frames with ``step``, count its committed
entries, ``advance``. Its pure-Rust twin is ``rust/core/benches/support/cluster.rs``. Both
protocols run the same loop through the same methods (docs/design.md §1): a Raft batch is one entry per
command, a Paxos batch one slot value.

Two variants, reported separately:

* ``count``: committed entries are counted with ``rd.committed_count`` (no Entry objects built);
  this is the cost of replication alone and the variant compared with Rust.
* ``apply``: committed entries are iterated as ``rd.committed_entries`` and each ``entry.data`` is
  read, which is what a state machine must at least do; this adds the apply-side crossing.

Each round commits a fixed number of entries on a long-lived cluster; storages are compacted in
the (untimed) setup of every round so memory stays bounded.

    make bench-python                                  # with the other suites
    .venv/bin/python -m pytest benches/bench_cluster.py --benchmark-only
    .venv/bin/python benches/bench_cluster.py [seconds] [raft,paxos] [--leader]   # plain table, no pytest

``--leader`` ends a batch once the leader applied it (what a client waits for) instead of once every
node did.
"""

from __future__ import annotations

import sys
import time
from typing import Any, List, Sequence

import pytest

from consensus import Role, paxos, raft

try:
    import numpy as np
except ImportError:  # numpy is optional: batches above 1 then go in as lists of bytes
    np = None

ENTRY_BYTES = 128
BATCH_SIZES = (1, 64, 1024)
#: Upper bound on Ready passes without progress before the loop declares the cluster stuck.
IDLE_PASSES_MAX = 1_000


def entries_per_round(batch: int) -> int:
    """Entries committed per timed round (the same constants as the Rust example)."""
    return 2_048 if batch == 1 else 16_384


PROTOCOLS = ("raft", "paxos")


class Cluster:
    """Three nodes of `protocol` on memory storages, node 1 elected leader, one entry committed
    everywhere."""

    def __init__(self, size: int = 3, protocol: str = "raft", until_leader_applied: bool = False) -> None:
        voters = list(range(1, size + 1))
        #: A batch is done once the leader applied it (what a client waits for) instead of once
        #: every node did; followers catch up during later batches.
        self.until_leader_applied = until_leader_applied
        self.nodes: List[Any]
        if protocol == "paxos":
            self.storages: List[Any] = [paxos.MemoryStorage(voters) for _ in voters]
            self.nodes = [
                paxos.PaxosNode(i, members=voters, config=paxos.Config(seed=i), storage=s)
                for i, s in zip(voters, self.storages)
            ]
        else:
            self.storages = [raft.MemoryStorage() for _ in voters]
            self.nodes = [
                raft.RaftNode(i, voters=voters, config=raft.Config(seed=i), storage=s)
                for i, s in zip(voters, self.storages)
            ]
        # nodes_by_id[to] for frame delivery (index 0 unused).
        self.nodes_by_id = [None, *self.nodes]
        self.pairs = list(zip(self.nodes, self.storages))
        self.leader = self.nodes[0]
        self.leader.campaign()
        self.settle()
        assert self.leader.role == Role.LEADER, self.leader.role
        self.leader.propose(b"warm-up")
        self.settle()
        last = self.leader.commit_index
        assert all(n.applied_index == last for n in self.nodes)

    def on_idle(self) -> None:
        """Nothing is ready but followers have not applied everything: one heartbeat tick of the
        leader. Raft never gets here (its leader broadcasts a new commit index at once); a Paxos
        leader piggybacks the decide point on its next Accept and sends it on its own only on a
        heartbeat, which is what the runtime's ticker does when no other write follows."""
        self.leader.tick()

    def settle(self) -> None:
        for _ in range(3):
            self._settle_once()
            self.on_idle()
        self._settle_once()

    def _settle_once(self) -> None:
        busy = True
        while busy:
            busy = False
            for node, storage in self.pairs:
                if node.has_ready():
                    busy = True
                    rd = node.ready()
                    storage.persist(rd)
                    for to, frame in rd.messages + rd.persisted_messages:
                        self.nodes_by_id[to].step(frame)
                    node.advance(rd)

    def compact(self) -> None:
        for node, storage in self.pairs:
            applied = node.applied_index
            if applied > storage.first_index():
                storage.compact(applied, b"")


def commit_batch_count(cluster: Cluster, batch: Any, batch_len: int) -> None:
    """Proposes `batch` and runs the Ready loop until every node applied it (committed_count)."""
    pairs = cluster.pairs
    nodes_by_id = cluster.nodes_by_id
    counted = cluster.leader if cluster.until_leader_applied else None
    pending = batch_len * (1 if counted is not None else len(pairs))
    cluster.leader.propose_many(batch)
    idle = 0
    while pending:
        before = pending
        busy = False
        for node, storage in pairs:
            if node.has_ready():
                busy = True
                rd = node.ready()
                storage.persist(rd)
                for to, frame in rd.messages + rd.persisted_messages:
                    nodes_by_id[to].step(frame)
                if counted is None or node is counted:
                    pending -= rd.committed_count
                node.advance(rd)
        idle = idle + 1 if pending == before else 0
        if not busy:
            cluster.on_idle()
        if idle >= IDLE_PASSES_MAX:
            raise RuntimeError(f"cluster stuck with {pending} entries pending")


def commit_batch_apply(cluster: Cluster, batch: Any, batch_len: int) -> None:
    """As commit_batch_count, but iterates rd.committed_entries and reads each entry's data."""
    pairs = cluster.pairs
    nodes_by_id = cluster.nodes_by_id
    counted = cluster.leader if cluster.until_leader_applied else None
    pending = batch_len * (1 if counted is not None else len(pairs))
    cluster.leader.propose_many(batch)
    idle = 0
    while pending:
        before = pending
        busy = False
        for node, storage in pairs:
            if node.has_ready():
                busy = True
                rd = node.ready()
                storage.persist(rd)
                for to, frame in rd.messages + rd.persisted_messages:
                    nodes_by_id[to].step(frame)
                for entry in rd.committed_entries:
                    entry.data
                    if counted is None or node is counted:
                        pending -= 1
                node.advance(rd)
        idle = idle + 1 if pending == before else 0
        if not busy:
            cluster.on_idle()
        if idle >= IDLE_PASSES_MAX:
            raise RuntimeError(f"cluster stuck with {pending} entries pending")


VARIANTS = {"count": commit_batch_count, "apply": commit_batch_apply}


def make_batch(batch_len: int) -> Any:
    """A list of one bytes for batch 1; a (batch_len, 128) uint8 array otherwise (list without numpy)."""
    block = bytes((i * 31 + 7) & 0xFF for i in range(batch_len * ENTRY_BYTES))
    if batch_len == 1 or np is None:
        return [block[i * ENTRY_BYTES : (i + 1) * ENTRY_BYTES] for i in range(batch_len)]
    return np.frombuffer(block, dtype=np.uint8).reshape(batch_len, ENTRY_BYTES).copy()


def run_round(cluster: Cluster, commit: Any, batch: Any, batch_len: int) -> None:
    for _ in range(entries_per_round(batch_len) // batch_len):
        commit(cluster, batch, batch_len)


# ------------------------------------------------------------------------------- pytest-benchmark


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("batch_len", BATCH_SIZES)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cluster3_commit(benchmark: Any, protocol: str, batch_len: int, variant: str) -> None:
    cluster = Cluster(3, protocol)
    commit = VARIANTS[variant]
    batch = make_batch(batch_len)
    run_round(cluster, commit, batch, batch_len)  # warm-up

    def setup() -> Any:
        cluster.compact()
        return (cluster, commit, batch, batch_len), {}

    benchmark.group = f"cluster3 commit 128B batch={batch_len} {variant}"
    benchmark.pedantic(run_round, setup=setup, rounds=40, iterations=1, warmup_rounds=2)
    entries = entries_per_round(batch_len)
    benchmark.extra_info["entries_per_round"] = entries
    benchmark.extra_info["variant"] = variant
    benchmark.extra_info["protocol"] = protocol
    benchmark.extra_info["entries_per_s_median"] = round(entries / benchmark.stats.stats.median)
    benchmark.extra_info["entries_per_s_max"] = round(entries / benchmark.stats.stats.min)
    assert cluster.leader.commit_index == cluster.leader.applied_index


# ------------------------------------------------------------------------------- plain table


def measure(protocol: str, variant: str, batch_len: int, seconds: float, until_leader_applied: bool = False) -> List[float]:
    cluster = Cluster(3, protocol, until_leader_applied)
    commit = VARIANTS[variant]
    batch = make_batch(batch_len)
    run_round(cluster, commit, batch, batch_len)
    rates: List[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 5:
        cluster.compact()
        t0 = time.perf_counter()
        run_round(cluster, commit, batch, batch_len)
        rates.append(entries_per_round(batch_len) / (time.perf_counter() - t0))
    return sorted(rates)


def main(argv: Sequence[str]) -> None:
    leader_only = "--leader" in argv
    args = [a for a in argv[1:] if not a.startswith("--")]
    seconds = float(args[0]) if args else 3.0
    protocols = args[1].split(",") if len(args) > 1 else PROTOCOLS
    header = f"{'protocol':>8} {'variant':>7} {'batch':>6} {'median entries/s':>16} {'best entries/s':>16} {'rounds':>7}"
    print(header)
    for variant in VARIANTS:
        for batch_len in BATCH_SIZES:
            for protocol in protocols:
                rates = measure(protocol, variant, batch_len, seconds, leader_only)
                median, best = rates[len(rates) // 2], rates[-1]
                print(f"{protocol:>8} {variant:>7} {batch_len:>6} {median:>16.0f} {best:>16.0f} {len(rates):>7}")


if __name__ == "__main__":
    main(sys.argv)
