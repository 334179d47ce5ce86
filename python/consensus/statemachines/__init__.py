"""Replicated state machines: the protocol the runtime applies committed entries to, and built-ins.

Every replica applies the same committed commands in the same order, so `apply` must be a pure
function of the state and the command: no local clock, no randomness, no iteration order that
differs between processes. Time comes only from the log: a machine with `advance_clock(time_ms)` is
given the leader's stamp before each command (`_clock`). A malformed or unknown command is not an
exception: `apply` returns an error result (`{"error": "bad_command", "message": ...}`) and leaves
the state unchanged, because an exception on one committed entry would wedge every replica at the
same index.

Commands and snapshots are msgpack (`use_bin_type=True`, strict decoding, bounded sizes), never
pickle (`_codec`). Snapshots are canonical (maps with sorted keys) and carry a CRC32, so two
replicas with the same state produce the same bytes and damaged bytes raise `StorageError` on
`restore`.

The built-ins (`KVStore`, `ReplicatedDict`, `Counter`, `Lock`) have static `encode_*` command
builders and, once attached to a running node with `attach(proposer)`, async helpers that propose a
command and return the decoded result. An error result makes the helper raise `CommandRejectedError`.
"""

from consensus.statemachines._clock import CLOCK_MS_MAX
from consensus.statemachines._codec import COMMAND_BYTES_MAX
from consensus.statemachines._counter import Counter
from consensus.statemachines._dict import ReplicatedDict
from consensus.statemachines._kvstore import KVStore
from consensus.statemachines._lock import Lock
from consensus.statemachines._protocol import CommandRejectedError, Proposer, StateMachine
from consensus.statemachines._sessions import SESSION_SWEEP_MAX, parse_request_id, session_number

__all__ = [
    "CLOCK_MS_MAX",
    "COMMAND_BYTES_MAX",
    "CommandRejectedError",
    "Counter",
    "KVStore",
    "Lock",
    "Proposer",
    "ReplicatedDict",
    "SESSION_SWEEP_MAX",
    "StateMachine",
    "parse_request_id",
    "session_number",
]
