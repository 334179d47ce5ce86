"""The deterministic simulator, driven through `consensus.sim`: thousands of seeded runs of a
5-node Raft cluster with every fault on must find no violation of Raft's Figure-3 properties and
must pass the liveness phase after the faults stop."""

from __future__ import annotations

import io

import pytest

import consensus
from consensus import sim
from consensus.service import main

#: The issue's floor: at least 2,000 seeds of 5-node Raft with every fault on in `make test`.
RAFT_SEEDS = 2000


@pytest.mark.simulation
def test_raft_5_nodes_every_fault_2000_seeds_find_no_violation():
    summary = sim.run_many("raft", seeds=range(RAFT_SEEDS), nodes=5, faults="all")
    assert summary.runs == RAFT_SEEDS
    details = "\n\n".join(str(r) + "\n" + "\n".join(r.trace[-40:]) for r in summary.failures[:3])
    assert summary.ok, f"{len(summary.failures)} failing seeds:\n{details}"
    # The faults really happened: the runs were not trivially quiet.
    assert summary.totals["crashes"] > RAFT_SEEDS
    assert summary.totals["leaders_seen"] > 2 * RAFT_SEEDS
    assert summary.totals["snapshots_installed"] > 0
    assert summary.totals["messages_dropped"] > 0


def test_same_seed_replays_the_same_run():
    first = sim.run(protocol="raft", nodes=5, seed=7)
    second = sim.run(protocol="raft", nodes=5, seed=7)
    assert first.ok, str(first)
    assert first.trace_digest == second.trace_digest
    assert first.stats == second.stats
    other = sim.run(protocol="raft", nodes=5, seed=8)
    assert other.trace_digest != first.trace_digest


def test_report_describes_the_run():
    report = sim.run(protocol="raft", nodes=3, seed=1, faults="none")
    assert report.ok
    assert report.stats["entries_committed"] > 0
    assert report.stats["liveness_ticks_to_leader"] is not None
    assert "raft seed 1" in str(report)


def test_fault_overrides_and_bad_parameters():
    report = sim.run(protocol="raft", nodes=5, seed=3, faults={"drop_percent": 0, "crashes": False})
    assert report.ok
    assert report.stats["crashes"] == 0
    with pytest.raises(consensus.ConfigError):
        sim.run(faults={"meteor_strikes": True})
    with pytest.raises(consensus.ConfigError):
        sim.run(nodes=0)
    with pytest.raises(ValueError):
        sim.run(protocol="carrier-pigeon")


def test_simulate_command_prints_a_summary_and_succeeds(capsys):
    status = main(["simulate", "--protocol", "raft", "--seeds", "0-19", "--quiet"])
    out = capsys.readouterr().out
    assert status == 0
    assert "raft: 20 seeds of 5 nodes" in out
    assert "0 failing" in out
