"""Peer identity on the peer port: mutual TLS certificates bind a node id (docs/wire-format.md §9),
refusals reveal nothing, and the test certificates of tests/tlscerts.py.

Waits poll with generous timeouts only to avoid hangs; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import pytest
from cryptography import x509
from tlscerts import CertificateAuthority, issue_cluster, node_uri

from consensus import raft
from consensus.transport import TcpTransport, handshake, tls_contexts

from support import Inbox, eventually, frame, run

CLUSTER = "test-cluster"


def test_test_certificates_carry_the_node_uri_and_load_as_mutual_tls_contexts(tmp_path: Path) -> None:
    ca_path, leaves = issue_cluster(tmp_path, CLUSTER, [1, 2])
    cert = x509.load_pem_x509_certificate(Path(leaves[2][0]).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["consensus://test-cluster/node/2"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    for node in (1, 2):
        tls_contexts(leaves[node][0], leaves[node][1], ca_path)
    anonymous = CertificateAuthority(tmp_path / "other").issue("anonymous")
    anonymous_cert = x509.load_pem_x509_certificate(Path(anonymous[0]).read_bytes())
    sans = anonymous_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == []
    assert node_uri("c", 7) == "consensus://c/node/7"


# ---------------------------------------------------------------------- helpers


Contexts = Tuple[ssl.SSLContext, ssl.SSLContext]


def node(node_id: int, peers: Mapping[int, str], contexts: Optional[Contexts] = None, **options: object) -> TcpTransport:
    if contexts is not None:
        options["ssl_server"], options["ssl_client"] = contexts
    return TcpTransport(
        node_id,
        cluster_id=CLUSTER,
        protocol="raft",
        listen="127.0.0.1:0",
        peers=peers,
        backoff_initial=0.02,
        backoff_max=0.2,
        **options,  # type: ignore[arg-type]
    )


async def exchange(a: TcpTransport, inbox_a: Inbox, b: TcpTransport, inbox_b: Inbox, seq: int) -> None:
    assert a.send(b.node_id, frame(a.node_id, b.node_id, seq))
    assert b.send(a.node_id, frame(b.node_id, a.node_id, seq))
    await eventually(
        lambda: seq in inbox_b.from_peer(a.node_id) and seq in inbox_a.from_peer(b.node_id),
        f"{a.node_id}<->{b.node_id} #{seq}",
    )


@pytest.fixture
def cluster_certs(tmp_path: Path) -> Tuple[CertificateAuthority, Dict[int, Contexts]]:
    ca = CertificateAuthority(tmp_path)
    contexts = {}
    for node_id in (1, 2, 3, 4):
        cert, key = ca.issue(f"node{node_id}", cluster_id=CLUSTER, node_id=node_id)
        contexts[node_id] = tls_contexts(cert, key, str(ca.cert_path))
    return ca, contexts


# ---------------------------------------------------------------------- mTLS binds identity


def test_identity_uris_percent_encode_the_cluster_id_and_malformed_ones_never_match() -> None:
    assert handshake.identity_uri("a b/c", 7) == "consensus://a%20b%2Fc/node/7"
    sans = (
        ("URI", "consensus://test-cluster/node/3"),
        ("URI", "consensus://other/node/5"),
        ("DNS", "consensus://test-cluster/node/6"),
    )
    assert handshake.certificate_node_ids({"subjectAltName": sans}, CLUSTER) == {3}
    for bad in ("03", "", "3x", "+3", "٣", "9" * 30):
        named = handshake.certificate_node_ids({"subjectAltName": (("URI", f"consensus://test-cluster/node/{bad}"),)}, CLUSTER)
        assert named == {None}
    assert handshake.certificate_node_ids({}, CLUSTER) == set()


@pytest.mark.integration
def test_a_ca_signed_certificate_for_node_2_that_claims_id_3_is_refused_and_the_real_node_3_keeps_its_connection(
    cluster_certs: Tuple[CertificateAuthority, Dict[int, Contexts]],
) -> None:
    _, contexts = cluster_certs

    async def scenario() -> None:
        acceptor = node(4, {2: "127.0.0.1:9", 3: "127.0.0.1:9"}, contexts[4])
        inbox_4 = Inbox()
        await acceptor.start(inbox_4)
        impostor = node(3, {4: acceptor.listen_address}, contexts[2])
        real = node(3, {4: acceptor.listen_address}, contexts[3])
        inbox_3 = Inbox()
        try:
            await impostor.start(Inbox())
            impostor.send(4, frame(3, 4, 99))
            await eventually(lambda: acceptor.identity_refusals >= 1, "the impostor refused")
            assert acceptor.greeted_peers() == set()
            await real.start(inbox_3)
            await exchange(real, inbox_3, acceptor, inbox_4, 1)
            # The impostor keeps dialing; it never replaces the authenticated connection.
            refused = acceptor.identity_refusals
            await eventually(lambda: acceptor.identity_refusals >= refused + 2, "the impostor refused again")
            await exchange(real, inbox_3, acceptor, inbox_4, 2)
            assert acceptor.stats()[3]["reconnects"] == 0 and real.stats()[4]["reconnects"] == 0
            assert 99 not in inbox_4.from_peer(3)
            assert acceptor.rejected_connections >= acceptor.identity_refusals
            assert not impostor.stats()[4]["connected"] and impostor.greeted_peers() == set()
        finally:
            for transport in (impostor, real, acceptor):
                await transport.close()

    run(scenario())


@pytest.mark.integration
def test_a_dialer_refuses_a_listener_whose_certificate_is_not_the_node_it_dialed_before_saying_hello(
    cluster_certs: Tuple[CertificateAuthority, Dict[int, Contexts]],
) -> None:
    _, contexts = cluster_certs

    async def scenario() -> None:
        impostor = node(4, {1: "127.0.0.1:9"}, contexts[2])  # node 2's certificate, listening as "4"
        await impostor.start(Inbox())
        dialer = node(1, {4: impostor.listen_address}, contexts[1])
        try:
            await dialer.start(Inbox())
            dialer.send(4, frame(1, 4, 1))
            await eventually(lambda: dialer.identity_refusals >= 2 and dialer.dial_failures >= 2, "refused twice")
            assert not dialer.stats()[4]["connected"]
            assert dialer.stats()[4]["frames_sent"] == 0
            assert impostor.greeted_peers() == set() and dialer.greeted_peers() == set()
        finally:
            await dialer.close()
            await impostor.close()

    run(scenario())


@pytest.mark.integration
@pytest.mark.parametrize(
    "uris",
    [
        pytest.param((), id="no-identity"),
        pytest.param(("consensus://test-cluster/node/2", "consensus://test-cluster/node/3"), id="two-identities"),
        pytest.param(("consensus://test-cluster/node/03",), id="malformed-id"),
        pytest.param(("consensus://another-cluster/node/3",), id="another-cluster"),
    ],
)
def test_certificates_that_do_not_name_exactly_the_claimed_node_are_refused(
    cluster_certs: Tuple[CertificateAuthority, Dict[int, Contexts]], tmp_path: Path, uris: Tuple[str, ...]
) -> None:
    ca, contexts = cluster_certs
    cert, key = ca.issue("suspect", uris=uris, directory=tmp_path / "suspect")
    suspect_contexts = tls_contexts(cert, key, str(ca.cert_path))

    async def scenario() -> None:
        acceptor = node(4, {3: "127.0.0.1:9"}, contexts[4])
        await acceptor.start(Inbox())
        suspect = node(3, {4: acceptor.listen_address}, suspect_contexts)
        try:
            await suspect.start(Inbox())
            await eventually(lambda: acceptor.identity_refusals >= 1, "refused")
            assert acceptor.greeted_peers() == set()
        finally:
            await suspect.close()
            await acceptor.close()

    run(scenario())


# ---------------------------------------------------------------------- refusals reveal nothing


async def hello_and_answer(
    address: str, hello: bytes, tls: Optional[ssl.SSLContext] = None
) -> Union[handshake.Greeting, handshake.Refusal]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=tls)
    try:
        writer.write(hello)
        await writer.drain()
        header = await reader.readexactly(handshake.HEADER_BYTES)
        body = await reader.readexactly(int.from_bytes(header[6:8], "little"))
        return handshake.decode(header + body)
    finally:
        writer.close()


@pytest.mark.integration
def test_a_refused_handshake_names_only_the_reason_class_never_the_cluster_id_or_member_ids() -> None:
    async def scenario() -> None:
        acceptor = node(40, {17: "127.0.0.1:9", 23: "127.0.0.1:9", 50: "127.0.0.1:9"})
        await acceptor.start(Inbox())
        address = acceptor.listen_address
        cases = [
            (handshake.encode_hello(1, 17, 40, "guessed-cluster"), handshake.REASON_CLUSTER),
            (handshake.encode_hello(2, 17, 40, CLUSTER), handshake.REASON_PROTOCOL),
            (handshake.encode_hello(1, 31, 40, CLUSTER), handshake.REASON_UNKNOWN_SENDER),
            (handshake.encode_hello(1, 50, 40, CLUSTER), handshake.REASON_WRONG_DIRECTION),
            (handshake.encode_hello(1, 23, 41, CLUSTER), handshake.REASON_WRONG_RECEIVER),
        ]
        try:
            for hello, reason in cases:
                answer = await hello_and_answer(address, hello)
                assert isinstance(answer, handshake.Refusal) and answer.reason == reason
                assert answer.message == handshake.REASON_NAMES[reason]
                for secret in (CLUSTER, "guessed-cluster", "17", "23", "31", "40", "41", "50"):
                    assert secret not in answer.message
        finally:
            await acceptor.close()

    run(scenario())


@pytest.mark.integration
def test_with_tls_a_certificate_that_is_not_the_claimed_node_learns_nothing_about_the_cluster_id(
    cluster_certs: Tuple[CertificateAuthority, Dict[int, Contexts]],
) -> None:
    _, contexts = cluster_certs
    as_node_2 = contexts[2][1]

    async def scenario() -> None:
        acceptor = node(4, {3: "127.0.0.1:9"}, contexts[4])
        await acceptor.start(Inbox())
        try:
            for cluster in (CLUSTER, "guessed-cluster"):
                answer = await hello_and_answer(acceptor.listen_address, handshake.encode_hello(1, 3, 4, cluster), as_node_2)
                assert isinstance(answer, handshake.Refusal) and answer.reason == handshake.REASON_IDENTITY
                assert answer.message == handshake.REASON_NAMES[handshake.REASON_IDENTITY]
        finally:
            await acceptor.close()

    run(scenario())


# ---------------------------------------------------------------------- disconnecting a peer


@pytest.mark.integration
@pytest.mark.parametrize("side", ["acceptor", "dialer"])
def test_disconnecting_an_authenticated_peer_is_clean_and_it_reconnects_later(
    cluster_certs: Tuple[CertificateAuthority, Dict[int, Contexts]], side: str
) -> None:
    """What the node does after repeated refused frames (`Transport.disconnect`): the connection
    closes without a handshake failure on either side, and the same peer authenticates again."""
    _, contexts = cluster_certs

    async def scenario() -> None:
        greetings: List[int] = []
        dialer = node(1, {}, contexts[1])
        acceptor = node(2, {}, contexts[2])
        acceptor.on_greeting = lambda peer, flags: greetings.append(peer)
        inboxes = {1: Inbox(), 2: Inbox()}
        await dialer.start(inboxes[1])
        await acceptor.start(inboxes[2])
        acceptor.set_peers({1: dialer.listen_address})
        dialer.set_peers({2: acceptor.listen_address})
        by_side = {"acceptor": (acceptor, 1), "dialer": (dialer, 2)}
        try:
            await exchange(dialer, inboxes[1], acceptor, inboxes[2], 1)
            transport, peer = by_side[side]
            transport.disconnect(peer, "repeated refused frames")
            assert not transport.stats()[peer]["connected"]
            await eventually(lambda: greetings == [1, 1], "the peer authenticated again")
            await exchange(dialer, inboxes[1], acceptor, inboxes[2], 2)
            assert transport.stats()[peer]["bad_frames"] == 1
            assert dialer.stats()[2]["reconnects"] == 1 and acceptor.stats()[1]["reconnects"] == 1
            assert dialer.rejected_connections == 0 and acceptor.rejected_connections == 0
            assert dialer.identity_refusals == 0 and acceptor.identity_refusals == 0
        finally:
            await dialer.close()
            await acceptor.close()

    run(scenario())


@pytest.mark.integration
def test_a_disconnect_from_inside_deliver_stops_delivery_of_that_connections_remaining_frames() -> None:
    async def scenario() -> None:
        acceptor = node(2, {1: "127.0.0.1:9"})
        delivered: List[int] = []

        def deliver(peer: int, data: bytes) -> None:
            seq = raft.decode(data).commit
            delivered.append(seq)
            if seq == 2:
                acceptor.disconnect(peer, "refused frame")

        await acceptor.start(deliver)
        dialer = node(1, {2: acceptor.listen_address})
        await dialer.start(Inbox())
        try:
            await eventually(lambda: dialer.stats()[2]["connected"], "connected")
            connection = dialer._peers[2].connection
            assert connection is not None and connection.transport is not None
            # Three frames in one write: the acceptor reads them in one batch.
            connection.transport.write(b"".join(frame(1, 2, seq) for seq in (1, 2, 3)))  # type: ignore[attr-defined]
            await eventually(lambda: acceptor.stats()[1]["bad_frames"] == 1, "disconnected")
            assert delivered[:2] == [1, 2] and 3 not in delivered
            await eventually(lambda: acceptor.stats()[1]["reconnects"] == 1 and dialer.stats()[2]["connected"], "back")
            assert dialer.send(2, frame(1, 2, 4))
            await eventually(lambda: 4 in delivered, "frames flow again")
        finally:
            await dialer.close()
            await acceptor.close()

    run(scenario())


# ---------------------------------------------------------------------- a process cluster


@pytest.mark.integration
def test_a_process_cluster_refuses_node_2s_certificate_claiming_id_3_and_keeps_serving(tmp_path: Path) -> None:
    """Issue 9's peer-identity process test: three `consensus serve` processes with [tls]."""
    from consensus.service import KVClient
    from consensus.testing import ProcessCluster

    ca_path, leaves = issue_cluster(tmp_path, ProcessCluster.cluster_id, (1, 2, 3))
    tls = {"cert": str(tmp_path / "node{id}.pem"), "key": str(tmp_path / "node{id}.key"), "ca": ca_path}
    settings: Dict[str, object] = {"tick_ms": 10, "election_ticks": 20, "heartbeat_ticks": 2, "fsync": "always"}
    cluster = ProcessCluster(3, base_dir=str(tmp_path / "cluster"), settings=settings, tls=tls)
    as_node_2 = tls_contexts(leaves[2][0], leaves[2][1], ca_path)[1]
    cluster.start_all()
    try:

        async def scenario() -> None:
            async with KVClient(cluster.urls) as client:
                await client.wait_for_leader()
                await client.put("before", "1")
                for claimed in (3, 1):
                    hello = handshake.encode_hello(1, claimed, 3, ProcessCluster.cluster_id)
                    answer = await hello_and_answer(cluster.nodes[3].peer, hello, as_node_2)
                    assert isinstance(answer, handshake.Refusal) and answer.reason == handshake.REASON_IDENTITY
                revision = await client.put("after", "2")
                for member in cluster.nodes.values():
                    async with KVClient([member.url]) as one:
                        await wait_until_value(one, "after", ("2", revision))

        run(scenario())
    finally:
        cluster.stop_all()


async def wait_until_value(client: object, key: str, expected: object) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await client.get(key) != expected:  # type: ignore[attr-defined]
        assert loop.time() < deadline, f"{key} never became {expected}"
        await asyncio.sleep(0.05)
