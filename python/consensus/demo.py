"""The main job (`make run`, `consensus demo`): three node processes on loopback, data in a
temporary directory. Writes keys through the HTTP API, kills the leader with SIGKILL, measures the
failover, keeps writing, restarts the old leader and watches it catch up, then checks that every
acknowledged write is on every node. Exits non-zero if anything acknowledged is missing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Callable, Dict, List, Optional

from consensus import protocols
from consensus.client import KVClient
from consensus.launcher import ProcessCluster

Out = Callable[[str], None]


class Progress:
    """A one-line progress bar on a terminal; a few plain lines otherwise."""

    def __init__(self, label: str, total: int, out: Out) -> None:
        self.label, self.total, self.out = label, total, out
        self.done = 0
        self.tty = out is print and sys.stdout.isatty()
        self._last_line = -1

    def update(self, done: int) -> None:
        self.done = done
        width = 30
        filled = width * done // max(self.total, 1)
        line = f"  {self.label:<22} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}"
        if self.tty:
            sys.stdout.write("\r" + line)
            sys.stdout.flush()
        elif done == self.total or done * 4 // max(self.total, 1) != self._last_line:
            self._last_line = done * 4 // max(self.total, 1)
            self.out(line)

    def finish(self) -> None:
        if self.tty:
            sys.stdout.write("\n")


async def _write_keys(
    client: KVClient, prefix: str, count: int, acknowledged: Dict[str, str], out: Out, workers: int = 8
) -> None:
    progress = Progress(f"writing {prefix}*", count, out)
    keys = iter(range(count))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in keys:
            key, value = f"{prefix}{i:05d}", f"value-{prefix}{i}"
            await client.put(key, value)
            acknowledged[key] = value
            done += 1
            progress.update(done)

    await asyncio.gather(*(worker() for _ in range(workers)))
    progress.finish()


async def _status_table(client: KVClient, out: Out) -> None:
    for url, s in zip(client.urls, await client.statuses()):
        if s is None:
            out(f"    {url}: down")
        else:
            out(
                f"    n{s['id']} {s['role']:<9} term={s['term']:<3} commit={s['commit_index']:<6} "
                f"applied={s['applied_index']:<6} snapshot={s['snapshot_index']}"
            )


async def _scenario(cluster: ProcessCluster, writes: int, out: Out, election_timeout_ms: int) -> int:
    client = KVClient(cluster.urls, retry_for=30.0)
    try:
        out(f"starting {cluster.size} nodes ({cluster.protocol}) in {cluster.base_dir}")
        cluster.start_all()
        leader, _url = await client.wait_for_leader(timeout=60.0)
        out(f"node {leader} is the leader")
        acknowledged: Dict[str, str] = {}
        await _write_keys(client, "a", writes, acknowledged, out)
        await _status_table(client, out)

        out(f"SIGKILL the leader, node {leader}")
        killed_at = time.perf_counter()
        cluster.kill(leader)
        survivors = KVClient([n.url for i, n in cluster.nodes.items() if i != leader], retry_for=30.0)
        try:
            await survivors.put("failover-probe", "ok")
            failover_ms = (time.perf_counter() - killed_at) * 1000
            acknowledged["failover-probe"] = "ok"
            new_leader, _ = await survivors.wait_for_leader()
        finally:
            await survivors.close()
        out(
            f"failover: first write acknowledged {failover_ms:.0f} ms after the kill "
            f"(election timeout {election_timeout_ms} ms); node {new_leader} leads"
        )
        await _write_keys(client, "b", writes, acknowledged, out)

        out(f"restarting node {leader}")
        cluster.start(leader)
        old = KVClient([cluster.nodes[leader].url])
        try:
            target = max(s["commit_index"] for s in await client.statuses() if s is not None)
            progress = Progress(f"node {leader} catching up", target, out)
            deadline = time.monotonic() + 60
            while True:
                s: Optional[dict] = None
                try:
                    s = await old.status(cluster.nodes[leader].url)
                except Exception:  # noqa: BLE001 - still starting
                    pass
                applied = s["applied_index"] if s else 0
                progress.update(min(applied, target))
                if applied >= target:
                    break
                if time.monotonic() > deadline:
                    progress.finish()
                    out(f"node {leader} did not catch up: applied {applied} of {target}")
                    return 1
                await asyncio.sleep(0.05)
            progress.finish()
            if s is not None and s["snapshot_index"]:
                out(f"  node {leader} restarted from snapshot {s['snapshot_index']} and the log after it")
        finally:
            await old.close()
        await _status_table(client, out)

        out(f"checking {len(acknowledged)} acknowledged writes on every node")
        missing: List[str] = []
        for node in cluster.nodes.values():
            one = KVClient([node.url], retry_for=10.0)
            try:
                await one.call("GET", "/v1/kv/failover-probe")  # read barrier: this node is current
                for key, value in acknowledged.items():
                    found = await one.get(key, stale=True)
                    if found is None or found[0] != value:
                        missing.append(f"n{node.id}:{key}")
            finally:
                await one.close()
        if missing:
            out(f"FAILED: {len(missing)} acknowledged writes missing, e.g. {missing[:5]}")
            return 1
        out(f"ok: all {len(acknowledged)} acknowledged writes are on all {cluster.size} nodes")
        return 0
    finally:
        await client.close()


def run_demo(*, writes: int = 500, protocol: str = "raft", out: Out = print) -> int:
    protocols.get(protocol)  # an unknown or not yet available protocol fails here, with ConfigError
    tick_ms, election_ticks, heartbeat_ticks = 10, 30, 3
    settings = {
        "tick_ms": tick_ms,
        "election_ticks": election_ticks,
        "heartbeat_ticks": heartbeat_ticks,
        "fsync": "always",
        # Small, so the restarted node catches up from a snapshot and then the log.
        "snapshot_entries": max(50, writes // 2),
    }
    with ProcessCluster(3, protocol=protocol, settings=settings) as cluster:
        try:
            return asyncio.run(_scenario(cluster, writes, out, tick_ms * election_ticks))
        except Exception as exc:  # noqa: BLE001 - report, with the nodes' logs, and fail
            out(f"FAILED: {type(exc).__name__}: {exc}")
            for node_id in cluster.nodes:
                out(f"--- node {node_id} log (last lines)\n{cluster.log_tail(node_id)}")
            return 1
