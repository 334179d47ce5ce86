"""A hostile peer on the peer port (no TLS): every frame it sends is refused or survived.

Issue cases 1-4 on real `consensus serve` processes: a client that passes the handshake as a member
sends well-formed but invalid frames to a follower (term 0, `to` another node, `from` 0, `from`
another member than the connection's, a term at the top of the range, entries with a gap, a
membership change that does not decode) and then bytes that are no frame at all. Afterwards all
three nodes serve, a write commits, the refusals are counted in /metrics, and a full restart comes
back with every acknowledged write (nothing durable was damaged).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any, Dict, List

import pytest

from consensus import raft
from consensus.service import KVClient
from consensus.testing import ProcessCluster
from consensus.transport import handshake
from consensus.transport.base import PROTOCOL_IDS
from consensus.transport.tcp import _crc32c

from test_cluster_processes import SETTINGS, run

pytestmark = pytest.mark.integration

U64_MAX = (1 << 64) - 1


def send_as_member(address: str, claim: int, receiver: int, protocol: str, frames: List[bytes]) -> None:
    """Connects to `address` as member `claim`, passes the handshake, sends `frames`, closes."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(handshake.encode_hello(PROTOCOL_IDS[protocol], claim, receiver, "local"))
        answer = b""
        while True:
            total = handshake.message_length(answer)
            if total is not None and len(answer) >= total:
                break
            chunk = sock.recv(512)
            assert chunk, "the node closed the connection during the handshake"
            answer += chunk
        greeting = handshake.decode(answer[:total])
        assert isinstance(greeting, handshake.Greeting), f"handshake refused: {greeting}"
        for frame in frames:
            sock.sendall(frame)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def raft_frames(me: int, claim: int, other: int, term: int, last: int) -> List[bytes]:
    """Well-formed Raft frames that a node must refuse (one per issue case), from `claim`."""
    T = raft.MessageType
    heartbeat = lambda **kw: raft.Message(**{"type": T.HEARTBEAT, "from_": claim, "to": me, "term": term, **kw}).encode()  # noqa: E731
    gap = [raft.Entry(last + 2, term, b"\x01gap"), raft.Entry(last + 3, term, b"\x01gap")]
    garbage_change = [raft.Entry(last + 1, term, b"\xff\xfe not a conf change", raft.EntryKind.CONF_CHANGE)]
    append = lambda entries: raft.Message(  # noqa: E731
        type=T.APPEND_ENTRIES, from_=claim, to=me, term=term, log_term=0, index=last, commit=0, entries=entries
    ).encode()
    return [
        heartbeat(term=0),  # case 1: term 0
        heartbeat(to=me + 100),  # case 1: to another node
        heartbeat(from_=0),  # case 1: from 0
        heartbeat(from_=other),  # from another member than the connection's
        heartbeat(term=U64_MAX),  # case 2: term + 1 would wrap
        raft.Message(type=T.REQUEST_VOTE, from_=claim, to=me, term=U64_MAX, log_term=U64_MAX, index=U64_MAX).encode(),
        append(gap),  # case 3: entries not starting at index + 1
        append(garbage_change),  # case 4: a conf change that does not decode
    ]


def paxos_frame(kind: int, sender: int, to: int, round_: int, node: int, *, index: int = 0, commit: int = 0,
                slots: bytes = b"", slot_count: int = 0) -> bytes:
    """A Multi-Paxos frame built by hand (docs/wire-format.md §10.2), any field value allowed."""
    payload = struct.pack("<7Q", sender, to, round_, node, index, 0, commit)
    payload += struct.pack("<I", 0)  # context
    payload += struct.pack("<I", slot_count) + slots
    payload += struct.pack("<I", 0)  # commands
    payload += b"\x00"  # no snapshot
    head = struct.pack("<IBBB", 7 + len(payload) + 4, 1, PROTOCOL_IDS["paxos"], kind) + payload
    return head + struct.pack("<I", _crc32c(head))


def paxos_slot(slot: int, round_: int, node: int, kind: int, commands: List[bytes]) -> bytes:
    body = struct.pack("<QQQBQI", slot, round_, node, kind, round_, len(commands))
    return body + b"".join(struct.pack("<I", len(c)) + c for c in commands)


def paxos_frames(me: int, claim: int, other: int, round_: int, last: int) -> List[bytes]:
    """Well-formed Multi-Paxos frames that a node must refuse, from `claim`."""
    PREPARE, ACCEPT, COMMIT = 1, 3, 5
    batch, reconfig = 1, 2
    gap = paxos_slot(last + 1, round_, claim, batch, [b"\x01a"]) + paxos_slot(last + 3, round_, claim, batch, [b"\x01b"])
    bad_change = paxos_slot(last + 1, round_, claim, reconfig, [b"\xff not a configuration"])
    return [
        paxos_frame(COMMIT, claim, me + 100, round_, claim),  # case 1: to another node
        paxos_frame(COMMIT, 0, me, round_, claim),  # case 1: from 0
        paxos_frame(COMMIT, other, me, round_, other),  # from another member than the connection's
        paxos_frame(PREPARE, claim, me, U64_MAX, claim, index=last + 1),  # case 2: a round at the top
        paxos_frame(ACCEPT, claim, me, round_, claim, slots=gap, slot_count=2),  # case 3: slots with a gap
        paxos_frame(ACCEPT, claim, me, round_, claim, slots=bad_change, slot_count=1),  # case 4
    ]


async def metric(url: str, name: str) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as resp:
            text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize("protocol", ["raft", "paxos"])
def test_hostile_frames_to_a_follower_are_refused_and_the_cluster_keeps_every_acknowledged_write(
    tmp_path: Any, protocol: str
) -> None:
    cluster = ProcessCluster(3, base_dir=str(tmp_path), protocol=protocol, settings=dict(SETTINGS))
    cluster.start_all()
    try:

        async def scenario() -> None:
            acknowledged: Dict[str, str] = {}
            async with KVClient(cluster.urls, retry_for=30) as client:
                leader, _ = await client.wait_for_leader()
                for i in range(20):
                    await client.put(f"before{i}", str(i))
                    acknowledged[f"before{i}"] = str(i)
                followers = sorted(i for i in cluster.nodes if i != leader)
                target = followers[-1]  # the lower id dials, so the claimed member must be lower
                claim = min(i for i in cluster.nodes if i != target)
                other = next(i for i in cluster.nodes if i not in (target, claim))
                status = await client.status(cluster.nodes[target].url)
                term, last = int(status["term"]), int(status["applied_index"])
                make = raft_frames if protocol == "raft" else paxos_frames
                frames = make(target, claim, other, term, last)
                address = cluster.nodes[target].peer
                # One connection per frame: a peer is disconnected after repeated refusals.
                for frame in frames:
                    send_as_member(address, claim, target, protocol, [frame])
                # Bytes that are not a frame at all (a valid length, a wrong CRC).
                send_as_member(address, claim, target, protocol, [frames[0][:-4] + b"\x00\x00\x00\x00"])

                for node in cluster.nodes.values():
                    assert node.alive, f"node {node.id} died:\n{cluster.log_tail(node.id, 40)}"
                refused = await metric(cluster.nodes[target].url, "consensus_refused_frames_total")
                assert refused >= len(frames) - 1  # a frame may arrive during a reconnect and be refused twice
                for i in range(20):
                    await client.put(f"after{i}", str(i))
                    acknowledged[f"after{i}"] = str(i)
                for node in cluster.nodes.values():
                    s = await client.status(node.url)
                    assert not s.get("stopped") and s["term"] < 1 << 62, s
            cluster.stop_all()
            cluster.start_all()
            async with KVClient(cluster.urls, retry_for=30) as client:
                await client.wait_for_leader()
                for node in cluster.nodes.values():
                    async with KVClient([node.url], retry_for=30) as one:
                        for key, value in acknowledged.items():
                            got = await one.get(key)
                            assert got is not None and got[0] == value, (node.id, key, got)

        run(scenario())
    finally:
        cluster.stop_all()
