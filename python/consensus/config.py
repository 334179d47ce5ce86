"""Node configuration: a TOML file (docs/design.md §3) plus `CONSENSUS_*` environment overrides.

`load_config(path)` reads the file, applies overrides from the environment (an override beats the
file) and validates everything. Every problem raises `consensus.ConfigError` whose `.field` names the
offending field (`"fsync"`, `"members[1].peer"`, `"tls.cert"`, `"<file>"` for an unreadable file)
and whose message also names where the value came from (the file or the environment variable).

Overrides: `CONSENSUS_<FIELD>` for every top-level scalar field (`CONSENSUS_ID`, `CONSENSUS_FSYNC`,
`CONSENSUS_FORWARD` with true/false/1/0/yes/no, ...), and `CONSENSUS_TLS_CERT`, `CONSENSUS_TLS_KEY`,
`CONSENSUS_TLS_CA`, `CONSENSUS_CLIENT_TLS_CERT`, `CONSENSUS_CLIENT_TLS_KEY`, `CONSENSUS_CLIENT_TLS_CA` and
`CONSENSUS_AUTH_TOKENS_FILE`. An empty value of an optional field (`CONSENSUS_PEER_LISTEN=`) unsets it. Other
`CONSENSUS_*` variables are ignored (tools may define their own). Relative paths are kept as written
(relative to the working directory).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from consensus import defaults, protocols
from consensus._core import ConfigError
from consensus.errors import config_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

__all__ = [
    "ENV_PREFIX",
    "LOG_LEVELS",
    "AuthConfig",
    "ClientTlsConfig",
    "Member",
    "NodeConfig",
    "ROLES",
    "TlsConfig",
    "dump_config",
    "load_config",
    "parse_config",
    "parse_address",
    "toml_value",
]

ENV_PREFIX = "CONSENSUS_"
#: The protocols this version runs (the registry's, `consensus.protocols.PROTOCOLS`).
PROTOCOLS = tuple(protocols.PROTOCOLS)
FSYNC_MODES = ("always", "batch", "never")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: How a node starts on an EMPTY data_dir (like etcd's initial-cluster-state): "new" bootstraps a new
#: cluster, "existing" joins a running one (`serve --join`). Ignored once data_dir holds state
#: (consensus.datadir; docs/operations.md, "Data directories and initial_state").
INITIAL_STATES = ("new", "existing")
#: A config file larger than this is refused before parsing.
CONFIG_FILE_BYTES_MAX = 1 << 20
CLUSTER_ID_BYTES_MAX = defaults.CLUSTER_ID_BYTES_MAX
MEMBERS_MAX = 1024

#: Inclusive bounds of the integer fields.
INT_BOUNDS: Dict[str, Tuple[int, int]] = {
    "id": (1, (1 << 63) - 1),
    "tick_ms": (1, 60_000),
    "election_ticks": (2, 100_000),
    "heartbeat_ticks": (1, 100_000),
    "request_timeout_ms": (1, 3_600_000),
    "max_value_bytes": (1, 1 << 29),
    "max_frame_bytes": (1 << 10, 1 << 30),
    "send_queue_frames": (1, 1 << 20),
    "max_pending_requests": (1, 10_000_000),
    "snapshot_entries": (0, 1 << 40),
    "client_connections_max": (1, 1_000_000),
    "client_idle_timeout_ms": (100, 3_600_000),
}
PHI_THRESHOLD_MAX = 1000.0

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
#: Client roles, weakest first: each role may do everything the ones before it may (docs/security.md).
ROLES = ("read", "write", "admin")
TOKENS_MAX = 10_000
TOKEN_CHARS_MIN = 16
TOKEN_CHARS_MAX = 4096
#: RFC 6750's b64token: what an `Authorization: Bearer` header can carry.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")


def _fail(field: str, reason: str, source: str = "") -> ConfigError:
    where = f" ({source})" if source else ""
    return config_error(field, f"{reason}{where}")


def parse_address(text: object, field: str = "address", *, allow_port_zero: bool = False) -> Tuple[str, int]:
    """Split `"host:port"` (IPv6 in brackets) into `(host, port)`; ConfigError naming `field` otherwise.
    The one parser of addresses, for members, listeners and the CLI. Port 0 ("any free port") only
    with `allow_port_zero`, for an address to listen on."""
    if not isinstance(text, str):
        raise _fail(field, f"must be a 'host:port' string, got {type(text).__name__}")
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise _fail(field, f"{text!r} is not '[ipv6]:port'")
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _fail(field, f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise _fail(field, f"{text!r} is not 'host:port'")
        if ":" in host:
            raise _fail(field, f"{text!r}: an IPv6 host must be in brackets, '[{host}]:port'")
        if not _HOSTNAME.match(host):
            raise _fail(field, f"{host!r} is not a valid host name or address")
    low = 0 if allow_port_zero else 1
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise _fail(field, f"{text!r}: port must be a number {low}..65535")
    port = int(port_text)
    if not low <= port <= 65535:
        raise _fail(field, f"{text!r}: port must be in {low}..65535")
    return host, port


@dataclass(frozen=True)
class Member:
    """One cluster member as this node reaches it."""

    id: int
    #: Peer transport address, "host:port".
    peer: str
    #: HTTP client API address, "host:port".
    client: str


@dataclass(frozen=True)
class TlsConfig:
    """Mutual TLS between peers: this node's certificate and key, and the CA that signs all peers."""

    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class ClientTlsConfig:
    """HTTPS on the client API: the node's certificate and key; with `ca`, clients must present a
    certificate that CA signed (and the node checks the leader's certificate with it when forwarding)."""

    cert: str
    key: str
    ca: Optional[str] = None


@dataclass(frozen=True)
class AuthConfig:
    """Bearer tokens of the client API, read from `tokens_file` when the config is loaded:
    `tokens` maps each token to its role (one of `ROLES`)."""

    tokens_file: str
    tokens: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuthConfig):
            return NotImplemented
        return self.tokens_file == other.tokens_file and dict(self.tokens) == dict(other.tokens)

    def __hash__(self) -> int:
        return hash(self.tokens_file)


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to run; validated on construction (ConfigError naming the field)."""

    id: int
    data_dir: str
    cluster_id: str
    members: Tuple[Member, ...]
    protocol: str = "raft"
    tick_ms: int = defaults.TICK_MS
    election_ticks: int = defaults.ELECTION_TICKS
    heartbeat_ticks: int = defaults.HEARTBEAT_TICKS
    fsync: str = "always"
    request_timeout_ms: int = defaults.REQUEST_TIMEOUT_MS
    forward: bool = True
    peer_listen: Optional[str] = None
    client_listen: Optional[str] = None
    tls: Optional[TlsConfig] = None
    max_value_bytes: int = 1 << 20
    max_frame_bytes: int = defaults.FRAME_BYTES_MAX
    send_queue_frames: int = 4096
    max_pending_requests: int = defaults.MAX_PENDING_REQUESTS
    #: Take a snapshot every N applied entries (0: never).
    snapshot_entries: int = defaults.SNAPSHOT_ENTRIES
    pre_vote: bool = True
    check_quorum: bool = True
    phi_threshold: float = defaults.PHI_THRESHOLD
    log_level: str = "info"
    #: "new" | "existing": what an empty data_dir means (INITIAL_STATES).
    initial_state: str = "new"
    #: HTTPS on the client API (None: plain HTTP).
    client_tls: Optional[ClientTlsConfig] = None
    #: Bearer tokens on the client API (None: every client may do everything).
    auth: Optional[AuthConfig] = None
    #: With [auth]: whether GET /metrics is served without a token (otherwise it needs a read token).
    metrics_public: bool = False
    #: Client connections served at once; one more is answered 503 and closed.
    client_connections_max: int = 1024
    #: A client connection with no request in progress (idle, or still sending its request head)
    #: is closed after this long.
    client_idle_timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        if isinstance(self.members, list):
            object.__setattr__(self, "members", tuple(self.members))
        if isinstance(self.phi_threshold, int) and not isinstance(self.phi_threshold, bool):
            object.__setattr__(self, "phi_threshold", float(self.phi_threshold))
        _validate(self)

    # ------------------------------------------------------------------ helpers

    def member(self, member_id: int) -> Member:
        """The member with id `member_id`; KeyError if there is none."""
        for member in self.members:
            if member.id == member_id:
                return member
        raise KeyError(member_id)

    @property
    def self_member(self) -> Member:
        return self.member(self.id)

    @property
    def peer_listen_address(self) -> Tuple[str, int]:
        """Where to listen for peers: `peer_listen`, else this node's member `peer` address."""
        return parse_address(self.peer_listen or self.self_member.peer, "peer_listen")

    @property
    def client_listen_address(self) -> Tuple[str, int]:
        """Where to listen for clients: `client_listen`, else this node's member `client` address."""
        return parse_address(self.client_listen or self.self_member.client, "client_listen")

    @property
    def peers(self) -> Dict[int, str]:
        """Peer address of every other member, by id."""
        return {m.id: m.peer for m in self.members if m.id != self.id}

    @property
    def member_ids(self) -> List[int]:
        return [m.id for m in self.members]

    @property
    def election_timeout_seconds(self) -> float:
        """The base election timeout (`election_ticks * tick_ms`) in seconds."""
        return self.election_ticks * self.tick_ms / 1000.0

    @property
    def heartbeat_interval_seconds(self) -> float:
        return self.heartbeat_ticks * self.tick_ms / 1000.0


# ---------------------------------------------------------------------------- validation

_STR_FIELDS = ("protocol", "data_dir", "cluster_id", "fsync", "log_level", "initial_state")
_BOOL_FIELDS = ("forward", "pre_vote", "check_quorum", "metrics_public")
_OPTIONAL_ADDRESS_FIELDS = ("peer_listen", "client_listen")
_FLOAT_FIELDS = ("phi_threshold",)
#: Top-level scalar fields: the ones the environment can override.
SCALAR_FIELDS: Tuple[str, ...] = (
    "id",
    "protocol",
    "data_dir",
    "cluster_id",
    "tick_ms",
    "election_ticks",
    "heartbeat_ticks",
    "fsync",
    "request_timeout_ms",
    "forward",
    "peer_listen",
    "client_listen",
    "max_value_bytes",
    "max_frame_bytes",
    "send_queue_frames",
    "max_pending_requests",
    "snapshot_entries",
    "pre_vote",
    "check_quorum",
    "phi_threshold",
    "log_level",
    "initial_state",
    "metrics_public",
    "client_connections_max",
    "client_idle_timeout_ms",
)
_TLS_FIELDS = ("cert", "key", "ca")
_CLIENT_TLS_FIELDS = ("cert", "key", "ca")
_AUTH_FIELDS = ("tokens_file",)
#: Top-level tables: `members` and the optional settings tables.
_TABLE_FIELDS = ("members", "tls", "client_tls", "auth")
_MEMBER_FIELDS = ("id", "peer", "client")


def _check_int(value: object, field: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"must be an integer, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise _fail(field, f"must be in {low}..{high}, got {value}")


def _check_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(field, f"must be a string, got {type(value).__name__} {value!r}")
    if "\x00" in value:
        raise _fail(field, "must not contain NUL characters")
    return value


def _check_choice(value: object, field: str, choices: Tuple[str, ...]) -> None:
    _check_str(value, field)
    if value not in choices:
        raise _fail(field, f"must be one of {', '.join(choices)}, got {value!r}")


def _validate(cfg: NodeConfig) -> None:
    for name in INT_BOUNDS:
        low, high = INT_BOUNDS[name]
        _check_int(getattr(cfg, name), name, low, high)
    for name in _BOOL_FIELDS:
        value = getattr(cfg, name)
        if not isinstance(value, bool):
            raise _fail(name, f"must be a boolean, got {type(value).__name__} {value!r}")
    _check_choice(cfg.protocol, "protocol", PROTOCOLS)
    _check_choice(cfg.fsync, "fsync", FSYNC_MODES)
    _check_choice(cfg.log_level, "log_level", LOG_LEVELS)
    _check_choice(cfg.initial_state, "initial_state", INITIAL_STATES)
    if not _check_str(cfg.data_dir, "data_dir"):
        raise _fail("data_dir", "must not be empty")
    cluster_id = _check_str(cfg.cluster_id, "cluster_id")
    if not cluster_id:
        raise _fail("cluster_id", "must not be empty")
    try:
        size = len(cluster_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise _fail("cluster_id", "must be valid UTF-8") from None
    if size > CLUSTER_ID_BYTES_MAX:
        raise _fail("cluster_id", f"is {size} bytes, more than {CLUSTER_ID_BYTES_MAX}")

    phi = cfg.phi_threshold
    if isinstance(phi, bool) or not isinstance(phi, float):
        raise _fail("phi_threshold", f"must be a number, got {type(phi).__name__} {phi!r}")
    if not (math.isfinite(phi) and 0.0 < phi <= PHI_THRESHOLD_MAX):
        raise _fail("phi_threshold", f"must be in (0, {PHI_THRESHOLD_MAX:g}], got {phi!r}")

    if cfg.heartbeat_ticks >= cfg.election_ticks:
        raise _fail(
            "heartbeat_ticks",
            f"must be less than election_ticks ({cfg.heartbeat_ticks} >= {cfg.election_ticks})",
        )
    if cfg.max_value_bytes > cfg.max_frame_bytes // 2:
        raise _fail(
            "max_value_bytes",
            f"must be at most half of max_frame_bytes ({cfg.max_value_bytes} > {cfg.max_frame_bytes // 2})",
        )

    for name in _OPTIONAL_ADDRESS_FIELDS:
        value = getattr(cfg, name)
        if value is not None:
            parse_address(value, name)

    _validate_members(cfg)
    if cfg.tls is not None:
        if not isinstance(cfg.tls, TlsConfig):
            raise _fail("tls", f"must be a TlsConfig, got {type(cfg.tls).__name__}")
        for name in _TLS_FIELDS:
            path = _check_str(getattr(cfg.tls, name), f"tls.{name}")
            if not path:
                raise _fail(f"tls.{name}", "must not be empty")
            if not os.path.isfile(path):
                raise _fail(f"tls.{name}", f"file {path!r} does not exist")
    _validate_client_tls(cfg.client_tls)
    _validate_auth(cfg.auth)


def _check_file(value: object, field: str) -> None:
    path = _check_str(value, field)
    if not path:
        raise _fail(field, "must not be empty")
    if not os.path.isfile(path):
        raise _fail(field, f"file {path!r} does not exist")


def _validate_client_tls(client_tls: object) -> None:
    if client_tls is None:
        return
    if not isinstance(client_tls, ClientTlsConfig):
        raise _fail("client_tls", f"must be a ClientTlsConfig, got {type(client_tls).__name__}")
    _check_file(client_tls.cert, "client_tls.cert")
    _check_file(client_tls.key, "client_tls.key")
    if client_tls.ca is not None:
        _check_file(client_tls.ca, "client_tls.ca")


def _validate_auth(auth: object) -> None:
    if auth is None:
        return
    if not isinstance(auth, AuthConfig):
        raise _fail("auth", f"must be an AuthConfig, got {type(auth).__name__}")
    _check_str(auth.tokens_file, "auth.tokens_file")
    _validate_tokens(auth.tokens, f"tokens file {auth.tokens_file!r}")


def _validate_tokens(tokens: object, where: str) -> None:
    """Checks a token table without ever putting a token into an error message."""
    if not isinstance(tokens, Mapping):
        raise _fail("auth.tokens", f"must be a table ([tokens]) in {where}, got {type(tokens).__name__}")
    if not tokens:
        raise _fail("auth.tokens", f"{where} lists no token: every request would be refused")
    if len(tokens) > TOKENS_MAX:
        raise _fail("auth.tokens", f"{where}: at most {TOKENS_MAX} tokens")
    for position, (token, role) in enumerate(tokens.items()):
        field = f"auth.tokens[{position}]"
        if not isinstance(token, str) or not token:
            raise _fail(field, f"{where}: the token (entry {position + 1}) is empty")
        if not TOKEN_CHARS_MIN <= len(token) <= TOKEN_CHARS_MAX:
            raise _fail(
                field,
                f"{where}: the token (entry {position + 1}) must be {TOKEN_CHARS_MIN} to {TOKEN_CHARS_MAX} characters",
            )
        if not _TOKEN.match(token):
            raise _fail(field, f"{where}: the token (entry {position + 1}) may only use A-Z a-z 0-9 - . _ ~ + / =")
        if not isinstance(role, str) or role not in ROLES:
            # The value is not shown: a file written the wrong way round holds a token there.
            raise _fail(field, f"{where}: the role of entry {position + 1} must be one of {', '.join(ROLES)}")


def _validate_members(cfg: NodeConfig) -> None:
    members = cfg.members
    if not isinstance(members, tuple):
        raise _fail("members", f"must be a list of members, got {type(members).__name__}")
    if not members:
        raise _fail("members", "must list at least one member")
    if len(members) > MEMBERS_MAX:
        raise _fail("members", f"at most {MEMBERS_MAX} members")
    seen_ids: Dict[int, int] = {}
    seen_peers: Dict[str, int] = {}
    seen_clients: Dict[str, int] = {}
    for position, member in enumerate(members):
        prefix = f"members[{position}]"
        if not isinstance(member, Member):
            raise _fail(prefix, f"must be a Member, got {type(member).__name__}")
        _check_int(member.id, f"{prefix}.id", 1, INT_BOUNDS["id"][1])
        if member.id in seen_ids:
            raise _fail(f"{prefix}.id", f"id {member.id} is already used by members[{seen_ids[member.id]}]")
        seen_ids[member.id] = position
        for name, seen in (("peer", seen_peers), ("client", seen_clients)):
            address = getattr(member, name)
            parse_address(address, f"{prefix}.{name}")
            if address in seen:
                raise _fail(f"{prefix}.{name}", f"{address!r} is already used by members[{seen[address]}]")
            seen[address] = position
    if cfg.id not in seen_ids:
        raise _fail("id", f"this node's id {cfg.id} is not among the members {sorted(seen_ids)}")


# ---------------------------------------------------------------------------- parsing


def _env_value(name: str, text: str, variable: str) -> Any:
    """Convert one environment variable's text to the type of field `name`."""
    source = f"environment variable {variable}"
    stripped = text.strip()
    if name in INT_BOUNDS:
        try:
            return int(stripped, 10)
        except ValueError:
            raise _fail(name, f"must be an integer, got {text!r}", source) from None
    if name in _BOOL_FIELDS:
        lowered = stripped.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _fail(name, f"must be true/false/1/0/yes/no, got {text!r}", source)
    if name in _FLOAT_FIELDS:
        try:
            return float(stripped)
        except ValueError:
            raise _fail(name, f"must be a number, got {text!r}", source) from None
    if name in _OPTIONAL_ADDRESS_FIELDS:
        return stripped or None
    return text


def _reject_unknown(table: Mapping[str, Any], allowed: Tuple[str, ...], prefix: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            field = f"{prefix}{key}"
            raise _fail(field, f"unknown setting (known: {', '.join(allowed)})", source)


def _table(
    data: Mapping[str, Any], env: Mapping[str, str], name: str, allowed: Tuple[str, ...], source: str
) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The settings of table `name` from the file, then from `CONSENSUS_<NAME>_<SETTING>`; and where
    each came from."""
    raw = data.get(name)
    values: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    if raw is not None:
        if not isinstance(raw, Mapping):
            raise _fail(name, f"must be a table ([{name}])", source)
        _reject_unknown(raw, allowed, f"{name}.", source)
        for key in allowed:
            if key in raw:
                values[key] = raw[key]
                sources[key] = source
    for key in allowed:
        variable = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
        if variable in env:
            values[key] = env[variable]
            sources[key] = f"environment variable {variable}"
    return values, sources


def load_tokens(path: object) -> Dict[str, str]:
    """Reads a tokens file (`[tokens]` table of `"<token>" = "read" | "write" | "admin"`);
    ConfigError naming `auth.tokens_file` or `auth.tokens[...]`, never showing a token."""
    path = _check_str(path, "auth.tokens_file")
    if not path:
        raise _fail("auth.tokens_file", "must not be empty")
    data = _read_toml(path, "auth.tokens_file")
    _reject_unknown(data, ("tokens",), "auth.", path)
    if "tokens" not in data:
        raise _fail("auth.tokens", f"tokens file {path!r} has no [tokens] table")
    tokens = data["tokens"]
    _validate_tokens(tokens, f"tokens file {path!r}")
    return dict(tokens)


def parse_config(
    data: Mapping[str, Any], env: Optional[Mapping[str, str]] = None, *, source: str = "<config>"
) -> NodeConfig:
    """Build a NodeConfig from parsed TOML `data` and environment overrides (`env`, default os.environ)."""
    if env is None:
        env = os.environ
    if not isinstance(data, Mapping):
        raise _fail("<file>", f"top level must be a table, got {type(data).__name__}", source)
    _reject_unknown(data, SCALAR_FIELDS + _TABLE_FIELDS, "", source)
    values: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    for name in SCALAR_FIELDS:
        if name in data:
            values[name] = data[name]
            sources[name] = source
    for name in SCALAR_FIELDS:
        variable = ENV_PREFIX + name.upper()
        if variable in env:
            values[name] = _env_value(name, env[variable], variable)
            sources[name] = f"environment variable {variable}"

    members_raw = data.get("members")
    members: List[Member] = []
    if members_raw is None:
        raise _fail("members", "missing: list the cluster's members with [[members]] tables", source)
    if not isinstance(members_raw, list):
        raise _fail("members", "must be an array of tables ([[members]])", source)
    for position, table in enumerate(members_raw):
        prefix = f"members[{position}]"
        if not isinstance(table, Mapping):
            raise _fail(prefix, "must be a table", source)
        _reject_unknown(table, _MEMBER_FIELDS, f"{prefix}.", source)
        for name in _MEMBER_FIELDS:
            if name not in table:
                raise _fail(f"{prefix}.{name}", "missing", source)
        members.append(Member(id=table["id"], peer=table["peer"], client=table["client"]))

    tls_values, tls_sources = _table(data, env, "tls", _TLS_FIELDS, source)
    tls: Optional[TlsConfig] = None
    if tls_values:
        for name in _TLS_FIELDS:
            if name not in tls_values:
                raise _fail(f"tls.{name}", "missing (cert, key and ca are all required for TLS)", source)
        tls = TlsConfig(cert=tls_values["cert"], key=tls_values["key"], ca=tls_values["ca"])
    client_values, client_sources = _table(data, env, "client_tls", _CLIENT_TLS_FIELDS, source)
    client_tls: Optional[ClientTlsConfig] = None
    if client_values or "client_tls" in data:  # an empty table is a mistake, not "off"
        for name in ("cert", "key"):
            if name not in client_values:
                raise _fail(f"client_tls.{name}", "missing (cert and key are required for HTTPS)", source)
        client_tls = ClientTlsConfig(**client_values)
    auth_values, auth_sources = _table(data, env, "auth", _AUTH_FIELDS, source)
    auth: Optional[AuthConfig] = None
    if auth_values or "auth" in data:  # an empty [auth] must not leave the API open
        if "tokens_file" not in auth_values:
            raise _fail("auth.tokens_file", "missing", source)
        auth = AuthConfig(auth_values["tokens_file"], load_tokens(auth_values["tokens_file"]))
    table_sources = {f"tls.{k}": v for k, v in tls_sources.items()}
    table_sources.update({f"client_tls.{k}": v for k, v in client_sources.items()})
    table_sources.update({f"auth.{k}": v for k, v in auth_sources.items()})

    for name in ("id", "data_dir", "cluster_id"):
        if name not in values:
            raise _fail(name, "missing (required)", source)
    try:
        return NodeConfig(members=tuple(members), tls=tls, client_tls=client_tls, auth=auth, **values)
    except ConfigError as exc:
        field = exc.field or ""
        origin = sources.get(field) or table_sources.get(field) or source
        raise _fail(field, str(exc).split(": ", 1)[-1], origin) from None


def _read_toml(source: str, field: str = "<file>") -> Dict[str, Any]:
    """A TOML file's top-level table; ConfigError naming `field` if it cannot be read or parsed."""
    try:
        with open(source, "rb") as handle:
            raw = handle.read(CONFIG_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise _fail(field, f"cannot read {source!r}: {exc.strerror or exc}") from None
    if len(raw) > CONFIG_FILE_BYTES_MAX:
        raise _fail(field, f"{source!r} is larger than {CONFIG_FILE_BYTES_MAX} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(field, f"{source!r} is not UTF-8 (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(field, f"{source!r} is not valid TOML: {exc}") from None


def load_config(path: Union[str, "os.PathLike[str]"], env: Optional[Mapping[str, str]] = None) -> NodeConfig:
    """Read a TOML file, apply `CONSENSUS_*` overrides from `env` (default os.environ), validate."""
    source = os.fspath(path)
    return parse_config(_read_toml(source), env, source=source)


# ---------------------------------------------------------------------------- dumping


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_value(value: object) -> str:
    """`value` (bool, int, float or str) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dump_config(cfg: NodeConfig) -> str:
    """TOML text that `load_config` reads back to an equal NodeConfig (unset optionals are omitted)."""
    lines: List[str] = []
    for name in SCALAR_FIELDS:
        value = getattr(cfg, name)
        if value is not None:
            lines.append(f"{name} = {toml_value(value)}")
    for member in cfg.members:
        lines.append("")
        lines.append("[[members]]")
        for name in _MEMBER_FIELDS:
            lines.append(f"{name} = {toml_value(getattr(member, name))}")
    tables = (("tls", cfg.tls, _TLS_FIELDS), ("client_tls", cfg.client_tls, _CLIENT_TLS_FIELDS), ("auth", cfg.auth, _AUTH_FIELDS))
    for table, value, names in tables:
        if value is None:
            continue
        lines.append("")
        lines.append(f"[{table}]")
        for name in names:
            if getattr(value, name) is not None:
                lines.append(f"{name} = {toml_value(getattr(value, name))}")
    return "\n".join(lines) + "\n"


# Every top-level scalar field is overridable and every field is either a scalar or a table.
assert set(SCALAR_FIELDS) | set(_TABLE_FIELDS) == {f.name for f in fields(NodeConfig)}
