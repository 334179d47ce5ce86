"""The main job (`make run`, `python -m consensus demo`): an in-process three-node Raft cluster
elects a leader, commits writes, loses its leader, elects another, keeps committing, and brings
the old leader back up to date. Every step is printed; the run fails loudly if an acknowledged
write is missing anywhere.
"""

from __future__ import annotations

import time
from typing import Callable, List

from consensus import raft
from consensus.local import LocalCluster


def _status_line(cluster: LocalCluster) -> str:
    parts = []
    for member in cluster.members.values():
        node = member.node
        if node is None:
            parts.append(f"n{member.id}: down")
        else:
            parts.append(f"n{member.id}: {node.role.label:<9} term={node.term} commit={node.commit_index}")
    return " | ".join(parts)


def run_demo(writes: int = 1000, out: Callable[[str], None] = print) -> int:
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
