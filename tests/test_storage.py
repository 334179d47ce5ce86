"""FileStorage (raft and paxos): durable state across restarts, torn tails, damage and fsync failures."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

import consensus
from consensus import paxos, raft
from consensus.testing import LocalCluster


def wal_segments(data_dir: Path) -> List[Path]:
    return sorted((data_dir / "wal").glob("*.wal"))


def segment_holding(data_dir: Path, needle: bytes) -> Path:
    for segment in reversed(wal_segments(data_dir)):
        if needle in segment.read_bytes():
            return segment
    raise AssertionError(f"no segment holds {needle!r}")


def no_pre_vote() -> raft.Config:
    return raft.Config(pre_vote=False, seed=1)


def test_term_and_vote_survive_a_restart(tmp_path: Path) -> None:
    storage = raft.FileStorage(tmp_path / "n1")
    node = raft.RaftNode(id=1, voters=[1, 2, 3], config=no_pre_vote(), storage=storage)
    assert node.storage is storage
    node.campaign()
    rd = node.ready()
    assert rd.must_sync
    node.persist_and_advance(rd)
    term, vote = node.term, node.vote
    assert (term, vote) == (1, 1)
    storage.close()

    reopened = raft.FileStorage(tmp_path / "n1")
    restarted = raft.RaftNode(id=1, voters=[1, 2, 3], config=no_pre_vote(), storage=reopened)
    assert (restarted.term, restarted.vote) == (term, vote)
    assert reopened.conf_state().voters == [1, 2, 3]
    reopened.close()


def test_follower_with_a_torn_wal_tail_rejoins_and_catches_up(tmp_path: Path) -> None:
    cluster = LocalCluster(3, storage_factory=lambda node_id: raft.FileStorage(tmp_path / f"n{node_id}"))
    try:
        leader = cluster.wait_for_leader()
        follower = next(i for i in cluster.voters if i != leader)
        for i in range(20):
            cluster.propose(b"before-%d" % i)
        cluster.crash(follower)
        # A write torn by the crash: bytes missing from the end of the last segment that has data.
        segment = segment_holding(tmp_path / f"n{follower}", b"before-19")
        size = segment.stat().st_size
        with open(segment, "r+b") as f:
            f.truncate(size - 13)
        for i in range(10):
            cluster.propose(b"after-%d" % i)
        cluster.restart(follower)
        storage = cluster.members[follower].storage
        assert isinstance(storage, raft.FileStorage)
        assert storage.stats()["torn_bytes_truncated"] > 0
        cluster.tick(5)
        expected = [b"before-%d" % i for i in range(20)] + [b"after-%d" % i for i in range(10)]
        assert cluster.applied_data(leader) == expected
        assert cluster.applied_data(follower) == expected
        assert cluster.node(follower).commit_index == cluster.node(leader).commit_index
    finally:
        cluster.close()


def test_flipped_bit_inside_synced_data_raises_storage_error_on_open(tmp_path: Path) -> None:
    storage = raft.FileStorage(tmp_path / "n1")
    storage.append([raft.Entry(i, 1, b"payload-%d" % i) for i in range(1, 6)])
    storage.set_hard_state(raft.HardState(term=1, vote=1, commit=5))
    storage.close()
    segment = segment_holding(tmp_path / "n1", b"payload-3")
    data = bytearray(segment.read_bytes())
    data[data.index(b"payload-3") + 2] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(consensus.StorageError, match=r"\.wal at offset \d+"):
        raft.FileStorage(tmp_path / "n1")


def test_injected_fsync_failure_makes_persist_raise_now_and_for_every_later_call(tmp_path: Path) -> None:
    storage = raft.FileStorage(tmp_path / "n1")
    node = raft.RaftNode(id=1, voters=[1, 2, 3], config=no_pre_vote(), storage=storage)
    node.campaign()
    rd = node.ready()
    storage._inject_sync_failure()
    with pytest.raises(consensus.StorageError):
        storage.persist(rd)
    # The vote never reached what the node reads: the failed Ready was not persisted.
    assert storage.hard_state().term == 0
    with pytest.raises(consensus.StorageError):
        storage.persist(rd)
    with pytest.raises(consensus.StorageError):
        node.persist_and_advance(rd)
    with pytest.raises(consensus.StorageError):
        storage.append([raft.Entry(1, 1, b"x")])
    storage.close()


def test_compaction_deletes_old_segments_and_a_node_restarts_from_snapshot_and_log(tmp_path: Path) -> None:
    def storage_for(node_id: int) -> raft.FileStorage:
        return raft.FileStorage(tmp_path / f"n{node_id}", segment_bytes=4096)

    cluster = LocalCluster(3, storage_factory=storage_for)
    try:
        leader = cluster.wait_for_leader()
        follower = next(i for i in cluster.voters if i != leader)
        for i in range(150):
            cluster.propose(b"entry-%03d-" % i + b"x" * 64)
        storage = cluster.members[follower].storage
        assert isinstance(storage, raft.FileStorage)
        data_dir = tmp_path / f"n{follower}"
        before = len(wal_segments(data_dir))
        assert before > 3
        commit = storage.hard_state().commit
        storage.compact(commit, b"application state")
        after = len(wal_segments(data_dir))
        assert after < before
        assert storage.stats()["segments"] == after

        cluster.crash(follower)
        for i in range(5):
            cluster.propose(b"late-%d" % i)
        cluster.restart(follower)
        restarted = cluster.members[follower].storage
        assert restarted.snapshot().index == commit
        assert restarted.snapshot().data == b"application state"
        assert restarted.first_index() == commit + 1
        cluster.tick(5)
        leader_applied = [a for a in cluster.members[leader].applied if a[0] > commit]
        follower_applied = [a for a in cluster.members[follower].applied if a[0] > commit]
        assert follower_applied == leader_applied
        assert [d for (_i, _t, d) in follower_applied][-5:] == [b"late-%d" % i for i in range(5)]
    finally:
        cluster.close()


def test_batch_policy_cluster_commits_and_restarts(tmp_path: Path) -> None:
    def storage_for(node_id: int) -> raft.FileStorage:
        return raft.FileStorage(tmp_path / f"n{node_id}", fsync="batch", batch_interval_ms=5)

    cluster = LocalCluster(3, storage_factory=storage_for)
    try:
        leader = cluster.wait_for_leader()
        for i in range(5):
            cluster.propose(b"v%d" % i)
        cluster.tick(2)
        follower = next(i for i in cluster.voters if i != leader)
        cluster.crash(follower)
        cluster.restart(follower)
        cluster.tick(3)
        assert cluster.applied_data(follower) == [b"v%d" % i for i in range(5)]
    finally:
        cluster.close()


def test_invalid_fsync_value_raises_config_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(consensus.ConfigError) as info:
        raft.FileStorage(tmp_path / "n1", fsync="sometimes")
    assert info.value.field == "fsync"
    with pytest.raises(consensus.ConfigError) as info:
        raft.FileStorage(tmp_path / "n1", segment_bytes=10)
    assert info.value.field == "segment_bytes"


def test_directory_held_by_an_open_storage_is_refused(tmp_path: Path) -> None:
    first = raft.FileStorage(tmp_path / "n1")
    with pytest.raises(consensus.StorageError, match="in use"):
        raft.FileStorage(tmp_path / "n1")
    first.close()
    with raft.FileStorage(tmp_path / "n1") as second:
        assert second.path == str(tmp_path / "n1")


def test_closed_storage_refuses_writes_but_still_answers_reads(tmp_path: Path) -> None:
    storage = raft.FileStorage(tmp_path / "n1")
    storage.append([raft.Entry(1, 1, b"x")])
    storage.close()
    assert storage.last_index() == 1
    with pytest.raises(consensus.StorageError, match="closed"):
        storage.append([raft.Entry(2, 1, b"y")])


def test_path_that_is_a_file_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir"
    path.write_bytes(b"x")
    with pytest.raises(consensus.StorageError):
        raft.FileStorage(path)


# ---------------------------------------------------------------------------------- Multi-Paxos


def drive_paxos(node: paxos.PaxosNode) -> None:
    while node.has_ready():
        node.persist_and_advance(node.ready())


def test_paxos_promise_and_decided_slots_survive_a_restart_and_the_next_ballot_is_higher(tmp_path: Path) -> None:
    # A restarted proposer must never lead a ballot it led before (the promise is on disk).
    storage = paxos.FileStorage(tmp_path / "n1")
    node = paxos.PaxosNode(id=1, members=[1], storage=storage)
    assert node.storage is storage
    node.campaign()
    drive_paxos(node)
    for i in range(10):
        node.propose(b"command-%d" % i)
        drive_paxos(node)
    ballot, commit = node.ballot, node.commit_index
    assert node.role == consensus.Role.LEADER and commit >= 10
    storage.close()

    reopened = paxos.FileStorage(tmp_path / "n1")
    assert reopened.hard_state().promised == ballot
    restarted = paxos.PaxosNode(id=1, members=[1], storage=reopened)
    assert restarted.commit_index >= commit
    restarted.campaign()
    drive_paxos(restarted)
    assert restarted.ballot > ballot
    reopened.close()


def test_paxos_file_storage_compacts_and_a_node_restarts_from_snapshot_and_slots(tmp_path: Path) -> None:
    storage = paxos.FileStorage(tmp_path / "n1", segment_bytes=4096)
    node = paxos.PaxosNode(id=1, members=[1], storage=storage)
    node.campaign()
    drive_paxos(node)
    for i in range(200):
        node.propose(b"x" * 64)
        drive_paxos(node)
    segments_before = len(wal_segments(tmp_path / "n1"))
    storage.compact(150, b"state at 150")
    assert len(wal_segments(tmp_path / "n1")) < segments_before
    assert storage.stats()["fsyncs"] > 0
    storage.close()
    reopened = paxos.FileStorage(tmp_path / "n1", segment_bytes=4096)
    assert (reopened.snapshot().index, reopened.snapshot().data, reopened.snapshot().members) == (150, b"state at 150", [1])
    assert reopened.first_index() == 151 and reopened.last_index() >= 200
    restarted = paxos.PaxosNode(id=1, members=[1], storage=reopened, applied=150)
    assert restarted.commit_index >= 200
    reopened.close()


def test_a_raft_data_directory_opened_as_paxos_raises_storage_error(tmp_path: Path) -> None:
    raft.FileStorage(tmp_path / "n1").close()
    with pytest.raises(consensus.StorageError, match="raft log"):
        paxos.FileStorage(tmp_path / "n1")


def test_paxos_injected_fsync_failure_poisons_the_storage(tmp_path: Path) -> None:
    storage = paxos.FileStorage(tmp_path / "n1")
    node = paxos.PaxosNode(id=1, members=[1], storage=storage)
    storage._inject_sync_failure()
    node.campaign()
    with pytest.raises(consensus.StorageError):
        node.persist_and_advance(node.ready())
    with pytest.raises(consensus.StorageError, match="poisoned"):
        storage.sync()


REPR_WHILE_PERSISTING = textwrap.dedent(
    """
    import sys, threading, time
    from consensus import paxos
    storage = paxos.FileStorage(sys.argv[1], fsync="never")
    node = paxos.PaxosNode(id=1, members=[1], storage=storage)
    node.campaign()
    while node.has_ready():
        node.persist_and_advance(node.ready())
    stop = False
    def writer():
        while not stop:
            node.propose(b"x")
            while node.has_ready():
                node.persist_and_advance(node.ready())
    threading.Thread(target=writer, daemon=True).start()
    sys.setswitchinterval(1e-6)
    start = time.time()
    while time.time() - start < 5:
        repr(storage)
    stop = True
    print("ok", flush=True)
    """
)

CPU_HOG = "while True: pass"


def test_repr_of_paxos_file_storage_never_deadlocks_with_a_concurrent_persist(tmp_path: Path) -> None:
    busy = [subprocess.Popen([sys.executable, "-c", CPU_HOG]) for _ in range(2)]
    try:
        probe = subprocess.Popen(
            [sys.executable, "-c", REPR_WHILE_PERSISTING, str(tmp_path / "n1")], stdout=subprocess.PIPE, text=True
        )
        try:
            out, _ = probe.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.communicate()
            raise AssertionError("repr(storage) deadlocked against a concurrent persist")
        assert out.strip() == "ok"
    finally:
        for p in busy:
            p.kill()
            p.wait()
