"""The connection handshake (docs/wire-format.md §9): HELLO, then WELCOME or REFUSED.

A fixed binary layout with exact lengths and no CRC (TCP's checksum and TLS's MAC cover the
bytes; every field is checked against what the receiver expects, so a damaged handshake is
refused rather than misread). The largest handshake message is `MESSAGE_BYTES_MAX` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Set, Union
from urllib.parse import quote

from consensus import defaults

MAGIC = b"CNSP"
#: 2 added the greeting flags byte (docs/wire-format.md §9.1); a version-1 node is refused with
#: REASON_VERSION rather than misread, so moving a cluster to it takes a full restart.
TRANSPORT_VERSION = 2
HEADER_BYTES = 8

KIND_HELLO = 1
KIND_WELCOME = 2
KIND_REFUSED = 3

CLUSTER_ID_BYTES_MAX = defaults.CLUSTER_ID_BYTES_MAX
REASON_BYTES_MAX = 255
#: HELLO and WELCOME body: protocol u8, sender u64, receiver u64, flags u8, cluster id length u8,
#: cluster id.
GREETING_FIXED_BYTES = 19

# Greeting flags (the `flags` byte of HELLO and WELCOME, docs/wire-format.md §9.1): what the sender
# tells the receiver about its data directory. Bits other than these are sent as 0 and ignored.
#: The sender's data directory holds this cluster's state.
GREETING_HAS_STATE = 1
#: The sender remembers the receiver as a member that had state.
GREETING_REMEMBERS_RECEIVER = 2
GREETING_FLAGS_KNOWN = GREETING_HAS_STATE | GREETING_REMEMBERS_RECEIVER
#: REFUSED body: reason code u8, message length u8, message.
REFUSAL_FIXED_BYTES = 2
BODY_BYTES_MAX = GREETING_FIXED_BYTES + CLUSTER_ID_BYTES_MAX
MESSAGE_BYTES_MAX = HEADER_BYTES + BODY_BYTES_MAX

# Reason codes carried by REFUSED.
REASON_MALFORMED = 1
REASON_BAD_MAGIC = 2
REASON_VERSION = 3
REASON_PROTOCOL = 4
REASON_CLUSTER = 5
REASON_UNKNOWN_SENDER = 6
REASON_WRONG_DIRECTION = 7
REASON_WRONG_RECEIVER = 8
REASON_BUSY = 9
REASON_IDENTITY = 10

REASON_NAMES = {
    REASON_MALFORMED: "malformed handshake",
    REASON_BAD_MAGIC: "bad magic",
    REASON_VERSION: "unsupported transport version",
    REASON_PROTOCOL: "wrong protocol",
    REASON_CLUSTER: "wrong cluster id",
    REASON_UNKNOWN_SENDER: "unknown sender id",
    REASON_WRONG_DIRECTION: "the lower id dials",
    REASON_WRONG_RECEIVER: "wrong receiver id",
    REASON_BUSY: "too many connections in handshake",
    REASON_IDENTITY: "certificate does not match the node id",
}


class HandshakeError(Exception):
    """A handshake message that cannot be accepted; `reason` is a REFUSED reason code."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(f"{REASON_NAMES.get(reason, 'refused')}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Greeting:
    """A HELLO (dialer to acceptor) or a WELCOME (the answer)."""

    kind: int
    protocol_id: int
    sender_id: int
    receiver_id: int
    cluster_id: str
    #: The greeting flags, reserved bits cleared.
    flags: int = 0


@dataclass(frozen=True)
class Refusal:
    reason: int
    message: str


def identity_uri(cluster_id: str, node_id: int) -> str:
    """The URI SAN that a peer certificate carries to be node `node_id` of `cluster_id`
    (docs/wire-format.md §9.4); the cluster id is percent-encoded (RFC 3986 unreserved characters
    stay as they are, so ordinary ids appear verbatim)."""
    return f"{_identity_prefix(cluster_id)}{node_id}"


def _identity_prefix(cluster_id: str) -> str:
    return f"consensus://{quote(cluster_id, safe='')}/node/"


def certificate_node_ids(peercert: Optional[Mapping[str, Any]], cluster_id: str) -> Set[Optional[int]]:
    """The node ids of `cluster_id` that a verified peer certificate (``getpeercert()``) names
    in its URI SANs; a malformed one of this cluster is reported as None, so that it never
    matches. URIs of other clusters are ignored."""
    prefix = _identity_prefix(cluster_id)
    names: Set[Optional[int]] = set()
    for kind, value in (peercert or {}).get("subjectAltName", ()):
        if kind != "URI" or not isinstance(value, str) or not value.startswith(prefix):
            continue
        digits = value[len(prefix) :]
        canonical = 0 < len(digits) <= 20 and digits.isascii() and digits.isdigit() and str(int(digits)) == digits
        names.add(int(digits) if canonical else None)
    return names


def _header(kind: int, body_length: int) -> bytes:
    return MAGIC + bytes((TRANSPORT_VERSION, kind)) + body_length.to_bytes(2, "little")


def encode_greeting(
    kind: int, protocol_id: int, sender_id: int, receiver_id: int, cluster_id: str, flags: int = 0
) -> bytes:
    cluster = cluster_id.encode("utf-8")
    if not 1 <= len(cluster) <= CLUSTER_ID_BYTES_MAX:
        raise ValueError("the cluster id must be 1..255 UTF-8 bytes")
    if flags & ~GREETING_FLAGS_KNOWN:
        raise ValueError(f"unknown greeting flags {flags:#x}")
    body = (
        bytes((protocol_id,))
        + sender_id.to_bytes(8, "little")
        + receiver_id.to_bytes(8, "little")
        + bytes((flags, len(cluster)))
        + cluster
    )
    return _header(kind, len(body)) + body


def encode_hello(protocol_id: int, sender_id: int, receiver_id: int, cluster_id: str, flags: int = 0) -> bytes:
    return encode_greeting(KIND_HELLO, protocol_id, sender_id, receiver_id, cluster_id, flags)


def encode_welcome(protocol_id: int, sender_id: int, receiver_id: int, cluster_id: str, flags: int = 0) -> bytes:
    return encode_greeting(KIND_WELCOME, protocol_id, sender_id, receiver_id, cluster_id, flags)


def encode_refused(reason: int, message: str = "") -> bytes:
    text = (message or REASON_NAMES.get(reason, "")).encode("utf-8")[:REASON_BYTES_MAX]
    body = bytes((reason, len(text))) + text
    return _header(KIND_REFUSED, len(body)) + body


def message_length(buffer: Union[bytes, bytearray]) -> Optional[int]:
    """The total length of the handshake message at the start of `buffer`, or None if the header
    is incomplete. Raises `HandshakeError` as soon as the header is wrong, before any body arrives."""
    if len(buffer) >= len(MAGIC) and bytes(buffer[: len(MAGIC)]) != MAGIC:
        raise HandshakeError(REASON_BAD_MAGIC, f"got {bytes(buffer[:4])!r}")
    if len(buffer) < HEADER_BYTES:
        return None
    version, kind = buffer[4], buffer[5]
    if version != TRANSPORT_VERSION:
        raise HandshakeError(REASON_VERSION, f"version {version}, this node speaks {TRANSPORT_VERSION}")
    body_length = int.from_bytes(buffer[6:8], "little")
    if kind in (KIND_HELLO, KIND_WELCOME):
        low, high = GREETING_FIXED_BYTES + 1, GREETING_FIXED_BYTES + CLUSTER_ID_BYTES_MAX
    elif kind == KIND_REFUSED:
        low, high = REFUSAL_FIXED_BYTES, REFUSAL_FIXED_BYTES + REASON_BYTES_MAX
    else:
        raise HandshakeError(REASON_MALFORMED, f"unknown message kind {kind}")
    if not low <= body_length <= high:
        raise HandshakeError(REASON_MALFORMED, f"body length {body_length} outside {low}..{high}")
    return HEADER_BYTES + body_length


def decode(message: Union[bytes, bytearray]) -> Union[Greeting, Refusal]:
    """Decode one whole handshake message (its exact bytes, as sized by `message_length`)."""
    total = message_length(message)
    if total is None or total != len(message):
        raise HandshakeError(REASON_MALFORMED, "length does not match the header")
    kind = message[5]
    body = bytes(message[HEADER_BYTES:])
    if kind == KIND_REFUSED:
        text_length = body[1]
        if REFUSAL_FIXED_BYTES + text_length != len(body):
            raise HandshakeError(REASON_MALFORMED, "refusal message length does not match")
        return Refusal(body[0], body[2:].decode("utf-8", errors="replace"))
    cluster_length = body[18]
    if GREETING_FIXED_BYTES + cluster_length != len(body) or cluster_length == 0:
        raise HandshakeError(REASON_MALFORMED, "cluster id length does not match")
    try:
        cluster_id = body[GREETING_FIXED_BYTES:].decode("utf-8")
    except UnicodeDecodeError:
        raise HandshakeError(REASON_MALFORMED, "cluster id is not UTF-8") from None
    return Greeting(
        kind=kind,
        protocol_id=body[0],
        sender_id=int.from_bytes(body[1:9], "little"),
        receiver_id=int.from_bytes(body[9:17], "little"),
        cluster_id=cluster_id,
        flags=body[17] & GREETING_FLAGS_KNOWN,
    )


__all__ = [
    "BODY_BYTES_MAX",
    "CLUSTER_ID_BYTES_MAX",
    "GREETING_FIXED_BYTES",
    "GREETING_FLAGS_KNOWN",
    "GREETING_HAS_STATE",
    "GREETING_REMEMBERS_RECEIVER",
    "HEADER_BYTES",
    "KIND_HELLO",
    "KIND_REFUSED",
    "KIND_WELCOME",
    "MAGIC",
    "MESSAGE_BYTES_MAX",
    "REASON_BAD_MAGIC",
    "REASON_BUSY",
    "REASON_BYTES_MAX",
    "REASON_CLUSTER",
    "REASON_IDENTITY",
    "REASON_MALFORMED",
    "REASON_NAMES",
    "REASON_PROTOCOL",
    "REASON_UNKNOWN_SENDER",
    "REASON_VERSION",
    "REASON_WRONG_DIRECTION",
    "REASON_WRONG_RECEIVER",
    "REFUSAL_FIXED_BYTES",
    "TRANSPORT_VERSION",
    "Greeting",
    "HandshakeError",
    "Refusal",
    "certificate_node_ids",
    "decode",
    "encode_greeting",
    "encode_hello",
    "encode_refused",
    "encode_welcome",
    "identity_uri",
    "message_length",
]
