"""The identity of a data directory, and the check that a wiped directory never passes for a member.

At bootstrap a node writes ``identity.json`` into its ``data_dir``: the cluster id, the node id and
the protocol the directory belongs to, whether it holds state the other members rely on, and which
peers told it that *they* hold state. On every start the file is checked against the configuration;
a mismatch is a `ConfigError` naming the field, a damaged file a `StorageError`, and neither is ever
rewritten silently (docs/operations.md, "Data directories and initial_state").

A node whose directory is empty cannot tell on its own whether it is a member of a brand-new cluster
or a member whose directory was wiped. Its peers can: every peer handshake carries greeting flags
(docs/wire-format.md §9.1). A node whose directory holds state greets with ``HAS_STATE``; every node
remembers, in its identity file, the peers that greeted it so, and greets them with
``REMEMBERS_RECEIVER``. A node started on an empty directory with ``initial_state = "new"`` passes
`DataDirectory.gate` before its core runs: it waits until it has greeted every other member of its
configuration, and refuses to start if any of them remembers it. Only then does it write its
identity file, and it reconnects to its peers so that they learn it now holds state.

The functions below are pure, or read or write the one file; `DataDirectory` keeps the running
state and lives on the node's event loop (the transport calls its hooks there).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Iterable, List, Optional, Sequence, Set, Tuple

from consensus import defaults
from consensus._core import ConfigError, StorageError
from consensus.errors import config_error, storage_error
from consensus.config import INITIAL_STATES, INT_BOUNDS
from consensus.transport.handshake import GREETING_HAS_STATE, GREETING_REMEMBERS_RECEIVER

log = logging.getLogger("consensus.datadir")

#: The identity file, directly in ``data_dir`` (the protocol's storage lives in ``data_dir/<protocol>``).
IDENTITY_FILE = "identity.json"
#: Written beside it, fsynced, then renamed over it.
IDENTITY_TEMP_FILE = IDENTITY_FILE + ".tmp"
IDENTITY_FORMAT = 1
#: A larger identity file is damaged (the largest valid one is a few tens of kilobytes).
IDENTITY_BYTES_MAX = 256 * 1024
#: Peers remembered as holding state; past this, more are not recorded (logged once).
PEERS_WITH_STATE_MAX = 4096
#: Node ids as the configuration bounds them (a TOML integer is 64-bit signed).
NODE_ID_MAX = INT_BOUNDS["id"][1]
CLUSTER_ID_BYTES_MAX = defaults.CLUSTER_ID_BYTES_MAX
PROTOCOL_CHARS_MAX = 32

INITIAL_STATE_NEW = "new"
INITIAL_STATE_EXISTING = "existing"

#: How a node starts on its directory (`plan_start`).
START_RESTART = "restart"  # the directory holds state: initial_state does not matter
START_JOIN = "join"  # empty, initial_state = "existing": wait to be added to a running cluster
START_BOOTSTRAP = "bootstrap"  # empty, initial_state = "new": pass the gate, then bootstrap

#: While the gate waits, it says which peers it still waits for this often.
GATE_LOG_INTERVAL_SECONDS = 10.0

_FIELDS = ("checksum", "cluster_id", "format", "node_id", "peers_with_state", "protocol", "state")


@dataclass(frozen=True)
class Identity:
    """What ``identity.json`` records. Invariant: ``peers_with_state`` is sorted, unique, without ``node_id``."""

    cluster_id: str
    node_id: int
    protocol: str
    #: The directory holds state the other members rely on (it bootstrapped, joined, or was
    #: restored); the node greets with HAS_STATE.
    state: bool = True
    #: Peers that greeted this node with HAS_STATE; it greets them with REMEMBERS_RECEIVER.
    peers_with_state: Tuple[int, ...] = ()


# ---------------------------------------------------------------------------- the file format


def _body(identity: Identity) -> dict:
    return {
        "format": IDENTITY_FORMAT,
        "cluster_id": identity.cluster_id,
        "node_id": identity.node_id,
        "protocol": identity.protocol,
        "state": identity.state,
        "peers_with_state": list(identity.peers_with_state),
    }


def _checksum(body: dict) -> str:
    """SHA-256 of the body's canonical JSON (sorted keys, no spaces, ASCII)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def encode_identity(identity: Identity) -> bytes:
    """The file's bytes: the fields and a checksum over them, as indented JSON."""
    body = _body(identity)
    document = dict(body, checksum=_checksum(body))
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def _damaged(source: str, reason: str) -> StorageError:
    return storage_error(
        "corrupt",
        f"{source}: the data directory's identity file is damaged ({reason}); it is never rewritten: "
        "restore it from a copy, or remove the whole data directory and re-add the node"
    )


def _unique_keys(pairs: List[Tuple[str, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_fields(document: dict) -> Optional[str]:
    """What is wrong with a parsed document, or None."""
    if sorted(document) != sorted(_FIELDS):
        return f"fields {sorted(document)}, expected {sorted(_FIELDS)}"
    if document["format"] != IDENTITY_FORMAT or not _is_int(document["format"]):
        return f"format {document['format']!r}, this version reads {IDENTITY_FORMAT}"
    cluster_id = document["cluster_id"]
    try:
        cluster_id_bytes = len(cluster_id.encode("utf-8")) if isinstance(cluster_id, str) else 0
    except UnicodeEncodeError:
        cluster_id_bytes = 0
    if not 1 <= cluster_id_bytes <= CLUSTER_ID_BYTES_MAX:
        return "cluster_id is not a UTF-8 string of 1..255 bytes"
    node_id = document["node_id"]
    if not _is_int(node_id) or not 1 <= node_id <= NODE_ID_MAX:
        return "node_id is not a node id"
    protocol = document["protocol"]
    if not isinstance(protocol, str) or not 1 <= len(protocol) <= PROTOCOL_CHARS_MAX:
        return "protocol is not a protocol name"
    if not isinstance(document["state"], bool):
        return "state is not a boolean"
    peers = document["peers_with_state"]
    if not isinstance(peers, list) or len(peers) > PEERS_WITH_STATE_MAX:
        return f"peers_with_state is not a list of at most {PEERS_WITH_STATE_MAX} ids"
    if not all(_is_int(p) and 1 <= p <= NODE_ID_MAX and p != node_id for p in peers):
        return "peers_with_state holds something that is not another node's id"
    if peers != sorted(set(peers)):
        return "peers_with_state is not sorted and unique"
    if not isinstance(document["checksum"], str):
        return "checksum is not a string"
    return None


def decode_identity(data: bytes, source: str = IDENTITY_FILE) -> Identity:
    """Parse the file's bytes strictly; anything but a well-formed file with a matching checksum is
    a `StorageError` naming `source`."""
    if len(data) > IDENTITY_BYTES_MAX:
        raise _damaged(source, f"{len(data)} bytes, more than {IDENTITY_BYTES_MAX}")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _damaged(source, f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _damaged(source, "not a JSON object")
    problem = _check_fields(document)
    if problem is not None:
        raise _damaged(source, problem)
    checksum = document.pop("checksum")
    if checksum != _checksum(document):
        raise _damaged(source, "its checksum does not match its contents")
    return Identity(
        cluster_id=document["cluster_id"],
        node_id=document["node_id"],
        protocol=document["protocol"],
        state=document["state"],
        peers_with_state=tuple(document["peers_with_state"]),
    )


def identity_path(data_dir: str) -> str:
    return os.path.join(data_dir, IDENTITY_FILE)


def read_identity(data_dir: str) -> Optional[Identity]:
    """The identity recorded in `data_dir`, or None when it has no identity file."""
    path = identity_path(data_dir)
    try:
        with open(path, "rb") as handle:
            data = handle.read(IDENTITY_BYTES_MAX + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error("io", f"{path}: cannot read the data directory's identity file: {exc.strerror or exc}") from None
    return decode_identity(data, path)


def _fsync_directory(path: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows cannot fsync a directory
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_identity(data_dir: str, identity: Identity) -> None:
    """Atomically replace the identity file: a temporary file, fsynced, renamed over it, then the
    directory fsynced. A crash leaves the old file or the new one, never a mix. `StorageError` on failure."""
    data = encode_identity(identity)
    temp = os.path.join(data_dir, IDENTITY_TEMP_FILE)
    try:
        os.makedirs(data_dir, exist_ok=True)
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, identity_path(data_dir))
        _fsync_directory(data_dir)
    except OSError as exc:
        raise storage_error("io", f"{identity_path(data_dir)}: cannot write the identity file: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------- decisions


def check_identity(found: Identity, *, cluster_id: str, node_id: int, protocol: str, data_dir: str) -> None:
    """`ConfigError` naming the field when the directory belongs to another cluster, node or protocol."""
    hint = "point data_dir at this node's own directory, or at an empty one to add it as a new member"
    if found.cluster_id != cluster_id:
        raise config_error(
            "cluster_id",
            f"the data directory {data_dir!r} belongs to cluster {found.cluster_id!r}, "
            f"this configuration is for cluster {cluster_id!r}; {hint}",
        )
    if found.node_id != node_id:
        raise config_error(
            "id", f"the data directory {data_dir!r} belongs to node {found.node_id}, this is node {node_id}; {hint}"
        )
    if found.protocol != protocol:
        raise config_error(
            "protocol",
            f"the data directory {data_dir!r} holds a {found.protocol} node, this configuration runs {protocol}; {hint}",
        )


def check_initial_state(initial_state: object) -> str:
    if initial_state not in INITIAL_STATES:
        raise config_error("initial_state", f"must be one of {', '.join(INITIAL_STATES)}, got {initial_state!r}")
    return str(initial_state)


def storage_is_empty(storage: Any) -> bool:
    """Whether an opened storage (either protocol) holds nothing: no term, vote, entry or snapshot."""
    hard_state = storage.hard_state()
    return (
        hard_state.term == 0
        and hard_state.vote == 0
        and hard_state.commit == 0
        and storage.last_index() == 0
        and storage.snapshot().index == 0
    )


def plan_start(found: Optional[Identity], storage_empty: bool, initial_state: str) -> str:
    """How to start: a directory that holds state restarts; an empty one joins ("existing") or
    bootstraps behind the gate ("new"). Two directories are neither:

    - the identity says the directory held state but its storage is empty (the WAL was lost or
      deleted): it forgot its votes and what it acknowledged, so with "new" it is refused; with
      "existing" the operator says it is not a member (it joined and stopped before any data came,
      or was removed and is being added back) and it restarts as a joiner would;
    - storage with an identity that holds no state is a backup restored by `consensus snapshot
      restore`: it bootstraps behind the gate like an empty directory, so a wiped member restored
      from an old backup is refused by the peers that remember it.
    """
    if found is not None and found.state:
        if storage_empty and initial_state != INITIAL_STATE_EXISTING:
            raise config_error(
                "data_dir",
                f"node {found.node_id}'s data directory says it held state, but its storage is empty "
                "(lost or deleted): it has forgotten its votes and what it acknowledged. Remove and re-add "
                "the node, then start it with initial_state = \"existing\"",
            )
        return START_RESTART
    if not storage_empty and found is None:
        return START_RESTART  # a directory from before identity files: adopted
    return START_JOIN if initial_state == INITIAL_STATE_EXISTING else START_BOOTSTRAP


def greeting_flags(has_state: bool, peers_with_state: Iterable[int], peer_id: int) -> int:
    """The flags to greet `peer_id` with."""
    flags = GREETING_HAS_STATE if has_state else 0
    if peer_id in peers_with_state:
        flags |= GREETING_REMEMBERS_RECEIVER
    return flags


def wiped_member_error(node_id: int, remembering: Iterable[int]) -> ConfigError:
    peers = ", ".join(str(p) for p in sorted(remembering))
    return config_error(
        "initial_state",
        f"node {node_id}'s data directory was wiped or replaced, but peers remember it holding state "
        f"(peer {peers}): remove and re-add it, then start it with initial_state = \"existing\"",
    )


# ---------------------------------------------------------------------------- the running part


class DataDirectory:
    """One node's data directory: checks its identity, decides how the node starts, greets peers
    with the right flags, remembers the peers that hold state, and gates a fresh bootstrap.

    Use: construct (checks the identity file), `prepare(storage_is_empty(storage))` once the
    storage is open, `attach(transport)` before the transport starts, and give `start_gate` to the
    node (None unless it bootstraps on an empty directory).
    """

    def __init__(
        self,
        data_dir: str,
        *,
        cluster_id: str,
        node_id: int,
        protocol: str,
        members: Sequence[int],
        initial_state: str = INITIAL_STATE_NEW,
    ) -> None:
        self.data_dir = data_dir
        self.node_id = node_id
        self.initial_state = check_initial_state(initial_state)
        #: The other members of the configuration; a bootstrap waits to greet each of them.
        self.other_members: Set[int] = {m for m in members if m != node_id}
        self.found = read_identity(data_dir)
        if self.found is not None:
            check_identity(self.found, cluster_id=cluster_id, node_id=node_id, protocol=protocol, data_dir=data_dir)
        self.identity = self.found or Identity(cluster_id, node_id, protocol, state=False)
        self.mode: Optional[str] = None
        self._greeted: Set[int] = set()
        #: Peers whose latest greeting from this node went out without HAS_STATE, because the
        #: directory held no state yet; once it does, their connection is reopened (`_greet_again`).
        self._greeted_without_state: Set[int] = set()
        self._remembering: Set[int] = set()
        self._transport: Any = None
        self._changed: Optional[asyncio.Event] = None
        self._full_logged = False
        self._logged_missing: Set[int] = set()
        self._logged_at = 0.0

    @property
    def has_state(self) -> bool:
        return self.identity.state

    @property
    def joining(self) -> bool:
        """The node waits to be added to a running cluster (`Node(join=True)`)."""
        return self.mode == START_JOIN

    @property
    def start_gate(self) -> Optional[Any]:
        """The coroutine function `Node.start` awaits before its core runs, or None."""
        return self.gate if self.mode == START_BOOTSTRAP else None

    def prepare(self, storage_empty: bool) -> str:
        """Decides how the node starts; a directory that holds or is about to receive state records
        that at once (a join, a restored backup, a directory from before identity files)."""
        self.mode = plan_start(self.found, storage_empty, self.initial_state)
        if self.mode == START_RESTART and not self.has_state:
            log.warning(
                "node %d: %s holds state but no identity file; recording it as cluster %r, %s",
                self.node_id,
                self.data_dir,
                self.identity.cluster_id,
                self.identity.protocol,
            )
            self._record_state()
        elif self.mode == START_JOIN:
            log.info("node %d: empty data directory, joining a running cluster (initial_state = \"existing\")", self.node_id)
            self._record_state()
        return self.mode

    def attach(self, transport: Any) -> None:
        """Hooks the greeting flags into `transport` (before it starts)."""
        self._transport = transport
        transport.greeting_flags = self.greeting_flags
        transport.on_greeting = self.on_greeting

    def greeting_flags(self, peer_id: int) -> int:
        if self.has_state:
            self._greeted_without_state.discard(peer_id)
        else:
            self._greeted_without_state.add(peer_id)
        return greeting_flags(self.has_state, self.identity.peers_with_state, peer_id)

    def on_greeting(self, peer_id: int, flags: int) -> None:
        self._greeted.add(peer_id)
        if flags & GREETING_HAS_STATE:
            self._remember(peer_id)
        if flags & GREETING_REMEMBERS_RECEIVER and self.mode == START_BOOTSTRAP and not self.has_state:
            self._remembering.add(peer_id)
        if self._changed is not None:
            self._changed.set()
        if self.has_state and peer_id in self._greeted_without_state:
            # A handshake that began before the directory held state completed only now.
            asyncio.get_running_loop().call_soon(self._greet_again, [peer_id])

    async def gate(self, transport: Any) -> None:
        """Returns once this fresh node has greeted every other member and none remembers it; then
        records that the directory holds state. Raises `ConfigError` (initial_state) if a peer
        remembers it: the directory was wiped. Waits without bound otherwise (a new cluster starts
        when all its members are up)."""
        self._transport = transport
        self._changed = asyncio.Event()
        try:
            missing = self._missing(transport)
            while missing and not self._remembering:
                self._log_waiting(missing)
                try:
                    await asyncio.wait_for(self._changed.wait(), GATE_LOG_INTERVAL_SECONDS)
                except asyncio.TimeoutError:
                    pass
                self._changed.clear()
                missing = self._missing(transport)
        finally:
            self._changed = None
        if self._remembering:
            raise wiped_member_error(self.node_id, self._remembering)
        self._record_state()
        log.info("node %d: greeted every member; bootstrapping a new cluster", self.node_id)
        self._greet_again(sorted(self._greeted_without_state))

    # ------------------------------------------------------------------ internals

    def _log_waiting(self, missing: Set[int]) -> None:
        """Says whom the gate waits for, when that changes and every GATE_LOG_INTERVAL_SECONDS."""
        now = asyncio.get_running_loop().time()
        if missing == self._logged_missing and now - self._logged_at < GATE_LOG_INTERVAL_SECONDS:
            return
        self._logged_missing, self._logged_at = set(missing), now
        log.info(
            "node %d: a fresh data directory (initial_state = \"new\"): waiting to greet peer(s) %s before "
            "bootstrapping a new cluster",
            self.node_id,
            ", ".join(map(str, sorted(missing))),
        )

    def _missing(self, transport: Any) -> Set[int]:
        return self.other_members - self._greeted - set(transport.greeted_peers())

    def _record_state(self) -> None:
        self.identity = replace(self.identity, state=True)
        write_identity(self.data_dir, self.identity)

    def _remember(self, peer_id: int) -> None:
        peers = self.identity.peers_with_state
        if peer_id in peers or peer_id == self.node_id:
            return
        if len(peers) >= PEERS_WITH_STATE_MAX:
            if not self._full_logged:
                log.warning("node %d: already remembers %d peers with state; not recording more", self.node_id, len(peers))
                self._full_logged = True
            return
        updated = replace(self.identity, peers_with_state=tuple(sorted(peers + (peer_id,))))
        if updated.state:
            # Durable before the node greets that peer with REMEMBERS_RECEIVER. Until the directory
            # holds state the set stays in memory and is written with the state.
            try:
                write_identity(self.data_dir, updated)
            except StorageError as exc:
                log.error("node %d: cannot remember that peer %d holds state: %s", self.node_id, peer_id, exc)
                return
        self.identity = updated

    def _greet_again(self, peers: Sequence[int]) -> None:
        """These peers were greeted without HAS_STATE: a new handshake tells them this node holds
        state, so that they remember it from now on. (A handshake still under way when this runs reports its
        completion to `on_greeting`, which comes back here.)"""
        for peer_id in peers:
            if peer_id in self._greeted_without_state:
                self._transport.greet_again(peer_id)


__all__ = [
    "IDENTITY_FILE",
    "INITIAL_STATES",
    "DataDirectory",
    "Identity",
    "check_identity",
    "decode_identity",
    "encode_identity",
    "greeting_flags",
    "plan_start",
    "read_identity",
    "storage_is_empty",
    "write_identity",
]
