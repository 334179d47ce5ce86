"""Fixtures shared by the test modules: the protocol under test and what runtime tests build.

`protocol` is parametrised over the registry (`consensus.protocols.PROTOCOLS`), so a test that
takes it runs once per protocol (`test_x[raft]`, `test_x[paxos]`) and a protocol added to the
registry runs every such test without a change here. Where a protocol cannot do what a test
checks, the test branches on (or skips for) the spec's capability (`has_learners`,
`batch_in_one_index`), never on the protocol's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Tuple, Type

import pytest

from consensus.protocols import PROTOCOLS, ProtocolSpec

from support import Cluster, PeerFrames, open_file_storage, peer_frames


@pytest.fixture(params=list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def protocol(request: Any) -> ProtocolSpec:
    """Each protocol of the registry in turn."""
    return request.param


@pytest.fixture
def make_cluster(protocol: ProtocolSpec) -> Callable[..., Cluster]:
    """Builds an in-process `Cluster` of `Node`s running the protocol under test
    (same arguments as `Cluster`, less `protocol`)."""

    def make(size: int = 3, **settings: Any) -> Cluster:
        return Cluster(size, protocol=protocol, **settings)

    return make


@pytest.fixture
def file_storages(protocol: ProtocolSpec, tmp_path: Path) -> Callable[..., Dict[int, Any]]:
    """Opens the protocol's durable storage for each given node id, at `tmp_path/n<id>`."""

    def open_all(ids: Iterable[int] = (1, 2, 3), fsync: str = "always", **settings: Any) -> Dict[int, Any]:
        return {i: open_file_storage(protocol, tmp_path / f"n{i}", fsync, **settings) for i in ids}

    return open_all


@pytest.fixture
def frames(protocol: ProtocolSpec) -> PeerFrames:
    """Frames a peer of the protocol under test sends (tests/support.py, `PEER_FRAMES`)."""
    return peer_frames(protocol)


#: Product bugs found by a protocol-parametrised test, as (test function, protocol) -> (what is
#: wrong, the exception it fails with). Such a run is marked xfail(strict=True, raises=...): it
#: keeps failing that way until the bug is fixed, then fails as XPASS so the entry is removed.
#: The tests themselves stay free of protocol names.
KNOWN_BUGS: Dict[Tuple[str, str], Tuple[str, Type[BaseException]]] = {}


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        spec = callspec.params.get("protocol") if callspec is not None else None
        if isinstance(spec, ProtocolSpec):
            bug = KNOWN_BUGS.get((getattr(item, "originalname", item.name), spec.name))
            if bug is not None:
                reason, raises = bug
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason, raises=raises))
