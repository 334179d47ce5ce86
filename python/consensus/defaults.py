"""Defaults and limits that several layers state: defined here once, imported everywhere.

The configuration file (`consensus.config`), the runtime (`consensus.runtime.NodeOptions`), the
protocol cores (`consensus.protocols.CoreOptions`), the transports and the state machines all
start from these numbers; docs/operations.md documents them.
"""

#: Length of one logical tick (`tick_ms`): the unit of the election and heartbeat timeouts.
TICK_MS = 10
#: Ticks without a leader before a follower campaigns (the base election timeout).
ELECTION_TICKS = 10
#: Ticks between a leader's heartbeats.
HEARTBEAT_TICKS = 1
#: Largest entry a core accepts (a command plus its envelope).
MAX_ENTRY_BYTES = 8 << 20
#: Largest peer frame a transport accepts (`max_frame_bytes`); also the largest command a built-in
#: state machine decodes.
FRAME_BYTES_MAX = 64 << 20
#: Bytes queued for one peer before a transport drops frames for it (the protocols retransmit).
SEND_QUEUE_BYTES = 64 << 20
#: How long a proposal or read waits for its answer.
REQUEST_TIMEOUT_MS = 5000
#: Proposals and reads waiting at once; more are refused with `BusyError`.
MAX_PENDING_REQUESTS = 10_000
#: Applied entries between snapshots (0: never).
SNAPSHOT_ENTRIES = 100_000
#: The phi-accrual failure detector's suspicion threshold.
PHI_THRESHOLD = 8.0
#: Largest node id on the wire (a u64; 0 means "none").
NODE_ID_MAX = (1 << 64) - 1
#: Largest cluster id, in UTF-8 bytes (the handshake carries its length in one byte).
CLUSTER_ID_BYTES_MAX = 255

__all__ = [
    "CLUSTER_ID_BYTES_MAX",
    "ELECTION_TICKS",
    "FRAME_BYTES_MAX",
    "HEARTBEAT_TICKS",
    "MAX_ENTRY_BYTES",
    "MAX_PENDING_REQUESTS",
    "NODE_ID_MAX",
    "PHI_THRESHOLD",
    "REQUEST_TIMEOUT_MS",
    "SEND_QUEUE_BYTES",
    "SNAPSHOT_ENTRIES",
    "TICK_MS",
]
