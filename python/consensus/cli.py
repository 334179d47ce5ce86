"""The `consensus` command: `consensus demo` and `consensus simulate`."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _parse_seeds(text: str) -> range:
    """`"0-9999"` or `"42"` to a range of seeds."""
    try:
        if "-" in text:
            low, high = text.split("-", 1)
            return range(int(low), int(high) + 1)
        seed = int(text)
        return range(seed, seed + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0-9999 or 42, not {text!r}") from None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="consensus", description="Raft, Multi-Paxos and Zab for Python services.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run an in-process 3-node cluster through a leader failure")
    demo.add_argument("--writes", type=int, default=1000)

    simulate = commands.add_parser("simulate", help="run the deterministic simulator over many seeds")
    simulate.add_argument("--protocol", default="raft", choices=["raft"])
    simulate.add_argument("--seeds", type=_parse_seeds, default=range(0, 100))
    simulate.add_argument("--nodes", type=int, default=5)
    simulate.add_argument("--steps", type=int, default=None)
    simulate.add_argument("--faults", default="all", choices=["all", "none"])
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")

    args = parser.parse_args(argv)
    if args.command == "demo":
        from consensus.demo import run_demo

        return run_demo(writes=args.writes)
    if args.command == "simulate":
        from consensus.sim import simulate_many

        return simulate_many(
            protocol=args.protocol,
            seeds=args.seeds,
            nodes=args.nodes,
            steps=args.steps,
            faults=args.faults,
            progress=not args.quiet,
        )
    return 2
