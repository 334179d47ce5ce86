"""A 3-process PySyncObj cluster on loopback, driven with the same payloads as the HTTP systems.

PySyncObj has no client protocol: a caller is a cluster member and calls a `@replicated` method. So
each member here is a process that also takes commands on its stdin (one JSON object a line) and
answers on its stdout, and the load runs inside the process that currently leads:

- That is PySyncObj's fastest path (no client hop and no follower-to-leader forward), so the numbers
  favour it; the price is that the load's bookkeeping shares the leader's interpreter (GIL). The load
  is callback-driven (N writes kept outstanding, the next one issued from the completion callback), so
  that bookkeeping is a few microseconds per write, far less than an HTTP client's.
- A dedicated 4th process would have to be a voting member, making a 4-node cluster with a quorum of
  3: a different system from the 3-node clusters it is compared with.

PySyncObj never fsyncs: its journal file is an mmap that it does not msync before acknowledging, and
it pickles its messages on the wire. Failover is measured from a surviving member: after the leader's
process is SIGKILLed, that member starts a write every 50 ms (each through its callback API, which
forwards to whatever leader it knows) until one succeeds.

    python benches/peers/pysyncobj_bench.py        # a short load run and one failover, as JSON
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_common import ClusterStartError, free_ports, log_tail  # noqa: E402
from loadgen import LoadResult, make_value, summarize  # noqa: E402

# Failover probe cadence, as in loadgen.time_until_write.
probe_interval_s = 0.05
# Bound on one stdin command line from the parent.
command_bytes_max = 1 << 16


def pysyncobj_version() -> str:
    try:
        from importlib.metadata import version

        return version("pysyncobj")
    except Exception:
        return ""


# --- inside a member process ------------------------------------------------------------------------


def _member_main(self_address: str, partners: List[str], journal_path: str, timing: Dict[str, float]) -> int:
    """A member: runs PySyncObj and serves the parent's commands until `exit` or end of input."""
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

    class BenchStore(SyncObj):
        """A replicated dict with one write operation, like the KV stores it is compared with."""

        def __init__(self) -> None:
            conf = SyncObjConf(
                appendEntriesPeriod=timing["heartbeat_s"],
                raftMinTimeout=timing["election_min_s"],
                raftMaxTimeout=timing["election_max_s"],
                appendEntriesUseBatch=bool(timing.get("batch", False)),
                journalFile=journal_path or None,
                dynamicMembershipChange=False,
            )
            super().__init__(self_address, partners, conf)
            self._data: Dict[str, str] = {}

        @replicated
        def put(self, key: str, value: str) -> int:
            self._data[key] = value
            return len(self._data)

    store = BenchStore()

    def answer(payload: Dict[str, object]) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    def run_load(value_bytes: int, clients: int, duration_s: float, warmup_s: float) -> LoadResult:
        value = make_value(value_bytes)
        prefix = f"load-{value_bytes}-{clients}-{time.time_ns()}"
        sequence = itertools.count()
        lock = threading.Lock()
        latencies_s: List[float] = []
        errors = [0]
        first_error = [""]
        finished = threading.Event()
        running = [clients]
        started = time.perf_counter()
        window_start = started + warmup_s
        window_end = window_start + duration_s
        last_done = [window_start]

        def issue(client_id: int) -> None:
            begin = time.perf_counter()
            if begin >= window_end:
                with lock:
                    running[0] -= 1
                    if running[0] == 0:
                        finished.set()
                return

            def done(result: object, error: int) -> None:
                end = time.perf_counter()
                if begin >= window_start:
                    with lock:
                        if error == FAIL_REASON.SUCCESS:
                            latencies_s.append(end - begin)
                            last_done[0] = max(last_done[0], end)
                        else:
                            errors[0] += 1
                            first_error[0] = first_error[0] or f"FAIL_REASON {error}"
                issue(client_id)

            store.put(f"{prefix}-{client_id}-{next(sequence)}", value, callback=done)

        for client_id in range(clients):
            issue(client_id)
        # Callbacks of writes that never complete would leave a client stuck; bound the wait.
        finished.wait(timeout=warmup_s + duration_s + 60.0)
        window_s = max(window_end, last_done[0]) - window_start
        with lock:
            return summarize("pysyncobj", value_bytes, clients, list(latencies_s), window_s, errors[0], first_error[0])

    def probe(since: float, give_up_s: float) -> Dict[str, object]:
        succeeded = threading.Event()
        success_at = [0.0]

        def done(result: object, error: int) -> None:
            if error == FAIL_REASON.SUCCESS and not succeeded.is_set():
                success_at[0] = time.monotonic()
                succeeded.set()

        value = make_value(100)
        for number in itertools.count():
            if succeeded.is_set() or time.monotonic() - since > give_up_s:
                break
            store.put(f"failover-{time.time_ns()}-{number}", value, callback=done)
            succeeded.wait(probe_interval_s)
        if not succeeded.is_set():
            return {"error": f"no write succeeded within {give_up_s:.0f} s of the kill"}
        return {"failover_s": success_at[0] - since}

    for line in sys.stdin:
        if len(line) > command_bytes_max:
            answer({"error": "command too long"})
            continue
        try:
            command = json.loads(line)
        except ValueError:
            answer({"error": "not JSON"})
            continue
        operation = command.get("op")
        if operation == "status":
            leader = store._getLeader()
            answer(
                {
                    "leader": store._isLeader(),
                    "ready": store.isReady(),
                    "leader_address": str(leader) if leader is not None else "",
                }
            )
        elif operation == "load":
            result = run_load(
                int(command["value_bytes"]),
                int(command["clients"]),
                float(command["duration_s"]),
                float(command["warmup_s"]),
            )
            answer(result.to_dict())
        elif operation == "probe":
            answer(probe(float(command["since"]), float(command.get("give_up_s", 30.0))))
        elif operation == "exit":
            break
        else:
            answer({"error": f"unknown op {operation!r}"})
    store.destroy()
    return 0


# --- in the parent ----------------------------------------------------------------------------------


class PySyncObjMember:
    """The parent's handle on one member process: start, send a command, read its answer, kill."""

    def __init__(self, name: str, command: List[str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        finally:
            log.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ask(self, command: Dict[str, object], timeout_s: float = 30.0) -> Dict[str, object]:
        """Send one command and wait for its one-line JSON answer (killing the member on a timeout)."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        timer = threading.Timer(timeout_s, self.process.kill)
        timer.start()
        try:
            line = self.process.stdout.readline()
        finally:
            timer.cancel()
        if not line:
            raise RuntimeError(f"{self.name} gave no answer to {command.get('op')}:\n{log_tail(self.log_path)}")
        return json.loads(line)

    def kill(self) -> float:
        assert self.process is not None
        killed_at = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        return killed_at

    def stop(self) -> None:
        if not self.running():
            return
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write('{"op": "exit"}\n')
            self.process.stdin.flush()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(timeout=10)


class PySyncObjCluster:
    """Start, load, kill and restart a local 3-process PySyncObj cluster. Use as a context manager."""

    name = "pysyncobj"

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        heartbeat_ms: int = 50,
        election_min_ms: int = 500,
        election_max_ms: int = 1000,
        batch: bool = False,
        python: str = sys.executable,
    ) -> None:
        self.workdir = Path(workdir)
        self.size = size
        self.timing = {
            "heartbeat_s": heartbeat_ms / 1000.0,
            "election_min_s": election_min_ms / 1000.0,
            "election_max_s": election_max_ms / 1000.0,
            "batch": batch,
        }
        self.python = python
        self.members: List[PySyncObjMember] = []
        self.data_dirs: List[Path] = []

    def start(self, timeout_s: float = 60.0) -> None:
        try:
            import pysyncobj  # noqa: F401
        except ImportError:
            raise ClusterStartError("pysyncobj is not installed (run benches/peers/setup.sh)") from None
        self.workdir.mkdir(parents=True, exist_ok=True)
        addresses = [f"127.0.0.1:{port}" for port in free_ports(self.size)]
        for i, address in enumerate(addresses):
            data_dir = self.workdir / f"pysyncobj{i + 1}"
            data_dir.mkdir(exist_ok=True)
            self.data_dirs.append(data_dir)
            partners = [other for other in addresses if other != address]
            command = [
                self.python,
                str(Path(__file__).resolve()),
                "member",
                "--self",
                address,
                "--partners",
                ",".join(partners),
                "--journal",
                str(data_dir / "journal.bin"),
                "--timing",
                json.dumps(self.timing),
            ]
            self.members.append(PySyncObjMember(f"pysyncobj{i + 1}", command, self.workdir / f"pysyncobj{i + 1}.log"))
        for member in self.members:
            member.start()
        try:
            self.leader_index(timeout_s)
        except (TimeoutError, RuntimeError) as exc:
            logs = "\n".join(f"--- {m.name}:\n{log_tail(m.log_path)}" for m in self.members)
            self.stop()
            raise ClusterStartError(f"PySyncObj did not elect a leader: {exc}\n{logs}") from None

    def leader_index(self, timeout_s: float = 30.0) -> int:
        """Index of the running member that leads and has applied its log (waits for one)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for index, member in enumerate(self.members):
                if member.running():
                    status = member.ask({"op": "status"})
                    if status.get("leader") and status.get("ready"):
                        return index
            if time.monotonic() > deadline:
                raise TimeoutError(f"no PySyncObj member led within {timeout_s:.0f} s")
            time.sleep(0.05)

    def run_load(self, value_bytes: int, clients: int, duration_s: float, warmup_s: float) -> LoadResult:
        leader = self.members[self.leader_index()]
        answer = leader.ask(
            {"op": "load", "value_bytes": value_bytes, "clients": clients, "duration_s": duration_s, "warmup_s": warmup_s},
            timeout_s=warmup_s + duration_s + 120.0,
        )
        if "error" in answer:
            raise RuntimeError(f"PySyncObj load failed: {answer['error']}")
        return LoadResult(**answer)  # type: ignore[arg-type]

    def kill(self, index: int) -> float:
        return self.members[index].kill()

    def time_until_write(self, via: int, since: float, give_up_s: float = 30.0) -> float:
        answer = self.members[via].ask({"op": "probe", "since": since, "give_up_s": give_up_s}, give_up_s + 30.0)
        if "error" in answer:
            raise TimeoutError(str(answer["error"]))
        return float(answer["failover_s"])  # type: ignore[arg-type]

    def restart(self, index: int, timeout_s: float = 60.0) -> None:
        """Start a killed member again on its journal; wait until it has applied the leader's log."""
        member = self.members[index]
        member.start()
        deadline = time.monotonic() + timeout_s
        while True:
            status = member.ask({"op": "status"})
            # `ready`: PySyncObj's own "applied up to the leader's commit index at startup".
            if status.get("ready") and status.get("leader_address"):
                return
            if time.monotonic() > deadline:
                raise ClusterStartError(f"{member.name} did not rejoin:\n{log_tail(member.log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def __enter__(self) -> "PySyncObjCluster":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    member = commands.add_parser("member", help="run one member (used by PySyncObjCluster)")
    member.add_argument("--self", dest="self_address", required=True)
    member.add_argument("--partners", required=True)
    member.add_argument("--journal", default="")
    member.add_argument("--timing", required=True, help="JSON: heartbeat_s, election_min_s, election_max_s")
    demo = commands.add_parser("demo", help="a short load run and one failover (the default)")
    demo.add_argument("--value-bytes", type=int, default=1024)
    demo.add_argument("--clients", type=int, default=64)
    demo.add_argument("--duration", type=float, default=3.0)
    demo.add_argument("--batch", action="store_true", help="PySyncObj's default appendEntriesUseBatch=True")
    args = parser.parse_args(argv)
    if args.command == "member":
        return _member_main(args.self_address, [p for p in args.partners.split(",") if p], args.journal, json.loads(args.timing))

    value_bytes = getattr(args, "value_bytes", 1024)
    clients = getattr(args, "clients", 64)
    duration_s = getattr(args, "duration", 3.0)
    batch = bool(getattr(args, "batch", False))
    workdir = Path(tempfile.mkdtemp(prefix="bench-pysyncobj-"))
    try:
        with PySyncObjCluster(workdir, batch=batch) as cluster:
            print(json.dumps(cluster.run_load(value_bytes, clients, duration_s, 1.0).to_dict()))
            leader = cluster.leader_index()
            since = cluster.kill(leader)
            survivor = next(i for i in range(cluster.size) if i != leader)
            print(json.dumps({"failover_s": cluster.time_until_write(survivor, since)}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
