"""Peer transports: TCP (plain and mutual TLS) and the in-memory network.

Waits poll with generous timeouts only to avoid hangs; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import pytest

from consensus import ConfigError, DecodeError, raft
from consensus.transport import MemoryNetwork, TcpTransport, Transport, tls_contexts
from consensus.transport import handshake

from support import Inbox, event_loop_factories, eventually, frame, run, run_on, seq_of

CLUSTER = "test-cluster"


def tcp(node_id: int, peers: Optional[Mapping[int, str]] = None, **options: object) -> TcpTransport:
    options.setdefault("cluster_id", CLUSTER)
    options.setdefault("protocol", "raft")
    options.setdefault("listen", "127.0.0.1:0")
    options.setdefault("backoff_initial", 0.02)
    options.setdefault("backoff_max", 0.2)
    return TcpTransport(node_id, peers=peers or {}, **options)  # type: ignore[arg-type]


async def start_mesh(
    ids: List[int], **options: object
) -> Tuple[Dict[int, TcpTransport], Dict[int, Inbox]]:
    transports = {node: tcp(node, None, **options) for node in ids}
    inboxes = {node: Inbox() for node in ids}
    for node, transport in transports.items():
        await transport.start(inboxes[node])
    addresses = {node: transport.listen_address for node, transport in transports.items()}
    for node, transport in transports.items():
        transport.set_peers({other: address for other, address in addresses.items() if other != node})
    return transports, inboxes


async def close_all(transports: Mapping[int, Transport]) -> None:
    for transport in transports.values():
        await transport.close()


async def exchange(transports: Mapping[int, TcpTransport], inboxes: Mapping[int, Inbox], a: int, b: int, seq: int) -> None:
    """Send `seq` from a to b and from b to a, and wait for both."""
    assert transports[a].send(b, frame(a, b, seq))
    assert transports[b].send(a, frame(b, a, seq))
    await eventually(lambda: seq in inboxes[b].from_peer(a) and seq in inboxes[a].from_peer(b), f"{a}<->{b} #{seq}")


async def fake_dialer(
    target: TcpTransport, sender: int = 1, *, receiver: Optional[int] = None
) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter, Union[handshake.Greeting, handshake.Refusal]]:
    """A hand-made peer that dials `target` and performs the handshake."""
    host, port = target.listen_address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    to = target.node_id if receiver is None else receiver
    writer.write(handshake.encode_hello(1, sender, to, CLUSTER))
    await writer.drain()
    header = await reader.readexactly(handshake.HEADER_BYTES)
    body = await reader.readexactly(int.from_bytes(header[6:8], "little"))
    return reader, writer, handshake.decode(header + body)


# ---------------------------------------------------------------------- TCP: the happy path


@pytest.mark.integration
def test_three_tcp_transports_exchange_frames_both_ways_over_one_connection_per_pair() -> None:
    async def scenario() -> None:
        transports, inboxes = await start_mesh([1, 2, 3])
        try:
            for seq in range(1, 4):
                for a, b in ((1, 2), (1, 3), (2, 3)):
                    await exchange(transports, inboxes, a, b, seq)
            for node, inbox in inboxes.items():
                for peer in transports:
                    if peer != node:
                        assert inbox.from_peer(peer) == [1, 2, 3]  # in order per peer
            for node, transport in transports.items():
                assert transport.rejected_connections == 0
                for peer, stats in transport.stats().items():
                    assert stats["connected"] is True
                    assert stats["frames_sent"] == 3 and stats["frames_received"] == 3
                    assert stats["bytes_sent"] == 3 * 77
                    assert stats["reconnects"] == 0
                    # One connection for the pair: the lower id dialed it, the higher accepted it.
                    assert transport._peers[peer].stats.connections == 1
                    assert (transport._peers[peer].dial_task is not None) == (node < peer)
        finally:
            await close_all(transports)

    run(scenario())


@pytest.mark.integration
def test_many_frames_arrive_complete_and_in_order() -> None:
    async def scenario() -> None:
        transports, inboxes = await start_mesh([1, 2])
        try:
            big = raft.Message(
                type=raft.MessageType.APPEND_ENTRIES, from_=1, to=2, term=1, commit=0,
                entries=[raft.Entry(index=1, term=1, data=b"x" * 300_000)],
            ).encode()
            sent = [frame(1, 2, seq) if seq % 100 else big for seq in range(1, 2001)]
            for data in sent:
                assert transports[1].send(2, data)
            await eventually(lambda: len(inboxes[2].received) == len(sent), "2000 frames")
            assert transports[2].stats()[1]["bytes_received"] == sum(map(len, sent))
        finally:
            await close_all(transports)

    run(scenario())


@pytest.mark.integration
def test_dialer_reconnects_after_the_peer_restarts_on_the_same_port() -> None:
    async def scenario() -> None:
        transports, inboxes = await start_mesh([1, 2])
        try:
            await exchange(transports, inboxes, 1, 2, 1)
            address_2 = transports[2].listen_address
            await transports[2].close()
            await eventually(lambda: not transports[1].stats()[2]["connected"], "1 notices 2 is gone")
            # Node 2 comes back on the same port with a new transport (a restarted process).
            transports[2] = tcp(2, {1: transports[1].listen_address}, listen=address_2)
            inboxes[2] = Inbox()
            await transports[2].start(inboxes[2])
            await eventually(lambda: transports[1].stats()[2]["connected"], "1 redials 2")
            await exchange(transports, inboxes, 1, 2, 2)
            assert transports[1].stats()[2]["reconnects"] >= 1
        finally:
            await close_all(transports)

    run(scenario())


@pytest.mark.integration
def test_a_restarted_dialer_replaces_its_old_connection_at_the_acceptor() -> None:
    async def scenario() -> None:
        transports, inboxes = await start_mesh([1, 2])
        try:
            await exchange(transports, inboxes, 1, 2, 1)
            old_connection = transports[2]._peers[1].connection
            # A fake node 1 dials again while the real one is still connected (a restart whose
            # old socket the acceptor has not noticed yet): the new connection wins.
            reader, writer, answer = await fake_dialer(transports[2], 1)
            assert isinstance(answer, handshake.Greeting) and answer.kind == handshake.KIND_WELCOME
            assert transports[2]._peers[1].connection is not old_connection
            assert transports[2].send(1, frame(2, 1, 7))
            got = await reader.readexactly(77)
            assert seq_of(got) == 7
            writer.write(frame(1, 2, 8))
            await eventually(lambda: 8 in inboxes[2].from_peer(1), "frame over the new connection")
            writer.close()
            # The real node 1 lost its connection and dials again.
            await eventually(lambda: transports[1].stats()[2]["connected"], "real 1 reconnects")
            await exchange(transports, inboxes, 1, 2, 9)
        finally:
            await close_all(transports)

    run(scenario())


# ---------------------------------------------------------------------- send queue bounds


def test_send_queue_bound_drops_new_frames_and_counts_them() -> None:
    transport = tcp(1, {2: "127.0.0.1:9", 3: "127.0.0.1:9"}, queue_frames=5, queue_bytes=200)
    one = frame(1, 2, 1)
    assert transport.send(2, one) and transport.send(2, one)
    assert not transport.send(2, one)  # a third 77-byte frame would exceed 200 bytes
    stats = transport.stats()[2]
    assert stats["dropped"] == 1 and stats["queued"] == 2
    assert transport.stats()[3]["dropped"] == 0
    assert not transport.send(99, one)  # unknown peer
    assert transport.dropped_unknown_peer == 1
    with pytest.raises(ValueError):
        transport.send(2, b"not a frame")

    by_count = tcp(1, {2: "127.0.0.1:9"}, queue_frames=5)
    results = [by_count.send(2, one) for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert by_count.stats()[2]["dropped"] == 3 and by_count.stats()[2]["queued"] == 5

    small = tcp(1, {2: "127.0.0.1:9"}, max_frame_bytes=100)
    big = raft.Message(type=raft.MessageType.PROPOSE, from_=1, to=2, context=b"y" * 200).encode()
    assert not small.send(2, big)
    assert small.stats()[2]["dropped"] == 1


@pytest.mark.integration
def test_frames_queued_while_disconnected_are_sent_once_connected() -> None:
    async def scenario() -> None:
        inbox_2 = Inbox()
        transport_2 = tcp(2)
        await transport_2.start(inbox_2)
        transport_1 = tcp(1, {2: transport_2.listen_address})
        for seq in range(1, 6):
            assert transport_1.send(2, frame(1, 2, seq))  # before start: queued
        transport_2.set_peers({1: "127.0.0.1:9"})
        await transport_1.start(Inbox())
        try:
            await eventually(lambda: len(inbox_2.received) == 5, "queued frames")
            assert inbox_2.from_peer(1) == [1, 2, 3, 4, 5]
        finally:
            await transport_1.close()
            await transport_2.close()

    run(scenario())


# ---------------------------------------------------------------------- bad frames


@pytest.mark.integration
@pytest.mark.parametrize(
    "bad_bytes",
    [
        pytest.param(b"\x05\x00\x00\x00garbage", id="length-below-minimum"),
        pytest.param((64 * 1024 * 1024 + 1).to_bytes(4, "little") + b"\x01\x01", id="oversized-length"),
        pytest.param(frame(1, 2, 5)[:40], id="truncated-then-eof"),
    ],
)
def test_bad_frames_disconnect_only_that_peer_and_are_counted(bad_bytes: bytes) -> None:
    async def scenario() -> None:
        transports, inboxes = await start_mesh([2, 3])
        transports[2].set_peers({1: "127.0.0.1:9", 3: transports[3].listen_address})
        try:
            reader, writer, answer = await fake_dialer(transports[2], 1)
            assert isinstance(answer, handshake.Greeting)
            writer.write(frame(1, 2, 1))
            await eventually(lambda: inboxes[2].from_peer(1) == [1], "a good frame first")
            writer.write(bad_bytes)
            if len(bad_bytes) == 40:
                writer.write_eof()
            await eventually(lambda: transports[2].stats()[1]["bad_frames"] == 1, "bad frame counted")
            assert await reader.read() == b""  # node 2 closed the connection
            writer.close()
            assert not transports[2].stats()[1]["connected"]
            assert inboxes[2].from_peer(1) == [1]
            # Everyone else is still served.
            await exchange(transports, inboxes, 2, 3, 1)
            assert transports[2].stats()[3]["bad_frames"] == 0
        finally:
            await close_all(transports)

    run(scenario())


@pytest.mark.integration
def test_deliver_raising_decode_error_disconnects_that_peer_and_the_dialer_reconnects() -> None:
    async def scenario() -> None:
        transports, inboxes = await start_mesh([1, 2, 3])
        try:
            await exchange(transports, inboxes, 1, 2, 1)
            corrupt = bytearray(frame(1, 2, 2))
            corrupt[30] ^= 0xFF  # the length is fine, the CRC is not: the core rejects it
            with pytest.raises(DecodeError):
                raft.decode(bytes(corrupt))
            assert transports[1].send(2, bytes(corrupt))
            await eventually(lambda: transports[2].stats()[1]["bad_frames"] == 1, "DecodeError counted")
            await eventually(lambda: transports[1].stats()[2]["reconnects"] >= 1, "1 reconnects")
            await eventually(lambda: transports[1].stats()[2]["connected"], "1 connected again")
            await exchange(transports, inboxes, 1, 2, 3)
            await exchange(transports, inboxes, 2, 3, 1)
            assert 2 not in inboxes[2].from_peer(1)
            assert transports[2].stats()[3]["bad_frames"] == 0
            # The node may also reject a frame later (it queues before stepping): disconnect().
            transports[2].disconnect(1, "undecodable frame")
            assert transports[2].stats()[1]["bad_frames"] == 2
            await eventually(lambda: transports[1].stats()[2]["reconnects"] >= 2, "1 reconnects again")
            await exchange(transports, inboxes, 1, 2, 4)
            transports[2].disconnect(42)  # an unknown peer: nothing to do
        finally:
            await close_all(transports)

    run(scenario())


@pytest.mark.integration
def test_other_exceptions_from_deliver_are_logged_and_the_connection_stays(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        received: List[int] = []

        def deliver(peer: int, data: bytes) -> None:
            seq = seq_of(data)
            received.append(seq)
            if seq == 1:
                raise RuntimeError("a bug in the node")

        transport_2 = tcp(2)
        await transport_2.start(deliver)
        transport_1 = tcp(1, {2: transport_2.listen_address})
        transport_2.set_peers({1: "127.0.0.1:9"})
        await transport_1.start(Inbox())
        try:
            transport_1.send(2, frame(1, 2, 1))
            transport_1.send(2, frame(1, 2, 2))
            await eventually(lambda: received == [1, 2], "both frames")
            assert transport_2.stats()[1]["bad_frames"] == 0
            assert transport_1.stats()[2]["reconnects"] == 0
        finally:
            await transport_1.close()
            await transport_2.close()

    run(scenario())
    assert "a bug in the node" in caplog.text


# ---------------------------------------------------------------------- handshake refusals


@pytest.mark.integration
@pytest.mark.parametrize(
    "dialer_options, acceptor_knows_1",
    [
        pytest.param({"cluster_id": "another-cluster"}, True, id="wrong-cluster"),
        pytest.param({"protocol": "paxos"}, True, id="wrong-protocol"),
        pytest.param({}, False, id="unknown-node-id"),
    ],
)
def test_handshake_refuses_and_counts_mismatched_peers(dialer_options: Dict[str, object], acceptor_knows_1: bool) -> None:
    async def scenario() -> None:
        inbox_2 = Inbox()
        transport_2 = tcp(2)
        await transport_2.start(inbox_2)
        transport_2.set_peers({1: "127.0.0.1:9"} if acceptor_knows_1 else {3: "127.0.0.1:9"})
        transport_1 = tcp(1, {2: transport_2.listen_address}, **dialer_options)
        await transport_1.start(Inbox())
        try:
            transport_1.send(2, frame(1, 2, 1))
            await eventually(lambda: transport_2.rejected_connections >= 2, "acceptor refuses twice")
            await eventually(lambda: transport_1.rejected_connections >= 2, "dialer sees the refusals")
            assert not transport_1.stats()[2]["connected"]
            assert inbox_2.received == []
            assert transport_1.stats()[2]["frames_sent"] == 0
        finally:
            await transport_1.close()
            await transport_2.close()

    run(scenario())


@pytest.mark.integration
def test_handshake_refuses_garbage_a_higher_id_dialer_and_silent_peers() -> None:
    async def scenario() -> None:
        transports, inboxes = await start_mesh([2, 3], handshake_timeout=0.3)
        transports[2].set_peers({1: "127.0.0.1:9", 3: transports[3].listen_address})
        host, port = transports[2].listen_address.rsplit(":", 1)
        try:
            # Not our protocol at all: refused with a reason, then closed.
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            refusal = handshake.decode(await reader.read())
            assert isinstance(refusal, handshake.Refusal) and refusal.reason == handshake.REASON_BAD_MAGIC
            writer.close()
            # A known peer with a higher id must not dial: node 3 is the acceptor of pair (2, 3).
            _, writer, refused = await fake_dialer(transports[2], 3)
            assert isinstance(refused, handshake.Refusal) and refused.reason == handshake.REASON_WRONG_DIRECTION
            writer.close()
            # A HELLO meant for another node.
            _, writer, refused = await fake_dialer(transports[2], 1, receiver=7)
            assert isinstance(refused, handshake.Refusal) and refused.reason == handshake.REASON_WRONG_RECEIVER
            writer.close()
            # An id the acceptor does not know (node 3 knows only node 2).
            _, writer, refused = await fake_dialer(transports[3], 1)
            assert isinstance(refused, handshake.Refusal) and refused.reason == handshake.REASON_UNKNOWN_SENDER
            writer.close()
            before = transports[2].rejected_connections
            # A peer that connects and says nothing is dropped after the handshake timeout.
            reader, writer = await asyncio.open_connection(host, int(port))
            assert await reader.read() == b""
            writer.close()
            assert transports[2].rejected_connections == before + 1
            assert transports[2].rejected_connections >= 4
            await exchange(transports, inboxes, 2, 3, 1)
        finally:
            await close_all(transports)

    run(scenario())


def test_handshake_codec_round_trips_and_rejects_bad_lengths() -> None:
    hello = handshake.encode_hello(1, 5, 6, "ünïcode")
    decoded = handshake.decode(hello)
    assert decoded == handshake.Greeting(handshake.KIND_HELLO, 1, 5, 6, "ünïcode")
    assert len(hello) == handshake.HEADER_BYTES + handshake.GREETING_FIXED_BYTES + len("ünïcode".encode())
    assert handshake.message_length(hello[:7]) is None
    with pytest.raises(handshake.HandshakeError):
        handshake.decode(hello + b"\x00")
    with pytest.raises(handshake.HandshakeError):
        handshake.decode(hello[:-1])
    oversized = bytearray(hello)
    oversized[6:8] = (1000).to_bytes(2, "little")
    with pytest.raises(handshake.HandshakeError) as info:
        handshake.message_length(oversized)
    assert info.value.reason == handshake.REASON_MALFORMED
    for version in (1, handshake.TRANSPORT_VERSION + 1):  # 1: before the greeting flags
        wrong_version = bytearray(hello)
        wrong_version[4] = version
        with pytest.raises(handshake.HandshakeError) as info:
            handshake.message_length(wrong_version)
        assert info.value.reason == handshake.REASON_VERSION
    refused = handshake.decode(handshake.encode_refused(handshake.REASON_CLUSTER, "nope"))
    assert refused == handshake.Refusal(handshake.REASON_CLUSTER, "nope")


# ---------------------------------------------------------------------- mutual TLS


@pytest.mark.integration
def test_mutual_tls_peers_talk_and_clients_without_a_cluster_certificate_are_refused(tmp_path: Path) -> None:
    from tlscerts import CertificateAuthority

    ca = CertificateAuthority(tmp_path)
    ca_path = str(ca.cert_path)
    contexts = {}
    for node in (1, 2, 3):
        cert, key = ca.issue(f"node{node}", cluster_id=CLUSTER, node_id=node)
        contexts[node] = tls_contexts(cert, key, ca_path)
    other_ca = CertificateAuthority(tmp_path / "other", "other-ca")
    intruder_cert, intruder_key = other_ca.issue("intruder", cluster_id=CLUSTER, node_id=2)
    intruder_contexts = tls_contexts(intruder_cert, intruder_key, str(other_ca.cert_path))

    async def scenario() -> None:
        transports = {
            node: tcp(node, ssl_server=contexts[node][0], ssl_client=contexts[node][1], handshake_timeout=5.0)
            for node in (1, 2, 3)
        }
        inboxes = {node: Inbox() for node in transports}
        for node, transport in transports.items():
            await transport.start(inboxes[node])
        addresses = {node: t.listen_address for node, t in transports.items()}
        for node, transport in transports.items():
            transport.set_peers({o: a for o, a in addresses.items() if o != node})
        extra: List[TcpTransport] = []
        try:
            for a, b in ((1, 2), (1, 3), (2, 3)):
                await exchange(transports, inboxes, a, b, 1)
            host, port = addresses[3].rsplit(":", 1)

            # A TLS client that trusts the CA but has no certificate of its own.
            no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            no_cert.check_hostname = False
            no_cert.load_verify_locations(cafile=str(ca_path))
            before = transports[3].rejected_connections
            try:
                reader, writer = await asyncio.open_connection(host, int(port), ssl=no_cert)
                writer.write(handshake.encode_hello(1, 1, 3, CLUSTER))
                assert await reader.read() == b""
                writer.close()
            except (ssl.SSLError, ConnectionError):
                pass  # with TLS 1.2 the refusal shows up already in the TLS handshake
            await eventually(lambda: transports[3].rejected_connections > before, "no-cert client refused")

            # A node with a certificate from another CA (same id as a real peer).
            before = transports[3].rejected_connections
            intruder = tcp(2, {3: addresses[3]}, ssl_server=intruder_contexts[0], ssl_client=intruder_contexts[1])
            extra.append(intruder)
            await intruder.start(Inbox())
            intruder.send(3, frame(2, 3, 99))
            await eventually(lambda: transports[3].rejected_connections > before, "other-CA node refused")
            await eventually(lambda: intruder.rejected_connections >= 1, "intruder sees the failure")

            # A plaintext dialer against a TLS listener.
            before = transports[3].rejected_connections
            plain = tcp(1, {3: addresses[3]})
            extra.append(plain)
            await plain.start(Inbox())
            await eventually(lambda: transports[3].rejected_connections > before, "plaintext refused")

            assert 99 not in inboxes[3].from_peer(2)
            for a, b in ((1, 2), (1, 3), (2, 3)):
                await exchange(transports, inboxes, a, b, 2)
        finally:
            await close_all({i: t for i, t in enumerate(extra)})
            await close_all(transports)

    run(scenario())


def test_tls_contexts_require_certificates_from_the_cluster_ca(tmp_path: Path) -> None:
    from tlscerts import CertificateAuthority

    ca = CertificateAuthority(tmp_path)
    ca_path = ca.cert_path
    cert, key = ca.issue("node1", cluster_id=CLUSTER, node_id=1)
    server, client = tls_contexts(cert, key, str(ca_path))
    for context in (server, client):
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.check_hostname is False
    with pytest.raises(ConfigError) as info:
        tls_contexts(str(tmp_path / "missing.crt"), key, str(ca_path))
    assert info.value.field == "tls.cert"
    with pytest.raises(ConfigError) as info:
        tls_contexts(cert, key, str(cert.replace("node1.pem", "node1.key")))
    assert info.value.field == "tls.ca"


@pytest.mark.integration
@pytest.mark.parametrize("new_loop", event_loop_factories())
def test_every_tls_accept_completes_on_the_first_attempt(tmp_path: Path, new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """Case 6b of issue 9: under uvloop, a ClientHello used to reach the plain handshake reader
    (uvloop resumes reading right after connection_made) and the connection was dropped."""
    from tlscerts import issue_cluster

    dialer_ids = list(range(1, 17))
    acceptor_id = len(dialer_ids) + 1
    ca, leaves = issue_cluster(tmp_path, CLUSTER, dialer_ids + [acceptor_id])

    def secured(node: int, peers: Mapping[int, str]) -> TcpTransport:
        server, client = tls_contexts(leaves[node][0], leaves[node][1], ca)
        return tcp(node, peers, ssl_server=server, ssl_client=client, handshake_timeout=30.0, connect_timeout=30.0)

    async def scenario() -> None:
        acceptor = secured(acceptor_id, {node: "127.0.0.1:9" for node in dialer_ids})
        inbox = Inbox()
        await acceptor.start(inbox)
        dialers = {node: secured(node, {acceptor_id: acceptor.listen_address}) for node in dialer_ids}
        try:
            for node, dialer in dialers.items():
                await dialer.start(Inbox())
                dialer.send(acceptor_id, frame(node, acceptor_id, node))
            await eventually(lambda: sorted(peer for peer, _ in inbox.received) == dialer_ids, "a frame from every dialer")
            assert acceptor.rejected_connections == 0
            assert [dialer.dial_failures for dialer in dialers.values()] == [0] * len(dialers)
            assert all(dialer.stats()[acceptor_id]["reconnects"] == 0 for dialer in dialers.values())
        finally:
            await close_all(dialers)
            await acceptor.close()

    run_on(new_loop, scenario())


@pytest.mark.integration
@pytest.mark.parametrize("new_loop", event_loop_factories())
def test_idle_sockets_in_their_tls_handshake_are_evicted_for_a_real_peer(
    tmp_path: Path, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """The pending bound covers the TLS handshake too: a socket that never sends a ClientHello
    holds a slot until a newer connection evicts it."""
    from tlscerts import issue_cluster

    from consensus.transport import tcp as tcp_module

    idle_count = tcp_module.PENDING_HANDSHAKES_MAX + 80
    ca, leaves = issue_cluster(tmp_path, CLUSTER, [1, 2])
    contexts = {node: tls_contexts(leaves[node][0], leaves[node][1], ca) for node in (1, 2)}

    async def scenario() -> None:
        acceptor = tcp(2, {1: "127.0.0.1:9"}, ssl_server=contexts[2][0], ssl_client=contexts[2][1], handshake_timeout=120.0)
        inbox_2 = Inbox()
        await acceptor.start(inbox_2)
        host, port = acceptor.listen_address.rsplit(":", 1)
        idle: List[asyncio.StreamWriter] = []
        dialer = tcp(1, {2: acceptor.listen_address}, ssl_server=contexts[1][0], ssl_client=contexts[1][1])
        try:
            for _ in range(idle_count):
                idle.append((await asyncio.open_connection(host, int(port)))[1])
            await eventually(
                lambda: acceptor.evicted_handshakes >= idle_count - tcp_module.PENDING_HANDSHAKES_MAX, "idle sockets accepted"
            )
            inbox_1 = Inbox()
            await dialer.start(inbox_1)
            await exchange({1: dialer, 2: acceptor}, {1: inbox_1, 2: inbox_2}, 1, 2, 1)
            assert len(acceptor._pending) <= tcp_module.PENDING_HANDSHAKES_MAX
        finally:
            for writer in idle:
                writer.close()
            await dialer.close()
            await acceptor.close()

    run_on(new_loop, scenario())


# ---------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    "field, options",
    [
        ("node_id", {"node_id": 0}),
        ("cluster_id", {"cluster_id": ""}),
        ("cluster_id", {"cluster_id": "x" * 256}),
        ("protocol", {"protocol": "pbft"}),
        ("listen", {"listen": "nohost"}),
        ("listen", {"listen": "127.0.0.1:99999"}),
        ("peers", {"peers": {1: "127.0.0.1:1"}}),
        ("peers", {"peers": {2: "no-port"}}),
        ("peers", {"peers": {-2: "127.0.0.1:1"}}),
        ("max_frame_bytes", {"max_frame_bytes": 10}),
        ("queue_frames", {"queue_frames": 0}),
        ("connect_timeout", {"connect_timeout": -1}),
        ("backoff_max", {"backoff_initial": 1.0, "backoff_max": 0.5}),
        ("ssl_client", {"ssl_server": ssl.create_default_context()}),
    ],
)
def test_tcp_transport_rejects_bad_configuration_with_the_field_named(field: str, options: Dict[str, object]) -> None:
    arguments: Dict[str, object] = {
        "node_id": 1, "cluster_id": CLUSTER, "protocol": "raft", "listen": "127.0.0.1:0", "peers": {}
    }
    arguments.update(options)
    node_id = arguments.pop("node_id")
    with pytest.raises(ConfigError) as info:
        TcpTransport(node_id, **arguments)  # type: ignore[arg-type]
    assert info.value.field == field


def test_listen_address_accepts_ipv6_brackets() -> None:
    transport = tcp(1, {2: "[::1]:9002"}, listen="[::1]:0")
    assert transport.listen_address == "[::1]:0"


# ---------------------------------------------------------------------- in-memory network


def test_memory_network_delivers_in_order_and_obeys_partition_isolate_and_heal() -> None:
    async def scenario() -> None:
        network = MemoryNetwork(seed=1)
        transports = {node: network.transport(node) for node in (1, 2, 3)}
        inboxes = {node: Inbox() for node in transports}
        for node, transport in transports.items():
            await transport.start(inboxes[node])

        async def settle() -> None:
            for _ in range(5):
                await asyncio.sleep(0)

        for seq in range(1, 4):
            for a in transports:
                for b in transports:
                    if a != b:
                        assert transports[a].send(b, frame(a, b, seq))
        await settle()
        for node, inbox in inboxes.items():
            for peer in transports:
                if peer != node:
                    assert inbox.from_peer(peer) == [1, 2, 3]

        network.partition(1, 2)
        assert not transports[1].stats()[2]["connected"]
        transports[1].send(2, frame(1, 2, 4))
        transports[2].send(1, frame(2, 1, 4))
        transports[1].send(3, frame(1, 3, 4))
        await settle()
        assert 4 not in inboxes[2].from_peer(1) and 4 not in inboxes[1].from_peer(2)
        assert 4 in inboxes[3].from_peer(1)

        network.isolate(3)
        transports[2].send(3, frame(2, 3, 5))
        await settle()
        assert 5 not in inboxes[3].from_peer(2)

        network.heal()
        transports[1].send(2, frame(1, 2, 6))
        transports[2].send(3, frame(2, 3, 6))
        await settle()
        assert inboxes[2].from_peer(1)[-1] == 6 and inboxes[3].from_peer(2)[-1] == 6
        assert network.lost_frames == 3
        assert transports[1].stats()[2]["connected"]
        for transport in transports.values():
            await transport.close()

    run(scenario())


def test_memory_network_drop_rate_is_reproducible_from_the_seed() -> None:
    async def delivered_with(seed: int) -> List[int]:
        network = MemoryNetwork(seed=seed, drop_rate=0.3)
        sender, receiver = network.transport(1), network.transport(2)
        inbox = Inbox()
        await sender.start(Inbox())
        await receiver.start(inbox)
        for seq in range(1, 1001):
            sender.send(2, frame(1, 2, seq))
            if seq % 100 == 0:
                await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        assert network.lost_frames == 1000 - len(inbox.received)
        return inbox.from_peer(1)

    results: Dict[int, List[int]] = {}

    async def scenario() -> None:
        results[1] = await delivered_with(7)
        results[2] = await delivered_with(7)
        results[3] = await delivered_with(8)

    run(scenario())
    assert results[1] == results[2]
    assert results[1] != results[3]
    assert results[1] == sorted(results[1])  # loss never reorders
    assert 500 < len(results[1]) < 900


def test_memory_transport_bounds_queues_and_counts_decode_errors() -> None:
    async def scenario() -> None:
        network = MemoryNetwork(queue_frames=3)
        a, b = network.transport(1), network.transport(2)
        inbox = Inbox()
        await a.start(Inbox())
        await b.start(inbox)
        assert [a.send(2, frame(1, 2, seq)) for seq in range(1, 6)] == [True] * 3 + [False] * 2
        assert a.stats()[2]["dropped"] == 2 and a.stats()[2]["queued"] == 3
        assert not a.send(9, frame(1, 9, 1))
        await asyncio.sleep(0)
        assert inbox.from_peer(1) == [1, 2, 3]
        corrupt = bytearray(frame(1, 2, 4))
        corrupt[-1] ^= 1
        a.send(2, bytes(corrupt))
        a.send(2, frame(1, 2, 5))  # in flight with the bad frame: lost with the "connection"
        await asyncio.sleep(0)
        assert b.stats()[1]["bad_frames"] == 1
        assert inbox.from_peer(1) == [1, 2, 3]
        a.send(2, frame(1, 2, 6))
        await asyncio.sleep(0)
        assert inbox.from_peer(1) == [1, 2, 3, 6]
        a.send(2, frame(1, 2, 7))
        b.disconnect(1, "undecodable frame")  # the frame in flight is lost
        await asyncio.sleep(0)
        assert inbox.from_peer(1) == [1, 2, 3, 6]
        assert b.stats()[1]["bad_frames"] == 2
        with pytest.raises(ConfigError) as info:
            network.transport(2)
        assert info.value.field == "node_id"
        with pytest.raises(ConfigError):
            network.drop_rate = 1.5
        await b.close()
        restarted = network.transport(2)  # a closed node may come back
        assert restarted.node_id == 2

    run(scenario())


@pytest.mark.integration
def test_at_the_pending_handshake_bound_the_oldest_pending_connection_is_evicted_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from consensus.transport import tcp as tcp_module

    monkeypatch.setattr(tcp_module, "PENDING_HANDSHAKES_MAX", 1)

    async def scenario() -> None:
        transport = tcp(2, {1: "127.0.0.1:9"}, handshake_timeout=60.0)
        await transport.start(Inbox())
        host, port = transport.listen_address.rsplit(":", 1)
        try:
            oldest_reader, oldest = await asyncio.open_connection(host, int(port))
            await eventually(lambda: len(transport._pending) == 1, "first connection pending")
            _, newest = await asyncio.open_connection(host, int(port))
            refusal = handshake.decode(await oldest_reader.read())
            assert isinstance(refusal, handshake.Refusal) and refusal.reason == handshake.REASON_BUSY
            assert transport.rejected_connections == 1 and transport.evicted_handshakes == 1
            assert len(transport._pending) == 1
            oldest.close()
            newest.close()
        finally:
            await transport.close()

    run(scenario())


@pytest.mark.integration
def test_hundreds_of_idle_sockets_on_the_peer_port_do_not_lock_a_real_peer_out() -> None:
    """Case 6 of issue 9: idle sockets from the peers' own address fill the pending-handshake
    bound; the acceptor's handshake timeout is long, so only eviction lets the real peer in."""
    from consensus.transport import tcp as tcp_module

    idle_count = tcp_module.PENDING_HANDSHAKES_MAX + 80

    async def scenario() -> None:
        acceptor = tcp(2, handshake_timeout=120.0)
        inbox_2 = Inbox()
        await acceptor.start(inbox_2)
        host, port = acceptor.listen_address.rsplit(":", 1)
        idle: List[asyncio.StreamWriter] = []
        dialer: Optional[TcpTransport] = None
        try:
            for _ in range(idle_count):
                idle.append((await asyncio.open_connection(host, int(port)))[1])
            await eventually(lambda: acceptor.evicted_handshakes >= idle_count - tcp_module.PENDING_HANDSHAKES_MAX, "idle sockets accepted")
            assert len(acceptor._pending) == tcp_module.PENDING_HANDSHAKES_MAX
            dialer = tcp(1, {2: acceptor.listen_address})
            inbox_1 = Inbox()
            acceptor.set_peers({1: "127.0.0.1:9"})
            await dialer.start(inbox_1)
            await exchange({1: dialer, 2: acceptor}, {1: inbox_1, 2: inbox_2}, 1, 2, 1)
            assert dialer.rejected_connections == 0
        finally:
            for writer in idle:
                writer.close()
            if dialer is not None:
                await dialer.close()
            await acceptor.close()

    run(scenario())


# ---------------------------------------------------------------------- keepalives


@pytest.mark.integration
def test_idle_connections_carry_keepalives_that_count_as_arrivals_but_never_reach_the_core() -> None:
    """wire-format §9.5: two peers with nothing to say still hear from each other (the failure
    detectors' input), and the keepalive frame is not handed to the protocol core."""

    async def scenario() -> None:
        transports, inboxes = await start_mesh([1, 2], keepalive_interval=0.02)
        arrivals: Dict[int, List[int]] = {1: [], 2: []}
        for node, transport in transports.items():
            transport.on_arrival = arrivals[node].append
        try:
            await exchange(transports, inboxes, 1, 2, 1)
            await eventually(lambda: arrivals[1].count(2) >= 5 and arrivals[2].count(1) >= 5, "keepalives")
            assert inboxes[1].from_peer(2) == [1] and inboxes[2].from_peer(1) == [1]
        finally:
            await close_all(transports)

    run(scenario())


# ---------------------------------------------------------------------- greeting flags


def test_greeting_flags_round_trip_and_reserved_bits_are_cleared_on_receipt() -> None:
    both = handshake.GREETING_HAS_STATE | handshake.GREETING_REMEMBERS_RECEIVER
    hello = handshake.encode_hello(1, 5, 6, CLUSTER, both)
    assert handshake.decode(hello) == handshake.Greeting(handshake.KIND_HELLO, 1, 5, 6, CLUSTER, both)
    welcome = bytearray(handshake.encode_welcome(1, 6, 5, CLUSTER, handshake.GREETING_HAS_STATE))
    welcome[handshake.HEADER_BYTES + 17] |= 0xF0  # reserved bits set by a later version
    decoded = handshake.decode(welcome)
    assert isinstance(decoded, handshake.Greeting) and decoded.flags == handshake.GREETING_HAS_STATE
    with pytest.raises(ValueError):
        handshake.encode_hello(1, 5, 6, CLUSTER, 4)


@pytest.mark.integration
def test_each_handshake_reports_the_flags_the_peer_sent_in_both_directions() -> None:
    async def scenario() -> None:
        transports = {node: tcp(node) for node in (1, 2)}
        greetings: Dict[int, List[Tuple[int, int]]] = {1: [], 2: []}
        transports[1].greeting_flags = lambda peer: handshake.GREETING_HAS_STATE
        transports[2].greeting_flags = lambda peer: handshake.GREETING_HAS_STATE | handshake.GREETING_REMEMBERS_RECEIVER
        for node, transport in transports.items():
            transport.on_greeting = lambda peer, flags, node=node: greetings[node].append((peer, flags))  # type: ignore[misc]
        inboxes = {node: Inbox() for node in transports}
        for node, transport in transports.items():
            await transport.start(inboxes[node])
            assert transport.greeted_peers() == set()
        transports[2].set_peers({1: transports[1].listen_address})
        transports[1].set_peers({2: transports[2].listen_address})
        try:
            await exchange(transports, inboxes, 1, 2, 1)
            assert greetings[1] == [(2, handshake.GREETING_HAS_STATE | handshake.GREETING_REMEMBERS_RECEIVER)]
            assert greetings[2] == [(1, handshake.GREETING_HAS_STATE)]
            assert transports[1].greeted_peers() == {2} and transports[2].greeted_peers() == {1}
            # A new connection is a new handshake: reported again, with the flags of the moment.
            transports[1].greeting_flags = lambda peer: 0
            transports[2].disconnect(1, "test")
            await eventually(lambda: len(greetings[2]) == 2 and len(greetings[1]) == 2, "second handshake")
            assert greetings[2][1] == (1, 0)
        finally:
            await close_all(transports)

    run(scenario())


@pytest.mark.integration
def test_a_failing_greeting_flags_callback_opens_no_connection_and_a_failing_on_greeting_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(peer: int) -> int:
        raise RuntimeError("node bug")

    async def scenario() -> None:
        transports, inboxes = await start_mesh([1, 2])
        try:
            await exchange(transports, inboxes, 1, 2, 1)
            transports[1].greeting_flags = broken
            transports[1].disconnect(2, "test")
            await eventually(lambda: "greeting_flags(2) failed" in caplog.text, "failed callback logged")
            assert not transports[1].stats()[2]["connected"]
            transports[1].greeting_flags = lambda peer: 0

            def also_broken(peer: int, flags: int) -> None:
                raise RuntimeError("node bug")

            transports[2].on_greeting = also_broken
            await exchange(transports, inboxes, 1, 2, 2)
            assert "on_greeting(1, 0) failed" in caplog.text
        finally:
            await close_all(transports)

    run(scenario())


def test_memory_transports_greet_each_other_once_both_are_started() -> None:
    async def scenario() -> None:
        network = MemoryNetwork(seed=1)
        transports = {node: network.transport(node) for node in (1, 2, 3)}
        greetings: Dict[int, List[Tuple[int, int]]] = {node: [] for node in transports}
        for node, transport in transports.items():
            transport.greeting_flags = lambda peer, node=node: handshake.GREETING_HAS_STATE if node == 1 else 0  # type: ignore[misc]
            transport.on_greeting = lambda peer, flags, node=node: greetings[node].append((peer, flags))  # type: ignore[misc]
        await transports[1].start(Inbox())
        await transports[2].start(Inbox())
        assert greetings[2] == [(1, handshake.GREETING_HAS_STATE)] and greetings[1] == [(2, 0)]
        assert greetings[3] == [] and transports[1].greeted_peers() == {2}
        await transports[3].start(Inbox())
        assert sorted(greetings[3]) == [(1, handshake.GREETING_HAS_STATE), (2, 0)]
        assert transports[3].greeted_peers() == {1, 2} and transports[1].greeted_peers() == {2, 3}
        for transport in transports.values():
            await transport.close()

    run(scenario())


# ---------------------------------------------------------------------- exposure warning


@pytest.mark.integration
@pytest.mark.parametrize("listen, warned", [("0.0.0.0:0", True), ("127.0.0.1:0", False), ("[::1]:0", False)])
def test_a_plaintext_peer_port_on_a_non_loopback_address_logs_a_startup_warning(
    caplog: pytest.LogCaptureFixture, listen: str, warned: bool
) -> None:
    async def scenario() -> None:
        transport = tcp(1, listen=listen)
        with caplog.at_level("WARNING", logger="consensus.transport"):
            try:
                await transport.start(Inbox())
            except OSError:
                pytest.skip(f"cannot listen on {listen}")
            await transport.close()

    run(scenario())
    warnings = [record for record in caplog.records if "without [tls]" in record.getMessage()]
    assert len(warnings) == (1 if warned else 0)
    if warned:
        assert warnings[0].levelname == "WARNING" and "any host" in warnings[0].getMessage()


@pytest.mark.integration
def test_a_tls_peer_port_on_a_non_loopback_address_logs_no_exposure_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from tlscerts import issue_cluster

    ca, leaves = issue_cluster(tmp_path, CLUSTER, [1])
    server, client = tls_contexts(leaves[1][0], leaves[1][1], ca)

    async def scenario() -> None:
        transport = tcp(1, listen="0.0.0.0:0", ssl_server=server, ssl_client=client)
        with caplog.at_level("WARNING", logger="consensus.transport"):
            await transport.start(Inbox())
            await transport.close()

    run(scenario())
    assert "without [tls]" not in caplog.text
