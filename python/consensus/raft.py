"""Raft (Ongaro & Ousterhout, 2014; Ongaro's thesis, 2014) with the feature set of etcd-io/raft.

The node is sans-IO: drive it with ``tick()``, ``step(frame)`` and ``propose(data)``, and run the
Ready loop::

    if node.has_ready():
        rd = node.ready()
        for to, frame in rd.messages:            # may leave at once (a leader's own writes)
            transport.send(to, frame)
        storage.persist(rd)                      # durable first (fsync if rd.must_sync)
        for to, frame in rd.persisted_messages:  # only once durable
            transport.send(to, frame)
        for entry in rd.committed_entries:
            state_machine.apply(entry)           # then apply, in order
        node.advance(rd)
"""

from consensus._core import RaftConfChange as ConfChange
from consensus._core import RaftConfig as Config
from consensus._core import RaftConfState as ConfState
from consensus._core import RaftEntry as Entry
from consensus._core import RaftEntryKind as EntryKind
from consensus._core import RaftFileStorage as FileStorage
from consensus._core import RaftHardState as HardState
from consensus._core import RaftMemoryStorage as MemoryStorage
from consensus._core import RaftMessage as Message
from consensus._core import RaftMessageType as MessageType
from consensus._core import RaftNode
from consensus._core import RaftReadState as ReadState
from consensus._core import RaftReady as Ready
from consensus._core import RaftSnapshot as Snapshot
from consensus._core import raft_decode as decode

__all__ = [
    "ConfChange",
    "ConfState",
    "Config",
    "Entry",
    "EntryKind",
    "FileStorage",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "RaftNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "decode",
]
