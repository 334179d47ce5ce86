"""`consensus` driven through its own in-process API, the way PySyncObj is driven through its own.

PySyncObj has no client protocol: its load runs inside the leader's process (pysyncobj_bench.py). The
like-for-like `consensus` run does the same: members 2 and 3 are `consensus serve` processes, member 1
runs in this process (`consensus.service._server.build_node`, the same assembly `serve` uses: file WAL with
fsync "always", TCP transport, failure detectors, KVStore), is made the leader, and the load calls
`await kv.put(key, value)` (`consensus.Node.propose` under the hood) from N coroutines on the node's
own event loop: no HTTP, no client hop, one write in flight per client, fsync on.

    python benches/peers/consensus_embedded.py     # a short load run, as JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_common import ClusterStartError  # noqa: E402
from loadgen import LoadResult, make_value, summarize  # noqa: E402

TICK_MS, HEARTBEAT_TICKS, ELECTION_TICKS = 10, 5, 50


class EmbeddedConsensusCluster:
    size = 3

    def __init__(self, workdir: Path, **extra_settings: Any) -> None:
        from consensus.testing import ProcessCluster

        settings = {
            "tick_ms": TICK_MS,
            "heartbeat_ticks": HEARTBEAT_TICKS,
            "election_ticks": ELECTION_TICKS,
            "fsync": "always",
            **extra_settings,
        }
        self.processes = ProcessCluster(3, base_dir=str(workdir), settings=settings, cluster_id="bench-embedded")
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread: Optional[threading.Thread] = None
        self.node: Any = None
        self.kv: Any = None

    def _call(self, coro: Any, timeout: Optional[float] = None) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        try:
            import uvloop

            self.loop = uvloop.new_event_loop()
        except ImportError:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="embedded-node", daemon=True)
        self.thread.start()
        self.processes.start(2)
        self.processes.start(3)
        try:
            self._call(self._start_leader(), timeout=60)
        except Exception as exc:
            raise ClusterStartError(
                f"embedded consensus node did not become leader: {exc}\n{self.processes.log_tail(2)}"
            ) from exc

    async def _start_leader(self) -> None:
        from consensus.service import KVClient
        from consensus.config import load_config
        from consensus.service._server import build_node

        cfg = load_config(self.processes.nodes[1].config_path)
        self.node, self.kv = build_node(cfg)
        await self.node.start()
        urls = [self.processes.nodes[i].url for i in (2, 3)]
        async with KVClient(urls, retry_for=30) as client:
            while not self.node.is_leader:
                if self.node.leader not in (0, 1):
                    url = self.processes.nodes[self.node.leader].url
                    try:
                        await client.request(url, "POST", "/v1/leader/transfer", {"to": 1})
                    except Exception:  # noqa: BLE001 - retried below
                        pass
                await asyncio.sleep(0.1)

    def leader_index(self) -> int:
        return 0

    def run_load(self, value_bytes: int, clients: int, duration_s: float, warmup_s: float) -> LoadResult:
        return self._call(self._load(value_bytes, clients, duration_s, warmup_s), timeout=duration_s + warmup_s + 120)

    async def _load(self, value_bytes: int, clients: int, duration_s: float, warmup_s: float) -> LoadResult:
        value = make_value(value_bytes)
        start = time.perf_counter() + warmup_s
        end = start + duration_s
        latencies: List[float] = []
        errors = 0
        first_error = ""
        prefix = f"e{time.time_ns()}"

        async def client(number: int) -> None:
            nonlocal errors, first_error
            sequence = 0
            while True:
                began = time.perf_counter()
                if began >= end:
                    return
                sequence += 1
                try:
                    await self.kv.put(f"{prefix}-{number}-{sequence}", value)
                except Exception as exc:  # noqa: BLE001 - counted, like the HTTP load generator's errors
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                    await asyncio.sleep(0.01)
                    continue
                if began >= start:
                    latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(client(n) for n in range(clients)))
        return summarize("consensus-api", value_bytes, clients, latencies, duration_s, errors, first_error)

    def stop(self) -> None:
        if self.loop is not None and self.node is not None:
            try:
                self._call(self.node.stop(), timeout=30)
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(10)
        self.processes.stop_all()

    def __enter__(self) -> "EmbeddedConsensusCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, EmbeddedConsensusCluster(Path(tmp)) as cluster:
        for clients in (1, 64):
            print(json.dumps(cluster.run_load(1024, clients, 3.0, 1.0).to_dict()))
