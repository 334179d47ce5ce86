"""Bearer tokens on the client API (docs/security.md): which role each route needs, and the check.

Roles are ordered ``read < write < admin``; a token of one role may do everything the roles
before it may. The route table below names every route the KV service serves; a route it does not
name needs ``admin`` (deny by default), so a route added later is closed until it is classified.

Tokens are compared in constant time: the presented token and every configured token are hashed
to the same length and compared with `hmac.compare_digest`, against all of them, with no early
exit. A token never appears in a log line, an error message or a metric.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Dict, Mapping, Optional, Tuple

from consensus.config import ROLES

READ, WRITE, ADMIN = (ROLES.index(name) for name in ("read", "write", "admin"))

#: (method, route pattern) -> the weakest role that may call it. HEAD is treated as GET.
ROUTE_ROLES: Dict[Tuple[str, str], int] = {
    ("GET", "/v1/kv/{key}"): READ,
    ("GET", "/v1/status"): READ,
    ("PUT", "/v1/kv/{key}"): WRITE,
    ("DELETE", "/v1/kv/{key}"): WRITE,
    ("POST", "/v1/kv/{key}/cas"): WRITE,
    ("POST", "/v1/sessions"): WRITE,
    ("GET", "/v1/members"): ADMIN,
    ("POST", "/v1/members"): ADMIN,
    ("POST", "/v1/members/{id}/promote"): ADMIN,
    ("DELETE", "/v1/members/{id}"): ADMIN,
    ("POST", "/v1/leader/transfer"): ADMIN,
    ("GET", "/v1/snapshot"): ADMIN,
    ("POST", "/v1/snapshot"): ADMIN,
}
METRICS_PATH = "/metrics"


def required_role(method: str, route: Optional[str]) -> int:
    """The weakest role allowed to call `method` on the route pattern `route` (admin if unknown)."""
    if route is None:
        return ADMIN
    if method == "HEAD":
        method = "GET"
    return ROUTE_ROLES.get((method, route), ADMIN)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenTable:
    """The configured tokens, kept only as SHA-256 digests with their roles."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._entries: Tuple[Tuple[bytes, int], ...] = tuple(
            (_digest(token), ROLES.index(role)) for token, role in tokens.items()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"TokenTable({len(self._entries)} tokens)"

    def role_of(self, token: str) -> Optional[int]:
        """The role of `token`, or None; the time taken does not depend on which token matched."""
        presented = _digest(token)
        found: Optional[int] = None
        for digest, role in self._entries:
            if hmac.compare_digest(presented, digest):
                found = role
        return found


def bearer_token(header: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


__all__ = ["ADMIN", "READ", "ROUTE_ROLES", "TokenTable", "WRITE", "bearer_token", "required_role"]
