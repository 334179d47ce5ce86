"""Process plumbing shared by the benchmark's clusters: free ports, member processes, log tails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional, Sequence

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
