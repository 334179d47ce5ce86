"""A 3-member etcd cluster on loopback in a temporary directory, for the peer comparison.

Uses Debian's `/usr/bin/etcd` (etcd 3.4). Every member fsyncs its WAL before acknowledging, as etcd
always does; the heartbeat and election timeout are passed in (the benchmark uses 50 ms and 500 ms).

    python benches/peers/etcd_cluster.py     # start, print the client URLs and the leader, stop
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_common import ClusterStartError, HttpCluster, MemberProcess, free_ports, http_json  # noqa: E402
from loadgen import EtcdRequests  # noqa: E402

etcd_binary = "/usr/bin/etcd"


def etcd_version(binary: str = etcd_binary) -> str:
    """`etcd --version`'s first line, or '' when etcd is not installed."""
    try:
        output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return output.splitlines()[0].strip() if output else ""


class EtcdCluster(HttpCluster):
    """Start, inspect, kill and restart a local etcd cluster. Use as a context manager."""

    name = "etcd"

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        binary: str = etcd_binary,
    ) -> None:
        self.workdir = Path(workdir)
        self.size = size
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.binary = binary
        self.members: List[MemberProcess] = []
        self.client_urls: List[str] = []
        self.data_dirs: List[Path] = []

    def _build(self) -> None:
        ports = free_ports(2 * self.size)
        peer_urls = [f"http://127.0.0.1:{ports[2 * i]}" for i in range(self.size)]
        self.client_urls = [f"http://127.0.0.1:{ports[2 * i + 1]}" for i in range(self.size)]
        names = [f"etcd{i + 1}" for i in range(self.size)]
        initial_cluster = ",".join(f"{name}={url}" for name, url in zip(names, peer_urls))
        token = f"bench-{time.time_ns()}"
        for i, name in enumerate(names):
            data_dir = self.workdir / name
            self.data_dirs.append(data_dir)
            command = [
                self.binary,
                f"--name={name}",
                f"--data-dir={data_dir}",
                f"--listen-peer-urls={peer_urls[i]}",
                f"--initial-advertise-peer-urls={peer_urls[i]}",
                f"--listen-client-urls={self.client_urls[i]}",
                f"--advertise-client-urls={self.client_urls[i]}",
                f"--initial-cluster={initial_cluster}",
                f"--initial-cluster-token={token}",
                "--initial-cluster-state=new",
                f"--heartbeat-interval={self.heartbeat_ms}",
                f"--election-timeout={self.election_ms}",
                "--logger=zap",
                "--log-outputs=stderr",
                "--log-level=warn",
            ]
            self.members.append(MemberProcess(name, command, self.workdir / f"{name}.log"))

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every member and wait until one of them leads; ClusterStartError otherwise."""
        if not Path(self.binary).exists():
            raise ClusterStartError(f"{self.binary} is missing (run benches/peers/setup.sh)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._build()
        for member in self.members:
            member.start()
        try:
            self.leader_index(timeout_s)
        except TimeoutError as exc:
            logs = "\n".join(member.describe_failure() for member in self.members)
            self.stop()
            raise ClusterStartError(f"etcd did not elect a leader: {exc}\n{logs}") from None

    def requests(self) -> EtcdRequests:
        return EtcdRequests()

    def status(self, index: int) -> Optional[Dict[str, Any]]:
        """The member's `/v3/maintenance/status` answer, or None when it does not answer."""
        return http_json(f"{self.client_urls[index]}/v3/maintenance/status", data=b"{}")

    def knows_leader(self, status: Dict[str, Any]) -> bool:
        return str(status.get("leader", "0")) not in ("", "0")

    def commit_index(self, status: Dict[str, Any]) -> int:
        return int(status.get("raftIndex", 0))

    def applied_index(self, status: Dict[str, Any]) -> int:
        return int(status.get("raftAppliedIndex", 0))


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
    try:
        with EtcdCluster(workdir) as cluster:
            print(etcd_version(), cluster.client_urls, "leader:", cluster.leader_index())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
