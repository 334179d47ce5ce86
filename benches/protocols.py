"""Raft and Multi-Paxos side by side in the asyncio runtime, one session, rounds interleaved.

Three `consensus.Node`s in one process over the in-memory transport write 100-byte values through
`KVStore.put` (the asv `NodeWrites` round of `benches/asv/bench_node.py`), with memory storage and
with file storage (fsync "always"), from 1 and 64 concurrent clients. Prints the median writes/s
of each protocol, the ratio, and what a write costs: frames sent and fsyncs, all nodes together.

    .venv/bin/python benches/protocols.py [rounds] [writes per round]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent / "asv"))

import bench_node  # noqa: E402

PROTOCOLS = ("raft", "paxos")


def main(argv: Sequence[str]) -> None:
    rounds = int(argv[1]) if len(argv) > 1 else 3
    bench_node.WRITES = int(argv[2]) if len(argv) > 2 else 8_000
    print(f"{bench_node.WRITES} writes per round, {rounds} rounds per cell, interleaved; medians")
    print(
        "| storage | clients | Raft writes/s | Multi-Paxos writes/s | Paxos / Raft "
        "| frames/write Raft | frames/write Paxos | fsyncs/write Raft | fsyncs/write Paxos |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for storage in ("memory", "file"):
        for clients in (1, 64):
            rates: Dict[str, List[float]] = {p: [] for p in PROTOCOLS}
            counts: Dict[str, List[Tuple[float, float]]] = {p: [] for p in PROTOCOLS}
            for _ in range(rounds):
                for protocol in PROTOCOLS:
                    extra: Dict[str, float] = {}
                    rates[protocol].append(asyncio.run(bench_node._round(storage, clients, protocol, extra)))
                    counts[protocol].append((extra["frames_per_write"], extra["fsyncs_per_write"]))
            raft, paxos = (statistics.median(rates[p]) for p in PROTOCOLS)
            (rf, rs), (pf, ps) = (tuple(statistics.median(c[i] for c in counts[p]) for i in (0, 1)) for p in PROTOCOLS)
            print(
                f"| {storage} | {clients} | {raft:,.0f} | {paxos:,.0f} | {paxos / raft:.2f}x "
                f"| {rf:.2f} | {pf:.2f} | {rs:.2f} | {ps:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv)
