"""Prometheus metrics of a node, in a registry of its own (several nodes may share a process).

Latencies are observed as they happen (`observe`); everything else is read from the node when
the endpoint is scraped (`refresh`), so the hot path pays for one histogram update per request.
"""

from __future__ import annotations

from typing import Any, Dict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Seconds: from 100 µs (an in-memory commit) to 10 s (a request timing out).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROLES = ("follower", "pre_candidate", "candidate", "leader", "learner")

CONTENT_TYPE = CONTENT_TYPE_LATEST


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.latency = {
            "proposal": Histogram(
                "consensus_proposal_seconds", "Proposal to apply, on the leader", registry=r, buckets=LATENCY_BUCKETS
            ),
            "read": Histogram(
                "consensus_read_index_seconds", "Linearizable read barrier", registry=r, buckets=LATENCY_BUCKETS
            ),
            "fsync": Histogram(
                "consensus_persist_sync_seconds",
                "Persisting a Ready that needed an fsync (write + fsync)",
                registry=r,
                buckets=LATENCY_BUCKETS,
            ),
            "http": Histogram(
                "consensus_http_request_seconds", "HTTP client requests, end to end", registry=r, buckets=LATENCY_BUCKETS
            ),
        }
        g = lambda name, doc, labels=(): Gauge(name, doc, labels, registry=r)  # noqa: E731
        self.term = g("consensus_term", "Current term (ballot round, epoch)")
        self.role = g("consensus_role", "1 for the role this node has", ("role",))
        self.leader = g("consensus_leader_id", "Id of the leader this node knows (0: none)")
        self.commit = g("consensus_commit_index", "Highest index known committed")
        self.applied = g("consensus_applied_index", "Highest index applied to the state machine")
        self.last_index = g("consensus_last_index", "Last index in the log")
        self.snapshot_index = g("consensus_snapshot_index", "Index of the latest snapshot")
        self.counters = {
            name: g(f"consensus_{name}_total", doc)
            for name, doc in (
                ("elections", "Elections this node started"),
                ("leader_changes", "Changes of the known leader"),
                ("proposals", "Proposals accepted by the core"),
                ("proposals_failed", "Proposals refused or failed"),
                ("reads", "Linearizable reads answered"),
                ("bad_frames", "Undecodable frames from peers"),
                ("refused_frames", "Well-formed peer frames the core refused (invalid fields), dropped"),
                ("entries_skipped", "Committed entries that could not be applied, skipped"),
                ("frames_dropped", "Frames dropped because the inbox was full"),
                ("snapshots_taken", "Snapshots taken"),
                ("snapshots_installed", "Snapshots installed from the leader"),
            )
        }
        self.fsyncs = g("consensus_storage_fsyncs_total", "fsync calls of the storage")
        self.fsync_total = g("consensus_storage_fsync_seconds_total", "Time spent in fsync")
        self.peer_up = g("consensus_peer_up", "1 when the failure detectors consider the peer up", ("peer",))
        self.peer_phi = g("consensus_peer_phi", "Phi-accrual suspicion level of the peer", ("peer",))
        self.peer_connected = g("consensus_peer_connected", "1 when a transport connection is up", ("peer",))
        self.peer_dropped = g("consensus_peer_frames_dropped_total", "Frames dropped on the send queue", ("peer",))
        self.peer_bad = g("consensus_peer_bad_frames_total", "Bad frames received from the peer", ("peer",))
        self.peer_port = {
            name: g(f"consensus_peer_port_{name}_total", doc)
            for name, doc in (
                ("rejected_connections", "Peer connections refused in the handshake (wrong cluster, id, TLS, ...)"),
                ("identity_refusals", "Peer certificates that did not name the node id they claimed"),
                ("evicted_handshakes", "Pending peer handshakes evicted for a newer connection"),
                ("dial_failures", "Failed attempts to connect to a peer"),
            )
        }
        self.http_errors = Counter("consensus_http_errors", "Error answers by code", ("code",), registry=r)
        self.client_connections = g("consensus_client_connections", "Client API connections open")
        self.client_connections_refused = g(
            "consensus_client_connections_refused_total", "Client API connections refused: client_connections_max reached"
        )

    def observe_connections(self, gate: Any) -> None:
        """Reads the client port's connection gate (`consensus.server.ConnectionGate`)."""
        self.client_connections.set(gate.open)
        self.client_connections_refused.set(gate.refused)

    def observe(self, name: str, seconds: float) -> None:
        self.latency[name].observe(seconds)

    def refresh(self, node: Any) -> None:
        status: Dict[str, Any] = node.status()
        self.term.set(status["term"])
        for role in ROLES:
            self.role.labels(role).set(1 if status["role"] == role else 0)
        self.leader.set(status["leader"])
        self.commit.set(status["commit"])
        self.applied.set(status["applied"])
        self.last_index.set(status["last_index"])
        self.snapshot_index.set(status["snapshot_index"])
        for name, gauge in self.counters.items():
            gauge.set(getattr(node.stats, name))
        for name, gauge in self.peer_port.items():
            value = getattr(node.transport, name, None)
            if isinstance(value, int):
                gauge.set(value)
        storage_stats = getattr(node.storage, "stats", None)
        if storage_stats is not None:
            s = storage_stats()
            self.fsyncs.set(s.get("fsyncs", 0))
            self.fsync_total.set(s.get("fsync_seconds_total", 0.0))
        for peer, health in status["peers"].items():
            label = str(peer)
            if "available" in health:
                self.peer_up.labels(label).set(1 if health["available"] else 0)
            if "phi" in health:
                self.peer_phi.labels(label).set(min(float(health["phi"]), 1e6))
            if "connected" in health:
                self.peer_connected.labels(label).set(1 if health["connected"] else 0)
            self.peer_dropped.labels(label).set(health.get("dropped", 0))
            self.peer_bad.labels(label).set(health.get("bad_frames", 0))

    def render(self, node: Any) -> bytes:
        self.refresh(node)
        return generate_latest(self.registry)


__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "ROLES",
    "NodeMetrics",
]
