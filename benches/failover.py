"""Failover of Raft and Multi-Paxos side by side, without processes or disks.

``--ticks SEEDS``: the cores alone, deterministic. Three nodes (election 50 ticks, heartbeat 5; Raft
with PreVote and CheckQuorum), node 1 elected, a random number of steady-state ticks, then node 1
stops; the survivors tick until one of them leads. Prints the ticks that took, per protocol.

``--runtime TRIALS``: three `consensus.Node`s in one process (10 ms ticks, memory storage); the
leader stops after 20 writes; prints the time until a survivor leads and has committed a write.

    .venv/bin/python benches/failover.py --ticks 200
    .venv/bin/python benches/failover.py --runtime 30
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, Dict, List, Set

from consensus import KVStore, Role, paxos, raft
from consensus.runtime import Node, NodeOptions
from consensus.transport import MemoryNetwork

PROTOCOLS = ("raft", "paxos")
IDS = [1, 2, 3]
ELECTION_TICKS = 50
HEARTBEAT_TICKS = 5


def core_cluster(protocol: str, seed: int) -> Dict[int, Any]:
    if protocol == "raft":
        return {
            i: raft.RaftNode(
                i,
                voters=IDS,
                config=raft.Config(
                    election_tick=ELECTION_TICKS, heartbeat_tick=HEARTBEAT_TICKS, pre_vote=True, check_quorum=True,
                    seed=seed * 10 + i,
                ),
            )
            for i in IDS
        }
    return {
        i: paxos.PaxosNode(
            i,
            members=IDS,
            config=paxos.Config(
                election_tick=ELECTION_TICKS, heartbeat_tick=HEARTBEAT_TICKS, check_quorum=True, seed=seed * 10 + i
            ),
        )
        for i in IDS
    }


def deliver(nodes: Dict[int, Any], dead: Set[int]) -> None:
    """Persists, sends and advances every Ready until none is left (frames to `dead` are lost)."""
    busy = True
    while busy:
        busy = False
        for i, node in nodes.items():
            if i in dead or not node.has_ready():
                continue
            busy = True
            rd = node.ready()
            node.persist_and_advance(rd)
            for to, frame in rd.messages + rd.persisted_messages:
                if to not in dead:
                    nodes[to].step(frame)


def election_ticks(protocol: str, seed: int) -> int:
    nodes = core_cluster(protocol, seed)
    nodes[1].campaign()
    deliver(nodes, set())
    assert nodes[1].role == Role.LEADER
    for _ in range(200 + seed % HEARTBEAT_TICKS):  # stop the leader at every phase of its heartbeat
        for node in nodes.values():
            node.tick()
        deliver(nodes, set())
    dead = {1}
    for tick in range(1, 100 * ELECTION_TICKS):
        for i, node in nodes.items():
            if i not in dead:
                node.tick()
        deliver(nodes, dead)
        if any(node.role == Role.LEADER for i, node in nodes.items() if i not in dead):
            return tick
    raise RuntimeError(f"{protocol} seed {seed}: no leader after the old one stopped")


async def runtime_failover(protocol: str, seed: int) -> float:
    network = MemoryNetwork()
    options = NodeOptions(tick_interval=0.01, election_ticks=ELECTION_TICKS, heartbeat_ticks=HEARTBEAT_TICKS, seed=seed)
    nodes = [Node(i, IDS, KVStore(), network.transport(i), protocol=protocol, options=options) for i in IDS]
    for node in nodes:
        await node.start()
    try:
        while not any(n.is_leader for n in nodes):
            await asyncio.sleep(0.005)
        leader = next(n for n in nodes if n.is_leader)
        for i in range(20):
            await leader.state_machine.put(f"k{i}", "v")
        await asyncio.sleep(0.2)
        stopped = time.perf_counter()
        await leader.stop()
        while True:
            new = [n for n in nodes if n is not leader and n.is_leader]
            if new:
                await new[0].state_machine.put("after", "failover")
                return time.perf_counter() - stopped
            await asyncio.sleep(0.002)
    finally:
        for node in nodes:
            await node.stop()


def report(name: str, unit: str, values: List[float]) -> None:
    print(
        f"{name:>6}: median {statistics.median(values):.0f} {unit}, mean {statistics.mean(values):.1f}, "
        f"min {min(values):.0f}, max {max(values):.0f} over {len(values)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=0, help="seeds of the core-only measurement")
    parser.add_argument("--runtime", type=int, default=0, help="trials of the in-process runtime measurement")
    args = parser.parse_args()
    if not args.ticks and not args.runtime:
        args.ticks = 200
    if args.ticks:
        print(f"ticks until a survivor leads ({args.ticks} seeds; election {ELECTION_TICKS}, heartbeat {HEARTBEAT_TICKS})")
        for protocol in PROTOCOLS:
            report(protocol, "ticks", [election_ticks(protocol, seed) for seed in range(args.ticks)])
    if args.runtime:
        print(f"ms from stopping the leader to a committed write on the new one ({args.runtime} trials, 10 ms ticks)")
        times: Dict[str, List[float]] = {p: [] for p in PROTOCOLS}
        for trial in range(args.runtime):
            for protocol in PROTOCOLS:  # interleaved
                times[protocol].append(1000 * asyncio.run(runtime_failover(protocol, trial + 1)))
        for protocol in PROTOCOLS:
            report(protocol, "ms", times[protocol])


if __name__ == "__main__":
    main()
