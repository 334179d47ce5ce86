"""Process plumbing shared by the benchmark's clusters: free ports, member processes, log tails."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# How much of a member's log a start failure quotes.
log_tail_bytes_max = 4000


class ClusterStartError(RuntimeError):
    """A cluster did not come up; the message says why and quotes the members' logs."""


def free_ports(count: int) -> List[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now (held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(path: Path) -> str:
    """The last `log_tail_bytes_max` bytes of a log file, or a note that it is missing."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - log_tail_bytes_max))
            return log.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"


class MemberProcess:
    """One member's OS process, its command line and its log file; restartable after a kill."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, cwd: Optional[Path] = None) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.cwd = cwd
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is already running"
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.cwd) if self.cwd else None,
                start_new_session=True,
            )
        finally:
            log.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> float:
        """SIGKILL the process; returns the `time.monotonic()` reading taken just before the signal."""
        assert self.process is not None
        killed_at = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        return killed_at

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def describe_failure(self) -> str:
        code = self.process.poll() if self.process else None
        state = "not started" if self.process is None else ("running" if code is None else f"exited {code}")
        return f"--- {self.name} ({state}), {self.log_path}:\n{log_tail(self.log_path)}"


class HttpCluster:
    """What the consensus and etcd clusters share: member processes with client URLs, finding and
    killing the leader, restarting a member and waiting until it applied the leader's log. A
    subclass names its request builder and how its status answer reads."""

    #: The system's name in error messages.
    name = "cluster"

    def __init__(self) -> None:
        self.members: List[MemberProcess] = []
        self.client_urls: List[str] = []

    def requests(self) -> Any:
        """The loadgen request builder that speaks this system's API."""
        raise NotImplementedError

    def status(self, index: int) -> Optional[Dict[str, Any]]:
        """The member's status answer, or None when it does not answer."""
        raise NotImplementedError

    def knows_leader(self, status: Dict[str, Any]) -> bool:
        raise NotImplementedError

    def commit_index(self, status: Dict[str, Any]) -> int:
        raise NotImplementedError

    def applied_index(self, status: Dict[str, Any]) -> int:
        raise NotImplementedError

    def leader_index(self, timeout_s: float = 30.0, among: Optional[List[int]] = None) -> int:
        """Index of the member that leads (only `among` those indices when given)."""
        from loadgen import find_leader

        indices = among if among is not None else [i for i, m in enumerate(self.members) if m.running()]
        found = asyncio.run(find_leader(self.requests(), [self.client_urls[i] for i in indices], timeout_s))
        return indices[found]

    def kill(self, index: int) -> float:
        """SIGKILL one member; returns the monotonic time of the kill."""
        return self.members[index].kill()

    def restart(self, index: int, timeout_s: float = 60.0) -> None:
        """Start a killed member again on its data directory; wait until it has applied the leader's log.

        Catching up matters for the next failover trial: a lagging member would have to receive the
        backlog before it could help commit the first write under a new leader.
        """
        self.members[index].start()
        deadline = time.monotonic() + timeout_s
        target_index = -1
        while True:
            status = self.status(index)
            if status is not None and self.knows_leader(status):
                if target_index < 0:
                    others = [i for i, m in enumerate(self.members) if i != index and m.running()]
                    leader_status = self.status(self.leader_index(timeout_s=10.0, among=others))
                    target_index = self.commit_index(leader_status or {})
                if self.applied_index(status) >= target_index:
                    return
            if time.monotonic() > deadline or not self.members[index].running():
                raise ClusterStartError(f"{self.name} member did not catch up:\n{self.members[index].describe_failure()}")
            time.sleep(0.1)

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "HttpCluster":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def http_json(url: str, data: Optional[bytes] = None) -> Optional[Dict[str, Any]]:
    """GET (or POST `data`) and decode a JSON object; None when there is no answer or no object."""
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            body = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None
