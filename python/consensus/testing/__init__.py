"""Clusters on one machine, for the demo, the tests and the benchmarks: `LocalCluster` (cores in this
process over an in-memory network), `ProcessCluster` (real `consensus serve` processes on
loopback), and the demo (`consensus demo`, `make run`) that runs on them. The deterministic
simulator is `consensus.sim`.
"""

from consensus.testing._clusters import ClusterStuckError, LocalCluster, Member, ProcessCluster, ProcessNode, free_ports
from consensus.testing._demo import run_demo, run_in_process_demo

__all__ = [
    "ClusterStuckError",
    "LocalCluster",
    "Member",
    "ProcessCluster",
    "ProcessNode",
    "free_ports",
    "run_demo",
    "run_in_process_demo",
]
