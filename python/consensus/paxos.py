"""Multi-Paxos ("Paxos Made Simple", "Paxos Made Live") with the same interface as `consensus.raft`.

Ballots are ``(round, node)``; Phase 1 runs once per leadership over every slot from the first one
not known chosen; Phase 2 is pipelined within ``max_inflight_slots`` slots, client commands are
batched into slot values, and a membership change takes effect ``max_inflight_slots`` slots after
the slot that chose it (the α-window). The node is sans-IO and runs the same Ready loop::

    if node.has_ready():
        rd = node.ready()
        for to, frame in rd.messages:            # may leave at once (a leader's own writes)
            transport.send(to, frame)
        storage.persist(rd)                      # durable first: the promise and accepted slots
        for to, frame in rd.persisted_messages:  # only once durable
            transport.send(to, frame)
        for entry in rd.committed_entries:
            state_machine.apply(entry)   # then apply: (index = slot, term = round, data)
        node.advance(rd)

Design and reasons: docs/paxos.md.
"""

from consensus._core import PaxosBallot as Ballot
from consensus._core import PaxosConfig as Config
from consensus._core import PaxosEntry as Entry
from consensus._core import PaxosFileStorage as FileStorage
from consensus._core import PaxosHardState as HardState
from consensus._core import PaxosMemoryStorage as MemoryStorage
from consensus._core import PaxosMessage as Message
from consensus._core import PaxosMessageType as MessageType
from consensus._core import PaxosNode
from consensus._core import PaxosReady as Ready
from consensus._core import PaxosSnapshot as Snapshot
from consensus._core import RaftEntryKind as EntryKind
from consensus._core import RaftReadState as ReadState
from consensus._core import paxos_decode as decode

__all__ = [
    "Ballot",
    "Config",
    "Entry",
    "EntryKind",
    "FileStorage",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "PaxosNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "decode",
]
