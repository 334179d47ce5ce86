"""`make bench-peers`: consensus (Raft and Multi-Paxos), etcd and PySyncObj side by side on this
machine, in one run.

For each system: a 3-node cluster on loopback, closed-loop writes of 100-byte and 1 KiB values from 1
and 64 concurrent clients (throughput, p50, p99), then failover trials (SIGKILL the leader, time until
a write succeeds through the survivors). The systems run one after another, never at the same time,
and each gets the same heartbeat (50 ms) and election timeout (500 ms).

    python benches/peers/run.py [--duration 10] [--systems consensus,etcd,pysyncobj] [--quick]

Prints markdown tables and writes the JSON results to --out (default /tmp/bench-peers.json).
A system that fails to start is skipped and reported, and the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ceiling_server import CeilingServer  # noqa: E402
from cluster_common import ClusterStartError  # noqa: E402
from consensus_cluster import ConsensusCluster, consensus_version  # noqa: E402
from consensus_embedded import EmbeddedConsensusCluster  # noqa: E402
from etcd_cluster import EtcdCluster, etcd_version  # noqa: E402
from loadgen import BUILDERS, LoadResult, run_load, time_until_write  # noqa: E402
from pysyncobj_bench import PySyncObjCluster, pysyncobj_version  # noqa: E402

# "consensus-api" is consensus through its own in-process API, the like-for-like peer of PySyncObj's row.
# "consensus-paxos" is the same service running Multi-Paxos instead of Raft (protocol = "paxos").
SYSTEMS = ("consensus", "consensus-paxos", "consensus-api", "etcd", "pysyncobj")
# Selectable with --systems but not run by default: the HTTP ceiling (no replication, no disk).
OPTIONAL_SYSTEMS = ("ceiling",)
# The shared timing, in each system's own terms.
HEARTBEAT_MS = 50
ELECTION_TIMEOUT_MS = 500
TIMING = {
    "consensus": "tick_ms=10, heartbeat_ticks=5, election_ticks=50 (timeout drawn from [500, 1000) ms)",
    "consensus-paxos": "as consensus",
    "consensus-api": "as consensus",
    "etcd": "--heartbeat-interval=50 --election-timeout=500 (timeout drawn from [500, 1000) ms)",
    "pysyncobj": "appendEntriesPeriod=0.05, raftMinTimeout=0.5, raftMaxTimeout=1.0",
    "ceiling": "none (one process, no replication)",
}
DURABILITY = {
    "consensus": 'fsync = "always": the log is fsynced before a write is acknowledged',
    "consensus-paxos": 'as consensus: the promise and accepted slots are fsynced before a Promise or Accepted leaves',
    "consensus-api": "as consensus (fsync always)",
    "etcd": "etcd fsyncs its WAL before a write is acknowledged (always on, not configurable)",
    "pysyncobj": "never fsyncs: its journal file is an mmap it does not msync; messages are pickled",
    "ceiling": "none: a dict in memory (shows the HTTP client+server ceiling of this machine)",
}
CLIENTS = {
    "consensus": "HTTP/1.1 keep-alive, this process's asyncio+aiohttp load generator, sent to the leader",
    "consensus-paxos": "as consensus",
    "consensus-api": "in-process API inside the leader's process (`await kv.put()`, N coroutines), like PySyncObj's row",
    "etcd": "HTTP/1.1 keep-alive JSON gateway (/v3/kv/put), the same load generator, sent to the leader",
    "pysyncobj": "in-process callback API inside the leader's process (no client hop; it has no client protocol)",
    "ceiling": "the consensus write API (PUT /v1/kv/{key}), the same load generator",
}
# Targets the issue sets (evaluated in the output).
# Pause before each failover trial and each load, so that every one starts from a settled cluster.
settle_s = 1.0
FAILOVER_TARGET_S = 2 * ELECTION_TIMEOUT_MS / 1000.0
PYSYNCOBJ_FACTOR_TARGET = 5.0


# --- the machine ------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem_of(path: Path) -> Dict[str, str]:
    """Device, filesystem type and mount options of the mount holding `path` (from /proc/mounts)."""
    best: Tuple[str, str, str, str] = ("", "", "", "")
    target = str(path.resolve())
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 4:
                continue
            device, mount_point, fs_type, options = fields[:4]
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best[1]):
                best = (device, mount_point, fs_type, options)
    except OSError:
        pass
    device = best[0]
    rotational = ""
    name = os.path.basename(device)
    if name:
        flag = Path(f"/sys/block/{name}/queue/rotational")
        if flag.exists():
            # Virtual disks often claim to be rotational; this is what the kernel reports, no more.
            rotational = f"queue/rotational={flag.read_text().strip()}"
    return {"path": target, "device": device, "mount": best[1], "fs_type": best[2], "options": best[3],
            "device_kind": rotational}


def machine_info(workdir: Path) -> Dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count() or 0,
        "kernel": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "data_filesystem": _filesystem_of(workdir),
        "python": platform.python_version(),
        "versions": {
            "consensus": consensus_version(sys.executable),
            "etcd": etcd_version(),
            "pysyncobj": pysyncobj_version(),
        },
    }


# --- one system ---------------------------------------------------------------------------------------


class HttpSystem:
    """consensus or etcd: a cluster object plus the shared HTTP load generator."""

    def __init__(self, name: str, cluster: Any) -> None:
        self.name = name
        self.cluster = cluster
        # The ceiling server speaks the consensus write API.
        self.builder = BUILDERS["consensus" if name in ("ceiling", "consensus-paxos") else name]

    def load(self, value_bytes: int, clients: int, duration_s: float, warmup_s: float) -> LoadResult:
        leader = self.cluster.leader_index()
        url = self.cluster.client_urls[leader]
        return asyncio.run(run_load(self.builder, url, value_bytes, clients, duration_s, warmup_s))

    def failover(self) -> float:
        leader = self.cluster.leader_index()
        urls: List[str] = self.cluster.client_urls
        survivors = [url for index, url in enumerate(urls) if index != leader]
        killed_at = self.cluster.kill(leader)
        elapsed_s = asyncio.run(time_until_write(self.builder, survivors, killed_at))
        self.cluster.restart(leader)
        return elapsed_s


class PySyncObjSystem:
    """PySyncObj: the load and the failover probe run inside member processes."""

    def __init__(self, cluster: PySyncObjCluster) -> None:
        self.name = "pysyncobj"
        self.cluster = cluster

    def load(self, value_bytes: int, clients: int, duration_s: float, warmup_s: float) -> LoadResult:
        return self.cluster.run_load(value_bytes, clients, duration_s, warmup_s)

    def failover(self) -> float:
        leader = self.cluster.leader_index()
        survivor = next(index for index in range(self.cluster.size) if index != leader)
        killed_at = self.cluster.kill(leader)
        elapsed_s = self.cluster.time_until_write(survivor, killed_at)
        self.cluster.restart(leader)
        return elapsed_s


class EmbeddedSystem:
    """consensus through its in-process API; its failover is the HTTP row's (same nodes)."""

    def __init__(self, cluster: EmbeddedConsensusCluster) -> None:
        self.name = "consensus-api"
        self.cluster = cluster

    def load(self, value_bytes: int, clients: int, duration_s: float, warmup_s: float) -> LoadResult:
        return self.cluster.run_load(value_bytes, clients, duration_s, warmup_s)


def make_cluster(name: str, workdir: Path, pysyncobj_batch: bool) -> Any:
    if name == "consensus-api":
        return EmbeddedConsensusCluster(workdir)
    if name in ("consensus", "consensus-paxos"):
        protocol = "paxos" if name == "consensus-paxos" else "raft"
        return ConsensusCluster(
            workdir, tick_ms=10, heartbeat_ticks=5, election_ticks=50, fsync="always", protocol=protocol
        )
    if name == "etcd":
        return EtcdCluster(workdir, heartbeat_ms=HEARTBEAT_MS, election_ms=ELECTION_TIMEOUT_MS)
    if name == "ceiling":
        return CeilingServer(workdir)
    if name == "pysyncobj":
        return PySyncObjCluster(
            workdir, heartbeat_ms=HEARTBEAT_MS, election_min_ms=ELECTION_TIMEOUT_MS,
            election_max_ms=2 * ELECTION_TIMEOUT_MS, batch=pysyncobj_batch,
        )
    raise ValueError(f"unknown system {name!r}")


def run_system(
    name: str,
    workdir: Path,
    value_sizes: List[int],
    client_counts: List[int],
    duration_s: float,
    warmup_s: float,
    failover_trials: int,
    pysyncobj_batch: bool,
    log: Callable[[str], None],
) -> Dict[str, Any]:
    """Start one system's cluster, run every load and the failover trials, stop it."""
    record: Dict[str, Any] = {
        "status": "ok", "reason": "", "timing": TIMING[name], "durability": DURABILITY[name],
        "client": CLIENTS[name], "load": [], "failover_s": [], "failover_errors": [],
    }
    if name == "pysyncobj":
        record["timing"] = f"{TIMING[name]}, appendEntriesUseBatch={pysyncobj_batch}"
    cluster = make_cluster(name, workdir, pysyncobj_batch)
    log(f"[{name}] starting {'one server' if name == 'ceiling' else 'a 3-node cluster'} in {workdir}")
    try:
        cluster.start()
    except ClusterStartError as exc:
        record["status"] = "skipped"
        record["reason"] = str(exc)
        log(f"[{name}] SKIPPED, did not start: {str(exc).splitlines()[0]}")
        return record
    system: Any
    if name == "pysyncobj":
        system = PySyncObjSystem(cluster)
    elif name == "consensus-api":
        system = EmbeddedSystem(cluster)
    else:
        system = HttpSystem(name, cluster)
    if name in ("ceiling", "consensus-api"):
        failover_trials = 0  # ceiling: one process; consensus-api: the HTTP row measures the same nodes
        record["failover_s"] = None
    loads: List[Dict[str, Any]] = []
    record["load"] = loads
    try:
        # Failover first, while the logs are short: a restarted member then catches up in moments in
        # every system, and each trial starts from three healthy, caught-up members.
        for trial in range(failover_trials):
            time.sleep(settle_s)
            try:
                elapsed_s = system.failover()
            except Exception as exc:
                log(f"[{name}] failover trial {trial + 1} failed: {exc}")
                record["failover_errors"].append(str(exc))
                break
            record["failover_s"].append(round(elapsed_s, 3))
            log(f"[{name}] failover trial {trial + 1}: {elapsed_s * 1000:.0f} ms")
        for value_bytes in value_sizes:
            for clients in client_counts:
                time.sleep(settle_s)
                try:
                    result = system.load(value_bytes, clients, duration_s, warmup_s)
                except Exception as exc:  # one failed run is reported, the others still run
                    log(f"[{name}] load {value_bytes} B x {clients} failed: {exc}")
                    loads.append({"system": name, "value_bytes": value_bytes, "clients": clients, "failed": str(exc)})
                    continue
                loads.append(result.to_dict())
                log(
                    f"[{name}] {value_bytes:>5} B x {clients:>2} clients: {result.writes_per_s:>9.1f} writes/s  "
                    f"p50 {result.latency_ms_p50:7.2f} ms  p99 {result.latency_ms_p99:7.2f} ms  errors {result.errors}"
                )
    except Exception as exc:
        record["status"] = "failed"
        record["reason"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        log(f"[{name}] FAILED: {exc}")
    finally:
        cluster.stop()
    return record


# --- report -------------------------------------------------------------------------------------------


def _find(results: Dict[str, Dict[str, Any]], system: str, value_bytes: int, clients: int) -> Optional[Dict]:
    record = results.get(system)
    if not record or record.get("status") != "ok":
        return None
    for row in record["load"]:
        if row["value_bytes"] == value_bytes and row["clients"] == clients and "failed" not in row:
            return row
    return None


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "n/a"


def load_table(results: Dict[str, Dict[str, Any]], value_sizes: List[int], client_counts: List[int]) -> str:
    lines = [
        "| system | value | clients | writes/s | p50 ms | p99 ms | writes/s vs etcd | p99 vs etcd |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for value_bytes in value_sizes:
        for clients in client_counts:
            etcd_row = _find(results, "etcd", value_bytes, clients)
            for system, record in results.items():
                if record.get("status") != "ok":
                    continue
                row = _find(results, system, value_bytes, clients)
                if row is None:
                    lines.append(f"| {system} | {value_bytes} B | {clients} | failed | | | | |")
                    continue
                vs_throughput = _ratio(row["writes_per_s"], etcd_row["writes_per_s"]) if etcd_row else "n/a"
                vs_p99 = _ratio(row["latency_ms_p99"], etcd_row["latency_ms_p99"]) if etcd_row else "n/a"
                lines.append(
                    f"| {system} | {value_bytes} B | {clients} | {row['writes_per_s']:.0f} | "
                    f"{row['latency_ms_p50']:.2f} | {row['latency_ms_p99']:.2f} | {vs_throughput} | {vs_p99} |"
                )
    return "\n".join(lines)


def protocol_table(results: Dict[str, Dict[str, Any]], value_sizes: List[int], client_counts: List[int]) -> str:
    """Multi-Paxos against Raft in the same service (the issue's target: within 20 %)."""
    lines = [
        "| value | clients | Raft writes/s | Multi-Paxos writes/s | Paxos / Raft | p99 Raft ms | p99 Paxos ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for value_bytes in value_sizes:
        for clients in client_counts:
            ours = _find(results, "consensus", value_bytes, clients)
            paxos = _find(results, "consensus-paxos", value_bytes, clients)
            if ours is None or paxos is None:
                continue
            lines.append(
                f"| {value_bytes} B | {clients} | {ours['writes_per_s']:.0f} | {paxos['writes_per_s']:.0f} | "
                f"{_ratio(paxos['writes_per_s'], ours['writes_per_s'])} | {ours['latency_ms_p99']:.2f} | "
                f"{paxos['latency_ms_p99']:.2f} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def failover_table(results: Dict[str, Dict[str, Any]]) -> str:
    lines = ["| system | trials (ms) | median ms | max ms |", "| --- | --- | ---: | ---: |"]
    for system, record in results.items():
        if record.get("status") != "ok":
            continue
        trials: Optional[List[float]] = record["failover_s"]
        if trials is None:
            continue
        if not trials:
            lines.append(f"| {system} | failed | | |")
            continue
        shown = ", ".join(f"{t * 1000:.0f}" for t in trials)
        lines.append(f"| {system} | {shown} | {statistics.median(trials) * 1000:.0f} | {max(trials) * 1000:.0f} |")
    return "\n".join(lines)


def evaluate_targets(
    results: Dict[str, Dict[str, Any]], value_sizes: List[int], client_counts: List[int]
) -> List[Dict[str, str]]:
    """The issue's targets for consensus, each PASS, FAIL or 'not measured' with the numbers."""
    verdicts: List[Dict[str, str]] = []

    def add(target: str, passed: Optional[bool], detail: str) -> None:
        verdict = "not measured" if passed is None else ("PASS" if passed else "FAIL")
        verdicts.append({"target": target, "verdict": verdict, "detail": detail})

    consensus_ok = results.get("consensus", {}).get("status") == "ok"
    reason = "" if consensus_ok else f"consensus {results.get('consensus', {}).get('status', 'not selected')}"
    for value_bytes in value_sizes:
        for clients in client_counts:
            ours = _find(results, "consensus", value_bytes, clients)
            etcd = _find(results, "etcd", value_bytes, clients)
            where = f"{value_bytes} B, {clients} clients"
            if ours is None or etcd is None:
                add(f"writes/s >= etcd ({where})", None, reason or "a run is missing")
                add(f"p99 <= etcd ({where})", None, reason or "a run is missing")
                continue
            add(f"writes/s >= etcd ({where})", ours["writes_per_s"] >= etcd["writes_per_s"],
                f"{ours['writes_per_s']:.0f} vs {etcd['writes_per_s']:.0f}")
            add(f"p99 <= etcd ({where})", ours["latency_ms_p99"] <= etcd["latency_ms_p99"],
                f"{ours['latency_ms_p99']:.2f} ms vs {etcd['latency_ms_p99']:.2f} ms")
    for clients in client_counts:
        # Like for like: both through their own in-process API inside the leader's process.
        ours = _find(results, "consensus-api", 1024, clients)
        peer = _find(results, "pysyncobj", 1024, clients)
        where = f"1024 B, {clients} clients"
        if ours is None or peer is None:
            add(f"writes/s >= {PYSYNCOBJ_FACTOR_TARGET:.0f}x PySyncObj ({where})", None, reason or "a run is missing")
            continue
        add(f"writes/s >= {PYSYNCOBJ_FACTOR_TARGET:.0f}x PySyncObj ({where})",
            ours["writes_per_s"] >= PYSYNCOBJ_FACTOR_TARGET * peer["writes_per_s"],
            f"{ours['writes_per_s']:.0f} vs {peer['writes_per_s']:.0f} ({_ratio(ours['writes_per_s'], peer['writes_per_s'])})")
    trials = results.get("consensus", {}).get("failover_s") or []
    if consensus_ok and trials:
        worst = max(trials)
        add(f"failover <= {FAILOVER_TARGET_S * 1000:.0f} ms (worst trial)", worst <= FAILOVER_TARGET_S,
            f"{worst * 1000:.0f} ms over {len(trials)} trials")
    else:
        add(f"failover <= {FAILOVER_TARGET_S * 1000:.0f} ms (worst trial)", None, reason or "no trial succeeded")
    return verdicts


def render(report: Dict[str, Any], value_sizes: List[int], client_counts: List[int]) -> str:
    results: Dict[str, Dict[str, Any]] = report["systems"]
    machine: Dict[str, Any] = report["machine"]
    fs: Dict[str, str] = machine["data_filesystem"]
    versions: Dict[str, str] = machine["versions"]
    settings: Dict[str, Any] = report["settings"]
    out = [
        "## Peer comparison (one run, same machine)",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {machine['kernel']}; data dirs on "
        f"{fs['device']} ({fs['fs_type']}, {fs['device_kind'] or 'device kind unknown'}) under {fs['path']}. "
        f"Python {machine['python']}; consensus {versions['consensus'] or '(not importable)'}, "
        f"{versions['etcd'] or 'etcd (not installed)'}, PySyncObj {versions['pysyncobj'] or '(not installed)'}.",
        f"Every cluster, its load generator and this script share these {machine['cpu_cores']} cores; the systems "
        "run one after another, never together.",
        f"Each load: {settings['warmup_s']} s warm-up, then {settings['duration_s']} s measured; closed loop, "
        "one write in flight per client, a fresh key per write.",
        "",
        load_table(results, value_sizes, client_counts),
        "",
        protocol_table(results, value_sizes, client_counts),
        "",
        "Failover: SIGKILL of the leader until a write succeeds again through a client that knows only the "
        "survivors (a new attempt every 50 ms, earlier ones left running).",
        "",
        failover_table(results),
        "",
        "| system | durability | timing | client path |",
        "| --- | --- | --- | --- |",
    ]
    for system, record in results.items():
        out.append(f"| {system} | {record['durability']} | {record['timing']} | {record['client']} |")
    skipped = [(s, r) for s, r in results.items() if r.get("status") != "ok"]
    if skipped:
        out += ["", "Not measured:"]
        for system, record in skipped:
            reason = str(record.get("reason", "")).strip().splitlines()
            out.append(f"- {system}: {record['status']}: {reason[0] if reason else ''}")
            # The end of the quoted logs says why (the last lines of a traceback).
            out += [f"    {line}" for line in reason[1:][-8:]]
    out += ["", "| target (consensus) | verdict | numbers |", "| --- | --- | --- |"]
    for verdict in report["targets"]:
        out.append(f"| {verdict['target']} | {verdict['verdict']} | {verdict['detail']} |")
    return "\n".join(out)


# --- command line -------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, from {','.join(SYSTEMS + OPTIONAL_SYSTEMS)} (default: all but the ceiling)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per load (default 10)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per load (default 2)")
    parser.add_argument("--failover-trials", type=int, default=None, help="leader kills per system (default 3)")
    parser.add_argument("--quick", action="store_true", help="3 s loads, 1 s warm-up, 1 failover trial")
    parser.add_argument("--value-sizes", default="100,1024", help="value sizes in bytes")
    parser.add_argument("--clients", default="1,64", help="concurrent client counts")
    parser.add_argument("--pysyncobj-batch", action="store_true",
                        help="run PySyncObj with its default appendEntriesUseBatch=True (slower here)")
    parser.add_argument("--workdir", default=None, help="parent of the temporary data dirs (default: the system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    parser.add_argument("--out", default="/tmp/bench-peers.json", help="where the JSON results go")
    args = parser.parse_args(argv)

    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = [name for name in systems if name not in SYSTEMS + OPTIONAL_SYSTEMS]
    if unknown or not systems:
        parser.error(f"--systems takes names from {','.join(SYSTEMS + OPTIONAL_SYSTEMS)}, not {args.systems!r}")
    try:
        value_sizes = [int(v) for v in args.value_sizes.split(",") if v]
        client_counts = [int(c) for c in args.clients.split(",") if c]
    except ValueError:
        parser.error("--value-sizes and --clients take comma-separated integers")
    if not value_sizes or not client_counts or min(value_sizes + client_counts) < 1:
        parser.error("--value-sizes and --clients need positive integers")
    duration_s = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    warmup_s = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    trials = args.failover_trials if args.failover_trials is not None else (1 if args.quick else 3)
    if duration_s <= 0 or warmup_s < 0 or trials < 0:
        parser.error("--duration must be positive, --warmup and --failover-trials not negative")

    workdir = Path(tempfile.mkdtemp(prefix="bench-peers-", dir=args.workdir))

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report: Dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(workdir),
        "settings": {
            "duration_s": duration_s, "warmup_s": warmup_s, "failover_trials": trials,
            "value_sizes": value_sizes, "clients": client_counts,
            "heartbeat_ms": HEARTBEAT_MS, "election_timeout_ms": ELECTION_TIMEOUT_MS,
            "pysyncobj_append_entries_use_batch": args.pysyncobj_batch,
        },
    }
    results: Dict[str, Dict[str, Any]] = {}
    started = time.monotonic()
    try:
        for name in systems:
            results[name] = run_system(
                name, workdir / name, value_sizes, client_counts, duration_s, warmup_s, trials,
                args.pysyncobj_batch, log,
            )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report["systems"] = results
    report["targets"] = evaluate_targets(results, value_sizes, client_counts)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    print(render(report, value_sizes, client_counts))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"results written to {out}" + (f"; data dirs and logs kept in {workdir}" if args.keep else ""))
    measured = [name for name, record in results.items() if record.get("status") == "ok"]
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())
