"""A 3-node `consensus` cluster on loopback: `python -m consensus serve` per node, fsync "always".

Each node gets a TOML file (DESIGN.md §3) in a temporary directory, with its own data directory and
127.0.0.1 peer and client ports. The benchmark's timing is tick_ms=10, heartbeat_ticks=5 (50 ms) and
election_ticks=50 (500 ms), the same heartbeat and election timeout as the etcd and PySyncObj runs.

    python benches/peers/consensus_cluster.py     # start, print the client URLs and the leader, stop
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_common import ClusterStartError, MemberProcess, free_ports  # noqa: E402
from loadgen import ConsensusRequests, find_leader  # noqa: E402


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
) -> str:
    """One node's configuration file; members are numbered 1..n in the order of `peers`."""
    lines = [
        f"id = {node_id}",
        'protocol = "raft"',
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


class ConsensusCluster:
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
    ) -> None:
        self.workdir = Path(workdir)
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

    def leader_index(self, timeout_s: float = 30.0, among: Optional[List[int]] = None) -> int:
        """Index of the node whose `/v1/status` says `role == "leader"` (only `among` when given)."""
        indices = among if among is not None else [i for i, m in enumerate(self.members) if m.running()]
        found = asyncio.run(find_leader(ConsensusRequests(), [self.client_urls[i] for i in indices], timeout_s))
        return indices[found]

    def kill(self, index: int) -> float:
        """SIGKILL one node; returns the monotonic time of the kill."""
        return self.members[index].kill()

    def restart(self, index: int, timeout_s: float = 60.0) -> None:
        """Start a killed node again on its data directory; wait until it has applied the leader's log.

        Catching up matters for the next failover trial: a lagging node would have to receive the
        backlog before it could help commit the first write under a new leader.
        """
        self.members[index].start()
        deadline = time.monotonic() + timeout_s
        target_index = -1
        while True:
            status = self._status(index)
            if status is not None and int(status.get("leader", 0) or 0) != 0:
                if target_index < 0:
                    others = [i for i, m in enumerate(self.members) if i != index and m.running()]
                    leader_status = self._status(self.leader_index(timeout_s=10.0, among=others))
                    target_index = int((leader_status or {}).get("commit_index", 0) or 0)
                if int(status.get("applied_index", 0) or 0) >= target_index:
                    return
            if time.monotonic() > deadline or not self.members[index].running():
                raise ClusterStartError(f"consensus node did not catch up:\n{self.members[index].describe_failure()}")
            time.sleep(0.1)

    def _status(self, index: int) -> Optional[Dict[str, Any]]:
        """The node's `/v1/status` answer, or None when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.client_urls[index]}/v1/status", timeout=2) as answer:
                body = json.loads(answer.read())
        except (OSError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def __enter__(self) -> "ConsensusCluster":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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
