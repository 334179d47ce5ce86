"""One cell of the in-process runtime benchmark, repeated: writes/s of `rounds` rounds of
`bench_node._round(storage, clients, protocol)` (benches/asv/bench_node.py), sorted. For side-by-side
runs of two builds, alternate this script between their checkouts.

    .venv/bin/python benches/cell.py memory 1 3 raft
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "asv"))
import bench_node  # noqa: E402

bench_node.WRITES = 4_000


def main(storage: str, clients: int, rounds: int, protocol: str) -> None:
    results = [asyncio.run(bench_node._round(storage, clients, protocol)) for _ in range(rounds)]
    print(storage, clients, protocol, " ".join(f"{r:,.0f}" for r in sorted(results)))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
