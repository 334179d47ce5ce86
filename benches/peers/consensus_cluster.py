"""A 3-node `consensus` cluster on loopback: `python -m consensus serve` per node, fsync "always".

Each node gets a TOML file (docs/design.md §3) in a temporary directory, with its own data directory and
127.0.0.1 peer and client ports. The benchmark's timing is tick_ms=10, heartbeat_ticks=5 (50 ms) and
election_ticks=50 (500 ms), the same heartbeat and election timeout as the etcd and PySyncObj runs.

    python benches/peers/consensus_cluster.py     # start, print the client URLs and the leader, stop
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_common import ClusterStartError, HttpCluster, MemberProcess, free_ports, http_json  # noqa: E402
from loadgen import ConsensusRequests  # noqa: E402


def consensus_version(python: str = sys.executable) -> str:
    """The installed package's `__version__`, or '' when it does not import."""
    import subprocess

    try:
        done = subprocess.run(
            [python, "-c", "import consensus; print(consensus.__version__)"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def node_toml(
    node_id: int,
    data_dir: Path,
    cluster_id: str,
    peers: List[str],
    clients: List[str],
    tick_ms: int,
    heartbeat_ticks: int,
    election_ticks: int,
    fsync: str,
    protocol: str = "raft",
) -> str:
    """One node's configuration file; members are numbered 1..n in the order of `peers`."""
    lines = [
        f"id = {node_id}",
        f"protocol = {json.dumps(protocol)}",
        f"data_dir = {json.dumps(str(data_dir))}",
        f"cluster_id = {json.dumps(cluster_id)}",
        f"tick_ms = {tick_ms}",
        f"election_ticks = {election_ticks}",
        f"heartbeat_ticks = {heartbeat_ticks}",
        f"fsync = {json.dumps(fsync)}",
        "forward = true",
    ]
    for member_id, (peer, client) in enumerate(zip(peers, clients), start=1):
        lines += ["", "[[members]]", f"id = {member_id}", f'peer = "{peer}"', f'client = "{client}"']
    return "\n".join(lines) + "\n"


class ConsensusCluster(HttpCluster):
    """Start, inspect, kill and restart a local `consensus serve` cluster. Use as a context manager."""

    name = "consensus"

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        tick_ms: int = 10,
        heartbeat_ticks: int = 5,
        election_ticks: int = 50,
        fsync: str = "always",
        python: str = sys.executable,
        protocol: str = "raft",
    ) -> None:
        self.workdir = Path(workdir)
        self.protocol = protocol
        self.size = size
        self.tick_ms = tick_ms
        self.heartbeat_ticks = heartbeat_ticks
        self.election_ticks = election_ticks
        self.fsync = fsync
        self.python = python
        self.members: List[MemberProcess] = []
        self.client_urls: List[str] = []
        self.data_dirs: List[Path] = []

    def _build(self) -> None:
        ports = free_ports(2 * self.size)
        peers = [f"127.0.0.1:{ports[2 * i]}" for i in range(self.size)]
        clients = [f"127.0.0.1:{ports[2 * i + 1]}" for i in range(self.size)]
        self.client_urls = [f"http://{address}" for address in clients]
        cluster_id = f"bench-{time.time_ns()}"
        for i in range(self.size):
            name = f"node{i + 1}"
            data_dir = self.workdir / name
            data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dirs.append(data_dir)
            config_path = self.workdir / f"{name}.toml"
            config_path.write_text(
                node_toml(
                    i + 1,
                    data_dir,
                    cluster_id,
                    peers,
                    clients,
                    self.tick_ms,
                    self.heartbeat_ticks,
                    self.election_ticks,
                    self.fsync,
                    self.protocol,
                )
            )
            command = [self.python, "-m", "consensus", "serve", "--config", str(config_path)]
            self.members.append(MemberProcess(name, command, self.workdir / f"{name}.log"))

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every node and wait until one leads; ClusterStartError (with the logs) otherwise."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._build()
        for member in self.members:
            member.start()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                dead = [member for member in self.members if not member.running()]
                if dead:
                    raise TimeoutError(f"{', '.join(m.name for m in dead)} exited")
                try:
                    self.leader_index(timeout_s=1.0)
                    return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
        except TimeoutError as exc:
            logs = "\n".join(member.describe_failure() for member in self.members)
            self.stop()
            raise ClusterStartError(f"consensus serve did not elect a leader: {exc}\n{logs}") from None

    def requests(self) -> ConsensusRequests:
        return ConsensusRequests()

    def status(self, index: int) -> Optional[Dict[str, Any]]:
        """The node's `/v1/status` answer, or None when it does not answer."""
        return http_json(f"{self.client_urls[index]}/v1/status")

    def knows_leader(self, status: Dict[str, Any]) -> bool:
        return int(status.get("leader", 0) or 0) != 0

    def commit_index(self, status: Dict[str, Any]) -> int:
        return int(status.get("commit_index", 0) or 0)

    def applied_index(self, status: Dict[str, Any]) -> int:
        return int(status.get("applied_index", 0) or 0)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-consensus-"))
    try:
        with ConsensusCluster(workdir) as cluster:
            print(consensus_version(), cluster.client_urls, "leader:", cluster.leader_index())
    except ClusterStartError as exc:
        print(f"consensus cluster did not start: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
