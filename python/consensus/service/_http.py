"""The KV service: the HTTP JSON client API of docs/design.md §3 over a `Node` running a `KVStore`.

```
PUT    /v1/kv/{key}        {"value": "text"}             -> {"revision": R}
GET    /v1/kv/{key}        [?consistency=stale]          -> {"value", "revision", "store_revision"} | 404
DELETE /v1/kv/{key}                                      -> {"revision": R, "deleted": bool}
POST   /v1/kv/{key}/cas    {"expected": str|null, "value": str} -> {"succeeded": bool, "revision": R}
POST   /v1/sessions                                      -> {"client": id, "ttl_ms": T} (for X-Request-Id)
GET    /v1/status, GET /metrics
GET    /v1/members, POST /v1/members {"id", "peer", "client"} (joins as a learner; as an acceptor
       under Multi-Paxos, which has no learners: its promote is then a no-op),
POST   /v1/members/{id}/promote, DELETE /v1/members/{id}, POST /v1/leader/transfer {"to": id}
GET    /v1/snapshot (the replicated state as a file), POST /v1/snapshot (snapshot + compact now)
```

A follower forwards writes (and membership operations) to the leader and relays its answer; with
``forward = false`` it answers 307 with the leader's URL. Linearizable reads are served on any node
through the read-index barrier (Raft §6.4), which the leader confirms.

With tokens configured (``[auth]``), every route needs ``Authorization: Bearer <token>`` of a role
allowed to call it (`consensus.auth.ROUTE_ROLES`): 401 ``unauthorized`` without a known token, 403
``forbidden`` below the role. A follower checks the token, forwards it, and the leader checks it
again. docs/security.md has the threat model.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import ssl
import time
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional

import aiohttp
from aiohttp import web
from yarl import URL

from consensus import defaults
from consensus.service import _auth as auth
from consensus.service import _backup as snapshotfile
from consensus.config import ROLES, parse_address
from consensus._core import ConfigError, ConsensusError, NotLeaderError, ProposalDroppedError
from consensus.errors import BusyError, LeadershipLostError, NodeStoppedError, RequestTimeoutError
from consensus.service._metrics import CONTENT_TYPE, NodeMetrics
from consensus.statemachines._kvstore import KVStore
from consensus.statemachines._sessions import parse_request_id

#: Node ids are unsigned 64-bit numbers in the cores; 0 means "none".
MEMBER_ID_MAX = defaults.NODE_ID_MAX
#: How a node id is written in a path: ASCII digits, no sign, no leading zero.
_CANONICAL_ID = re.compile(r"[1-9][0-9]*", re.ASCII)

log = logging.getLogger("consensus.kv")

KEY_BYTES_MAX = 1024
FORWARDED_HEADER = "X-Consensus-Forwarded-By"
REQUEST_ID_HEADER = "X-Request-Id"
#: The caller's headers a follower passes on when it forwards a request to the leader.
FORWARDED_REQUEST_HEADERS = (REQUEST_ID_HEADER, "Authorization")
#: How far a learner may trail the leader's commit index and still be promoted.
PROMOTE_LAG_MAX = 1000
#: A snapshot download is written to the client in pieces of this size.
SNAPSHOT_CHUNK_BYTES = 256 << 10


#: KVStore error results: HTTP status and code (definite answers: the command changed nothing).
_COMMAND_ERRORS = {
    "request_id_reused": (409, "request_id_reused"),
    "session_expired": (409, "session_expired"),
    "unknown_session": (400, "bad_request"),
    "busy": (429, "busy"),
}

#: `ProposalDroppedError.reason` -> HTTP status and code (definite answers: nothing was proposed).
#: Any other reason (a membership change in flight, a transfer, no leader) is 503 "no_leader":
#: retry once the cluster settles.
_DROP_REASON_ERRORS = {
    "uncommitted_bytes": (429, "busy"),
    "too_many_pending_reads": (429, "busy"),
    "entry_too_large": (413, "too_large"),
    "too_many_entries": (413, "too_large"),
    "context_too_large": (413, "too_large"),
}


def key_problem(key: str) -> Optional[str]:
    """Why `key` cannot be one path segment of a URL (".", ".." or a "/" in it), or None.

    A client puts the key into ``/v1/kv/{key}`` escaped; URL normalization would still turn
    "." and ".." into other routes, and a "/" is never part of a segment."""
    if key in (".", ".."):
        return f"key {key!r} is not allowed (a URL would normalize it away)"
    if "/" in key:
        return "a key must not contain '/'"
    return None


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, *, indeterminate: bool = False, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.indeterminate, self.extra = status, code, indeterminate, extra


def error_response(err: HttpError) -> web.Response:
    body = {"error": str(err), "code": err.code, "indeterminate": err.indeterminate, **err.extra}
    return web.json_response(body, status=err.status)


class KVService:
    """The aiohttp application of one node."""

    def __init__(
        self,
        node: Any,
        kv: KVStore,
        *,
        forward: bool = True,
        max_value_bytes: int = 1 << 20,
        request_timeout: float = 5.0,
        metrics: Optional[NodeMetrics] = None,
        tokens: Optional[Mapping[str, str]] = None,
        metrics_public: bool = False,
        scheme: str = "http",
        forward_ssl: Optional[ssl.SSLContext] = None,
    ) -> None:
        """`tokens` (token -> role) turns on bearer-token checks; `scheme` is how the nodes serve
        clients ("https" with [client_tls]) and `forward_ssl` the context that forwarding to the
        leader dials with."""
        self.node = node
        self.tokens = auth.TokenTable(tokens) if tokens is not None else None
        self.metrics_public = metrics_public
        self.scheme = scheme
        self.forward_ssl = forward_ssl
        self._snapshot_downloads = asyncio.Lock()
        #: The client port's `consensus.server.ConnectionGate`, for /metrics (set by the server).
        self.connection_gate: Any = None
        self.kv = kv
        self.forward = forward
        self.max_value_bytes = max_value_bytes
        self.request_timeout = request_timeout
        self.metrics = metrics or NodeMetrics()
        if node.metrics is None:
            node.metrics = self.metrics
        self._session: Optional[aiohttp.ClientSession] = None
        self.app = web.Application(
            middlewares=[self._errors, self._authorize], client_max_size=max_value_bytes * 2 + 4096
        )
        self.app.add_routes(
            [
                web.put("/v1/kv/{key}", self.put),
                web.get("/v1/kv/{key}", self.get),
                web.delete("/v1/kv/{key}", self.delete),
                web.post("/v1/kv/{key}/cas", self.cas),
                web.post("/v1/sessions", self.open_session),
                web.get("/v1/status", self.status),
                web.get("/metrics", self.prometheus),
                web.get("/v1/members", self.members),
                web.post("/v1/members", self.add_member),
                web.post("/v1/members/{id}/promote", self.promote_member),
                web.delete("/v1/members/{id}", self.remove_member),
                web.post("/v1/leader/transfer", self.transfer_leader),
                web.get("/v1/snapshot", self.download_snapshot),
                web.post("/v1/snapshot", self.take_snapshot),
            ]
        )
        self.app.on_cleanup.append(self._close_session)

    async def _close_session(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        except HttpError as err:
            self.metrics.http_errors.labels(err.code).inc()
            return error_response(err)
        except web.HTTPException:
            raise
        except ConsensusError as exc:
            mapped = self._map_error(exc)
            self.metrics.http_errors.labels(mapped.code).inc()
            return error_response(mapped)
        finally:
            self.metrics.observe("http", time.perf_counter() - started)

    @web.middleware
    async def _authorize(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The one place tokens are checked: every route, before its handler runs."""
        if self.tokens is None or (self.metrics_public and request.path == auth.METRICS_PATH):
            return await handler(request)
        route = request.match_info.route.resource
        pattern = route.canonical if route is not None else None
        needed = auth.READ if request.path == auth.METRICS_PATH else auth.required_role(request.method, pattern)
        token = auth.bearer_token(request.headers.get("Authorization"))
        role = self.tokens.role_of(token) if token is not None else None
        if role is None:
            raise HttpError(401, "unauthorized", "a known bearer token is required (Authorization: Bearer <token>)")
        if role < needed:
            raise HttpError(403, "forbidden", f"this route needs the {ROLES[needed]} role; the token has {ROLES[role]}")
        return await handler(request)

    def _map_error(self, exc: ConsensusError) -> HttpError:
        if isinstance(exc, BusyError):
            return HttpError(429, "busy", str(exc))
        if isinstance(exc, NotLeaderError):
            return self._not_leader(exc.leader_hint)
        if isinstance(exc, LeadershipLostError):
            return HttpError(503, "leadership_lost", str(exc), indeterminate=True)
        if isinstance(exc, RequestTimeoutError):
            return HttpError(504, "timeout", str(exc), indeterminate=True)
        if isinstance(exc, NodeStoppedError):
            if exc.indeterminate:
                return HttpError(503, "leadership_lost", str(exc), indeterminate=True)
            return HttpError(503, "no_leader", str(exc))
        if isinstance(exc, ProposalDroppedError):
            status, code = _DROP_REASON_ERRORS.get(exc.reason, (503, "no_leader"))
            return HttpError(status, code, str(exc))
        return HttpError(500, "internal", str(exc), indeterminate=True)

    def leader_url(self, leader: int) -> Optional[str]:
        address = self.node.addresses.get(leader)
        if address is None or not address.client:
            return None
        return f"{self.scheme}://{address.client}"

    def _not_leader(self, leader: int) -> HttpError:
        if leader == 0:
            return HttpError(503, "no_leader", "no leader is known; retry shortly")
        return HttpError(
            503, "not_leader", f"node {self.node.id} is not the leader", leader=leader, leader_url=self.leader_url(leader)
        )

    async def _leader_only(self, request: web.Request, body: bytes, action: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Runs `action` on the leader; elsewhere forwards the request to it, or redirects."""
        if self.node.is_leader:
            try:
                return await action()
            except NotLeaderError:
                pass  # lost the leadership between the check and the proposal: treat as a follower
        leader = self.node.leader
        url = self.leader_url(leader) if leader else None
        if leader == 0 or url is None or request.headers.get(FORWARDED_HEADER):
            raise self._not_leader(leader)
        if not self.forward:
            raise web.HTTPTemporaryRedirect(url + request.path_qs)
        return await self._forward(request, url, body)

    async def _forward(self, request: web.Request, url: str, body: bytes) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout + 1.0),
                connector=aiohttp.TCPConnector(ssl=self.forward_ssl if self.forward_ssl is not None else True),
            )
        headers = {FORWARDED_HEADER: str(self.node.id), "Content-Type": request.headers.get("Content-Type", "application/json")}
        # The leader checks the caller's token again: forwarding grants nothing of its own.
        for name in FORWARDED_REQUEST_HEADERS:
            if name in request.headers:
                headers[name] = request.headers[name]
        try:
            # The path exactly as the client escaped it (a key may hold "?", "#", "%", ...).
            target = URL(url + request.rel_url.raw_path_qs, encoded=True)
            async with self._session.request(request.method, target, data=body, headers=headers) as resp:
                payload = await resp.read()
                return web.Response(body=payload, status=resp.status, content_type=resp.content_type)
        except asyncio.TimeoutError:
            raise HttpError(504, "timeout", "the leader did not answer in time", indeterminate=True) from None
        except aiohttp.ClientError as exc:
            # The request may have reached the leader before the connection broke.
            raise HttpError(503, "leadership_lost", f"forwarding to the leader failed: {exc}", indeterminate=True) from None

    @staticmethod
    def _key(request: web.Request) -> str:
        key = request.match_info["key"]
        size = len(key.encode("utf-8", "surrogatepass"))
        if not 1 <= size <= KEY_BYTES_MAX:
            raise HttpError(400, "bad_request", f"key must be 1 to {KEY_BYTES_MAX} bytes of UTF-8 (got {size})")
        problem = key_problem(key)
        if problem is not None:
            raise HttpError(400, "bad_request", problem)
        return key

    async def _json(self, request: web.Request) -> "tuple[Dict[str, Any], bytes]":
        body = await self._body(request)
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "bad_request", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "bad_request", "the body must be a JSON object")
        return data, body

    async def _body(self, request: web.Request) -> bytes:
        """The request body; a client that does not send it within the request timeout gets 408."""
        try:
            return await asyncio.wait_for(request.read(), self.request_timeout)
        except asyncio.TimeoutError:
            raise HttpError(408, "timeout", "the request body did not arrive in time") from None

    def _text(self, data: Dict[str, Any], name: str, *, nullable: bool = False) -> Optional[str]:
        if name not in data:
            raise HttpError(400, "bad_request", f"missing field {name!r}")
        value = data[name]
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise HttpError(400, "bad_request", f"field {name!r} must be a string{' or null' if nullable else ''}")
        if len(value.encode("utf-8")) > self.max_value_bytes:
            raise HttpError(413, "too_large", f"field {name!r} exceeds {self.max_value_bytes} bytes")
        return value

    def _required_text(self, data: Dict[str, Any], name: str) -> str:
        value = self._text(data, name)
        assert value is not None  # not nullable
        return value

    @staticmethod
    def _request_id(request: web.Request) -> Optional[str]:
        rid = request.headers.get(REQUEST_ID_HEADER)
        if rid is None:
            return None
        try:
            parse_request_id(rid)
        except ValueError as exc:
            raise HttpError(400, "bad_request", f"{REQUEST_ID_HEADER}: {exc}") from None
        return rid

    async def _propose(self, command: bytes) -> web.Response:
        result = await self.node.propose(command)
        if isinstance(result, dict) and "error" in result:
            code = str(result["error"])
            status, code = _COMMAND_ERRORS.get(code, (400, code))
            raise HttpError(status, code, str(result.get("message", code)))
        return web.json_response(result)

    async def open_session(self, request: web.Request) -> web.StreamResponse:
        """A client session for `X-Request-Id` (docs/operations.md, "Idempotent writes")."""
        await self._body(request)  # any body is ignored
        command = KVStore.encode_open_session()
        return await self._leader_only(request, b"", lambda: self._propose(command))

    # ------------------------------------------------------------------ KV

    async def put(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        data, body = await self._json(request)
        value = self._required_text(data, "value")
        command = KVStore.encode_put(key, value, request_id=self._request_id(request))
        return await self._leader_only(request, body, lambda: self._propose(command))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        command = KVStore.encode_delete(key, request_id=self._request_id(request))
        return await self._leader_only(request, b"", lambda: self._propose(command))

    async def cas(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        data, body = await self._json(request)
        expected = self._text(data, "expected", nullable=True)
        value = self._required_text(data, "value")
        command = KVStore.encode_cas(key, expected, value, request_id=self._request_id(request))
        return await self._leader_only(request, body, lambda: self._propose(command))

    async def get(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        consistency = request.query.get("consistency", "linearizable")
        if consistency not in ("linearizable", "stale"):
            raise HttpError(400, "bad_request", "consistency must be 'linearizable' or 'stale'")
        if consistency == "linearizable":
            if not self.forward and not self.node.is_leader:
                leader = self.node.leader
                url = self.leader_url(leader)
                if url is None:
                    raise self._not_leader(leader)
                raise web.HTTPTemporaryRedirect(url + request.path_qs)
            await self.node.read_index()
        found = self.kv.get(key)
        if found is None:
            raise HttpError(404, "key_not_found", f"key {key!r} not found", store_revision=self.kv.revision)
        value, revision = found
        return web.json_response({"value": value, "revision": revision, "store_revision": self.kv.revision})

    # ------------------------------------------------------------------ status and metrics

    async def status(self, _request: web.Request) -> web.StreamResponse:
        s = self.node.status()
        body = {
            "id": s["id"],
            "protocol": s["protocol"],
            "role": s["role"],
            "term": s["term"],
            "leader": s["leader"],
            "leader_url": self.leader_url(s["leader"]) if s["leader"] else None,
            "commit_index": s["commit"],
            "applied_index": s["applied"],
            "last_index": s["last_index"],
            "first_index": s["first_index"],
            "snapshot_index": s["snapshot_index"],
            "members": s["members"],
            "voters": s["voters"],
            "learners": s["learners"],
            "addresses": {str(k): v for k, v in s["addresses"].items()},
            "peers": {str(k): v for k, v in s["peers"].items()},
            "progress": {str(k): v for k, v in s["progress"].items()},
            "store_revision": self.kv.revision,
            "keys": len(self.kv),
        }
        if "failure" in s:
            body["failure"] = s["failure"]
        return web.json_response(body)

    async def prometheus(self, _request: web.Request) -> web.StreamResponse:
        if self.connection_gate is not None:
            self.metrics.observe_connections(self.connection_gate)
        body = self.metrics.render(self.node)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    # ------------------------------------------------------------------ membership and operations

    async def members(self, _request: web.Request) -> web.StreamResponse:
        s = self.node.status()
        out = []
        for member in s["members"]:
            address = s["addresses"].get(member, {"peer": "", "client": ""})
            out.append(
                {
                    "id": member,
                    "voter": member in s["voters"],
                    "learner": member in s["learners"],
                    "peer": address["peer"],
                    "client": address["client"],
                }
            )
        return web.json_response({"members": out, "leader": s["leader"]})

    @staticmethod
    def _member_id(value: Any, field: str = "id") -> int:
        """A node id from a JSON body: a JSON integer (not a bool, a float, `Infinity` or a
        string) in 1..MEMBER_ID_MAX; anything else is a 400."""
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MEMBER_ID_MAX:
            raise HttpError(400, "bad_request", f"{field} must be an integer in 1..{MEMBER_ID_MAX}")
        return value

    @staticmethod
    def _path_member_id(request: web.Request) -> int:
        """A node id from the path: canonical ASCII decimal digits (no sign, no leading zero, no
        other digit scripts) in 1..MEMBER_ID_MAX; anything else is a 400."""
        text = request.match_info["id"]
        if len(text) > len(str(MEMBER_ID_MAX)) or not _CANONICAL_ID.fullmatch(text) or int(text) > MEMBER_ID_MAX:
            raise HttpError(400, "bad_request", f"the member id in the path must be an integer in 1..{MEMBER_ID_MAX}")
        return int(text)

    async def add_member(self, request: web.Request) -> web.StreamResponse:
        data, body = await self._json(request)
        member = self._member_id(data.get("id"))
        peer = self._address(data, "peer")
        client = self._address(data, "client")

        async def action() -> web.StreamResponse:
            if member in self.node.status()["members"]:
                raise HttpError(409, "member_exists", f"node {member} is already a member")
            await self.node.set_address(member, peer, client)
            learner = self.node.spec.has_learners
            if learner:
                conf = await self.node.change_membership(add_learners=[member])
            else:
                conf = await self.node.change_membership(add_voters=[member])
            return web.json_response(
                {"id": member, "learner": learner, "voters": list(conf.voters), "learners": list(conf.learners)}
            )

        return await self._leader_only(request, body, action)

    def _address(self, data: Dict[str, Any], name: str) -> str:
        """A member address, "host:port" with a valid port, checked before anything is proposed."""
        address = self._required_text(data, name)
        try:
            parse_address(address, name)
        except ConfigError as exc:
            raise HttpError(400, "bad_request", str(exc)) from None
        return address

    async def promote_member(self, request: web.Request) -> web.StreamResponse:
        member = self._path_member_id(request)

        async def action() -> web.StreamResponse:
            s = self.node.status()
            if not self.node.spec.has_learners and member in s["voters"]:
                # No learners in this protocol: the member has voted since it was added.
                return web.json_response({"id": member, "voter": True, "voters": s["voters"], "learners": []})
            if member not in s["learners"]:
                raise HttpError(409, "not_a_learner", f"node {member} is not a learner")
            matched = s["progress"].get(member, {}).get("match", 0)
            if s["commit"] - matched > PROMOTE_LAG_MAX:
                raise HttpError(
                    409, "not_caught_up", f"node {member} is at {matched}, the commit index is {s['commit']}; retry later"
                )
            conf = await self.node.change_membership(add_voters=[member])
            return web.json_response({"id": member, "voter": True, "voters": list(conf.voters), "learners": list(conf.learners)})

        return await self._leader_only(request, b"", action)

    async def remove_member(self, request: web.Request) -> web.StreamResponse:
        member = self._path_member_id(request)

        async def action() -> web.StreamResponse:
            s = self.node.status()
            if member in s["voters"]:
                conf = await self.node.change_membership(remove_voters=[member])
            elif member in s["learners"]:
                conf = await self.node.change_membership(remove_learners=[member])
            else:
                raise HttpError(404, "member_not_found", f"node {member} is not a member")
            return web.json_response({"removed": member, "voters": list(conf.voters), "learners": list(conf.learners)})

        return await self._leader_only(request, b"", action)

    async def transfer_leader(self, request: web.Request) -> web.StreamResponse:
        data, body = await self._json(request)
        to = self._member_id(data.get("to"), "to")

        async def action() -> web.StreamResponse:
            if to not in self.node.status()["voters"]:
                raise HttpError(400, "bad_request", f"node {to} is not a voter")
            await self.node.transfer_leadership(to)
            return web.json_response({"transferring_to": to})

        return await self._leader_only(request, body, action)

    async def download_snapshot(self, request: web.Request) -> web.StreamResponse:
        """The state after a read barrier, encoded on a worker thread and streamed in chunks, so a
        large state never holds the event loop (heartbeats, other clients); one at a time."""
        if self._snapshot_downloads.locked():
            raise HttpError(429, "busy", "a snapshot download is already in progress; retry later")
        async with self._snapshot_downloads:
            await self.node.read_index()
            s = self.node.status()
            index = self.node.applied_index
            # Captured on the loop (a cheap copy for a KVStore); encoded off it.
            encode_state = self.node.snapshot_encoder()
            loop = asyncio.get_running_loop()
            state = await loop.run_in_executor(None, encode_state)
            blob = await loop.run_in_executor(
                None,
                functools.partial(
                    snapshotfile.encode, index=index, term=s["term"], cluster_voters=s["voters"], state=state
                ),
            )
            del state
            return await self._stream(request, blob)

    async def _stream(self, request: web.Request, blob: bytes) -> web.StreamResponse:
        """Writes `blob` in chunks; a client that stops reading for a request timeout is cut off
        (so it cannot hold the one download slot)."""
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(blob)
        await response.prepare(request)
        view = memoryview(blob)
        try:
            for start in range(0, len(blob), SNAPSHOT_CHUNK_BYTES):
                await asyncio.wait_for(response.write(view[start : start + SNAPSHOT_CHUNK_BYTES]), self.request_timeout)
            await response.write_eof()
        except asyncio.TimeoutError:
            log.info("snapshot download: the client stopped reading; connection closed")
            if request.transport is not None:
                request.transport.close()
        return response

    async def take_snapshot(self, _request: web.Request) -> web.StreamResponse:
        index = await self.node.take_snapshot()  # a storage failure stops the node, as in the loop
        return web.json_response({"snapshot_index": index})


__all__ = [
    "FORWARDED_HEADER",
    "FORWARDED_REQUEST_HEADERS",
    "KEY_BYTES_MAX",
    "MEMBER_ID_MAX",
    "PROMOTE_LAG_MAX",
    "REQUEST_ID_HEADER",
    "SNAPSHOT_CHUNK_BYTES",
    "HttpError",
    "KVService",
    "error_response",
    "key_problem",
]
