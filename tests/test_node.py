"""consensus.Node on asyncio: in-process clusters over the in-memory transport, once per protocol.

Each test names the behaviour of the runtime it checks (docs/design.md §2: persist, then send, then
apply, then advance; client futures; backpressure; shutdown; snapshots; membership) and runs for
every protocol of the registry (`protocol` in tests/conftest.py): the runtime drives every core
through one contract (design.md §1, "Same shape for every protocol"). Where a protocol cannot do
what a test checks, the test branches on the spec's capability (`has_learners`,
`batch_in_one_index`), never on its name.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Dict, List

import pytest

import consensus
from consensus.errors import BusyError, LeadershipLostError, NodeStoppedError
from consensus.runtime import BlockingNode, Node, NodeOptions
from consensus.protocols import ProtocolSpec
from consensus.transport import MemoryNetwork

from support import FAST, Cluster, Journal, PeerFrames, eventually, run, run_cluster

MakeCluster = Callable[..., Cluster]


def test_three_nodes_elect_and_every_node_applies_the_same_commands_in_order(make_cluster: MakeCluster) -> None:
    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        results = [await leader.propose(f"cmd{i}".encode()) for i in range(20)]
        assert [r["count"] for r in results] == list(range(1, 21))
        await eventually(lambda: all(len(n.state_machine.commands) == 20 for n in c.nodes.values()))
        for node in c.nodes.values():
            assert node.state_machine.commands == [f"cmd{i}".encode() for i in range(20)]

    run_cluster(make_cluster(), scenario)


def test_concurrent_proposals_are_batched_and_each_future_gets_its_own_result(
    protocol: ProtocolSpec, make_cluster: MakeCluster
) -> None:
    """Every future gets the answer to its own command, and every replica applies all of them in
    one order. Raft gives each command its own index; a Multi-Paxos slot holds a batch
    (`batch_in_one_index`), so concurrent commands share slots."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        results = await asyncio.gather(*(leader.propose(b"x%d" % i) for i in range(300)))
        assert sorted(r["count"] for r in results) == list(range(1, 301))
        indexes = {r["index"] for r in results}
        if protocol.batch_in_one_index:
            assert len(indexes) < 300, "concurrent commands share slots (batching)"
        else:
            assert len(indexes) == 300
        await eventually(lambda: all(len(n.state_machine.commands) == 300 for n in c.nodes.values()))
        assert len({tuple(n.state_machine.commands) for n in c.nodes.values()}) == 1

    run_cluster(make_cluster(), scenario)


def test_propose_on_a_follower_raises_not_leader_with_the_leader_hint(make_cluster: MakeCluster) -> None:
    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"first")
        await eventually(lambda: follower.leader == leader.id)
        with pytest.raises(consensus.NotLeaderError) as info:
            await follower.propose(b"x")
        assert info.value.leader_hint == leader.id

    run_cluster(make_cluster(), scenario)


def test_read_index_on_a_follower_waits_until_it_applied_every_acknowledged_write(make_cluster: MakeCluster) -> None:
    """Raft §6.4 (docs/paxos.md for Multi-Paxos): a read after a write acknowledged elsewhere sees
    it, on any node."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"warm-up")
        for i in range(10):
            result = await leader.propose(b"w%d" % i)
            read_at = await follower.read_index()
            assert read_at >= result["index"]
            assert follower.applied_index >= result["index"]
            assert follower.state_machine.commands[-1] == b"w%d" % i

    run_cluster(make_cluster(), scenario)


def test_an_isolated_leader_fails_its_pending_proposals_and_the_majority_elects_anew(make_cluster: MakeCluster) -> None:
    """The cut-off leader cannot commit: its waiting client hears so; the majority elects, takes
    writes, and once healed the old leader follows the new one and holds the same commands."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"before")
        c.net.isolate(leader.id)
        with pytest.raises((LeadershipLostError, consensus.ConsensusError)):
            await leader.propose(b"lost", timeout=3.0)
        others = c.others(leader)
        await eventually(lambda: any(n.is_leader for n in others), "a new leader", timeout=20)
        new = next(n for n in others if n.is_leader)
        assert (await new.propose(b"after"))["count"] >= 2
        c.net.heal()
        await eventually(lambda: leader.leader == new.id and not leader.is_leader, timeout=20)
        await eventually(lambda: leader.state_machine.commands[-1:] == [b"after"], timeout=20)
        assert leader.state_machine.commands == new.state_machine.commands

    run_cluster(make_cluster(), scenario)


def test_leadership_transfer_hands_over_to_the_target_and_the_log_carries_on(make_cluster: MakeCluster) -> None:
    """Raft thesis §3.10, docs/paxos.md §7.1: the leader brings the target up to date and sends it
    TIMEOUT_NOW; the target campaigns at once and leads, and the log carries on."""

    async def scenario(c: Cluster, old: Node, follower: Node) -> None:
        await old.propose(b"before")
        target = c.others(old)[0]
        await old.transfer_leadership(target.id)
        await eventually(lambda: target.is_leader and old.leader == target.id)
        await target.propose(b"after")
        await eventually(lambda: all(n.state_machine.commands == [b"before", b"after"] for n in c.nodes.values()))

    run_cluster(make_cluster(), scenario)


def test_backpressure_refuses_requests_past_max_pending_with_busy(make_cluster: MakeCluster) -> None:
    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        c.net.isolate(leader.id)  # nothing commits: requests stay pending
        tasks = [asyncio.ensure_future(leader.propose(b"p%d" % i, timeout=2.0)) for i in range(4)]
        await asyncio.sleep(0)
        with pytest.raises(BusyError):
            await leader.propose(b"one too many")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run_cluster(make_cluster(options=NodeOptions(tick_interval=0.002, max_pending=4)), scenario)


def test_stop_fails_waiting_requests_with_node_stopped_and_later_calls_raise(make_cluster: MakeCluster) -> None:
    async def scenario() -> None:
        c = make_cluster()
        await c.start()
        leader = await c.leader()
        c.net.isolate(leader.id)
        pending = asyncio.ensure_future(leader.propose(b"never", timeout=10.0))
        await asyncio.sleep(0.01)
        await c.stop()
        with pytest.raises((NodeStoppedError, LeadershipLostError)):
            await pending
        with pytest.raises(NodeStoppedError):
            await leader.propose(b"after stop")

    run(scenario)


def test_a_lagging_follower_catches_up_through_a_snapshot_after_the_leader_compacts(make_cluster: MakeCluster) -> None:
    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"start")
        lagging = c.others(leader)[0]
        c.net.isolate(lagging.id)
        for i in range(60):
            await leader.propose(b"v%d" % i)
        assert leader.status()["snapshot_index"] >= 20
        c.net.heal()
        await eventually(lambda: lagging.applied_index >= leader.applied_index, timeout=15)
        assert lagging.stats.snapshots_installed >= 1
        assert lagging.state_machine.commands[-1] == b"v59"
        assert lagging.state_machine.snapshot() == leader.state_machine.snapshot()

    run_cluster(make_cluster(options=NodeOptions(tick_interval=0.002, snapshot_entries=20)), scenario)


def test_restart_from_storage_restores_the_snapshot_and_replays_the_log_after_it(make_cluster: MakeCluster) -> None:
    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        for i in range(40):
            await leader.propose(b"v%d" % i)
        await eventually(lambda: follower.applied_index >= leader.applied_index)
        expected = list(follower.state_machine.commands)
        await follower.stop()
        c.nodes[follower.id] = restarted = c.make(follower.id)
        assert restarted.applied_index > 0  # restored from the snapshot at construction
        await restarted.start()
        await eventually(lambda: restarted.applied_index >= leader.applied_index)
        assert restarted.state_machine.commands == expected

    run_cluster(make_cluster(options=NodeOptions(tick_interval=0.002, snapshot_entries=15)), scenario)


def test_durable_nodes_snapshot_in_the_background_while_writes_go_on_and_restart_from_disk(
    make_cluster: MakeCluster, file_storages: Callable[..., Dict[int, Any]]
) -> None:
    """Paxos Made Live §5.5 (Raft §7): snapshots are taken while the log keeps growing (small WAL
    segments, so it crosses several); a replica cut off meanwhile catches up from a snapshot; every
    replica restarts from its disk with the same state, three times."""

    async def scenario() -> None:
        # Every write is fsynced: a 100 ms election timeout keeps a slow disk from unseating the
        # leader mid-wave (which would fail writes this test does not retry).
        options = NodeOptions(tick_interval=0.002, election_ticks=50, heartbeat_ticks=1, snapshot_entries=5)
        for round_ in range(3):
            c = make_cluster(options=options, storages=file_storages(segment_bytes=4096))
            await c.start()
            try:
                leader = await c.leader(timeout=30)
                lagging = c.others(leader)[0]
                c.net.isolate(lagging.id)
                for wave in range(20):
                    await asyncio.gather(*(leader.propose(b"r%d-w%d-c%d" % (round_, wave, k)) for k in range(10)))
                c.net.heal()
                expected = 200 * (round_ + 1)
                await eventually(lambda: all(len(n.state_machine.commands) == expected for n in c.nodes.values()), timeout=30)
                assert len({tuple(n.state_machine.commands) for n in c.nodes.values()}) == 1
                assert not any(n.status()["stopped"] for n in c.nodes.values())
                assert any(n.stats.snapshots_taken for n in c.nodes.values())
                # Cut off while the others compacted far past it: it caught up from a snapshot.
                assert lagging.stats.snapshots_installed > 0
            finally:
                await c.stop()

    run(scenario)


def test_a_node_added_at_runtime_catches_up_and_becomes_a_voter(protocol: ProtocolSpec, make_cluster: MakeCluster) -> None:
    """Raft §4.2.1 adds a node as a learner first and promotes it once it caught up; a protocol
    without learners (`has_learners` false: a Multi-Paxos acceptor votes on new slots at once)
    refuses a learner with a `ConfigError` naming the field and adds a voter directly."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        for i in range(10):
            await leader.propose(b"v%d" % i)
        newcomer = c.make(4, join=True, members=[1, 2, 3, 4])
        c.nodes[4] = newcomer
        await newcomer.start()
        await leader.set_address(4, "mem:4", "mem:4")
        if protocol.has_learners:
            conf = await leader.change_membership(add_learners=[4])
            assert 4 in conf.learners
            await eventually(lambda: newcomer.applied_index >= leader.applied_index)
        else:
            with pytest.raises(consensus.ConfigError) as refused:
                await leader.change_membership(add_learners=[4])
            assert refused.value.field == "learners"
        conf = await leader.change_membership(add_voters=[4])
        assert 4 in conf.voters
        result = await leader.propose(b"with four")
        await eventually(lambda: newcomer.applied_index >= result["index"])
        assert newcomer.state_machine.commands[-1] == b"with four"
        assert newcomer.state_machine.commands[:10] == [b"v%d" % i for i in range(10)]
        assert newcomer.addresses[1].peer == "mem:1"

    run_cluster(make_cluster(), scenario)


def test_a_removed_voter_no_longer_counts_and_the_rest_keep_committing(make_cluster: MakeCluster) -> None:
    """A membership change that removes a voter: the configuration in force no longer names it,
    and the remaining members commit without it."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"three")
        removed = c.others(leader)[0]
        conf = await leader.change_membership(remove_voters=[removed.id])
        assert removed.id not in conf.voters and leader.id in conf.voters
        await removed.stop()
        result = await leader.propose(b"two")
        remaining = [n for n in c.others(leader) if n is not removed]
        await eventually(lambda: all(n.applied_index >= result["index"] for n in remaining))
        assert all(n.state_machine.commands == [b"three", b"two"] for n in remaining)

    run_cluster(make_cluster(), scenario)


def test_a_member_removed_and_added_again_at_once_is_taken_without_waiting_for_writes(make_cluster: MakeCluster) -> None:
    """docs/operations.md, a wiped member: "remove and re-add it". Once `change_membership` has
    returned, the next change is taken, on an idle cluster too (no client write in between)."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"before")
        conf = await leader.change_membership(remove_voters=[follower.id])
        assert follower.id not in conf.voters
        conf = await leader.change_membership(add_voters=[follower.id], timeout=10.0)
        assert follower.id in conf.voters

    run_cluster(make_cluster(), scenario)


def test_blocking_facade_serves_callers_on_several_threads(protocol: ProtocolSpec) -> None:
    net = MemoryNetwork()
    node = BlockingNode(
        Node(1, [1], Journal(), net.transport(1), protocol=protocol.name, options=NodeOptions(tick_interval=0.002))
    )
    try:
        deadline = 500
        while not node.status()["role"] == "leader" and deadline:
            threading.Event().wait(0.01)
            deadline -= 1
        results: List[Any] = []

        def worker(k: int) -> None:
            for i in range(20):
                results.append(node.propose(b"t%d-%d" % (k, i)))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r["count"] for r in results) == list(range(1, 81))
        assert node.read_index() >= max(r["index"] for r in results)
        if not protocol.batch_in_one_index:
            assert node.read_index() >= 80
        assert node.call(lambda: len(node.node.state_machine.commands)) == 80
    finally:
        node.stop()


def test_acknowledgements_and_votes_leave_only_after_what_they_promise_is_durable(
    make_cluster: MakeCluster, frames: PeerFrames
) -> None:
    """Raft Figure 2 ("persistent state ... updated on stable storage before responding to RPCs")
    and the acceptor's persist barrier of docs/paxos.md §6 (a Promise or Accepted leaves only once
    the promise or the accepted slot is durable): the one Ready function sends an acknowledgement
    only once what it acknowledges is in storage, and a granted vote or a promise only once the
    vote or promise is. The leader alone may send its own appends before its write completes
    (thesis §10.2.1)."""

    violations: List[str] = []
    checked = {"ack": 0, "vote": 0}

    class Recording:
        def __init__(self, inner: Any, node_id: int, storages: Dict[int, Any]) -> None:
            self.inner, self.node_id, self.storages = inner, node_id, storages

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def __setattr__(self, name: str, value: Any) -> None:
            if name in ("inner", "node_id", "storages"):
                object.__setattr__(self, name, value)
            else:
                setattr(self.inner, name, value)

        def send(self, to: int, frame: bytes) -> bool:
            promise = frames.promise_kept(frame, to, self.storages[self.node_id])
            if promise is not None:
                kind, kept = promise
                checked[kind] += 1
                if not kept:
                    violations.append(f"n{self.node_id} sent an {kind} to n{to} before persisting what it promises")
            return self.inner.send(to, frame)

    async def scenario() -> None:
        c = make_cluster()
        for i, node in c.nodes.items():
            node.transport = Recording(node.transport, i, c.storages)
        await c.start()
        try:
            leader = await c.leader()
            await asyncio.gather(*(leader.propose(b"x%d" % i) for i in range(100)))
            c.net.isolate(leader.id)
            others = c.others(leader)
            await eventually(lambda: any(n.is_leader for n in others))
            new = next(n for n in others if n.is_leader)
            await asyncio.gather(*(new.propose(b"y%d" % i) for i in range(50)))
        finally:
            await c.stop()

    run(scenario)
    assert checked["ack"] > 0 and checked["vote"] > 0
    assert violations == []


def test_an_fsync_failure_stops_the_node_instead_of_continuing(
    protocol: ProtocolSpec, make_cluster: MakeCluster, file_storages: Callable[..., Dict[int, Any]], tmp_path: Any
) -> None:
    """After a failed fsync the kernel may have dropped the dirty pages; a node that went on would
    acknowledge writes that are not on disk. It stops, fails what was waiting, and refuses more."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"durable")
        follower.storage._inject_sync_failure()
        # The next write that reaches the follower needs an fsync there, which fails.
        await leader.propose(b"next")
        await eventually(lambda: follower.failure is not None)
        assert isinstance(follower.failure, consensus.StorageError)
        with pytest.raises(NodeStoppedError):
            await follower.read_index()
        with pytest.raises(consensus.StorageError):
            await follower.wait_stopped()
        # The rest of the cluster keeps a quorum and keeps serving.
        assert (await leader.propose(b"after"))["count"] == 3
        # stop() after the failure still releases everything, the directory lock included.
        await follower.stop()
        protocol.open_storage(str(tmp_path / f"n{follower.id}"), "always").close()

    run_cluster(make_cluster(storages=file_storages(fsync="always")), scenario)


def test_reads_from_several_followers_at_once_are_all_answered(make_cluster: MakeCluster) -> None:
    """The leader matches read answers by context: contexts must be unique across nodes (and
    restarts), or one follower's read shadows another's and hangs or gets an older index."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        result = await leader.propose(b"w")
        followers = c.others(leader)
        await eventually(lambda: all(f.leader == leader.id for f in followers))
        for _ in range(10):
            indexes = await asyncio.gather(*(f.read_index(timeout=5.0) for f in followers))
            assert all(i >= result["index"] for i in indexes)
        restarted = followers[0]
        prefix = restarted._read_prefix
        await restarted.stop()
        c.nodes[restarted.id] = again = c.make(restarted.id)
        assert again._read_prefix != prefix and again._read_prefix != followers[1]._read_prefix

    run_cluster(make_cluster(), scenario)


def test_a_leader_that_steps_down_fails_its_reads_at_once_instead_of_timing_out(make_cluster: MakeCluster) -> None:
    """CheckQuorum step-down keeps the term but drops the core's pending reads: they must fail
    (retryable) rather than wait for the request timeout."""

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"w")
        c.net.isolate(leader.id)
        with pytest.raises(consensus.ProposalDroppedError):
            await leader.read_index(timeout=20.0)

    run_cluster(make_cluster(), scenario)


def test_max_pending_bounds_reads_too(make_cluster: MakeCluster) -> None:
    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        await leader.propose(b"w")
        c.net.isolate(leader.id)
        reads = [asyncio.ensure_future(leader.read_index(timeout=5.0)) for _ in range(4)]
        await asyncio.sleep(0.05)  # handed to the core: one context in flight
        with pytest.raises(BusyError):
            await leader.read_index()
        for r in reads:
            r.cancel()
        await asyncio.gather(*reads, return_exceptions=True)

    run_cluster(make_cluster(options=NodeOptions(tick_interval=0.002, max_pending=4, check_quorum=False)), scenario)


@pytest.mark.parametrize("kind", ["kv", "dict", "counter", "lock"])
def test_built_in_state_machines_replicate_through_a_running_node(kind: str, make_cluster: MakeCluster) -> None:
    """The built-ins' async helpers propose through the node they are attached to, and every
    replica ends in the same state (compared by snapshot bytes)."""
    factories = {"kv": consensus.KVStore, "dict": consensus.ReplicatedDict, "counter": consensus.Counter, "lock": consensus.Lock}

    async def scenario(c: Cluster, leader: Node, follower: Node) -> None:
        sm = leader.state_machine
        if kind == "kv":
            assert (await sm.put("a", "1"))["revision"] == 1
            assert (await sm.cas("a", "1", "2"))["succeeded"] is True
            assert await sm.get_linearizable("a") == ("2", 2)
        elif kind == "dict":
            await sm.set("x", {"nested": [1, 2]})
            assert sm.get("x") == {"nested": [1, 2]}
            assert await sm.pop("x") == {"nested": [1, 2]}
        elif kind == "counter":
            assert [await sm.add(5) for _ in range(3)] == [5, 10, 15]
        else:
            first = await sm.acquire("job", "alice", 60_000)
            assert first["acquired"] is True
            refused = await sm.acquire("job", "bob", 60_000)
            assert refused["acquired"] is False and refused["holder"] == "alice"
            assert (await sm.release("job", "alice", first["token"]))["released"] is True
            second = await sm.acquire("job", "bob", 60_000)
            assert second["token"] > first["token"]  # fencing tokens only grow
        target = leader.applied_index
        await eventually(lambda: all(n.applied_index >= target for n in c.nodes.values()))
        snapshots = {n.state_machine.snapshot() for n in c.nodes.values()}
        assert len(snapshots) == 1

    run_cluster(make_cluster(state_machine=factories[kind]), scenario)


def test_a_node_given_no_addresses_keeps_the_peers_its_transport_was_built_with(protocol: ProtocolSpec) -> None:
    """The embedding example: the transport knows the peers, the node is given no address book
    (and no storage: it gets the protocol's in-memory one)."""

    async def scenario() -> None:
        net = MemoryNetwork()
        nodes = [Node(i, [1, 2, 3], Journal(), net.transport(i), protocol=protocol.name, options=FAST) for i in (1, 2, 3)]
        for node in nodes:
            await node.start()
        try:
            await eventually(lambda: any(n.is_leader for n in nodes))
            leader = next(n for n in nodes if n.is_leader)
            assert (await leader.propose(b"x"))["count"] == 1
        finally:
            for node in nodes:
                await node.stop()

    run(scenario)
