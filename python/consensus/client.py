"""An asyncio client of the KV service (DESIGN.md §3) that finds the leader and retries safely.

Writes carry an ``X-Request-Id`` (``<client>:<seq>``), so a retry after an indeterminate answer
(a timeout, a lost leader, a dropped connection) is applied at most once: the service returns the
first answer for a repeated id.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import aiohttp
from yarl import URL

#: Answers after which the same request may be sent again (to another node, or later).
RETRYABLE_CODES = {"no_leader", "not_leader", "leadership_lost", "timeout", "busy", "stopped"}


class ClientError(Exception):
    """A definite error answer (bad request, request id reused, ...) or retries exhausted."""

    def __init__(self, status: int, body: Dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code', '?')}: {body.get('error', body)}")
        self.status = status
        self.body = body
        self.code = body.get("code", "")


class KVClient:
    """Talks to any node of a cluster; ``urls`` are the nodes' client addresses (``http://h:p``)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        client_id: Optional[str] = None,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        session: Optional[aiohttp.ClientSession] = None,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.client_id = client_id or uuid.uuid4().hex[:12]
        #: The service keeps the last answer per client id, so each request in flight needs an id
        #: of its own: a lane is a client id with its own sequence, used by one request at a time.
        self._free_lanes: List[List[Any]] = []
        self._lane_count = 0
        self.timeout = timeout
        self.retry_for = retry_for
        self._session = session
        self._own_session = session is None
        self.preferred: Optional[str] = None

    async def __aenter__(self) -> "KVClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=0),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def request(self, url: str, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
        """One HTTP exchange with one node, redirects not followed."""
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method, url + path, data=data, headers=headers, allow_redirects=False
        ) as resp:
            raw = await resp.read()
            if resp.status == 307:
                return 307, {"code": "redirect", "location": resp.headers.get("Location", "")}
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = {"error": raw[:200].decode("utf-8", "replace"), "code": "bad_response"}
            return resp.status, payload

    async def call(self, method: str, path: str, body: Any = None, *, idempotent_write: bool = False) -> Dict[str, Any]:
        """Sends to the leader it knows (else each node in turn), retrying retryable answers until
        ``retry_for`` seconds pass."""
        headers = {"Content-Type": "application/json"}
        if not idempotent_write:
            return await self._call(method, path, body, headers)
        if self._free_lanes:
            lane = self._free_lanes.pop()
        else:
            self._lane_count += 1
            lane = [f"{self.client_id}.{self._lane_count}", 0]
        lane[1] += 1
        headers["X-Request-Id"] = f"{lane[0]}:{lane[1]}"
        try:
            return await self._call(method, path, body, headers)
        finally:
            self._free_lanes.append(lane)

    async def _call(self, method: str, path: str, body: Any, headers: Dict[str, str]) -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        candidates = itertools.cycle(self.urls)
        url = self.preferred or next(candidates)
        delay = 0.02
        redirects = 0
        last: Tuple[int, Dict[str, Any]] = (0, {"code": "unreachable"})
        while True:
            try:
                status, payload = await self.request(url, method, path, body, headers)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                status, payload = 0, {"code": "unreachable", "error": str(exc)}
            if status == 307 and payload.get("location"):
                if loop.time() >= deadline:
                    raise ClientError(status, payload)
                url = str(URL(payload["location"]).origin())
                redirects += 1
                if redirects > 3:  # nodes with stale views of the leader: give them a moment
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.25)
                continue
            if 200 <= status < 300 or status == 404 and payload.get("code") == "key_not_found":
                self.preferred = url
                payload["_status"] = status
                return payload
            code = payload.get("code", "")
            if status and code not in RETRYABLE_CODES:
                raise ClientError(status, payload)
            last = (status, payload)
            if loop.time() >= deadline:
                raise ClientError(last[0], last[1])
            leader_url = payload.get("leader_url")
            if code == "not_leader" and leader_url:
                url = leader_url.rstrip("/")
                continue
            self.preferred = None
            url = next(candidates)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    # ------------------------------------------------------------------ the KV API

    async def put(self, key: str, value: str) -> int:
        return int((await self.call("PUT", f"/v1/kv/{key}", {"value": value}, idempotent_write=True))["revision"])

    async def get(self, key: str, *, stale: bool = False) -> Optional[Tuple[str, int]]:
        suffix = "?consistency=stale" if stale else ""
        payload = await self.call("GET", f"/v1/kv/{key}{suffix}")
        if payload["_status"] == 404:
            return None
        return payload["value"], int(payload["revision"])

    async def delete(self, key: str) -> Dict[str, Any]:
        return await self.call("DELETE", f"/v1/kv/{key}", idempotent_write=True)

    async def cas(self, key: str, expected: Optional[str], value: str) -> Dict[str, Any]:
        return await self.call("POST", f"/v1/kv/{key}/cas", {"expected": expected, "value": value}, idempotent_write=True)

    async def status(self, url: str) -> Dict[str, Any]:
        status, payload = await self.request(url.rstrip("/"), "GET", "/v1/status")
        if status != 200:
            raise ClientError(status, payload)
        return payload

    async def statuses(self) -> List[Optional[Dict[str, Any]]]:
        """Every node's status (None where a node does not answer)."""

        async def one(url: str) -> Optional[Dict[str, Any]]:
            try:
                return await self.status(url)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ClientError):
                return None

        return list(await asyncio.gather(*(one(u) for u in self.urls)))

    async def wait_for_leader(self, timeout: float = 30.0) -> Tuple[int, str]:
        """(leader id, its URL) once some node reports itself leader."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for url, status in zip(self.urls, await self.statuses()):
                if status is not None and status["role"] == "leader":
                    self.preferred = url
                    return int(status["id"]), url
            if loop.time() >= deadline:
                raise TimeoutError(f"no leader among {self.urls} after {timeout} s")
            await asyncio.sleep(0.05)
