"""The deterministic simulator on Multi-Paxos, driven through `consensus.sim`: thousands of seeded
runs of a 5-node cluster with every fault on must find no violation of the Paxos invariants (one
value chosen per slot, promises never go back, nothing accepted above a promise, higher ballots
keep a chosen value, applied prefixes agree, nothing sent before it is durable) and must pass the
liveness phase after the faults stop."""

from __future__ import annotations

import pytest

from consensus import sim
from consensus.service import main

#: The issue's floor: at least 2,000 seeds of 5-node Multi-Paxos with every fault on in `make test`.
PAXOS_SEEDS = 2000


@pytest.mark.simulation
def test_paxos_5_nodes_every_fault_2000_seeds_find_no_violation() -> None:
    summary = sim.run_many("paxos", seeds=range(PAXOS_SEEDS), nodes=5, faults="all")
    assert summary.runs == PAXOS_SEEDS
    details = "\n\n".join(str(r) + "\n" + "\n".join(r.trace[-40:]) for r in summary.failures[:3])
    assert summary.ok, f"{len(summary.failures)} failing seeds:\n{details}"
    # The faults really happened: the runs were not trivially quiet.
    assert summary.totals["crashes"] > PAXOS_SEEDS
    assert summary.totals["leaders_seen"] > 2 * PAXOS_SEEDS
    assert summary.totals["snapshots_installed"] > 0
    assert summary.totals["messages_dropped"] > 0


def test_same_paxos_seed_replays_the_same_run() -> None:
    first = sim.run(protocol="paxos", nodes=5, seed=7)
    second = sim.run(protocol="paxos", nodes=5, seed=7)
    assert first.ok, str(first)
    assert first.trace_digest == second.trace_digest
    assert first.stats == second.stats
    assert "paxos seed 7" in str(first)


def test_paxos_without_faults_commits_and_elects() -> None:
    report = sim.run(protocol="paxos", nodes=3, seed=1, faults="none")
    assert report.ok, str(report)
    assert report.stats["entries_committed"] > 0
    assert report.stats["liveness_ticks_to_leader"] is not None


def test_simulate_command_runs_paxos(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["simulate", "--protocol", "paxos", "--seeds", "0-9", "--quiet"])
    out = capsys.readouterr().out
    assert status == 0
    assert "paxos: 10 seeds of 5 nodes" in out
    assert "0 failing" in out
