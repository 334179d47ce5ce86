"""asv benchmarks of the asyncio runtime: a 3-node `consensus.Node` cluster in one process over the
in-memory transport, writing 100-byte values to a `KVStore` through `kv.put` (= `Node.propose`)
from 1 and 64 concurrent coroutines, for each protocol. Memory storage measures the runtime; file
storage (fsync "always", in a temporary directory) adds the write-ahead log.

    asv run --python=same --quick --bench bench_node

``track_writes_per_s`` is writes per second over one round of ``WRITES`` writes. Skipped on
commits older than the runtime (their package has no ``consensus.node``).
"""

import asyncio
import shutil
import tempfile
import time

try:
    from consensus import KVStore, Node, NodeOptions, raft
    from consensus.transport import MemoryNetwork
except ImportError:  # a commit from before the runtime
    Node = None
try:
    from consensus import paxos
except ImportError:  # a commit from before Multi-Paxos
    paxos = None

WRITES = 4_000
VALUE = "v" * 100


def _counters(network, nodes):
    """Frames sent by every transport and fsyncs of every file storage, so far."""
    frames = sum(peer["frames_sent"] for node in nodes for peer in node.transport.stats().values())
    fsyncs = sum(node.storage.stats()["fsyncs"] for node in nodes if hasattr(node.storage, "stats"))
    return frames, fsyncs


async def _round(storage_kind, clients, protocol="raft", counts=None):
    """Writes per second of one round; with a dict as `counts`, also fills in the frames and
    fsyncs per write (all three nodes) during the measured writes."""
    directory = tempfile.mkdtemp(prefix="asv-node-") if storage_kind == "file" else None
    network = MemoryNetwork()
    options = NodeOptions(tick_interval=0.005, snapshot_entries=0)
    nodes = []
    try:
        for i in (1, 2, 3):
            if directory and protocol == "paxos":
                storage = paxos.FileStorage(f"{directory}/n{i}", fsync="always")
            elif directory:
                storage = raft.FileStorage(f"{directory}/n{i}", fsync="always")
            elif protocol == "paxos":
                storage = paxos.MemoryStorage([1, 2, 3])
            else:
                storage = raft.MemoryStorage()
            node = Node(i, [1, 2, 3], KVStore(), network.transport(i), protocol=protocol, storage=storage, options=options)
            nodes.append(node)
        for node in nodes:
            await node.start()
        nodes[0].core.campaign()
        while not nodes[0].is_leader:
            await asyncio.sleep(0.001)
        kv = nodes[0].state_machine
        per_client = WRITES // clients

        async def client(c):
            for i in range(per_client):
                await kv.put(f"k{c}-{i}", VALUE)

        frames_before, fsyncs_before = _counters(network, nodes)
        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
        if counts is not None:
            frames, fsyncs = _counters(network, nodes)
            writes = per_client * clients
            counts["frames_per_write"] = (frames - frames_before) / writes
            counts["fsyncs_per_write"] = (fsyncs - fsyncs_before) / writes
        return per_client * clients / elapsed
    finally:
        for node in nodes:
            await node.stop()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


class NodeWrites:
    params = (["raft", "paxos"], ["memory", "file"], [1, 64])
    param_names = ["protocol", "storage", "clients"]
    timeout = 300

    def setup(self, protocol, storage, clients):
        if Node is None:
            raise NotImplementedError("no asyncio runtime in this commit")
        if protocol == "paxos" and paxos is None:
            raise NotImplementedError("no Multi-Paxos in this commit")
        if protocol == "paxos" and storage == "file" and not hasattr(paxos, "FileStorage"):
            raise NotImplementedError("no durable Multi-Paxos storage in this commit")

    def track_writes_per_s(self, protocol, storage, clients):
        return asyncio.run(_round(storage, clients, protocol))

    track_writes_per_s.unit = "writes/s"
