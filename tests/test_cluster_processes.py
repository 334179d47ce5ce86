"""Real `consensus serve` processes on loopback, driven through the HTTP API (docs/design.md §3).

Each test starts its own cluster in a temporary directory, once per protocol of the registry
(`protocol` in tests/conftest.py: the same service, the same checks). No timing assertions: waits
are bounded only so a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import socket
import struct
import subprocess
import sys
from typing import Any, Dict, List

import aiohttp
import pytest

from consensus.service import ClientError, KVClient
from consensus.testing import ProcessCluster
from consensus.protocols import ProtocolSpec

from support import catches_up_through_a_contiguous_log

pytestmark = pytest.mark.integration

SETTINGS: Dict[str, object] = {
    "tick_ms": 10,
    "election_ticks": 20,
    "heartbeat_ticks": 2,
    "fsync": "always",
    "request_timeout_ms": 5000,
}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.fixture
def cluster(tmp_path: Any, protocol: ProtocolSpec) -> Any:
    """Three started `consensus serve` processes of the protocol under test."""
    c = ProcessCluster(3, base_dir=str(tmp_path), protocol=protocol.name, settings=dict(SETTINGS))
    c.start_all()
    try:
        yield c
    finally:
        failed = [i for i in c.nodes if c.nodes[i].process is not None and c.nodes[i].process.poll() not in (None, 0, -9)]
        c.stop_all()
        for i in failed:
            print(f"--- node {i} log\n{c.log_tail(i, 60)}")


async def raw(url: str, method: str, path: str, body: Any = None, headers: Any = None) -> "tuple[int, Dict[str, Any]]":
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, json=body, headers=headers, allow_redirects=False) as resp:
            text = await resp.text()
            try:
                payload = json.loads(text) if text else {}
            except ValueError:
                payload = {"text": text, "location": resp.headers.get("Location")}
            if resp.status == 307:
                payload["location"] = resp.headers.get("Location")
            return resp.status, payload


async def wait_known_leader(client: KVClient, url: str, timeout: float = 30.0) -> int:
    """The leader `url` knows, once it knows one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await client.status(url)
        if status["leader"]:
            return int(status["leader"])
        if loop.time() > deadline:
            raise TimeoutError(f"{url} knows no leader")
        await asyncio.sleep(0.05)


async def wait_applied(client: KVClient, url: str, index: int, timeout: float = 30.0) -> Dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            status = await client.status(url)
            if status["applied_index"] >= index:
                return status
        except (aiohttp.ClientError, OSError, ClientError):
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"{url} did not apply index {index}")
        await asyncio.sleep(0.05)


def test_three_processes_elect_serve_writes_and_linearizable_reads_on_every_node(cluster: ProcessCluster) -> None:
    async def scenario() -> None:
        async with KVClient(cluster.urls) as client:
            await client.wait_for_leader()
            revisions = [await client.put(f"k{i}", f"v{i}") for i in range(30)]
            assert revisions == sorted(revisions) and len(set(revisions)) == 30
            for node in cluster.nodes.values():
                async with KVClient([node.url]) as one:
                    # Linearizable by default, on followers too: the last write is visible at once.
                    assert await one.get("k29") == ("v29", revisions[-1])
            status, body = await raw(cluster.urls[0], "GET", "/v1/kv/missing")
            assert status == 404 and body["code"] == "key_not_found" and body["indeterminate"] is False
            # A follower forwards a write to the leader and answers as the leader would.
            leader, leader_url = await client.wait_for_leader()
            follower_url = next(u for u in cluster.urls if u != leader_url)
            await wait_known_leader(client, follower_url)
            status, body = await raw(follower_url, "PUT", "/v1/kv/via-follower", {"value": "f"})
            assert status == 200 and body["revision"] == revisions[-1] + 1
            async with KVClient([leader_url]) as one:
                assert await one.get("via-follower") == ("f", body["revision"])

    run(scenario())


def test_http_api_answers_follow_the_design_revision_rules(cluster: ProcessCluster) -> None:
    """docs/design.md §3: failed CAS carries the key's revision; deleting an absent key does not advance it."""

    async def scenario() -> None:
        async with KVClient(cluster.urls) as client:
            await client.wait_for_leader()
            r1 = await client.put("a", "1")
            assert await client.cas("a", "1", "2") == {"succeeded": True, "revision": r1 + 1, "_status": 200}
            failed = await client.cas("a", "1", "3")
            assert failed["succeeded"] is False and failed["revision"] == r1 + 1
            created = await client.cas("new", None, "x")
            assert created["succeeded"] is True
            gone = await client.delete("absent")
            assert gone["deleted"] is False and gone["revision"] == created["revision"]
            removed = await client.delete("a")
            assert removed["deleted"] is True and removed["revision"] == created["revision"] + 1
            url = client.preferred or cluster.urls[0]
            status, body = await raw(url, "PUT", "/v1/kv/big", {"value": "x" * (1 << 20 + 1)})
            assert status == 413 and body["code"] == "too_large"
            status, body = await raw(url, "PUT", "/v1/kv/k", {"val": "x"})
            assert status == 400 and body["code"] == "bad_request"
            status, body = await raw(url, "PUT", "/v1/kv/" + "k" * 1025, {"value": "x"})
            assert status == 400

    run(scenario())


def test_request_id_makes_a_retried_write_apply_once_and_refuses_reuse(cluster: ProcessCluster) -> None:
    """Raft thesis §6.3: a retried request with the same id gets the first answer."""

    async def scenario() -> None:
        async with KVClient(cluster.urls) as client:
            _, url = await client.wait_for_leader()
            status, session = await raw(url, "POST", "/v1/sessions")
            assert status == 200 and session["ttl_ms"] > 0
            headers = {"X-Request-Id": f"{session['client']}:1"}
            s1, first = await raw(url, "PUT", "/v1/kv/x", {"value": "1"}, headers)
            s2, again = await raw(url, "PUT", "/v1/kv/x", {"value": "1"}, headers)
            assert s1 == s2 == 200 and first == again
            s3, reused = await raw(url, "PUT", "/v1/kv/x", {"value": "other"}, headers)
            assert s3 == 409 and reused["code"] == "request_id_reused"
            status, body = await raw(url, "GET", "/v1/kv/x")
            assert body["revision"] == first["revision"] and body["value"] == "1"

    run(scenario())


def test_followers_forward_writes_and_with_forward_off_redirect_to_the_leader(tmp_path: Any, protocol: ProtocolSpec) -> None:
    c = ProcessCluster(3, base_dir=str(tmp_path), protocol=protocol.name, settings=dict(SETTINGS, forward=False))
    c.start_all()
    try:

        async def scenario() -> None:
            async with KVClient(c.urls) as client:
                leader, leader_url = await client.wait_for_leader()
                follower_url = next(u for u in c.urls if u != leader_url)
                assert await wait_known_leader(client, follower_url) == leader
                status, body = await raw(follower_url, "PUT", "/v1/kv/k", {"value": "v"})
                assert status == 307 and body["location"] == f"{leader_url}/v1/kv/k"
                # Nothing was applied by the redirect.
                s, b = await raw(leader_url, "GET", "/v1/kv/k")
                assert s == 404

        run(scenario())
    finally:
        c.stop_all()


def test_sigkill_of_the_leader_loses_no_acknowledged_write_and_writes_resume(cluster: ProcessCluster) -> None:
    async def scenario() -> None:
        async with KVClient(cluster.urls, retry_for=30) as client:
            leader, _ = await client.wait_for_leader()
            acknowledged: Dict[str, str] = {}
            stop = asyncio.Event()

            async def writer(w: int) -> None:
                i = 0
                while not stop.is_set():
                    key = f"w{w}-{i}"
                    await client.put(key, key)
                    acknowledged[key] = key
                    i += 1

            writers = [asyncio.ensure_future(writer(w)) for w in range(4)]
            await asyncio.sleep(1.0)
            cluster.kill(leader)
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*writers)
            after_kill = await client.put("after", "kill")
            assert after_kill > 0
            survivors = [n for i, n in cluster.nodes.items() if i != leader]
            for node in survivors:
                async with KVClient([node.url]) as one:
                    await one.get("after")  # linearizable barrier on this node
                    for key, value in acknowledged.items():
                        found = await one.get(key, stale=True)
                        assert found is not None and found[0] == value, key
            # The killed leader comes back and gets everything (acknowledged writes were fsynced).
            cluster.start(leader)
            commit = max(s["commit_index"] for s in await client.statuses() if s)
            await wait_applied(client, cluster.nodes[leader].url, commit)
            async with KVClient([cluster.nodes[leader].url]) as old:
                for key, value in acknowledged.items():
                    found = await old.get(key, stale=True)
                    assert found is not None and found[0] == value, key

    run(scenario())


def test_restarted_node_catches_up_from_the_log_and_from_a_snapshot(tmp_path: Any, protocol: ProtocolSpec) -> None:
    c = ProcessCluster(3, base_dir=str(tmp_path), protocol=protocol.name, settings=dict(SETTINGS, snapshot_entries=50))
    c.start_all()
    try:

        async def scenario() -> None:
            async with KVClient(c.urls) as client:
                leader, _ = await client.wait_for_leader()
                follower = next(i for i in c.nodes if i != leader)
                await client.put("first", "1")
                # Down for a few writes: catches up from the log.
                c.kill(follower)
                for i in range(10):
                    await client.put(f"log{i}", "x")
                c.start(follower)
                commit = max(s["commit_index"] for s in await client.statuses() if s)
                await wait_applied(client, c.nodes[follower].url, commit)
                # Down for many writes: the leader compacted past it, so it gets a snapshot.
                c.kill(follower)
                for i in range(200):
                    await client.put(f"snap{i}", "y")
                leader_status = await client.status(c.nodes[leader].url)
                assert leader_status["snapshot_index"] > 0
                c.start(follower)
                commit = max(s["commit_index"] for s in await client.statuses() if s)
                status = await wait_applied(client, c.nodes[follower].url, commit)
                if catches_up_through_a_contiguous_log(protocol):
                    # Raft needs the leader's log to match the follower's: past the compaction
                    # point that takes a snapshot.
                    assert status["snapshot_index"] > 0
                # A Multi-Paxos acceptor needs no log matching: the Accepts the transport still
                # queued for it while it was down may bring it up to date before the leader's
                # snapshot does (tests/test_node.py covers the snapshot path for both, where the
                # network drops them). Either way it must hold every write:
                async with KVClient([c.nodes[follower].url]) as one:
                    assert (await one.get("snap199", stale=True))[0] == "y"
                    assert (await one.get("log9", stale=True))[0] == "x"
                    assert (await one.get("first", stale=True))[0] == "1"

        run(scenario())
    finally:
        c.stop_all()


def test_a_node_added_at_runtime_joins_catches_up_and_becomes_a_voter(cluster: ProcessCluster, protocol: ProtocolSpec) -> None:
    async def scenario() -> None:
        async with KVClient(cluster.urls) as client:
            await client.wait_for_leader()
            for i in range(20):
                await client.put(f"k{i}", "v")
            new = cluster.add_node()
            cluster.start(new.id, join=True)
            added = await client.call("POST", "/v1/members", {"id": new.id, "peer": new.peer, "client": new.client})
            # Raft adds a learner first; a Multi-Paxos acceptor votes on new slots at once.
            assert new.id in added["learners" if protocol.has_learners else "voters"]
            commit = max(s["commit_index"] for s in await client.statuses() if s)
            await wait_applied(client, new.url, commit)
            promoted = await client.call("POST", f"/v1/members/{new.id}/promote")
            assert new.id in promoted["voters"]
            revision = await client.put("with-four", "yes")
            async with KVClient([new.url]) as one:
                assert await one.get("with-four") == ("yes", revision)
            members = await client.call("GET", "/v1/members")
            assert {m["id"] for m in members["members"] if m["voter"]} == {1, 2, 3, 4}

    run(scenario())


def test_torn_wal_tail_is_truncated_on_restart_and_the_node_rejoins(cluster: ProcessCluster) -> None:
    async def scenario() -> None:
        async with KVClient(cluster.urls) as client:
            leader, _ = await client.wait_for_leader()
            follower = next(i for i in cluster.nodes if i != leader)
            for i in range(20):
                await client.put(f"k{i}", "v")
            commit = max(s["commit_index"] for s in await client.statuses() if s)
            await wait_applied(client, cluster.nodes[follower].url, commit)
            cluster.kill(follower)
            segments = sorted(glob.glob(os.path.join(cluster.nodes[follower].data_dir, "**", "*.wal"), recursive=True))
            assert segments, "no WAL segment found"
            with open(segments[-1], "r+b") as f:
                f.seek(0, os.SEEK_END)
                f.truncate(f.tell() - 7)  # a write torn in the middle of the last record
            cluster.start(follower)
            for i in range(5):
                await client.put(f"after{i}", "v")
            commit = max(s["commit_index"] for s in await client.statuses() if s)
            await wait_applied(client, cluster.nodes[follower].url, commit)
            async with KVClient([cluster.nodes[follower].url]) as one:
                assert (await one.get("k19", stale=True))[0] == "v"
                assert (await one.get("after4", stale=True))[0] == "v"

    run(scenario())


def test_a_flipped_bit_inside_synced_wal_data_is_refused_at_startup(cluster: ProcessCluster) -> None:
    async def scenario() -> int:
        async with KVClient(cluster.urls) as client:
            leader, _ = await client.wait_for_leader()
            for i in range(20):
                await client.put(f"k{i}", "v" * 50)
            return next(i for i in cluster.nodes if i != leader)

    follower = run(scenario())
    cluster.stop(follower)
    segments = sorted(glob.glob(os.path.join(cluster.nodes[follower].data_dir, "**", "*.wal"), recursive=True))
    with open(segments[-1], "r+b") as f:
        data = bytearray(f.read())
        position = len(data) // 2
        data[position] ^= 0x10
        f.seek(0)
        f.write(data)
    cluster.start(follower)
    code = cluster.wait_exit(follower, timeout=30)
    assert code is not None and code != 0, "a node must not start on corrupted synced data"
    assert "StorageError" in cluster.log_tail(follower, 20) or "corrupt" in cluster.log_tail(follower, 20).lower()


def test_garbage_and_a_wrong_cluster_peer_are_refused_while_the_node_keeps_serving(cluster: ProcessCluster) -> None:
    async def scenario() -> None:
        async with KVClient(cluster.urls) as client:
            await client.wait_for_leader()
            target = cluster.nodes[3]
            host, port = target.peer.split(":")
            for payload in (b"\xff" * 64, struct.pack("<I", 1 << 31) + b"x" * 16, b"GET / HTTP/1.1\r\n\r\n"):
                with socket.create_connection((host, int(port)), timeout=5) as s:
                    s.sendall(payload)
                    s.settimeout(5)
                    try:
                        s.recv(1024)  # the node closes the connection (or answers REFUSED)
                    except OSError:
                        pass
            await client.put("still", "serving")
            async with KVClient([target.url]) as one:
                assert (await one.get("still"))[0] == "serving"
            status, text = await raw(target.url, "GET", "/metrics")
            assert status == 200

    run(scenario())


def test_serve_with_an_invalid_config_exits_with_an_error_naming_the_field(tmp_path: Any) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        'id = 1\ndata_dir = "%s"\ncluster_id = "x"\nfsync = "sometimes"\n'
        '[[members]]\nid = 1\npeer = "127.0.0.1:1"\nclient = "127.0.0.1:2"\n' % (tmp_path / "d")
    )
    result = subprocess.run(
        [sys.executable, "-m", "consensus", "serve", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "fsync" in result.stderr


def test_snapshot_save_and_restore_seed_a_new_cluster_with_the_same_data(cluster: ProcessCluster, tmp_path: Any) -> None:
    async def fill() -> str:
        async with KVClient(cluster.urls) as client:
            await client.wait_for_leader()
            for i in range(25):
                await client.put(f"k{i}", f"v{i}")
            return client.preferred or cluster.urls[0]

    url = run(fill())
    backup = tmp_path / "backup.bin"
    save = subprocess.run(
        [sys.executable, "-m", "consensus", "snapshot", "save", url, str(backup)], capture_output=True, text=True, timeout=60
    )
    assert save.returncode == 0, save.stderr
    fresh = ProcessCluster(3, base_dir=str(tmp_path / "fresh"), protocol=cluster.protocol, settings=dict(SETTINGS))
    try:
        for node in fresh.nodes.values():
            r = subprocess.run(
                [sys.executable, "-m", "consensus", "snapshot", "restore", str(backup), "--config", node.config_path],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
        fresh.start_all()

        async def check() -> None:
            async with KVClient(fresh.urls) as client:
                await client.wait_for_leader()
                assert (await client.get("k24"))[0] == "v24"
                await client.put("new", "write")
                assert (await client.get("new"))[0] == "write"

        run(check())
    finally:
        fresh.stop_all()


def test_mutual_tls_cluster_serves_and_refuses_a_peer_without_a_certificate(tmp_path: Any, protocol: ProtocolSpec) -> None:
    from tlscerts import issue_cluster  # certificates naming consensus://<cluster_id>/node/<id>

    issue_cluster(tmp_path, ProcessCluster.cluster_id, (1, 2, 3))
    tls = {"cert": str(tmp_path / "node{id}.pem"), "key": str(tmp_path / "node{id}.key"), "ca": str(tmp_path / "ca.pem")}
    c = ProcessCluster(3, base_dir=str(tmp_path / "cluster"), protocol=protocol.name, settings=dict(SETTINGS), tls=tls)
    c.start_all()
    try:

        async def scenario() -> None:
            async with KVClient(c.urls) as client:
                await client.wait_for_leader()
                revision = await client.put("secure", "yes")
                # A plaintext peer (no certificate at all) is refused; the cluster keeps serving.
                host, port = c.nodes[3].peer.split(":")
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(b"CNSP" + b"\x00" * 60)
                await writer.drain()
                assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the node
                writer.close()
                for node in c.nodes.values():
                    async with KVClient([node.url]) as one:
                        assert await one.get("secure") == ("yes", revision)

        run(scenario())
    finally:
        c.stop_all()


def test_leadership_transfer_and_member_removal_at_runtime(cluster: ProcessCluster) -> None:
    async def scenario() -> None:
        async with KVClient(cluster.urls) as client:
            leader, _ = await client.wait_for_leader()
            await client.put("before", "1")
            target = next(i for i in cluster.nodes if i != leader)
            answer = await client.call("POST", "/v1/leader/transfer", {"to": target})
            assert answer["transferring_to"] == target
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while (await client.status(cluster.nodes[target].url))["role"] != "leader":
                assert loop.time() < deadline, "leadership did not move"
                await asyncio.sleep(0.05)
            removed = await client.call("DELETE", f"/v1/members/{leader}")
            assert leader not in removed["voters"]
            cluster.stop(leader)
            # Two voters left: both needed, both alive.
            await client.put("after", "2")
            members = await client.call("GET", "/v1/members")
            assert sorted(m["id"] for m in members["members"]) == sorted(i for i in cluster.nodes if i != leader)

    run(scenario())


def test_status_command_and_metrics_endpoint_report_the_node(cluster: ProcessCluster) -> None:
    async def scenario() -> str:
        async with KVClient(cluster.urls) as client:
            _, url = await client.wait_for_leader()
            await client.put("k", "v")
            status, _ = await raw(url, "GET", "/v1/status")
            assert status == 200
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/metrics") as resp:
                    assert resp.status == 200
                    return await resp.text()

    metrics = run(scenario())
    for name in (
        "consensus_term",
        'consensus_role{role="leader"} 1.0',
        "consensus_commit_index",
        "consensus_applied_index",
        "consensus_elections_total",
        "consensus_proposals_total",
        "consensus_proposal_seconds_bucket",
        "consensus_persist_sync_seconds_bucket",
        "consensus_storage_fsyncs_total",
        "consensus_peer_up",
        "consensus_peer_phi",
    ):
        assert name in metrics, name
    result = subprocess.run(
        [sys.executable, "-m", "consensus", "status"] + cluster.urls, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("term=") == 3 and "leader" in result.stdout


def test_demo_survives_a_leader_sigkill_and_checks_every_acknowledged_write(protocol: ProtocolSpec) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "consensus", "demo", "--protocol", protocol.name, "--writes", "100"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"({protocol.name})" in done.stdout
    assert "ok: all 201 acknowledged writes are on all 3 nodes" in done.stdout


def test_in_process_demo_refuses_a_protocol_it_does_not_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "consensus", "demo", "--in-process", "--protocol", "paxos"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "runs Raft only" in done.stderr
