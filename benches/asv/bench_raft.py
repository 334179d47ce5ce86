"""asv benchmarks: a 3-node in-process Raft cluster driven from Python, committing 128-byte
entries in proposal batches of 1, 64 and 1024 (the loop of benches/bench_cluster.py, kept
self-contained here because asv runs these files against wheels of older commits too).

    asv run                      # every commit of `main` (config: asv.conf.json)
    asv run --python=same --quick  # once, against the installed package

``time_commit`` is seconds per round (`ENTRIES_PER_ROUND` entries); ``track_entries_per_s`` is the
committed entries per second of one round, the number the issue's targets are stated in.
"""

import time

from consensus import Role, raft

try:
    import numpy as np
except ImportError:  # the asv matrix also runs without numpy
    np = None

ENTRY_BYTES = 128
IDLE_PASSES_MAX = 1_000


def _entries_per_round(batch_len):
    return 2_048 if batch_len == 1 else 16_384


def _make_batch(batch_len):
    block = bytes((i * 31 + 7) & 0xFF for i in range(batch_len * ENTRY_BYTES))
    if batch_len == 1 or np is None:
        return [block[i * ENTRY_BYTES : (i + 1) * ENTRY_BYTES] for i in range(batch_len)]
    return np.frombuffer(block, dtype=np.uint8).reshape(batch_len, ENTRY_BYTES).copy()


class _Cluster:
    def __init__(self):
        voters = [1, 2, 3]
        self.storages = [raft.MemoryStorage() for _ in voters]
        self.nodes = [
            raft.RaftNode(i, voters=voters, config=raft.Config(seed=i), storage=s)
            for i, s in zip(voters, self.storages)
        ]
        self.nodes_by_id = [None, *self.nodes]
        self.pairs = list(zip(self.nodes, self.storages))
        self.leader = self.nodes[0]
        self.leader.campaign()
        self._settle()
        assert self.leader.role == Role.LEADER
        self.leader.propose(b"warm-up")
        self._settle()

    def _settle(self):
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

    def compact(self):
        for node, storage in self.pairs:
            if node.applied_index > storage.first_index():
                storage.compact(node.applied_index)

    def commit_batch(self, batch, batch_len):
        pairs = self.pairs
        nodes_by_id = self.nodes_by_id
        pending = batch_len * len(pairs)
        self.leader.propose_many(batch)
        idle = 0
        while pending:
            before = pending
            for node, storage in pairs:
                if node.has_ready():
                    rd = node.ready()
                    storage.persist(rd)
                    for to, frame in rd.messages + rd.persisted_messages:
                        nodes_by_id[to].step(frame)
                    pending -= rd.committed_count
                    node.advance(rd)
            idle = idle + 1 if pending == before else 0
            if idle >= IDLE_PASSES_MAX:
                raise RuntimeError("cluster stuck with %d entries pending" % pending)

    def run_round(self, batch, batch_len):
        for _ in range(_entries_per_round(batch_len) // batch_len):
            self.commit_batch(batch, batch_len)


class Cluster3Commit:
    """Committed entries through a 3-node cluster, by proposal batch size."""

    params = [1, 64, 1024]
    param_names = ["batch"]
    # One round per sample; asv calls setup (a fresh cluster and a warm-up round) before each
    # repeat, so memory stays bounded without compaction inside the timed code.
    number = 1
    repeat = (5, 20, 10.0)
    timeout = 120

    def setup(self, batch_len):
        self.cluster = _Cluster()
        self.batch = _make_batch(batch_len)
        self.cluster.run_round(self.batch, batch_len)  # warm-up

    def time_commit(self, batch_len):
        self.cluster.run_round(self.batch, batch_len)

    def track_entries_per_s(self, batch_len):
        self.cluster.compact()
        start = time.perf_counter()
        self.cluster.run_round(self.batch, batch_len)
        return _entries_per_round(batch_len) / (time.perf_counter() - start)

    track_entries_per_s.unit = "entries/s"
