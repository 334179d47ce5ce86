"""The service around a node: `consensus serve` (the process), its HTTP API for the built-in key-value
store, the client for that API, the command line, bearer-token authorization, Prometheus metrics and
the backup file of `consensus snapshot save`.
"""

from consensus.service._auth import ROUTE_ROLES, TokenTable
from consensus.service._cli import main
from consensus.service._client import ClientError, KVClient, SessionExpiredError, tls_context
from consensus.service._http import KVService
from consensus.service._metrics import NodeMetrics
from consensus.service._server import build_node, run

__all__ = [
    "ClientError",
    "KVClient",
    "KVService",
    "NodeMetrics",
    "ROUTE_ROLES",
    "SessionExpiredError",
    "TokenTable",
    "build_node",
    "main",
    "run",
    "tls_context",
]
