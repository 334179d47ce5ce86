"""An asyncio client of the KV service (docs/design.md §3) that finds the leader and retries safely.

Writes carry an ``X-Request-Id`` (``<session>:<seq>``) in a client session the client opens
(``POST /v1/sessions``), so a retry after an indeterminate answer (a timeout, a lost leader, a
dropped connection) is applied at most once: the service returns the first answer for a repeated
id, or ``session_expired`` (raised as `SessionExpiredError`) if the session expired meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import ssl
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence, Tuple

import aiohttp
from yarl import URL

#: Answers after which the same request may be sent again (to another node, or later).
RETRYABLE_CODES = {"no_leader", "not_leader", "leadership_lost", "timeout", "busy", "stopped"}


class ClientError(Exception):
    """A definite error answer (bad request, request id reused, ...) or retries exhausted.

    `after_indeterminate`: an earlier attempt of the same request had an indeterminate answer (a
    timeout, a lost leader, a broken connection), so that attempt may have been applied."""

    def __init__(self, status: int, body: Dict[str, Any], *, after_indeterminate: bool = False) -> None:
        super().__init__(f"{status} {body.get('code', '?')}: {body.get('error', body)}")
        self.status = status
        self.body = body
        self.code = body.get("code", "")
        self.after_indeterminate = after_indeterminate


class SessionExpiredError(ClientError):
    """The write's client session expired (docs/operations.md): the service did not apply it now.

    Raised only with `after_indeterminate`: an earlier attempt of the same write may have been
    applied, and the caller must find out (read the key) before writing it again. (When every
    earlier answer was definite, nothing was applied and the client resends the write in a new
    session itself.) The client opens a new session for its next write.
    """


#: The clock a client's sessions are renewed by (a module attribute, so tests can move it).
_monotonic = time.monotonic


class _Lane:
    """A client session used by one request at a time: the service keeps one answer per session,
    so each request in flight needs a session of its own."""

    __slots__ = ("session", "seq", "ttl_s", "renew_at")

    def __init__(self) -> None:
        self.session: Optional[str] = None
        self.seq = 0
        self.ttl_s = 0.0
        #: Past this time the session may be close to expiring on the service: open a new one.
        self.renew_at = 0.0


#: Keys a URL path segment cannot carry (normalization turns them into other routes).
_DOT_SEGMENTS = (".", "..")


def key_path(key: str, suffix: str = "") -> str:
    """``/v1/kv/<key><suffix>`` with the key escaped as exactly one path segment; a key that cannot
    be one (empty, "." or "..", or containing "/") raises ClientError bad_request, unsent."""
    if not isinstance(key, str) or not key or key in _DOT_SEGMENTS or "/" in key:
        raise ClientError(
            400, {"code": "bad_request", "error": f"invalid key {key!r}: not empty, not '.' or '..', no '/'"}
        )
    return "/v1/kv/" + urllib.parse.quote(key, safe="") + suffix


def tls_context(cafile: Optional[str] = None, certfile: Optional[str] = None, keyfile: Optional[str] = None) -> ssl.SSLContext:
    """A client TLS context for HTTPS nodes: trusts `cafile` (else the system store), presents
    `certfile`/`keyfile` when the nodes require client certificates; TLS 1.2 or later."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


class KVClient:
    """Talks to any node of a cluster; ``urls`` are the nodes' client addresses (``http://h:p``,
    ``https://h:p``). ``token`` is sent as ``Authorization: Bearer`` on every request; ``ssl_context``
    is the TLS context for HTTPS nodes (see `tls_context`)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        session: Optional[aiohttp.ClientSession] = None,
        token: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.token = token
        self.ssl_context = ssl_context
        self._free_lanes: List[_Lane] = []
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
                connector=aiohttp.TCPConnector(limit=0, ssl=self.ssl_context if self.ssl_context is not None else True),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def request(self, url: str, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
        """One HTTP exchange with one node, redirects not followed."""
        data = None if body is None else json.dumps(body)
        headers = dict(headers or {})
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        # encoded=True: the path is already escaped and must reach the node exactly as it is.
        async with self.session.request(
            method, URL(url + path, encoded=True), data=data, headers=headers, allow_redirects=False
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
        lane = self._free_lanes.pop() if self._free_lanes else _Lane()
        try:
            for attempt in range(2):
                if lane.session is None or _monotonic() >= lane.renew_at:
                    await self._open_session(lane)
                lane.seq += 1
                # The service measures a session's idle time from its last request, which it sees
                # after this moment: renewing after half the lifetime leaves the other half as
                # margin (for a leader's clock running ahead of this one).
                lane.renew_at = _monotonic() + lane.ttl_s / 2
                headers["X-Request-Id"] = f"{lane.session}:{lane.seq}"
                try:
                    return await self._call(method, path, body, headers)
                except ClientError as exc:
                    if exc.code != "session_expired":
                        raise
                    lane.session = None
                    if exc.after_indeterminate or attempt > 0:
                        # An earlier attempt may have been applied: resending could apply it twice.
                        raise SessionExpiredError(exc.status, exc.body, after_indeterminate=exc.after_indeterminate) from None
                    # Every answer so far was definite: nothing was applied, so a new session may
                    # carry the write (its session expired or was evicted before it arrived).
            raise AssertionError("unreachable")
        finally:
            self._free_lanes.append(lane)

    async def _open_session(self, lane: _Lane) -> None:
        """Opens a client session (``POST /v1/sessions``) for `lane`."""
        payload = await self._call("POST", "/v1/sessions", None, {"Content-Type": "application/json"})
        lane.session, lane.seq, lane.ttl_s = str(payload["client"]), 0, int(payload["ttl_ms"]) / 1000

    async def _call(self, method: str, path: str, body: Any, headers: Dict[str, str]) -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        candidates = itertools.cycle(self.urls)
        url = self.preferred or next(candidates)
        delay = 0.02
        redirects = 0
        last: Tuple[int, Dict[str, Any]] = (0, {"code": "unreachable"})
        uncertain = False  # an earlier attempt may have been applied
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
                raise ClientError(status, payload, after_indeterminate=uncertain)
            last = (status, payload)
            uncertain = uncertain or status == 0 or bool(payload.get("indeterminate"))
            if loop.time() >= deadline:
                raise ClientError(last[0], last[1], after_indeterminate=uncertain)
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
        return int((await self.call("PUT", key_path(key), {"value": value}, idempotent_write=True))["revision"])

    async def get(self, key: str, *, stale: bool = False) -> Optional[Tuple[str, int]]:
        suffix = "?consistency=stale" if stale else ""
        payload = await self.call("GET", key_path(key, suffix))
        if payload["_status"] == 404:
            return None
        return payload["value"], int(payload["revision"])

    async def delete(self, key: str) -> Dict[str, Any]:
        return await self.call("DELETE", key_path(key), idempotent_write=True)

    async def cas(self, key: str, expected: Optional[str], value: str) -> Dict[str, Any]:
        return await self.call("POST", key_path(key, "/cas"), {"expected": expected, "value": value}, idempotent_write=True)

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


__all__ = [
    "RETRYABLE_CODES",
    "ClientError",
    "KVClient",
    "SessionExpiredError",
    "key_path",
    "tls_context",
]
