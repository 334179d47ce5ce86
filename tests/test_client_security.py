"""The client API's door (docs/security.md): bearer tokens and roles, HTTPS with client
certificates, escaped keys, member addresses checked before they are proposed, the snapshot
download off the event loop, connection caps and timeouts.

The first part serves one in-process node on a real socket (fast); the second starts one
3-process cluster with [client_tls] and [auth] for the whole module and checks the same door on
the leader and through a follower. No timing assertions: waits are bounded only so a bug fails
instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import aiohttp
import pytest
import trustme
from aiohttp import web
from yarl import URL

from consensus.service import _auth as auth, _backup as snapshotfile
from consensus.service import ClientError, KVClient, tls_context
from consensus.config import ClientTlsConfig
from consensus.service import KVService
from consensus.testing import ProcessCluster
from consensus.runtime import MemberAddress, Node
from consensus.service._server import ClientSite, client_runner, client_tls_contexts
from consensus.statemachines import KVStore
from consensus.transport import MemoryNetwork

from support import FAST, event_loop_factories, eventually, run, run_on

pytestmark = pytest.mark.integration

TOKENS = {
    "read": "read-token-0123456789abcdef",
    "write": "write-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef",
}
TOKEN_ROLES = {token: role for role, token in TOKENS.items()}
#: Bounds every wait of a test (a bug fails the test instead of hanging it).
BOUND = 60.0


class Served:
    """One node (a single voter, in memory) with its KV service on a real socket."""

    def __init__(
        self,
        *,
        kv: Optional[KVStore] = None,
        limit: int = 64,
        idle_timeout: float = 30.0,
        ssl_context: Any = None,
        **service_args: Any,
    ) -> None:
        self.kv = kv if kv is not None else KVStore()
        self.node = Node(1, [1], self.kv, MemoryNetwork().transport(1), options=FAST)
        self.service = KVService(self.node, self.kv, **service_args)
        self.limit, self.idle_timeout, self.ssl_context = limit, idle_timeout, ssl_context
        self.site: Optional[ClientSite] = None
        self.runner: Optional[web.AppRunner] = None

    @property
    def url(self) -> str:
        assert self.site is not None
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.site.port}"

    @property
    def gate(self) -> Any:
        assert self.site is not None and self.site.gate is not None
        return self.site.gate

    async def __aenter__(self) -> "Served":
        await self.node.start()
        await eventually(lambda: self.node.is_leader, "node 1 to lead")
        self.runner = client_runner(self.service, self.idle_timeout)
        await self.runner.setup()
        self.site = ClientSite(self.runner, "127.0.0.1", 0, limit=self.limit, ssl_context=self.ssl_context)
        await self.site.start()
        self.service.connection_gate = self.site.gate
        self.node.addresses[1] = MemberAddress("mem:1", f"127.0.0.1:{self.site.port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
        await self.node.stop()


async def call(
    url: str, method: str, path: str, *, token: Optional[str] = None, body: Any = None, **kwargs: Any
) -> Tuple[int, Dict[str, Any]]:
    """One raw request (path sent exactly as given); (status, JSON body or {"text": ...})."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connector = aiohttp.TCPConnector(ssl=kwargs.pop("ssl", True))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(
            method, URL(url + path, encoded=True), json=body, headers=headers, allow_redirects=False, **kwargs
        ) as resp:
            text = (await resp.read()).decode("utf-8", "replace")
            try:
                payload = json.loads(text) if text else {}
            except ValueError:
                payload = {"text": text}
            if resp.status == 307:
                payload["location"] = resp.headers.get("Location", "")
            return resp.status, payload


# ---------------------------------------------------------------------------- tokens and roles

#: One request per route: (method, path, body, role it needs).
ROUTE_SAMPLES: List[Tuple[str, str, Any, int]] = [
    ("GET", "/v1/kv/k", None, auth.READ),
    ("GET", "/v1/status", None, auth.READ),
    ("PUT", "/v1/kv/k", {"value": "v"}, auth.WRITE),
    ("DELETE", "/v1/kv/k", None, auth.WRITE),
    ("POST", "/v1/kv/k/cas", {"expected": None, "value": "v"}, auth.WRITE),
    ("POST", "/v1/sessions", None, auth.WRITE),
    ("GET", "/v1/members", None, auth.ADMIN),
    ("POST", "/v1/members", {"id": 9, "peer": "127.0.0.1:1"}, auth.ADMIN),
    ("POST", "/v1/members/9/promote", None, auth.ADMIN),
    ("DELETE", "/v1/members/9", None, auth.ADMIN),
    ("POST", "/v1/leader/transfer", {"to": 9}, auth.ADMIN),
    ("GET", "/v1/snapshot", None, auth.ADMIN),
    ("POST", "/v1/snapshot", None, auth.ADMIN),
    ("GET", "/v1/no-such-route", None, auth.ADMIN),  # unknown: admin only (deny by default)
]


def expected_status_class(token: Optional[str], needed: int) -> str:
    if token is None or token not in TOKEN_ROLES:
        return "401"
    role = auth.READ if TOKEN_ROLES[token] == "read" else auth.WRITE if TOKEN_ROLES[token] == "write" else auth.ADMIN
    return "403" if role < needed else "allowed"


def status_class(status: int) -> str:
    return str(status) if status in (401, 403) else "allowed"


def test_every_served_route_has_a_role_in_the_table() -> None:
    node = Node(1, [1], KVStore(), MemoryNetwork().transport(1), options=FAST)
    service = KVService(node, KVStore())
    unclassified = []
    for route in service.app.router.routes():
        pattern = route.resource.canonical if route.resource is not None else None
        if route.method == "HEAD" or pattern == auth.METRICS_PATH:
            continue
        if (route.method, pattern) not in auth.ROUTE_ROLES:
            unclassified.append((route.method, pattern))
    assert unclassified == []


def test_each_role_may_call_exactly_its_routes_and_no_token_gets_401() -> None:
    async def scenario() -> None:
        async with Served(tokens=TOKEN_ROLES) as served:
            presented = [None, "not-a-configured-token-xyz", *TOKENS.values()]
            for method, path, body, needed in ROUTE_SAMPLES:
                for token in presented:
                    status, payload = await call(served.url, method, path, token=token, body=body)
                    assert status_class(status) == expected_status_class(token, needed), (method, path, token, payload)
                    if status == 401:
                        assert payload["code"] == "unauthorized"
                    if status == 403:
                        assert payload["code"] == "forbidden"
            text = served.service.metrics.render(served.node).decode()
            assert 'consensus_http_errors_total{code="unauthorized"}' in text

    run(scenario())


@pytest.mark.parametrize(
    "header",
    [
        "Basic " + TOKENS["admin"],  # another scheme
        "Bearer",  # no token
        TOKENS["admin"],  # no scheme
        "Bearer " + TOKENS["admin"] + "x",  # a configured token plus one character
        "Bearer " + TOKENS["admin"][:-1],  # a prefix of a configured token
    ],
)
def test_malformed_or_near_miss_authorization_is_401(header: str) -> None:
    async def scenario() -> None:
        async with Served(tokens=TOKEN_ROLES) as served:
            status, payload = await call(served.url, "GET", "/v1/status", headers={"Authorization": header})
            assert (status, payload["code"]) == (401, "unauthorized")

    run(scenario())


def test_bearer_scheme_is_case_insensitive() -> None:
    async def scenario() -> None:
        async with Served(tokens=TOKEN_ROLES) as served:
            status, _ = await call(served.url, "GET", "/v1/status", headers={"Authorization": "bearer " + TOKENS["read"]})
            assert status == 200

    run(scenario())


def test_token_is_compared_against_every_configured_token_without_early_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    table = auth.TokenTable(TOKEN_ROLES)
    compared: List[int] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(len(a))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    first = next(iter(TOKEN_ROLES))
    assert table.role_of(first) == auth.READ
    assert len(compared) == len(TOKEN_ROLES), "stopped at the first match"
    assert set(compared) == {32}, "digests of equal length, whatever the token's length"
    assert table.role_of("x") is None
    assert TOKENS["admin"] not in repr(table)


def test_without_tokens_every_route_is_open() -> None:
    async def scenario() -> None:
        async with Served() as served:
            status, _ = await call(served.url, "GET", "/v1/members")
            assert status == 200

    run(scenario())


@pytest.mark.parametrize("public", [False, True])
def test_metrics_need_a_read_token_unless_public(public: bool) -> None:
    async def scenario() -> None:
        async with Served(tokens=TOKEN_ROLES, metrics_public=public) as served:
            status, _ = await call(served.url, "GET", "/metrics")
            assert status == (200 if public else 401)
            status, _ = await call(served.url, "GET", "/metrics", token=TOKENS["read"])
            assert status == 200
            # Public metrics open nothing else.
            status, _ = await call(served.url, "GET", "/v1/status")
            assert status == 401

    run(scenario())


def test_tokens_never_reach_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with Served(tokens=TOKEN_ROLES) as served:
            for token in [*TOKENS.values(), "unknown-token-abcdefghijklmnop"]:
                await call(served.url, "PUT", "/v1/kv/k", token=token, body={"value": "v"})
                await call(served.url, "GET", "/v1/members", token=token)

    with caplog.at_level(logging.DEBUG):
        run(scenario())
    assert caplog.records, "expected some log output to check"
    for token in [*TOKENS.values(), "unknown-token-abcdefghijklmnop"]:
        assert token not in caplog.text


# ---------------------------------------------------------------------------- keys


class Spy:
    """An HTTP server that records the raw path of every request and answers 200."""

    def __init__(self) -> None:
        self.paths: List[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.raw_path)
        return web.json_response({"revision": 1, "deleted": True, "value": "v", "client": "s1", "ttl_ms": 60000})


async def spy_server() -> "Tuple[Spy, web.AppRunner, str]":
    spy = Spy()
    runner = web.AppRunner(spy.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]
    return spy, runner, f"http://127.0.0.1:{port}"


def test_client_never_sends_a_key_that_would_leave_the_kv_routes() -> None:
    """Case 12: delete("../members/2") used to reach DELETE /v1/members/2 and remove a member."""

    async def scenario() -> None:
        spy, runner, url = await spy_server()
        try:
            async with KVClient([url], retry_for=1.0) as client:
                for key in ["../members/2", "..", ".", "a/b", ""]:
                    with pytest.raises(ClientError) as info:
                        await client.delete(key)
                    assert info.value.code == "bad_request"
                assert spy.paths == []
                await client.get("a b?c#d%é")
                await client.get("%2E%2E")
            assert spy.paths == ["/v1/kv/a%20b%3Fc%23d%25%C3%A9", "/v1/kv/%252E%252E"]
        finally:
            await runner.cleanup()

    run(scenario())


def test_keys_with_url_characters_round_trip_through_the_service() -> None:
    async def scenario() -> None:
        async with Served() as served:
            async with KVClient([served.url], retry_for=5.0) as client:
                for key in ["a b?c#d%é", "%2F", "...", "~!$&'()*+,;=:@"]:
                    await client.put(key, "value of " + key)
                    found = await client.get(key)
                    assert found is not None and found[0] == "value of " + key
            assert sorted(k for k, _ in served.kv.items()) == sorted(["a b?c#d%é", "%2F", "...", "~!$&'()*+,;=:@"])

    run(scenario())


@pytest.mark.parametrize("raw", ["%2E%2E", "%2e", "a%2Fb", "%2F"])
def test_service_refuses_dot_segment_and_slash_keys(raw: str) -> None:
    async def scenario() -> None:
        async with Served() as served:
            for method, body in (("GET", None), ("PUT", {"value": "v"}), ("DELETE", None)):
                status, payload = await call(served.url, method, "/v1/kv/" + raw, body=body)
                assert (status, payload["code"]) == (400, "bad_request"), (method, payload)
            assert len(served.kv) == 0

    run(scenario())


# ---------------------------------------------------------------------------- member addresses


@pytest.mark.parametrize(
    "peer,client",
    [
        ("10.0.0.4", "10.0.0.4:8004"),  # case 5: no port
        ("10.0.0.4:0", "10.0.0.4:8004"),
        ("10.0.0.4:9004", "10.0.0.4:70000"),
        ("bad host:9004", "10.0.0.4:8004"),
        ("::1:9004", "10.0.0.4:8004"),
    ],
)
def test_member_with_an_unusable_address_is_refused_before_it_is_proposed(peer: str, client: str) -> None:
    async def scenario() -> None:
        async with Served() as served:
            applied = served.node.applied_index
            status, payload = await call(served.url, "POST", "/v1/members", body={"id": 4, "peer": peer, "client": client})
            assert (status, payload["code"]) == (400, "bad_request")
            assert 4 not in served.node.addresses and served.node.status()["members"] == [1]
            assert served.node.applied_index == applied, "nothing was proposed"

    run(scenario())


def test_cli_members_add_refuses_an_address_without_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    from consensus.service import _cli as cli

    # The node address is never contacted: the check comes first.
    code = cli.main(["members", "add", "127.0.0.1:9", "--id", "4", "--peer", "10.0.0.4", "--client", "10.0.0.4:8004"])
    assert code != 0
    assert "--peer" in capsys.readouterr().err


# ---------------------------------------------------------------------------- snapshot download


class GatedKV(KVStore):
    """A KVStore whose snapshot encoding, once armed, waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.encoding = threading.Event()
        self.gate = threading.Event()

    def snapshot_writer(self) -> Callable[[], bytes]:
        encode = super().snapshot_writer()
        if not self.armed:
            return encode

        def gated() -> bytes:
            self.encoding.set()
            self.gate.wait(BOUND / 4)
            return encode()

        return gated


def test_snapshot_is_encoded_off_the_event_loop() -> None:
    """Case 13: while the state is being encoded, the node keeps answering other requests."""

    async def scenario() -> None:
        kv = GatedKV()
        async with Served(kv=kv) as served:
            async with KVClient([served.url]) as client:
                await client.put("k", "v")
            kv.armed = True
            loop = asyncio.get_running_loop()
            download = asyncio.ensure_future(call(served.url, "GET", "/v1/snapshot"))
            await loop.run_in_executor(None, kv.encoding.wait, BOUND / 4)
            assert kv.encoding.is_set()
            status, body = await call(served.url, "GET", "/v1/status")
            answered_while_encoding = not kv.gate.is_set() and not download.done()
            kv.gate.set()
            snapshot_status, _ = await download
            assert status == 200 and body["role"] == "leader"
            assert answered_while_encoding, "the status request waited for the snapshot encoding"
            assert snapshot_status == 200

    run(scenario())


def test_large_snapshot_streams_the_node_state_in_chunks() -> None:
    async def scenario() -> None:
        async with Served() as served:
            async with KVClient([served.url]) as client:
                for i in range(12):
                    await client.put(f"key{i}", chr(ord("a") + i) * 100_000)
            async with aiohttp.ClientSession() as session:
                async with session.get(served.url + "/v1/snapshot") as resp:
                    assert resp.status == 200
                    pieces = [chunk async for chunk in resp.content.iter_any()]
            blob = b"".join(pieces)
            assert len(blob) > 1_000_000
            backup = snapshotfile.decode(blob)
            assert backup.index == served.node.applied_index
            assert backup.state == served.node.snapshot_bytes()

    run(scenario())


def test_a_second_concurrent_snapshot_download_is_busy() -> None:
    async def scenario() -> None:
        kv = GatedKV()
        async with Served(kv=kv) as served:
            kv.armed = True
            first = asyncio.ensure_future(call(served.url, "GET", "/v1/snapshot"))
            await asyncio.get_running_loop().run_in_executor(None, kv.encoding.wait, BOUND / 4)
            status, payload = await call(served.url, "GET", "/v1/snapshot")
            kv.gate.set()
            assert (status, payload["code"]) == (429, "busy")
            assert (await first)[0] == 200

    run(scenario())


# ---------------------------------------------------------------------------- connections


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), BOUND / 4)


def test_connections_over_the_cap_are_answered_busy_and_the_server_keeps_serving() -> None:
    async def scenario() -> None:
        async with Served(limit=2) as served:
            port = served.site.port if served.site else 0
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await eventually(lambda: served.gate.open == 2, "two connections admitted")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            refused = await read_all(reader)
            writer.close()
            assert refused.startswith(b"HTTP/1.1 503") and b'"code": "busy"' in refused
            assert served.gate.refused == 1
            # The admitted connections are served...
            reader0, writer0 = held[0]
            writer0.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await read_all(reader0)).startswith(b"HTTP/1.1 200")
            # ...and a slot that frees up is used again.
            await eventually(lambda: served.gate.open == 1, "the closed connection released")
            status, _ = await call(served.url, "GET", "/v1/status")
            assert status == 200
            held[1][1].close()
            text = (await call(served.url, "GET", "/metrics"))[1]["text"]
            assert "consensus_client_connections_refused_total 1.0" in text

    run(scenario())


def test_idle_connection_and_slow_request_head_are_closed() -> None:
    async def scenario() -> None:
        async with Served(idle_timeout=0.2) as served:
            port = served.site.port if served.site else 0
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
            slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
            slow_writer.write(b"GET /v1/sta")  # never finishes its request head
            assert await read_all(idle_reader) == b""
            assert await read_all(slow_reader) == b""
            idle_writer.close()
            slow_writer.close()
            await eventually(lambda: served.gate.open == 0, "both connections released")

    run(scenario())


def test_request_body_that_never_arrives_is_answered_408() -> None:
    async def scenario() -> None:
        async with Served(request_timeout=0.2) as served:
            port = served.site.port if served.site else 0
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"va"
            )
            answer = await read_all(reader)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
            assert len(served.kv) == 0

    run(scenario())


# ---------------------------------------------------------------------------- HTTPS


class Pki:
    """A trustme CA, a server certificate for 127.0.0.1 and a client certificate, as files."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.ca_path = str(directory / "client-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        self.server_cert, self.server_key = self._issue(directory, "server", "127.0.0.1", "localhost")
        self.client_cert, self.client_key = self._issue(directory, "client", "client@example.com")
        other = trustme.CA()
        self.stranger_cert, self.stranger_key = self._issue(directory, "stranger", "client@example.com", ca=other)

    def _issue(self, directory: Path, name: str, *identities: str, ca: Optional[trustme.CA] = None) -> Tuple[str, str]:
        leaf = (ca or self.ca).issue_cert(*identities)
        cert, key = str(directory / f"{name}.pem"), str(directory / f"{name}.key")
        leaf.cert_chain_pems[0].write_to_path(cert)
        leaf.private_key_pem.write_to_path(key)
        return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


async def https_status(url: str, context: Any, token: Optional[str] = None) -> int:
    return (await call(url, "GET", "/v1/status", token=token, ssl=context))[0]


def test_https_requires_a_client_certificate_from_the_ca(pki: Pki) -> None:
    server_ssl, _ = client_tls_contexts(ClientTlsConfig(pki.server_cert, pki.server_key, pki.ca_path))

    async def scenario() -> None:
        async with Served(ssl_context=server_ssl, scheme="https") as served:
            good = tls_context(pki.ca_path, pki.client_cert, pki.client_key)
            assert await https_status(served.url, good) == 200
            body = (await call(served.url, "GET", "/v1/status", ssl=good))[1]
            assert body["leader_url"].startswith("https://")
            for context in (tls_context(pki.ca_path), tls_context(pki.ca_path, pki.stranger_cert, pki.stranger_key)):
                with pytest.raises((aiohttp.ClientError, OSError)):
                    await https_status(served.url, context)
            with pytest.raises((aiohttp.ClientError, OSError)):
                await call(served.url.replace("https://", "http://"), "GET", "/v1/status")
            async with KVClient([served.url], ssl_context=good, retry_for=5.0) as client:
                await client.put("k", "over https")
                found = await client.get("k")
                assert found is not None and found[0] == "over https"
            # The node is still serving after the refused handshakes.
            assert await https_status(served.url, good) == 200

    run(scenario())


def test_https_without_a_ca_serves_clients_without_certificates(pki: Pki) -> None:
    server_ssl, _ = client_tls_contexts(ClientTlsConfig(pki.server_cert, pki.server_key, None))

    async def scenario() -> None:
        async with Served(ssl_context=server_ssl, scheme="https") as served:
            assert await https_status(served.url, tls_context(pki.ca_path)) == 200

    run(scenario())


def test_unusable_client_tls_files_are_a_config_error(pki: Pki, tmp_path: Path) -> None:
    from consensus import ConfigError

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        client_tls_contexts(ClientTlsConfig(str(garbage), pki.server_key, None))
    assert info.value.field == "client_tls.cert"
    with pytest.raises(ConfigError) as info:
        client_tls_contexts(ClientTlsConfig(pki.server_cert, pki.server_key, str(garbage)))
    assert info.value.field == "client_tls.ca"


def test_redirect_to_the_leader_names_its_https_url() -> None:
    """forward = false: a follower answers 307 with the leader's URL in the cluster's scheme."""

    async def scenario() -> None:
        net = MemoryNetwork()
        addresses = {i: MemberAddress(f"mem:{i}", f"127.0.0.1:{8000 + i}") for i in (1, 2, 3)}
        nodes = {
            i: Node(i, [1, 2, 3], KVStore(), net.transport(i), options=FAST, addresses=addresses) for i in (1, 2, 3)
        }
        for node in nodes.values():
            await node.start()
        try:
            await eventually(lambda: any(n.is_leader for n in nodes.values()), "a leader")
            leader = next(n for n in nodes.values() if n.is_leader)
            follower = next(n for n in nodes.values() if not n.is_leader)
            await eventually(lambda: follower.leader == leader.id, "the follower to know the leader")
            service = KVService(follower, follower.state_machine, forward=False, scheme="https")
            runner = client_runner(service, 30.0)
            await runner.setup()
            site = ClientSite(runner, "127.0.0.1", 0, limit=8)
            await site.start()
            try:
                status, payload = await call(f"http://127.0.0.1:{site.port}", "PUT", "/v1/kv/k", body={"value": "v"})
            finally:
                await runner.cleanup()
            assert status == 307
            assert payload["location"] == f"https://127.0.0.1:{8000 + leader.id}/v1/kv/k"
        finally:
            for node in nodes.values():
                await node.stop()

    run(scenario())


# ---------------------------------------------------------------------------- the cap, TLS handshakes included


async def closed_by_the_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closed the connection without answering (EOF or reset)."""
    try:
        return await read_all(reader) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("new_loop", event_loop_factories())
def test_sockets_in_their_tls_handshake_count_against_the_cap_and_one_more_is_closed_at_once(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """Raw sockets that never send a ClientHello used to be invisible to the cap (it counted a
    connection only once TLS was done): each held a descriptor for the whole handshake timeout."""
    from consensus.service import _server as server_module

    monkeypatch.setattr(server_module, "CLIENT_TLS_HANDSHAKE_SECONDS", BOUND * 2)  # only the cap can close them
    server_ssl, _ = client_tls_contexts(ClientTlsConfig(pki.server_cert, pki.server_key, None))
    good = tls_context(pki.ca_path)
    left_open: List[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def scenario() -> None:
        async with Served(limit=4, ssl_context=server_ssl, scheme="https") as served:
            port = served.site.port if served.site else 0
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
            await eventually(lambda: served.gate.open == 4, "four sockets in their handshake counted")
            assert served.gate.handshaking == 4
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await closed_by_the_server(reader)
            writer.close()
            assert served.gate.refused == 1 and served.gate.open == 4
            with pytest.raises((aiohttp.ClientError, OSError)):
                await https_status(served.url, good)  # a real client over the cap is refused too
            assert served.gate.refused == 2
            for _reader, idle_writer in idle[:2]:
                idle_writer.close()
            await eventually(lambda: served.gate.open == 2, "the closed sockets released")
            assert await https_status(served.url, good) == 200
            left_open.extend(idle[2:])
        # Stopping the site ends the handshakes still running.
        for idle_reader, idle_writer in left_open:
            assert await closed_by_the_server(idle_reader)
            idle_writer.close()
        assert served.gate.open == 0 and served.gate.handshaking == 0

    run_on(new_loop, scenario())


def test_handshakes_that_time_out_or_fail_give_their_place_back(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    from consensus.service import _server as server_module

    monkeypatch.setattr(server_module, "CLIENT_TLS_HANDSHAKE_SECONDS", 0.2)
    server_ssl, _ = client_tls_contexts(ClientTlsConfig(pki.server_cert, pki.server_key, pki.ca_path))
    good = tls_context(pki.ca_path, pki.client_cert, pki.client_key)
    stranger = tls_context(pki.ca_path, pki.stranger_cert, pki.stranger_key)

    async def scenario() -> None:
        async with Served(limit=2, ssl_context=server_ssl, scheme="https") as served:
            port = served.site.port if served.site else 0
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            for idle_reader, _writer in idle:
                assert await closed_by_the_server(idle_reader)  # the handshake timed out
            for _ in range(3):  # more failed handshakes than the cap
                with pytest.raises((aiohttp.ClientError, OSError)):
                    await https_status(served.url, stranger)
            await eventually(lambda: served.gate.open == 0, "every failed handshake released")
            assert await https_status(served.url, good) == 200
            assert served.gate.refused == 0
            for _reader, idle_writer in idle:
                idle_writer.close()

    run(scenario())


# ---------------------------------------------------------------------------- file descriptors


class FakeLimits:
    """Stands in for resource.getrlimit/setrlimit of RLIMIT_NOFILE (the test process keeps its own)."""

    def __init__(self, soft: int, hard: int) -> None:
        self.soft, self.hard = soft, hard
        self.set_calls: List[Tuple[int, int]] = []

    def getrlimit(self, which: int) -> Tuple[int, int]:
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: Tuple[int, int]) -> None:
        self.set_calls.append(limits)
        self.soft, self.hard = limits


@pytest.fixture
def fake_limits(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, int], FakeLimits]:
    import resource

    def install(soft: int, hard: int) -> FakeLimits:
        fake = FakeLimits(soft, hard)
        monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
        monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
        return fake

    return install


def node_config(tmp_path: Path, **fields: Any) -> Any:
    from consensus.config import Member, NodeConfig

    return NodeConfig(
        id=1,
        data_dir=str(tmp_path / "data"),
        cluster_id="c",
        members=(Member(1, "127.0.0.1:9001", "127.0.0.1:8001"),),
        **fields,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="no RLIMIT_NOFILE on Windows")
def test_serve_raises_the_open_files_soft_limit_to_the_hard_limit(
    fake_limits: Callable[[int, int], FakeLimits], tmp_path: Path
) -> None:
    from consensus.service._server import check_descriptor_budget

    fake = fake_limits(1024, 65536)
    check_descriptor_budget(node_config(tmp_path))  # 1024 connections fit once the limit is raised
    assert fake.set_calls == [(65536, 65536)]


@pytest.mark.skipif(sys.platform == "win32", reason="no RLIMIT_NOFILE on Windows")
def test_a_connection_cap_the_open_files_limit_cannot_hold_is_refused_at_startup(
    fake_limits: Callable[[int, int], FakeLimits], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out of descriptors, the next WAL segment cannot be created and the node stops: a cap the
    limit cannot hold is a configuration error, exit 2, before the data directory is touched."""
    from consensus import ConfigError
    from consensus.service import _cli as cli
    from consensus.config import dump_config
    from consensus.service._server import check_descriptor_budget, descriptors_needed

    fake_limits(1500, 1500)
    fits = node_config(tmp_path, client_connections_max=1)
    largest = 1 + 1500 - descriptors_needed(fits)
    check_descriptor_budget(node_config(tmp_path, client_connections_max=largest))
    with pytest.raises(ConfigError) as info:
        check_descriptor_budget(node_config(tmp_path, client_connections_max=largest + 1))
    assert info.value.field == "client_connections_max"
    assert f"at most {largest}" in str(info.value)

    # The default cap (1024) adapts to the host instead: lowered to what fits, with a warning.
    fake_limits(1200, 1200)
    adapted = check_descriptor_budget(node_config(tmp_path))
    assert adapted.client_connections_max == 1200 - descriptors_needed(fits) + 1
    fake_limits(1500, 1500)
    config = tmp_path / "node.toml"
    config.write_text(dump_config(node_config(tmp_path, client_connections_max=2000)))
    assert cli.main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "client_connections_max" in err and "limit is 1500" in err
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------- a process cluster


SETTINGS: Dict[str, object] = {
    "tick_ms": 10,
    "election_ticks": 20,
    "heartbeat_ticks": 2,
    "request_timeout_ms": 5000,
}


@pytest.fixture(scope="module")
def secure(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    base = tmp_path_factory.mktemp("secure-cluster")
    tokens = base / "tokens.toml"
    tokens.write_text("[tokens]\n" + "".join(f'"{token}" = "{role}"\n' for role, token in TOKENS.items()))
    cluster = ProcessCluster(
        3,
        base_dir=str(base),
        settings=dict(SETTINGS),
        tables={
            "client_tls": {"cert": pki.server_cert, "key": pki.server_key, "ca": pki.ca_path},
            "auth": {"tokens_file": str(tokens)},
        },
    )
    cluster.start_all()
    try:
        run(leader_and_follower(cluster, pki))  # serving, with a leader
        yield cluster
    finally:
        cluster.stop_all()
        for node_id in cluster.nodes:
            print(f"--- node {node_id} log\n{cluster.log_tail(node_id, 40)}")


def client_context(pki: Pki) -> Any:
    return tls_context(pki.ca_path, pki.client_cert, pki.client_key)


async def leader_and_follower(cluster: ProcessCluster, pki: Pki) -> Tuple[str, str]:
    """(leader URL, URL of a follower that knows that leader)."""
    context = client_context(pki)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    while True:
        statuses = []
        for url in cluster.urls:
            try:
                statuses.append((url, (await call(url, "GET", "/v1/status", token=TOKENS["read"], ssl=context))[1]))
            except (aiohttp.ClientError, OSError):
                pass
        leaders = [(url, s) for url, s in statuses if s.get("role") == "leader"]
        if leaders:
            leader_url, leader = leaders[0]
            followers = [url for url, s in statuses if s.get("role") != "leader" and s.get("leader") == leader["id"]]
            if followers:
                return leader_url, followers[0]
        if loop.time() > deadline:
            raise AssertionError(f"no leader with a follower that knows it: {statuses}")
        await asyncio.sleep(0.05)


#: One route of each class, with a body that makes the allowed answer cheap and definite.
CLASS_SAMPLES: List[Tuple[str, str, Any, int]] = [
    ("GET", "/v1/kv/matrix", None, auth.READ),
    ("PUT", "/v1/kv/matrix", {"value": "v"}, auth.WRITE),
    ("POST", "/v1/leader/transfer", {"to": 99}, auth.ADMIN),  # 400 once allowed: 99 is no voter
]


def test_auth_matrix_on_the_leader_and_through_a_follower(secure: ProcessCluster, pki: Pki) -> None:
    async def scenario() -> None:
        context = client_context(pki)
        leader_url, follower_url = await leader_and_follower(secure, pki)
        for url in (leader_url, follower_url):
            for method, path, body, needed in CLASS_SAMPLES:
                for token in [None, "unknown-token-abcdefghijklmnop", *TOKENS.values()]:
                    status, payload = await call(url, method, path, token=token, body=body, ssl=context)
                    where = "leader" if url == leader_url else "follower"
                    assert status_class(status) == expected_status_class(token, needed), (where, method, path, token, payload)
                    if status_class(status) == "allowed":
                        assert status in (200, 400, 404), (where, method, path, payload)
            # A forged "forwarded" header grants nothing: the leader checks the token itself.
        status, _ = await call(leader_url, "PUT", "/v1/kv/matrix", body={"value": "x"}, ssl=context,
                               headers={"X-Consensus-Forwarded-By": "2"})
        assert status == 401
        status, payload = await call(follower_url, "GET", "/v1/kv/matrix", token=TOKENS["read"], ssl=context)
        assert (status, payload["value"]) == (200, "v")
        # Forwarding keeps the key exactly as the client escaped it.
        async with KVClient([follower_url], token=TOKENS["write"], ssl_context=context, retry_for=10.0) as client:
            await client.put("a b?c#d%é", "forwarded")
        status, payload = await call(leader_url, "GET", "/v1/kv/a%20b%3Fc%23d%25%C3%A9", token=TOKENS["read"], ssl=context)
        assert (status, payload["value"]) == (200, "forwarded")

    run(scenario())
    for node_id in secure.nodes:
        with open(secure.nodes[node_id].log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        for token in TOKENS.values():
            assert token not in log, f"node {node_id} logged a token"


def test_cluster_refuses_clients_without_a_certificate_of_its_ca(secure: ProcessCluster, pki: Pki) -> None:
    async def scenario() -> None:
        url = secure.urls[0]
        assert await https_status(url, client_context(pki), TOKENS["read"]) == 200
        for context in (tls_context(pki.ca_path), tls_context(pki.ca_path, pki.stranger_cert, pki.stranger_key)):
            with pytest.raises((aiohttp.ClientError, OSError)):
                await https_status(url, context, TOKENS["admin"])
        with pytest.raises((aiohttp.ClientError, OSError)):
            await call(url.replace("https://", "http://"), "GET", "/v1/status", token=TOKENS["admin"])

    run(scenario())


def test_cluster_metrics_need_a_token(secure: ProcessCluster, pki: Pki) -> None:
    async def scenario() -> None:
        url = secure.urls[1]
        assert (await call(url, "GET", "/metrics", ssl=client_context(pki)))[0] == 401
        status, payload = await call(url, "GET", "/metrics", token=TOKENS["read"], ssl=client_context(pki))
        assert status == 200 and "consensus_client_connections" in payload["text"]

    run(scenario())


def consensus_cli(*args: str, token: Optional[str]) -> "subprocess.CompletedProcess[str]":
    env = {k: v for k, v in os.environ.items() if k != "CONSENSUS_TOKEN"}
    if token is not None:
        env["CONSENSUS_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "consensus", *args], capture_output=True, text=True, env=env, timeout=BOUND
    )


def test_cli_takes_the_token_and_tls_settings(secure: ProcessCluster, pki: Pki, tmp_path: Path) -> None:
    tls_args = ["--cacert", pki.ca_path, "--cert", pki.client_cert, "--key", pki.client_key]
    hosts = [node.client for node in secure.nodes.values()]  # no scheme: https, since TLS options are given
    done = consensus_cli("status", *hosts, *tls_args, token=TOKENS["read"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("leader=") == 3
    refused = consensus_cli("members", "list", *hosts, *tls_args, token=TOKENS["read"])
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    listed = consensus_cli("members", "list", *hosts, *tls_args, "--token", TOKENS["admin"], token=None)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)["members"]) == 3
    backup = tmp_path / "backup.bin"
    saved = consensus_cli("snapshot", "save", hosts[0], str(backup), *tls_args, token=TOKENS["admin"])
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert snapshotfile.decode(backup.read_bytes()).voters == (1, 2, 3)


# ---------------------------------------------------------------------------- startup warnings


def test_open_client_port_on_a_reachable_address_is_warned_about(pki: Pki, tmp_path: Path) -> None:
    from consensus.config import AuthConfig, Member, NodeConfig
    from consensus.service._server import client_port_warnings

    plain = NodeConfig(id=1, data_dir=str(tmp_path), cluster_id="c", members=(Member(1, "10.0.0.1:9001", "10.0.0.1:8001"),))
    secure = NodeConfig(
        id=1,
        data_dir=str(tmp_path),
        cluster_id="c",
        members=(Member(1, "10.0.0.1:9001", "10.0.0.1:8001"),),
        client_tls=ClientTlsConfig(pki.server_cert, pki.server_key, None),
        auth=AuthConfig("tokens.toml", {TOKENS["read"]: "read"}),
    )
    for host in ("127.0.0.1", "::1", "localhost"):
        assert client_port_warnings(plain, host) == []
    warnings = client_port_warnings(plain, "0.0.0.0")
    assert len(warnings) == 2 and "[auth]" in warnings[0] and "[client_tls]" in warnings[1]
    assert len(client_port_warnings(plain, "node1.example")) == 2
    assert client_port_warnings(secure, "10.0.0.1") == []


def test_a_client_that_stops_reading_a_snapshot_does_not_hold_the_download_slot() -> None:
    async def scenario() -> None:
        async with Served(request_timeout=0.5, max_value_bytes=1 << 20) as served:
            async with KVClient([served.url]) as client:
                for i in range(40):  # ~40 MB: more than the socket buffers hold
                    await client.put(f"key{i}", chr(ord("a") + i % 26) * 1_000_000)
            port = served.site.port if served.site else 0
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v1/snapshot HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
            await eventually(lambda: served.service._snapshot_downloads.locked(), "the stalled download to start")
            await eventually(lambda: not served.service._snapshot_downloads.locked(), "the stalled download cut off")
            async with aiohttp.ClientSession() as session:
                async with session.get(served.url + "/v1/snapshot") as resp:
                    assert resp.status == 200
                    blob = await resp.read()
            assert snapshotfile.decode(blob).index == served.node.applied_index
            writer.close()

    run(scenario())


# ---------------------------------------------------------------------------- member ids at the door

#: JSON bodies whose id is not an integer in 1..2^64-1: each one used to be a bare 500
#: (`Infinity`: int() overflows) or silently read as another id (2.5 as 2, "3" as 3, true as 1).
BAD_JSON_IDS = ["Infinity", "-Infinity", "NaN", "2.5", "1e3", '"3"', "true", "0", "-1", str(1 << 64), "null", "[1]"]


@pytest.mark.parametrize("raw_id", BAD_JSON_IDS)
@pytest.mark.parametrize("path,field", [("/v1/members", "id"), ("/v1/leader/transfer", "to")])
def test_a_member_id_in_a_body_that_is_not_an_integer_in_range_is_a_400_and_nothing_is_proposed(
    raw_id: str, path: str, field: str
) -> None:
    body = f'{{"{field}": {raw_id}, "peer": "127.0.0.1:9004", "client": "127.0.0.1:8004"}}'.encode()

    async def scenario() -> None:
        async with Served() as served:
            applied = served.node.applied_index
            status, payload = await call(
                served.url, "POST", path, data=body, headers={"Content-Type": "application/json"}
            )
            assert (status, payload["code"], payload["indeterminate"]) == (400, "bad_request", False)
            assert served.node.status()["members"] == [1] and served.node.applied_index == applied

    run(scenario())


@pytest.mark.parametrize(
    "raw_id", ["0", "02", "+2", "-2", "2.0", "1e3", "%D9%A3", "%EF%BC%92", "2_0", "%202", str(1 << 64), "9" * 4400]
)
def test_a_member_id_in_a_path_that_is_not_canonical_decimal_in_range_is_a_400(raw_id: str) -> None:
    """`%D9%A3` (Arabic-Indic three) and `%EF%BC%92` (fullwidth two) are digits to int()."""

    async def scenario() -> None:
        async with Served() as served:
            for method, path in [("DELETE", f"/v1/members/{raw_id}"), ("POST", f"/v1/members/{raw_id}/promote")]:
                status, payload = await call(served.url, method, path)
                assert (status, payload.get("code")) == (400, "bad_request"), (method, path, status, payload)
            assert served.node.status()["members"] == [1]

    run(scenario())


def test_the_largest_member_id_passes_the_door() -> None:
    """2^64-1 is a valid id: it gets past validation (and is then simply not a member)."""

    async def scenario() -> None:
        async with Served() as served:
            top = (1 << 64) - 1
            status, payload = await call(served.url, "DELETE", f"/v1/members/{top}")
            assert (status, payload["code"]) == (404, "member_not_found")
            status, payload = await call(served.url, "POST", "/v1/leader/transfer", body={"to": top})
            assert (status, payload["error"]) == (400, f"node {top} is not a voter")

    run(scenario())
