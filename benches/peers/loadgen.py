"""Closed-loop HTTP write load for the peer comparison: N concurrent clients, one value size.

Each client sends one write, waits for its answer, and sends the next; every write uses a key of its
own. Latency is measured per request with `time.perf_counter`; throughput counts the writes answered
inside the measurement window. The same generator drives `consensus` (its KV API) and etcd (its v3
JSON gateway); only the request builder differs.

    python benches/peers/loadgen.py --system etcd --endpoints http://127.0.0.1:2379 --clients 64
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

import aiohttp

# A request may be sent again after a redirect or a "no leader" answer; past this many tries it counts
# as an error instead of looping forever.
request_attempts_max = 20
# How long a client waits after a "no leader yet" answer before it tries again.
no_leader_backoff_s = 0.01
# Client-side bound on one HTTP exchange. Longer than the servers' own request timeouts (consensus 5 s,
# etcd 3.4 about 7 s) so that the server, not the client, decides when a write has failed.
request_timeout_s = 15.0
# Failover probe: a new attempt is launched this often, and at most this many are in flight.
probe_interval_s = 0.05
probe_inflight_max = 256
# Key length bound of the consensus KV API; the generated keys stay far below it.
key_bytes_max = 1024


@dataclass
class LoadResult:
    """What one load run measured. Latencies are of successful writes started inside the window."""

    system: str
    value_bytes: int
    clients: int
    window_s: float
    writes: int
    errors: int
    writes_per_s: float
    latency_ms_p50: float
    latency_ms_p99: float
    latency_ms_max: float
    first_error: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when it is empty)."""
    if not sorted_values:
        return 0.0
    assert 0.0 < fraction <= 1.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(
    system: str,
    value_bytes: int,
    clients: int,
    latencies_s: List[float],
    window_s: float,
    errors: int,
    first_error: str = "",
) -> LoadResult:
    """Throughput and latency percentiles from per-request latencies measured over `window_s`."""
    ordered = sorted(latencies_s)
    writes = len(ordered)
    return LoadResult(
        system=system,
        value_bytes=value_bytes,
        clients=clients,
        window_s=round(window_s, 3),
        writes=writes,
        errors=errors,
        writes_per_s=round(writes / window_s, 1) if window_s > 0 else 0.0,
        latency_ms_p50=round(percentile(ordered, 0.50) * 1000.0, 3),
        latency_ms_p99=round(percentile(ordered, 0.99) * 1000.0, 3),
        latency_ms_max=round((ordered[-1] if ordered else 0.0) * 1000.0, 3),
        first_error=first_error,
    )


def make_value(value_bytes: int) -> str:
    """An ASCII text value of exactly `value_bytes` bytes (JSON-safe, no escaping needed)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[i % len(alphabet)] for i in range(value_bytes))


# --- request builders -------------------------------------------------------------------------------


@dataclass
class PutOutcome:
    """The answer to one write attempt: done, retry elsewhere (`redirect_url`), retry later, or failed."""

    ok: bool
    redirect_url: str = ""
    retry_later: bool = False
    error: str = ""


class RequestBuilder:
    """How one system is written to and asked who leads. Subclasses fill in the three methods."""

    name = ""

    async def put(self, session: aiohttp.ClientSession, base_url: str, key: str, value: str) -> PutOutcome:
        raise NotImplementedError

    async def is_leader(self, session: aiohttp.ClientSession, base_url: str) -> bool:
        raise NotImplementedError


class ConsensusRequests(RequestBuilder):
    """`PUT /v1/kv/{key}` with `{"value": text}`; 307 and 503 `not_leader` point at the leader."""

    name = "consensus"

    async def put(self, session: aiohttp.ClientSession, base_url: str, key: str, value: str) -> PutOutcome:
        async with session.put(f"{base_url}/v1/kv/{key}", json={"value": value}, allow_redirects=False) as answer:
            if answer.status == 200:
                await answer.read()
                return PutOutcome(ok=True)
            if answer.status in (307, 308):
                location = answer.headers.get("Location", "")
                await answer.read()
                return PutOutcome(ok=False, redirect_url=_origin(location), error="redirect without Location")
            body = await _json_or_empty(answer)
            code = str(body.get("code", ""))
            if answer.status == 503 and code == "not_leader" and body.get("leader_url"):
                return PutOutcome(ok=False, redirect_url=_origin(str(body["leader_url"])))
            if answer.status == 503 and code in ("no_leader", "not_leader"):
                return PutOutcome(ok=False, retry_later=True)
            if answer.status == 429:
                return PutOutcome(ok=False, retry_later=True)
            return PutOutcome(ok=False, error=f"HTTP {answer.status} {code or body}")

    async def is_leader(self, session: aiohttp.ClientSession, base_url: str) -> bool:
        async with session.get(f"{base_url}/v1/status") as answer:
            if answer.status != 200:
                return False
            body = await _json_or_empty(answer)
            return body.get("role") == "leader"


class EtcdRequests(RequestBuilder):
    """etcd v3 JSON gateway: `POST /v3/kv/put` with base64 key and value."""

    name = "etcd"

    async def put(self, session: aiohttp.ClientSession, base_url: str, key: str, value: str) -> PutOutcome:
        payload = {"key": _b64(key), "value": _b64(value)}
        async with session.post(f"{base_url}/v3/kv/put", json=payload) as answer:
            body = await _json_or_empty(answer)
            if answer.status == 200 and "error" not in body:
                return PutOutcome(ok=True)
            message = str(body.get("error") or body.get("message") or body)
            # A member that has lost its leader drops proposals at once; the write was not applied.
            if "no leader" in message or "proposal dropped" in message or "leader changed" in message:
                return PutOutcome(ok=False, retry_later=True, error=message)
            return PutOutcome(ok=False, error=f"HTTP {answer.status} {message}")

    async def is_leader(self, session: aiohttp.ClientSession, base_url: str) -> bool:
        async with session.post(f"{base_url}/v3/maintenance/status", json={}) as answer:
            if answer.status != 200:
                return False
            body = await _json_or_empty(answer)
            leader = str(body.get("leader", ""))
            member = str(body.get("header", {}).get("member_id", ""))
            return bool(leader) and leader != "0" and leader == member


BUILDERS: Dict[str, RequestBuilder] = {"consensus": ConsensusRequests(), "etcd": EtcdRequests()}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _origin(url: str) -> str:
    """`http://host:port/v1/kv/x` to `http://host:port` (the base the builders append paths to)."""
    if "://" not in url:
        return ""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def _json_or_empty(answer: aiohttp.ClientResponse) -> Dict[str, Any]:
    try:
        body = json.loads(await answer.read() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _new_session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=request_timeout_s))


# --- leader discovery -------------------------------------------------------------------------------


async def find_leader(builder: RequestBuilder, endpoints: Sequence[str], timeout_s: float = 30.0) -> int:
    """Index in `endpoints` of the member that says it leads; waits up to `timeout_s` for one."""
    deadline = time.monotonic() + timeout_s
    async with _new_session(len(endpoints)) as session:
        while True:
            for index, url in enumerate(endpoints):
                try:
                    if await asyncio.wait_for(builder.is_leader(session, url), 2.0):
                        return index
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {builder.name} member claimed leadership within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)


# --- load -------------------------------------------------------------------------------------------


async def _write(builder: RequestBuilder, session: aiohttp.ClientSession, urls: List[str], key: str, value: str) -> str:
    """One logical write, following redirects and waiting out elections; '' on success, else the error.

    `urls[0]` is this client's current target; a redirect replaces it for the client's next writes.
    """
    error = ""
    for _ in range(request_attempts_max):
        try:
            outcome = await builder.put(session, urls[0], key, value)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if outcome.ok:
            return ""
        if outcome.redirect_url:
            urls[0] = outcome.redirect_url
            continue
        if outcome.retry_later:
            error = outcome.error or "no leader"
            await asyncio.sleep(no_leader_backoff_s)
            continue
        return outcome.error
    return f"gave up after {request_attempts_max} attempts: {error}"


async def run_load(
    builder: RequestBuilder,
    target_url: str,
    value_bytes: int,
    clients: int,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    count: Optional[int] = None,
    run_name: str = "",
) -> LoadResult:
    """`clients` closed-loop writers against `target_url` for `warmup_s` + `duration_s` (or `count` writes).

    Writes started during the warm-up are sent but not measured. With `count`, the run ends after that
    many measured writes instead of after `duration_s`.
    """
    if clients < 1 or value_bytes < 1:
        raise ValueError("clients and value_bytes must be at least 1")
    value = make_value(value_bytes)
    prefix = run_name or f"{builder.name}-{value_bytes}-{clients}-{time.time_ns()}"
    assert len(prefix) + 32 < key_bytes_max
    sequence = itertools.count()
    latencies_s: List[float] = []
    errors = [0]
    first_error = [""]
    started = time.perf_counter()
    window_start = started + warmup_s
    window_end = window_start + duration_s if count is None else float("inf")
    last_done = [window_start]

    async def client(client_id: int, session: aiohttp.ClientSession) -> None:
        urls = [target_url]
        while True:
            begin = time.perf_counter()
            if begin >= window_end or (count is not None and len(latencies_s) + errors[0] >= count):
                return
            error = await _write(builder, session, urls, f"{prefix}-{client_id}-{next(sequence)}", value)
            end = time.perf_counter()
            if begin < window_start:
                continue
            if error:
                errors[0] += 1
                first_error[0] = first_error[0] or error
            else:
                latencies_s.append(end - begin)
                last_done[0] = max(last_done[0], end)

    async with _new_session(clients) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    window_s = (window_end if count is None else last_done[0]) - window_start
    # Writes in flight at the window's end finish a little after it; they belong to the window.
    window_s = max(window_s, last_done[0] - window_start)
    return summarize(builder.name, value_bytes, clients, latencies_s, window_s, errors[0], first_error[0])


# --- failover ---------------------------------------------------------------------------------------


async def time_until_write(
    builder: RequestBuilder, endpoints: Sequence[str], since: float, give_up_s: float = 30.0
) -> float:
    """Seconds from `since` (a `time.monotonic()` reading, the kill) until a write succeeds.

    The client knows only the surviving `endpoints`. It starts a new attempt every `probe_interval_s`
    against the next endpoint without cancelling earlier ones, because a member that has not yet noticed
    the leader's death holds a write until its own request timeout; the first attempt to succeed ends the
    probe. The resolution is therefore about `probe_interval_s`.
    """
    succeeded = asyncio.Event()
    success_at = [0.0]
    inflight = asyncio.Semaphore(probe_inflight_max)
    value = make_value(100)
    prefix = f"failover-{time.time_ns()}"

    async def attempt(number: int, session: aiohttp.ClientSession) -> None:
        try:
            urls = [endpoints[number % len(endpoints)]]
            error = await _write(builder, session, urls, f"{prefix}-{number}", value)
            if not error and not succeeded.is_set():
                success_at[0] = time.monotonic()
                succeeded.set()
        finally:
            inflight.release()

    tasks = []
    async with _new_session(probe_inflight_max) as session:
        for number in itertools.count():
            if succeeded.is_set():
                break
            if time.monotonic() - since > give_up_s:
                break
            await inflight.acquire()
            tasks.append(asyncio.ensure_future(attempt(number, session)))
            try:
                await asyncio.wait_for(succeeded.wait(), probe_interval_s)
            except asyncio.TimeoutError:
                pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if not succeeded.is_set():
        raise TimeoutError(f"no {builder.name} write succeeded within {give_up_s:.0f} s of the kill")
    return success_at[0] - since


# --- command line -----------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Closed-loop HTTP write load against consensus or etcd.")
    parser.add_argument("--system", choices=sorted(BUILDERS), required=True)
    parser.add_argument("--endpoints", required=True, help="comma-separated base URLs of all members")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds after the warm-up")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--count", type=int, default=None, help="measured writes instead of a duration")
    args = parser.parse_args(argv)
    builder = BUILDERS[args.system]
    endpoints = [url.rstrip("/") for url in args.endpoints.split(",") if url]

    async def go() -> LoadResult:
        leader = await find_leader(builder, endpoints)
        return await run_load(
            builder, endpoints[leader], args.value_bytes, args.clients, args.duration, args.warmup, args.count
        )

    print(json.dumps(asyncio.run(go()).to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
