"""The main job (`make run`, `consensus demo`), in two variants.

`run_demo`: three node processes on loopback, data in a temporary directory. Writes keys through
the HTTP API, kills the leader with SIGKILL, measures the failover, keeps writing, restarts the old
leader and watches it catch up, then checks that every acknowledged write is on every node. Exits
non-zero if anything acknowledged is missing.

`run_in_process_demo` (``consensus demo --in-process``): the same story with three Raft cores in
one process (Rust core, Python Ready loop), no sockets and no disk.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Callable, Dict, List, Optional

from consensus import protocols, raft
from consensus.service._client import KVClient
from consensus.testing._clusters import LocalCluster, ProcessCluster

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


def _status_line(cluster: LocalCluster) -> str:
    parts = []
    for member in cluster.members.values():
        node = member.node
        if node is None:
            parts.append(f"n{member.id}: down")
        else:
            parts.append(f"n{member.id}: {node.role.label:<9} term={node.term} commit={node.commit_index}")
    return " | ".join(parts)


def run_in_process_demo(writes: int = 1000, out: Out = print) -> int:
    """Runs the scenario; returns 0 when every acknowledged write is on every node."""
    cluster = LocalCluster(3, configure=lambda node_id: raft.Config(election_tick=10, heartbeat_tick=1, seed=7))
    acknowledged: List[bytes] = []

    out("== consensus demo: 3 Raft nodes in one process (Rust core, Python Ready loop)")
    ticks = 0
    while cluster.leader() is None:
        cluster.tick()
        ticks += 1
    first_leader = cluster.wait_for_leader()
    out(f"-- elected node {first_leader} after {ticks} ticks")
    out("   " + _status_line(cluster))

    def write_batch(start: int, count: int) -> None:
        leader = cluster.wait_for_leader()
        node = cluster.node(leader)
        batch = [f"key-{i}=value-{i}".encode() for i in range(start, start + count)]
        node.propose_many(batch)
        cluster.stabilize()
        # Acknowledge only what the leader has applied (committed on a quorum).
        applied = set(cluster.applied_data(leader))
        acknowledged.extend(b for b in batch if b in applied)

    started = time.perf_counter()
    for start in range(0, writes, 100):
        write_batch(start, 100)
    elapsed = time.perf_counter() - started
    out(f"-- committed {len(acknowledged)} writes through node {first_leader} in {elapsed * 1000:.1f} ms")
    out("   " + _status_line(cluster))

    out(f"-- crashing the leader, node {first_leader}")
    cluster.crash(first_leader)
    failover_ticks = 0
    while True:
        cluster.tick()
        failover_ticks += 1
        leader = cluster.leader()
        if leader is not None and leader != first_leader:
            break
        if failover_ticks > 500:
            out("!! no new leader after 500 ticks")
            return 1
    new_leader = cluster.wait_for_leader()
    election_tick = cluster.node(new_leader).config.election_tick
    out(
        f"-- node {new_leader} took over after {failover_ticks} ticks "
        f"({failover_ticks / election_tick:.1f} election timeouts)"
    )
    out("   " + _status_line(cluster))

    for start in range(writes, writes + writes // 2, 100):
        write_batch(start, 100)
    out(f"-- kept writing: {len(acknowledged)} acknowledged writes in total")

    out(f"-- restarting node {first_leader} from its storage")
    cluster.restart(first_leader)
    cluster.tick(30)
    out("   " + _status_line(cluster))

    missing = 0
    for member in cluster.members.values():
        applied = set(cluster.applied_data(member.id))
        lost = [w for w in acknowledged if w not in applied]
        missing += len(lost)
        out(f"   node {member.id}: {len(applied)} writes applied, {len(lost)} acknowledged writes missing")
    if missing:
        out(f"!! {missing} acknowledged writes missing")
        return 1
    out("== every acknowledged write is on every node")
    return 0


__all__ = ["run_demo", "run_in_process_demo"]
