"""The data directory's identity and the start gate (consensus.datadir): a directory belongs to one
cluster, node and protocol; a wiped directory never passes for a member.

The first part checks the identity file and the decisions as pure functions, the gate against a
scripted transport and inside `Node.start` on the in-memory network. The integration part runs
real `consensus serve` processes (consensus.testing.ProcessCluster); no timing assertions.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import pytest

from consensus import ConfigError, StorageError, raft
from consensus.config import parse_config
from consensus.runtime._datadir import (
    IDENTITY_FILE,
    IDENTITY_TEMP_FILE,
    START_BOOTSTRAP,
    START_JOIN,
    START_RESTART,
    DataDirectory,
    Identity,
    decode_identity,
    encode_identity,
    greeting_flags,
    plan_start,
    read_identity,
    storage_is_empty,
    write_identity,
)
from consensus.runtime import MemberAddress, Node
from consensus.protocols import PROTOCOLS, ProtocolSpec
from consensus.transport import MemoryNetwork
from consensus.transport.handshake import GREETING_HAS_STATE, GREETING_REMEMBERS_RECEIVER

from support import FAST, Journal, run

HAS, REMEMBERS = GREETING_HAS_STATE, GREETING_REMEMBERS_RECEIVER
IDENTITY = Identity("orders", 2, "raft", state=True, peers_with_state=(1, 3))


def directory(path: Path, *, node_id: int = 2, initial_state: str = "new", **fields: Any) -> DataDirectory:
    expected = {"cluster_id": "orders", "protocol": "raft", **fields}
    return DataDirectory(str(path), node_id=node_id, members=[1, 2, 3], initial_state=initial_state, **expected)


# ---------------------------------------------------------------------------- the file


def test_identity_round_trips_through_the_file(tmp_path: Path) -> None:
    write_identity(str(tmp_path), IDENTITY)
    assert read_identity(str(tmp_path)) == IDENTITY
    assert decode_identity(encode_identity(IDENTITY)) == IDENTITY
    document = json.loads((tmp_path / IDENTITY_FILE).read_text())
    assert document["cluster_id"] == "orders" and document["node_id"] == 2 and document["protocol"] == "raft"
    assert document["checksum"].startswith("sha256:")


def test_identity_with_a_unicode_cluster_id_round_trips() -> None:
    identity = Identity("коммит-☃", 7, "paxos", state=False)
    assert decode_identity(encode_identity(identity)) == identity


def test_a_directory_without_an_identity_file_has_no_identity(tmp_path: Path) -> None:
    assert read_identity(str(tmp_path)) is None
    assert read_identity(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("cluster_id", "payments", "belongs to cluster 'orders'"),
        ("protocol", "paxos", "holds a raft node"),
    ],
)
def test_a_directory_of_another_cluster_or_protocol_is_refused_naming_the_field(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    write_identity(str(tmp_path), IDENTITY)
    with pytest.raises(ConfigError, match=message) as caught:
        directory(tmp_path, **{field: value})
    assert caught.value.field == field


def test_a_directory_of_another_node_is_refused_naming_the_id(tmp_path: Path) -> None:
    write_identity(str(tmp_path), IDENTITY)
    with pytest.raises(ConfigError, match="belongs to node 2, this is node 3") as caught:
        directory(tmp_path, node_id=3)
    assert caught.value.field == "id"


def _damage_flip_a_value(data: bytes) -> bytes:
    return data.replace(b'"orders"', b'"ordery"')


def _damage_with_fields(change: Dict[str, Any]) -> Any:
    def damage(data: bytes) -> bytes:
        document = json.loads(data)
        document.update(change)
        return json.dumps(document).encode()

    return damage


DAMAGES = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "a value changed under its checksum": _damage_flip_a_value,
    "not JSON": lambda data: b"node_id = 2\n",
    "not UTF-8": lambda data: b"\xff\xfe" + data,
    "a JSON list": lambda data: b"[1, 2]",
    "an unknown field": _damage_with_fields({"extra": 1}),
    "a field missing": lambda data: json.dumps({k: v for k, v in json.loads(data).items() if k != "state"}).encode(),
    "a duplicated key": lambda data: data.replace(b'"state": true', b'"state": true, "state": false'),
    "a node id that is a string": _damage_with_fields({"node_id": "2"}),
    "a node id that is a boolean": _damage_with_fields({"node_id": True}),
    "an unknown format": _damage_with_fields({"format": 2}),
    "unsorted peers": _damage_with_fields({"peers_with_state": [3, 1]}),
    "itself among its peers": _damage_with_fields({"peers_with_state": [2]}),
    "NaN": lambda data: data.replace(b'"node_id": 2', b'"node_id": NaN'),
    "too large": lambda data: data + b" " * (300 * 1024),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_identity_file_is_a_storage_error_and_is_never_rewritten(tmp_path: Path, damage: str) -> None:
    write_identity(str(tmp_path), IDENTITY)
    path = tmp_path / IDENTITY_FILE
    damaged = DAMAGES[damage](path.read_bytes())
    path.write_bytes(damaged)
    with pytest.raises(StorageError, match="identity file is damaged"):
        read_identity(str(tmp_path))
    with pytest.raises(StorageError, match="identity file is damaged"):
        directory(tmp_path)
    assert path.read_bytes() == damaged


def test_writing_the_identity_fsyncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: List[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def rename(src: str, dst: str) -> None:
        events.append(f"rename {os.path.basename(src)} -> {os.path.basename(dst)}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", rename)
    write_identity(str(tmp_path), IDENTITY)
    assert events == ["fsync file", f"rename {IDENTITY_TEMP_FILE} -> {IDENTITY_FILE}", "fsync dir"]


def test_a_write_that_fails_before_the_rename_leaves_the_previous_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_identity(str(tmp_path), IDENTITY)

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StorageError, match="cannot write the identity file"):
        write_identity(str(tmp_path), Identity("orders", 2, "raft", state=True, peers_with_state=(1, 3, 4)))
    assert read_identity(str(tmp_path)) == IDENTITY


def test_a_temporary_file_left_by_a_crash_is_ignored_and_replaced(tmp_path: Path) -> None:
    write_identity(str(tmp_path), IDENTITY)
    (tmp_path / IDENTITY_TEMP_FILE).write_bytes(b'{"half": ')
    assert read_identity(str(tmp_path)) == IDENTITY
    newer = Identity("orders", 2, "raft", state=True, peers_with_state=(1,))
    write_identity(str(tmp_path), newer)
    assert read_identity(str(tmp_path)) == newer
    assert not (tmp_path / IDENTITY_TEMP_FILE).exists()


# ---------------------------------------------------------------------------- decisions


@pytest.mark.parametrize(
    "found, storage_empty, initial_state, mode",
    [
        (None, True, "new", START_BOOTSTRAP),
        (None, True, "existing", START_JOIN),
        # A directory that holds state restarts, whatever initial_state says.
        (IDENTITY, False, "new", START_RESTART),
        (IDENTITY, False, "existing", START_RESTART),
        # Said to hold state, storage empty: only the operator's "existing" lets it in (as a joiner).
        (IDENTITY, True, "existing", START_RESTART),
        # Storage from before identity files existed: adopted.
        (None, False, "new", START_RESTART),
        (None, False, "existing", START_RESTART),
        # A restored backup (an identity without state over storage) passes the gate like a new node.
        (Identity("orders", 2, "raft", state=False), False, "new", START_BOOTSTRAP),
        # An identity that does not hold state yet is an empty directory.
        (Identity("orders", 2, "raft", state=False), True, "new", START_BOOTSTRAP),
        (Identity("orders", 2, "raft", state=False), True, "existing", START_JOIN),
    ],
)
def test_how_a_node_starts_depends_on_its_directory_then_on_initial_state(
    found: Optional[Identity], storage_empty: bool, initial_state: str, mode: str
) -> None:
    assert plan_start(found, storage_empty, initial_state) == mode


def test_a_directory_whose_identity_held_state_but_whose_storage_is_empty_is_refused() -> None:
    """A lost WAL beside a surviving identity.json: the node forgot its votes (issue case 9)."""
    with pytest.raises(ConfigError) as info:
        plan_start(IDENTITY, True, "new")
    assert info.value.field == "data_dir" and "existing" in str(info.value)


def test_greeting_flags_say_whether_this_node_holds_state_and_whether_it_remembers_the_peer() -> None:
    assert greeting_flags(False, (), 3) == 0
    assert greeting_flags(True, (), 3) == HAS
    assert greeting_flags(True, (1, 3), 3) == HAS | REMEMBERS
    assert greeting_flags(False, (1, 3), 1) == REMEMBERS
    assert greeting_flags(True, (1, 3), 2) == HAS


def test_an_opened_but_unused_storage_is_empty_and_one_with_a_term_is_not(tmp_path: Path) -> None:
    storage = raft.FileStorage(str(tmp_path / "raft"))
    try:
        assert storage_is_empty(storage)
        storage.set_hard_state(raft.HardState(term=1, vote=0, commit=0))
        assert not storage_is_empty(storage)
    finally:
        storage.close()


def test_initial_state_defaults_to_new_and_is_validated() -> None:
    data = {
        "id": 1,
        "data_dir": "/d",
        "cluster_id": "c",
        "members": [{"id": 1, "peer": "127.0.0.1:1", "client": "127.0.0.1:2"}],
    }
    assert parse_config(data, env={}).initial_state == "new"
    assert parse_config(dict(data, initial_state="existing"), env={}).initial_state == "existing"
    assert parse_config(data, env={"CONSENSUS_INITIAL_STATE": "existing"}).initial_state == "existing"
    with pytest.raises(ConfigError) as caught:
        parse_config(dict(data, initial_state="joining"), env={})
    assert caught.value.field == "initial_state"
    with pytest.raises(ConfigError):
        directory(Path("/nonexistent"), initial_state="joining")


def test_joining_on_an_empty_directory_records_its_identity_at_once(tmp_path: Path) -> None:
    d = directory(tmp_path, initial_state="existing")
    assert d.prepare(storage_empty=True) == START_JOIN
    assert d.joining and d.start_gate is None
    assert read_identity(str(tmp_path)) == Identity("orders", 2, "raft", state=True)
    assert d.greeting_flags(1) == HAS


def test_a_directory_with_state_but_no_identity_file_is_adopted_as_a_restart(tmp_path: Path) -> None:
    d = directory(tmp_path)
    assert d.prepare(storage_empty=False) == START_RESTART
    assert d.start_gate is None and not d.joining
    assert read_identity(str(tmp_path)) == Identity("orders", 2, "raft", state=True)


def test_a_fresh_bootstrap_writes_nothing_before_its_gate_and_greets_without_state(tmp_path: Path) -> None:
    d = directory(tmp_path)
    assert d.prepare(storage_empty=True) == START_BOOTSTRAP
    assert d.start_gate is not None
    assert read_identity(str(tmp_path)) is None
    assert d.greeting_flags(1) == 0


def test_a_node_with_state_durably_remembers_peers_that_greet_with_state_writing_only_when_the_set_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_identity(str(tmp_path), Identity("orders", 2, "raft", state=True))
    d = directory(tmp_path)
    d.prepare(storage_empty=False)
    writes: List[Identity] = []
    real_write = write_identity
    monkeypatch.setattr("consensus.runtime._datadir.write_identity", lambda path, i: (writes.append(i), real_write(path, i)))
    d.on_greeting(1, HAS)
    d.on_greeting(1, HAS)
    d.on_greeting(3, 0)
    d.on_greeting(1, HAS | REMEMBERS)  # a node that holds state ignores REMEMBERS_RECEIVER
    assert [w.peers_with_state for w in writes] == [(1,)]
    assert read_identity(str(tmp_path)) == Identity("orders", 2, "raft", state=True, peers_with_state=(1,))
    assert d.greeting_flags(1) == HAS | REMEMBERS
    assert d.greeting_flags(3) == HAS
    # A restart greets the remembered peer the same way.
    again = directory(tmp_path)
    again.prepare(storage_empty=False)
    assert again.greeting_flags(1) == HAS | REMEMBERS


# ---------------------------------------------------------------------------- the gate


class ScriptedTransport:
    """The greeting side of a transport: the test plays the handshakes."""

    def __init__(self) -> None:
        self.greeting_flags: Any = None
        self.on_greeting: Any = None
        self.greeted: Set[int] = set()
        self.greeted_again: List[int] = []

    def greet(self, peer: int, flags: int) -> int:
        """A completed handshake with `peer`, which sent `flags`; returns the flags this node sent."""
        sent = int(self.greeting_flags(peer))
        self.greeted.add(peer)
        self.on_greeting(peer, flags)
        return sent

    def greeted_peers(self) -> Set[int]:
        return set(self.greeted)

    def greet_again(self, peer_id: int) -> None:
        self.greeted_again.append(peer_id)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def gated(tmp_path: Path) -> "tuple[DataDirectory, ScriptedTransport]":
    d = directory(tmp_path)
    d.prepare(storage_empty=True)
    transport = ScriptedTransport()
    d.attach(transport)
    return d, transport


def test_a_fresh_node_waits_to_greet_every_member_then_records_its_state_and_greets_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        d, transport = gated(tmp_path)
        gate = asyncio.ensure_future(d.gate(transport))
        assert transport.greet(1, 0) == 0
        await settle()
        assert not gate.done(), "one of two peers greeted: still waiting"
        assert read_identity(str(tmp_path)) is None
        transport.greet(3, HAS)
        await gate
        assert read_identity(str(tmp_path)) == Identity("orders", 2, "raft", state=True, peers_with_state=(3,))
        # Reconnecting makes every peer greet it again, now with HAS_STATE.
        assert sorted(transport.greeted_again) == [1, 3]
        assert transport.greeting_flags(1) == HAS and transport.greeting_flags(3) == HAS | REMEMBERS

    run(scenario())


def test_a_handshake_begun_before_the_state_and_completed_after_it_is_made_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        d, transport = gated(tmp_path)
        gate = asyncio.ensure_future(d.gate(transport))
        transport.greet(1, 0)
        assert transport.greeting_flags(1) == 0  # a reconnection to peer 1 begins: its HELLO goes out
        transport.greet(3, 0)
        await gate
        transport.on_greeting(1, 0)  # ... and completes once the directory holds state
        await settle()
        assert transport.greeted_again.count(1) == 2, "closed at the gate, and again after that handshake"
        # Handshakes that begin with the state greet with HAS_STATE and are not made again.
        assert transport.greet(1, 0) == HAS and transport.greet(3, 0) == HAS
        await settle()
        assert transport.greeted_again.count(1) == 2 and transport.greeted_again.count(3) == 1

    run(scenario())


def test_a_fresh_node_that_a_peer_remembers_is_refused_and_records_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        d, transport = gated(tmp_path)
        gate = asyncio.ensure_future(d.gate(transport))
        await settle()
        transport.greet(3, HAS | REMEMBERS)
        with pytest.raises(ConfigError, match="node 2's data directory was wiped or replaced") as caught:
            await gate
        assert caught.value.field == "initial_state"
        assert 'initial_state = "existing"' in str(caught.value)
        assert read_identity(str(tmp_path)) is None
        assert transport.greeted_again == []

    run(scenario())


def test_the_gate_says_which_peers_it_waits_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        d, transport = gated(tmp_path)
        transport.greet(1, 0)
        with caplog.at_level("INFO", logger="consensus.datadir"):
            gate = asyncio.ensure_future(d.gate(transport))
            await settle()
            transport.greet(3, 0)
            await gate
        assert "waiting to greet peer(s) 3 before bootstrapping" in caplog.text

    run(scenario())


def test_a_greeting_that_came_before_the_gate_counts(tmp_path: Path) -> None:
    async def scenario() -> None:
        d, transport = gated(tmp_path)
        transport.greet(1, HAS | REMEMBERS)
        transport.greet(3, HAS)
        with pytest.raises(ConfigError, match="peer 1"):
            await d.gate(transport)

    run(scenario())



def test_node_start_waits_at_the_gate_with_its_transport_up_and_its_core_idle(tmp_path: Path) -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        opened = asyncio.Event()
        seen: List[Any] = []

        async def gate(transport: Any) -> None:
            seen.append(transport)
            await opened.wait()

        node = Node(1, [1, 2, 3], Journal(), net.transport(1), options=FAST, start_gate=gate)
        starting = asyncio.ensure_future(node.start())
        await settle()
        assert seen == [node.transport] and node.transport.started
        assert not starting.done() and node._tasks == []
        opened.set()
        await starting
        assert len(node._tasks) == 2
        await node.stop()

    run(scenario())


def test_node_start_raises_what_the_gate_raises_and_never_runs_its_core(tmp_path: Path) -> None:
    async def scenario() -> None:
        net = MemoryNetwork()

        async def refuse(transport: Any) -> None:
            raise ConfigError("initial_state: refused")

        node = Node(1, [1, 2, 3], Journal(), net.transport(1), options=FAST, start_gate=refuse)
        with pytest.raises(ConfigError, match="refused"):
            await node.start()
        assert node._tasks == []
        await node.stop()

    run(scenario())


def test_three_fresh_in_memory_nodes_behind_their_gates_bootstrap_together_and_elect(tmp_path: Path, protocol: ProtocolSpec) -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        ids = [1, 2, 3]
        nodes: Dict[int, Node] = {}
        for i in ids:
            d = DataDirectory(str(tmp_path / f"d{i}"), cluster_id="c", node_id=i, protocol=protocol.name, members=ids)
            d.prepare(storage_empty=True)
            transport = net.transport(i)
            d.attach(transport)
            nodes[i] = Node(
                i,
                ids,
                Journal(),
                transport,
                protocol=protocol.name,
                options=FAST,
                addresses={m: MemberAddress(f"mem:{m}", f"mem:{m}") for m in ids},
                start_gate=d.start_gate,
            )
        # Started one after the other, each would wait for the next forever: they start together.
        await asyncio.gather(*(n.start() for n in nodes.values()))
        try:
            while not any(n.is_leader for n in nodes.values()):
                await asyncio.sleep(0.005)
            leader = next(n for n in nodes.values() if n.is_leader)
            await leader.propose(b"first")
            for i in ids:
                assert read_identity(str(tmp_path / f"d{i}")) is not None
        finally:
            for n in nodes.values():
                await n.stop()

    run(scenario())


# ---------------------------------------------------------------------------- real processes

SETTINGS: Dict[str, object] = {"tick_ms": 10, "election_ticks": 20, "heartbeat_ticks": 2, "request_timeout_ms": 5000}


def wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    """Polls `check` until it holds; the bound only turns a hang into a failure."""
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def remembered_by_every_peer(cluster: Any, node_id: int) -> bool:
    """Whether every other node's identity file remembers `node_id` as holding state."""
    for other in cluster.nodes.values():
        if other.id == node_id:
            continue
        try:
            identity = read_identity(other.data_dir)
        except StorageError:
            return False
        if identity is None or node_id not in identity.peers_with_state:
            return False
    return True


def write_and_read(cluster: Any, urls: List[str], key: str, *, read_on: Optional[str] = None) -> None:
    """A write through `urls` commits and is read back (on `read_on` if given, once it applied it)."""
    from consensus.service import KVClient

    async def scenario() -> None:
        async with KVClient(urls) as client:
            await client.wait_for_leader()
            revision = await client.put(key, "v")
            assert await client.get(key) == ("v", revision)
        if read_on is not None:
            async with KVClient([read_on]) as one:
                while await one.get(key, stale=True) != ("v", revision):
                    await asyncio.sleep(0.05)

    asyncio.run(asyncio.wait_for(scenario(), 120))


def refused(cluster: Any, node_id: int, message: str) -> str:
    """Starts the node, which must exit 2 (a configuration or storage error) with `message` in its
    log; returns the log's tail."""
    cluster.start(node_id)
    code = cluster.wait_exit(node_id, timeout=60)
    tail = cluster.log_tail(node_id, 40)
    assert code == 2, f"node {node_id} exited with {code}:\n{tail}"
    assert message in tail, tail
    cluster.stop(node_id)
    return tail


@pytest.fixture
def process_cluster(tmp_path: Path, protocol: ProtocolSpec) -> Any:
    """Three started `consensus serve` processes of the protocol under test."""
    from consensus.testing import ProcessCluster

    cluster = ProcessCluster(3, base_dir=str(tmp_path / "cluster"), protocol=protocol.name, settings=dict(SETTINGS))
    cluster.start_all()
    try:
        yield cluster
    finally:
        cluster.stop_all()


@pytest.mark.integration
def test_a_wiped_member_restarted_as_new_is_refused_while_the_cluster_keeps_serving(process_cluster: Any) -> None:
    cluster = process_cluster
    write_and_read(cluster, cluster.urls, "before")
    wait_until(lambda: remembered_by_every_peer(cluster, 3), "nodes 1 and 2 remember node 3 holding state")
    cluster.stop(3)
    cluster.wipe(3)
    refused(cluster, 3, "node 3's data directory was wiped or replaced")
    assert read_identity(cluster.nodes[3].data_dir) is None, "a refused node records nothing"
    write_and_read(cluster, [cluster.nodes[1].url, cluster.nodes[2].url], "after")


@pytest.mark.integration
def test_a_wiped_member_restored_from_an_old_backup_is_refused(process_cluster: Any) -> None:
    """A backup restored into a wiped member's directory has forgotten its votes too."""
    import subprocess
    import sys

    cluster = process_cluster
    write_and_read(cluster, cluster.urls, "before")
    wait_until(lambda: remembered_by_every_peer(cluster, 3), "nodes 1 and 2 remember node 3 holding state")
    backup = os.path.join(cluster.base_dir, "backup.bin")
    cli = [sys.executable, "-m", "consensus", "snapshot"]
    subprocess.run(cli + ["save", cluster.nodes[1].client, backup], check=True, timeout=60)
    write_and_read(cluster, cluster.urls, "after-backup")
    cluster.stop(3)
    cluster.wipe(3)
    subprocess.run(cli + ["restore", backup, "--config", cluster.nodes[3].config_path], check=True, timeout=60)
    refused(cluster, 3, "node 3's data directory was wiped or replaced")
    write_and_read(cluster, [cluster.nodes[1].url, cluster.nodes[2].url], "after")


@pytest.mark.integration
def test_a_member_whose_storage_was_lost_beside_its_identity_file_is_refused(process_cluster: Any) -> None:
    cluster = process_cluster
    write_and_read(cluster, cluster.urls, "before")
    cluster.stop(3)
    node = cluster.nodes[3]
    shutil.rmtree(os.path.join(node.data_dir, cluster.protocol))
    assert read_identity(node.data_dir) is not None
    refused(cluster, 3, "its storage is empty")
    write_and_read(cluster, [cluster.nodes[1].url, cluster.nodes[2].url], "after")


@pytest.mark.integration
def test_a_wiped_majority_started_before_the_survivor_is_refused_once_the_survivor_is_back(process_cluster: Any) -> None:
    cluster = process_cluster
    write_and_read(cluster, cluster.urls, "before")
    for i in (1, 2):
        wait_until(lambda: remembered_by_every_peer(cluster, i), f"nodes remember node {i}")
    cluster.stop_all()
    cluster.wipe(1)
    cluster.wipe(2)
    # Nodes 1 and 2 greet each other but wait for node 3: they cannot elect among themselves.
    cluster.start(1)
    cluster.start(2)
    cluster.start(3)
    for i in (1, 2):
        code = cluster.wait_exit(i, timeout=60)
        assert code is not None and code != 0, cluster.log_tail(i)
        assert f"node {i}'s data directory was wiped or replaced" in cluster.log_tail(i, 40)
        assert read_identity(cluster.nodes[i].data_dir) is None


@pytest.mark.integration
def test_a_wiped_member_removed_and_added_again_rejoins_with_initial_state_existing(process_cluster: Any) -> None:
    from consensus.service import KVClient

    cluster = process_cluster
    write_and_read(cluster, cluster.urls, "before")
    wait_until(lambda: remembered_by_every_peer(cluster, 3), "nodes 1 and 2 remember node 3")
    cluster.stop(3)
    cluster.wipe(3)
    refused(cluster, 3, "was wiped or replaced")
    survivors = [cluster.nodes[1].url, cluster.nodes[2].url]
    node = cluster.nodes[3]

    async def remove_and_add() -> None:
        async with KVClient(survivors) as client:
            await client.call("DELETE", "/v1/members/3")
            cluster.start(3, join=True)
            await client.call("POST", "/v1/members", {"id": 3, "peer": node.peer, "client": node.client})
            await client.call("POST", "/v1/members/3/promote")

    asyncio.run(asyncio.wait_for(remove_and_add(), 120))
    write_and_read(cluster, cluster.urls, "after", read_on=node.url)


@pytest.mark.integration
def test_a_data_directory_is_refused_by_another_cluster_node_or_protocol_and_by_a_damaged_identity(
    process_cluster: Any,
) -> None:
    cluster = process_cluster
    write_and_read(cluster, cluster.urls, "before")
    cluster.stop(3)
    node3, node2 = cluster.nodes[3], cluster.nodes[2]
    original = Path(node3.config_path).read_text()
    identity_file = Path(node3.data_dir) / IDENTITY_FILE
    identity_bytes = identity_file.read_bytes()

    cluster.cluster_id = "another"
    cluster.write_config(3)
    refused(cluster, 3, "belongs to cluster 'local'")
    cluster.cluster_id = "local"

    own = cluster.protocol
    cluster.protocol = next(name for name in PROTOCOLS if name != own)
    cluster.write_config(3)
    refused(cluster, 3, f"holds a {own} node")
    cluster.protocol = own

    # Node 2's configuration pointed at node 3's directory.
    Path(node3.config_path).write_text(original)
    data_dir2 = node2.data_dir
    node2.data_dir = node3.data_dir
    cluster.write_config(2)
    node2.data_dir = data_dir2
    cluster.stop(2)
    refused(cluster, 2, "belongs to node 3, this is node 2")
    cluster.write_config(2)
    cluster.start(2)

    identity_file.write_bytes(identity_bytes.replace(b'"local"', b'"locaX"'))
    refused(cluster, 3, "identity file is damaged")
    assert identity_file.read_bytes() != identity_bytes, "never rewritten"

    # Nothing was rewritten: with its own file and identity back, node 3 rejoins.
    identity_file.write_bytes(identity_bytes)
    assert Path(node3.config_path).read_text() == original
    cluster.start(3)
    write_and_read(cluster, cluster.urls, "after", read_on=node3.url)


@pytest.mark.integration
def test_a_fresh_node_waits_at_its_gate_until_its_peers_are_up_and_sigterm_stops_it_cleanly(
    tmp_path: Path, protocol: ProtocolSpec
) -> None:
    from consensus.testing import ProcessCluster

    cluster = ProcessCluster(3, base_dir=str(tmp_path / "cluster"), protocol=protocol.name, settings=dict(SETTINGS))
    try:
        cluster.start(1)
        wait_until(lambda: "waiting to greet peer(s) 2, 3" in cluster.log_tail(1), "node 1 waits for nodes 2 and 3")
        assert cluster.nodes[1].alive
        assert read_identity(cluster.nodes[1].data_dir) is None
        assert cluster.stop(1) == 0, cluster.log_tail(1)
        # Started together, the three greet each other and bootstrap.
        cluster.start_all()
        write_and_read(cluster, cluster.urls, "k")
        for node in cluster.nodes.values():
            assert read_identity(node.data_dir) is not None
    finally:
        cluster.stop_all()
