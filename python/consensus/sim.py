"""The deterministic simulator: seeded faults (drops, duplicates, reordering, partitions, crashes,
pauses) against a cluster of one protocol, with the protocol's safety properties checked on every
step and a liveness phase after the faults stop. One seed names one run; a failing seed prints a
trace that the same seed reproduces.

    >>> report = consensus.sim.run(protocol="raft", nodes=5, seed=7)
    >>> report.ok
    True
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, TextIO, Union

from consensus import _core

Faults = Union[str, Mapping[str, Any]]

#: Seeds run per call into Rust (the GIL is released inside); the progress bar moves per chunk.
CHUNK_SEEDS = 50


@dataclass(frozen=True)
class Report:
    """The outcome of one run (see `rust/core/src/sim/mod.rs` for every field's meaning)."""

    protocol: str
    seed: int
    ok: bool
    violation: Optional[str]
    liveness_failure: bool
    trace: List[str]
    trace_digest: int
    summary: str
    stats: Dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.summary


def _report(raw: Dict[str, Any]) -> Report:
    keys = {"protocol", "seed", "ok", "violation", "liveness_failure", "trace", "trace_digest", "summary"}
    return Report(
        protocol=raw["protocol"],
        seed=raw["seed"],
        ok=raw["ok"],
        violation=raw["violation"],
        liveness_failure=raw["liveness_failure"],
        trace=list(raw["trace"]),
        trace_digest=raw["trace_digest"],
        summary=raw["summary"],
        stats={k: v for k, v in raw.items() if k not in keys},
    )


def run(
    protocol: str = "raft",
    nodes: int = 5,
    seed: int = 0,
    steps: Optional[int] = None,
    faults: Faults = "all",
    liveness: bool = True,
) -> Report:
    """Runs one seeded simulation and returns its report."""
    return _report(_core.sim_run(protocol, nodes, seed, steps, faults if isinstance(faults, str) else dict(faults), liveness))


@dataclass
class Summary:
    runs: int = 0
    failures: List[Report] = field(default_factory=list)
    totals: Dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def run_many(
    protocol: str = "raft",
    seeds: Iterable[int] = range(100),
    nodes: int = 5,
    steps: Optional[int] = None,
    faults: Faults = "all",
    progress: Optional[TextIO] = None,
) -> Summary:
    """Runs every seed (a contiguous range runs in chunks inside Rust) and collects failures."""
    seed_list = sorted(set(seeds))
    summary = Summary()
    started = time.perf_counter()
    i = 0
    while i < len(seed_list):
        # Group contiguous seeds into chunks of at most CHUNK_SEEDS.
        start = seed_list[i]
        stop = start + 1
        i += 1
        while i < len(seed_list) and seed_list[i] == stop and stop - start < CHUNK_SEEDS:
            stop += 1
            i += 1
        raw = _core.sim_run_many(protocol, nodes, start, stop, steps, faults if isinstance(faults, str) else dict(faults))
        summary.runs += raw["runs"]
        for key, value in raw.items():
            if key not in ("runs", "failures"):
                summary.totals[key] = summary.totals.get(key, 0) + value
        summary.failures.extend(_report(r) for r in raw["failures"])
        if progress is not None:
            _draw_progress(progress, summary, len(seed_list), time.perf_counter() - started)
    if progress is not None:
        progress.write("\n")
    return summary


def _draw_progress(out: TextIO, summary: Summary, total: int, elapsed: float) -> None:
    width = 30
    filled = int(width * summary.runs / max(total, 1))
    bar = "#" * filled + "-" * (width - filled)
    rate = summary.runs / elapsed if elapsed > 0 else 0.0
    out.write(f"\r[{bar}] {summary.runs}/{total} seeds, {len(summary.failures)} failing, {rate:.0f} seeds/s")
    out.flush()


def simulate_many(
    protocol: str,
    seeds: Iterable[int],
    nodes: int = 5,
    steps: Optional[int] = None,
    faults: Faults = "all",
    progress: bool = True,
    out: Optional[TextIO] = None,
) -> int:
    """The `consensus simulate` command: runs the seeds, prints a summary; exit status 1 on failure."""
    out = out if out is not None else sys.stdout
    started = time.perf_counter()
    summary = run_many(protocol, seeds, nodes, steps, faults, progress=sys.stderr if progress else None)
    elapsed = time.perf_counter() - started
    totals = summary.totals
    out.write(
        f"{protocol}: {summary.runs} seeds of {nodes} nodes in {elapsed:.1f} s, "
        f"{len(summary.failures)} failing; {totals.get('leaders_seen', 0)} leaders elected, "
        f"{totals.get('entries_committed', 0)} entries committed, {totals.get('crashes', 0)} crashes, "
        f"{totals.get('snapshots_installed', 0)} snapshots installed, "
        f"{totals.get('messages_dropped', 0)} messages dropped\n"
    )
    for report in summary.failures[:5]:
        out.write(str(report) + "\n")
        out.write(f"reproduce: python -m consensus simulate --protocol {protocol} --seeds {report.seed} --nodes {nodes}\n")
    return 0 if summary.ok else 1


__all__ = [
    "CHUNK_SEEDS",
    "Faults",
    "Report",
    "Summary",
    "run",
    "run_many",
    "simulate_many",
]
