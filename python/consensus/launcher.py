"""Local clusters of real node processes (`consensus serve`) on loopback, for the demo, the
integration tests and the benchmarks: configuration files, start, SIGKILL, restart, stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, IO, List, Optional, Sequence


def free_ports(count: int) -> List[int]:
    """Ports the kernel just handed out (closed again; free unless someone races for them)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@dataclass
class ProcessNode:
    id: int
    peer: str
    client: str
    config_path: str
    data_dir: str
    log_path: str
    process: Optional[subprocess.Popen] = None
    log_file: Optional[IO[bytes]] = None
    #: Written to its file: "new" for the first members, "existing" for one added at runtime
    #: (what an empty data_dir means; docs/operations.md, "Data directories and initial_state").
    initial_state: str = "new"
    #: "https" when the cluster serves clients with [client_tls].
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.client}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ProcessCluster:
    """``size`` nodes of one protocol, each a `consensus serve` process with its own TOML file."""

    size: int = 3
    protocol: str = "raft"
    base_dir: Optional[str] = None
    settings: Dict[str, object] = field(default_factory=dict)
    tls: Optional[Dict[str, str]] = None
    nodes: Dict[int, ProcessNode] = field(default_factory=dict)
    cluster_id: str = "local"
    #: More tables for every node's file, e.g. {"client_tls": {...}, "auth": {...}}; as in `tls`,
    #: "{id}" in a value stands for the node's id.
    tables: Dict[str, Dict[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="consensus-cluster-")
            self.base_dir = self._tmp.name
        os.makedirs(self.base_dir, exist_ok=True)
        for node_id in range(1, self.size + 1):
            self._describe(node_id)
        for node_id in self.nodes:
            self.write_config(node_id)

    def _describe(self, node_id: int) -> ProcessNode:
        peer_port, client_port = free_ports(2)
        assert self.base_dir is not None
        node = ProcessNode(
            id=node_id,
            peer=f"127.0.0.1:{peer_port}",
            client=f"127.0.0.1:{client_port}",
            config_path=os.path.join(self.base_dir, f"node{node_id}.toml"),
            data_dir=os.path.join(self.base_dir, f"data{node_id}"),
            log_path=os.path.join(self.base_dir, f"node{node_id}.log"),
            scheme="https" if "client_tls" in self.tables else "http",
        )
        self.nodes[node_id] = node
        return node

    def write_config(self, node_id: int, members: Optional[Sequence[int]] = None) -> str:
        node = self.nodes[node_id]
        lines = [
            f"id = {node_id}",
            f"protocol = {_toml_value(self.protocol)}",
            f"data_dir = {_toml_value(node.data_dir)}",
            f"cluster_id = {_toml_value(self.cluster_id)}",
            f"initial_state = {_toml_value(node.initial_state)}",
        ]
        lines += [f"{k} = {_toml_value(v)}" for k, v in self.settings.items()]
        for member_id in members if members is not None else sorted(self.nodes):
            member = self.nodes[member_id]
            lines += ["", "[[members]]", f"id = {member_id}", f'peer = "{member.peer}"', f'client = "{member.client}"']
        if self.tls is not None:
            # "{id}" in a path stands for the node's id: a certificate per node.
            lines += ["", "[tls]"] + [f"{k} = {_toml_value(str(v).format(id=node_id))}" for k, v in self.tls.items()]
        for table, values in self.tables.items():
            lines += ["", f"[{table}]"]
            lines += [f"{k} = {_toml_value(v.format(id=node_id) if isinstance(v, str) else v)}" for k, v in values.items()]
        with open(node.config_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return node.config_path

    def add_node(self) -> ProcessNode:
        """Describes one more node (config lists every node, itself included, and says
        initial_state = "existing"); not started."""
        node = self._describe(max(self.nodes) + 1)
        node.initial_state = "existing"
        self.write_config(node.id)
        return node

    def wipe(self, node_id: int) -> None:
        """Removes the node's data directory (stop it first): a disk replaced, or an operator's mistake."""
        shutil.rmtree(self.nodes[node_id].data_dir, ignore_errors=True)

    @property
    def urls(self) -> List[str]:
        return [n.url for n in self.nodes.values()]

    def start(self, node_id: int, *, join: bool = False) -> ProcessNode:
        node = self.nodes[node_id]
        if node.alive:
            return node
        node.log_file = open(node.log_path, "ab")
        command = [sys.executable, "-m", "consensus", "serve", "--config", node.config_path]
        if join:
            command.append("--join")
        node.process = subprocess.Popen(command, stdout=node.log_file, stderr=subprocess.STDOUT)
        return node

    def start_all(self) -> None:
        for node_id in sorted(self.nodes):
            self.start(node_id)

    def kill(self, node_id: int) -> None:
        """SIGKILL: no shutdown, no flush; only what was fsynced survives."""
        node = self.nodes[node_id]
        if node.process is not None and node.alive:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()
        self._close_log(node)

    def stop(self, node_id: int, timeout: float = 10.0) -> Optional[int]:
        node = self.nodes[node_id]
        code = None
        if node.process is not None:
            if node.alive:
                node.process.send_signal(signal.SIGTERM)
                try:
                    node.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
            code = node.process.returncode
        self._close_log(node)
        return code

    def stop_all(self) -> None:
        for node_id in sorted(self.nodes):
            self.stop(node_id)

    def _close_log(self, node: ProcessNode) -> None:
        if node.log_file is not None:
            node.log_file.close()
            node.log_file = None

    def log_tail(self, node_id: int, lines: int = 30) -> str:
        try:
            with open(self.nodes[node_id].log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_exit(self, node_id: int, timeout: float) -> Optional[int]:
        node = self.nodes[node_id]
        if node.process is None:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                return node.process.returncode
            time.sleep(0.05)
        return None

    def cleanup(self) -> None:
        self.stop_all()
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()

    def __enter__(self) -> "ProcessCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
