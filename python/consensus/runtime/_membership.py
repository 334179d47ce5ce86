"""Who the node talks to: committed membership changes applied through the protocol's spec, and
the replicated address book (runtime records and snapshots carry it; a node's own configuration
wins over replicated addresses, e.g. behind NAT). After every change the transport (and the
failure detector) are pointed at the current members.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from consensus._core import ConfigError, ConsensusError, StorageError
from consensus.config import parse_address
from consensus.protocols import CoreEntry, CoreNode, ProtocolSpec
from consensus.runtime._admission import Skipped
from consensus.runtime._envelope import decode_address_record
from consensus.runtime._health import PeerHealth
from consensus.runtime._stats import NodeStats
from consensus.transport.base import Transport

log = logging.getLogger("consensus.node")


@dataclass
class MemberAddress:
    peer: str = ""
    client: str = ""


class Membership:
    def __init__(
        self,
        node_id: int,
        spec: ProtocolSpec,
        transport: Transport,
        health: Optional[PeerHealth],
        stats: NodeStats,
        addresses: Mapping[int, MemberAddress],
    ) -> None:
        self._id = node_id
        self._spec = spec
        self._transport = transport
        self._health = health
        self._stats = stats
        #: Addresses from this node's own configuration; they win over replicated ones (NAT).
        self.local: Dict[int, MemberAddress] = dict(addresses)
        self.addresses: Dict[int, MemberAddress] = dict(self.local)
        #: member -> the peer address that could not be used (logged once per address).
        self._unusable: Dict[int, str] = {}
        self.core: Optional[CoreNode] = None

    def learn(self, addresses: Mapping[int, MemberAddress]) -> None:
        """Replicated addresses (a snapshot's address book); local ones win."""
        for member, address in addresses.items():
            if member not in self.local:
                self.addresses[member] = address

    def sync_peers(self) -> None:
        """Points the transport at the current members (voters and learners) with known addresses.
        A node given no addresses leaves the transport's own peer list alone (the caller wired it)."""
        if not self.addresses or self.core is None:
            return
        members = set(self._spec.members(self.core))
        members |= set(self.local)
        peers = {m: self.addresses[m].peer for m in members if m != self._id and m in self.addresses}
        for member, address in list(peers.items()):
            try:
                parse_address(address, f"members[{member}].peer")
            except ConfigError as exc:
                # Refused where it is proposed; one that slipped through (an older version, a
                # snapshot) makes that peer unreachable until a later change fixes it, never fatal.
                if self._unusable.get(member) != address:
                    log.error("node %d: member %d has an unusable peer address; unreachable until fixed: %s", self._id, member, exc)
                    self._unusable[member] = address
                del peers[member]
        self._transport.set_peers(peers)
        if self._health is not None:
            for m in peers:
                self._health.add_peer(m)

    def apply_change(self, entry: CoreEntry) -> Any:
        """A committed membership change. One that does not decode (the cores refuse such entries
        at the door; this is the last line) is skipped and counted: stopping here would stop the
        node again on every restart, since the entry is durable."""
        assert self.core is not None
        try:
            result = self._spec.apply_membership(self.core, entry)
        except StorageError:
            raise
        except ConsensusError as exc:
            self._stats.entries_skipped += 1
            log.error("node %d: membership change at index %d cannot be applied; skipped: %s", self._id, entry.index, exc)
            return Skipped(exc)
        self.sync_peers()
        return result

    def apply_record(self, payload: bytes) -> None:
        """A runtime record. One that does not decode, or names no valid member, is skipped and
        counted (it is durable: stopping on it would stop the node on every restart)."""
        try:
            member, peer, client = decode_address_record(payload)
        except ValueError as exc:
            self._stats.entries_skipped += 1
            log.error("node %d: skipped an invalid runtime record: %s", self._id, exc)
            return
        if member not in self.local:
            self.addresses[member] = MemberAddress(peer, client)
            self.sync_peers()


__all__ = ["MemberAddress", "Membership"]
