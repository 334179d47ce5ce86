"""Node configuration: TOML parsing, environment overrides, validation naming the bad field."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from consensus import ConfigError
from consensus.config import PROTOCOLS as PROTOCOLS_ACCEPTED
from consensus.config import (
    AuthConfig,
    ClientTlsConfig,
    Member,
    NodeConfig,
    TlsConfig,
    dump_config,
    load_config,
    parse_config,
)

BASE = """\
id = 1
protocol = "raft"
data_dir = "/var/lib/consensus/1"
cluster_id = "demo"
tick_ms = 10
election_ticks = 10
heartbeat_ticks = 1
fsync = "always"
request_timeout_ms = 5000
forward = true
[[members]]
id = 1
peer = "127.0.0.1:9001"
client = "127.0.0.1:8001"
[[members]]
id = 2
peer = "127.0.0.1:9002"
client = "127.0.0.1:8002"
[[members]]
id = 3
peer = "127.0.0.1:9003"
client = "127.0.0.1:8003"
"""


def base_data() -> Dict[str, Any]:
    return {
        "id": 1,
        "data_dir": "/var/lib/consensus/1",
        "cluster_id": "demo",
        "members": [
            {"id": 1, "peer": "127.0.0.1:9001", "client": "127.0.0.1:8001"},
            {"id": 2, "peer": "127.0.0.1:9002", "client": "127.0.0.1:8002"},
            {"id": 3, "peer": "127.0.0.1:9003", "client": "127.0.0.1:8003"},
        ],
    }


@pytest.fixture
def tls_files(tmp_path: Path) -> Dict[str, str]:
    paths = {}
    for name in ("cert", "key", "ca"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
        paths[name] = str(path)
    return paths


READ_TOKEN = "r" * 16 + "-read-token"
ADMIN_TOKEN = "A0+/._~-" * 3 + "=="


def write_tokens(tmp_path: Path, body: str, *, header: str = "[tokens]\n") -> str:
    path = tmp_path / "tokens.toml"
    path.write_text(header + body, encoding="utf-8")
    return str(path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_design_example_file_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE), env={})
    assert cfg.id == 1 and cfg.protocol == "raft" and cfg.cluster_id == "demo"
    assert cfg.members == (
        Member(1, "127.0.0.1:9001", "127.0.0.1:8001"),
        Member(2, "127.0.0.1:9002", "127.0.0.1:8002"),
        Member(3, "127.0.0.1:9003", "127.0.0.1:8003"),
    )
    assert cfg.tls is None and cfg.peer_listen is None and cfg.snapshot_entries == 100_000
    assert cfg.self_member == cfg.member(1)
    assert cfg.peers == {2: "127.0.0.1:9002", 3: "127.0.0.1:9003"}
    assert cfg.peer_listen_address == ("127.0.0.1", 9001)
    assert cfg.client_listen_address == ("127.0.0.1", 8001)
    assert cfg.election_timeout_seconds == pytest.approx(0.1)
    with pytest.raises(KeyError):
        cfg.member(9)


def test_listen_overrides_replace_the_advertised_addresses(tmp_path: Path) -> None:
    text = BASE.replace('forward = true', 'forward = true\npeer_listen = "0.0.0.0:7001"\nclient_listen = "[::]:7002"')
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.peer_listen_address == ("0.0.0.0", 7001)
    assert cfg.client_listen_address == ("::", 7002)


def test_full_config_round_trips_through_dump_and_load(tmp_path: Path, tls_files: Dict[str, str]) -> None:
    tokens_path = write_tokens(tmp_path, f'"{READ_TOKEN}" = "read"\n"{ADMIN_TOKEN}" = "admin"\n')
    cfg = NodeConfig(
        id=2,
        protocol="paxos",
        data_dir='/data/"quoted"\\dir\tüñï',
        cluster_id="prod-é",
        members=(
            Member(1, "[::1]:9001", "a.example:8001"),
            Member(2, "10.0.0.2:9002", "b.example:8002"),
        ),
        tick_ms=5,
        election_ticks=20,
        heartbeat_ticks=3,
        fsync="batch",
        request_timeout_ms=1234,
        forward=False,
        peer_listen="0.0.0.0:9102",
        client_listen="0.0.0.0:8102",
        tls=TlsConfig(**tls_files),
        max_value_bytes=4096,
        max_frame_bytes=1 << 20,
        send_queue_frames=17,
        max_pending_requests=99,
        snapshot_entries=0,
        pre_vote=False,
        check_quorum=False,
        phi_threshold=12.5,
        log_level="debug",
        client_tls=ClientTlsConfig(cert=tls_files["cert"], key=tls_files["key"], ca=tls_files["ca"]),
        auth=AuthConfig(tokens_path, {READ_TOKEN: "read", ADMIN_TOKEN: "admin"}),
        metrics_public=True,
        client_connections_max=7,
        client_idle_timeout_ms=2500,
    )
    text = dump_config(cfg)
    loaded = load_config(write(tmp_path, text), env={})
    assert loaded == cfg
    assert dump_config(loaded) == text


def test_environment_overrides_beat_the_file_for_each_type(tmp_path: Path, tls_files: Dict[str, str]) -> None:
    env = {
        "CONSENSUS_ID": "3",  # int
        "CONSENSUS_DATA_DIR": "/elsewhere",  # str
        "CONSENSUS_FSYNC": "never",  # choice
        "CONSENSUS_FORWARD": "no",  # bool
        "CONSENSUS_PRE_VOTE": "0",
        "CONSENSUS_CHECK_QUORUM": "FALSE",
        "CONSENSUS_PHI_THRESHOLD": "3.5",  # float
        "CONSENSUS_PEER_LISTEN": "0.0.0.0:9999",  # optional address
        "CONSENSUS_SNAPSHOT_ENTRIES": "0",
        "CONSENSUS_TLS_CERT": tls_files["cert"],
        "CONSENSUS_TLS_KEY": tls_files["key"],
        "CONSENSUS_TLS_CA": tls_files["ca"],
        "CONSENSUS_SOMETHING_ELSE": "ignored",
        "UNRELATED": "x",
    }
    cfg = load_config(write(tmp_path, BASE), env=env)
    assert cfg.id == 3 and cfg.self_member.peer == "127.0.0.1:9003"
    assert cfg.data_dir == "/elsewhere"
    assert cfg.fsync == "never"
    assert cfg.forward is False and cfg.pre_vote is False and cfg.check_quorum is False
    assert cfg.phi_threshold == 3.5
    assert cfg.peer_listen == "0.0.0.0:9999"
    assert cfg.snapshot_entries == 0
    assert cfg.tls == TlsConfig(**tls_files)


@pytest.mark.parametrize("text,expected", [("true", True), ("1", True), ("yes", True), ("Yes", True),
                                           ("false", False), ("0", False), ("no", False)])
def test_boolean_environment_spellings(text: str, expected: bool) -> None:
    data = base_data()
    data["forward"] = not expected
    assert parse_config(data, {"CONSENSUS_FORWARD": text}).forward is expected


def test_empty_environment_value_unsets_an_optional_address() -> None:
    data = base_data()
    data["client_listen"] = "0.0.0.0:1"
    assert parse_config(data, {"CONSENSUS_CLIENT_LISTEN": ""}).client_listen is None


def test_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENSUS_LOG_LEVEL", "warning")
    assert parse_config(base_data()).log_level == "warning"


def test_integer_in_toml_is_accepted_for_a_float_field() -> None:
    data = base_data()
    data["phi_threshold"] = 9
    cfg = parse_config(data, {})
    assert cfg.phi_threshold == 9.0 and isinstance(cfg.phi_threshold, float)


# ------------------------------------------------------------------------ invalid fields


def with_(key: str, value: Any) -> Dict[str, Any]:
    data = base_data()
    data[key] = value
    return data


def with_member(position: int, key: str, value: Any) -> Dict[str, Any]:
    data = base_data()
    data["members"][position][key] = value
    return data


def without(key: str) -> Dict[str, Any]:
    data = base_data()
    del data[key]
    return data


def without_member_key(position: int, key: str) -> Dict[str, Any]:
    data = base_data()
    del data["members"][position][key]
    return data


INVALID_FILES: List[Any] = [
    # (data, field)
    (with_("fsynk", "always"), "fsynk"),
    (with_("id", 0), "id"),
    (with_("id", -1), "id"),
    (with_("id", True), "id"),
    (with_("id", "1"), "id"),
    (with_("id", 4), "id"),  # not among the members
    (without("id"), "id"),
    (with_("protocol", "pbft"), "protocol"),
    (with_("protocol", 1), "protocol"),
    (with_("fsync", "sometimes"), "fsync"),
    (with_("data_dir", ""), "data_dir"),
    (without("data_dir"), "data_dir"),
    (with_("cluster_id", ""), "cluster_id"),
    (with_("cluster_id", "x" * 256), "cluster_id"),
    (with_("cluster_id", "é" * 128), "cluster_id"),  # 256 UTF-8 bytes
    (without("cluster_id"), "cluster_id"),
    (with_("tick_ms", 0), "tick_ms"),
    (with_("tick_ms", 1.5), "tick_ms"),
    (with_("election_ticks", 0), "election_ticks"),
    (with_("heartbeat_ticks", 0), "heartbeat_ticks"),
    (with_("heartbeat_ticks", 10), "heartbeat_ticks"),  # not below election_ticks
    (with_("request_timeout_ms", 0), "request_timeout_ms"),
    (with_("forward", 1), "forward"),
    (with_("forward", "true"), "forward"),
    (with_("pre_vote", None), "pre_vote"),
    (with_("check_quorum", 0), "check_quorum"),
    (with_("peer_listen", "0.0.0.0"), "peer_listen"),
    (with_("peer_listen", "0.0.0.0:0"), "peer_listen"),
    (with_("client_listen", "::1:80"), "client_listen"),
    (with_("client_listen", 8001), "client_listen"),
    (with_("max_value_bytes", 0), "max_value_bytes"),
    (with_("max_value_bytes", 33 << 20), "max_value_bytes"),  # above max_frame_bytes / 2
    (with_("max_frame_bytes", 1 << 40), "max_frame_bytes"),
    (with_("max_frame_bytes", 100), "max_frame_bytes"),
    (with_("send_queue_frames", 0), "send_queue_frames"),
    (with_("max_pending_requests", 0), "max_pending_requests"),
    (with_("snapshot_entries", -1), "snapshot_entries"),
    (with_("phi_threshold", 0.0), "phi_threshold"),
    (with_("phi_threshold", float("nan")), "phi_threshold"),
    (with_("phi_threshold", float("inf")), "phi_threshold"),
    (with_("phi_threshold", True), "phi_threshold"),
    (with_("log_level", "verbose"), "log_level"),
    (with_("members", []), "members"),
    (with_("members", {"id": 1}), "members"),
    (without("members"), "members"),
    (with_member(1, "peer", "127.0.0.1:70000"), "members[1].peer"),
    (with_member(1, "peer", "127.0.0.1:"), "members[1].peer"),
    (with_member(1, "peer", ":9000"), "members[1].peer"),
    (with_member(1, "peer", "[::1:9000"), "members[1].peer"),
    (with_member(1, "peer", "[zz]:9000"), "members[1].peer"),
    (with_member(1, "peer", "bad host:9000"), "members[1].peer"),
    (with_member(1, "peer", "127.0.0.1:9001"), "members[1].peer"),  # duplicate of members[0]
    (with_member(2, "client", "host:port"), "members[2].client"),
    (with_member(2, "client", None), "members[2].client"),
    (with_member(1, "id", 1), "members[1].id"),  # duplicate id
    (with_member(1, "id", 0), "members[1].id"),
    (with_member(1, "id", False), "members[1].id"),
    (with_member(0, "role", "voter"), "members[0].role"),
    (without_member_key(2, "client"), "members[2].client"),
    (with_("tls", {"cert": "/nonexistent/cert.pem", "key": "/nonexistent/k", "ca": "/nonexistent/ca"}),
     "tls.cert"),
    (with_("tls", {"cert": "x"}), "tls.key"),  # partial table: the first missing setting
    (with_("tls", "on"), "tls"),
]


@pytest.mark.parametrize("data,field", INVALID_FILES, ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID_FILES)])
def test_invalid_field_raises_config_error_naming_it(data: Dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {}, source="node.toml")
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")
    assert "node.toml" in str(info.value)


@pytest.mark.parametrize("missing", ["cert", "key", "ca"])
def test_tls_needs_all_three_files(tls_files: Dict[str, str], missing: str) -> None:
    tls = dict(tls_files)
    del tls[missing]
    with pytest.raises(ConfigError) as info:
        parse_config(with_("tls", tls), {})
    assert info.value.field == f"tls.{missing}"


@pytest.mark.parametrize("name", ["key", "ca"])
def test_tls_file_must_exist(tls_files: Dict[str, str], name: str) -> None:
    tls = dict(tls_files)
    tls[name] = tls[name] + ".missing"
    with pytest.raises(ConfigError) as info:
        parse_config(with_("tls", tls), {})
    assert info.value.field == f"tls.{name}"


def test_unknown_tls_key_is_refused(tls_files: Dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_("tls", dict(tls_files, verify=False)), {})
    assert info.value.field == "tls.verify"


INVALID_ENV = [
    ("CONSENSUS_ID", "one", "id"),
    ("CONSENSUS_ID", "7", "id"),  # not a member
    ("CONSENSUS_TICK_MS", "0", "tick_ms"),
    ("CONSENSUS_FSYNC", "sometimes", "fsync"),
    ("CONSENSUS_FORWARD", "maybe", "forward"),
    ("CONSENSUS_PHI_THRESHOLD", "high", "phi_threshold"),
    ("CONSENSUS_PHI_THRESHOLD", "nan", "phi_threshold"),
    ("CONSENSUS_PEER_LISTEN", "nowhere", "peer_listen"),
    ("CONSENSUS_CLUSTER_ID", "", "cluster_id"),
    ("CONSENSUS_LOG_LEVEL", "loud", "log_level"),
    ("CONSENSUS_TLS_CERT", "/nonexistent.pem", "tls.key"),  # cert alone: key and ca are missing
]


@pytest.mark.parametrize("variable,text,field", INVALID_ENV)
def test_invalid_environment_override_names_field_and_variable(variable: str, text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(base_data(), {variable: text}, source="node.toml")
    assert info.value.field == field
    if not field.startswith("tls."):
        assert variable in str(info.value)


def test_environment_override_can_fix_an_invalid_file_value() -> None:
    cfg = parse_config(with_("fsync", "sometimes"), {"CONSENSUS_FSYNC": "batch"})
    assert cfg.fsync == "batch"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml", env={})
    assert info.value.field == "<file>"
    assert "absent.toml" in str(info.value)


def test_unparsable_file_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'id = 1\ncluster_id = "demo\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.field == "<file>"
    assert "line 2" in str(info.value)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_bytes(b'cluster_id = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.field == "<file>"


def test_error_in_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('fsync = "always"', 'fsync = "sometimes"'))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.field == "fsync" and str(path) in str(info.value)


def test_direct_construction_is_validated() -> None:
    cfg = parse_config(base_data(), {})
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(cfg, heartbeat_ticks=cfg.election_ticks)
    assert info.value.field == "heartbeat_ticks"


def test_config_is_frozen() -> None:
    cfg = parse_config(base_data(), {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.id = 2  # type: ignore[misc]


def test_optional_fields_absent_from_dump(tmp_path: Path) -> None:
    cfg = parse_config(base_data(), {})
    text = dump_config(cfg)
    assert "peer_listen" not in text and "[tls]" not in text
    loaded: Optional[NodeConfig] = load_config(write(tmp_path, text), env={})
    assert loaded == cfg


# ------------------------------------------------------------------------ client API: HTTPS, tokens, limits


def test_client_api_defaults_are_plain_http_without_tokens_and_bounded() -> None:
    cfg = parse_config(base_data(), {})
    assert cfg.client_tls is None and cfg.auth is None
    assert cfg.metrics_public is False
    assert cfg.client_connections_max == 1024 and cfg.client_idle_timeout_ms == 30_000


def test_client_tls_without_ca_serves_https_without_client_certificates(tls_files: Dict[str, str]) -> None:
    cfg = parse_config(with_("client_tls", {"cert": tls_files["cert"], "key": tls_files["key"]}), {})
    assert cfg.client_tls == ClientTlsConfig(tls_files["cert"], tls_files["key"], None)


def test_client_tls_from_the_environment(tls_files: Dict[str, str]) -> None:
    env = {
        "CONSENSUS_CLIENT_TLS_CERT": tls_files["cert"],
        "CONSENSUS_CLIENT_TLS_KEY": tls_files["key"],
        "CONSENSUS_CLIENT_TLS_CA": tls_files["ca"],
    }
    cfg = parse_config(base_data(), env)
    assert cfg.client_tls == ClientTlsConfig(**tls_files)


def test_tokens_file_is_read_into_a_role_table(tmp_path: Path) -> None:
    path = write_tokens(tmp_path, f'"{READ_TOKEN}" = "read"\n"{ADMIN_TOKEN}" = "admin"\n')
    cfg = parse_config(with_("auth", {"tokens_file": path}), {})
    assert cfg.auth is not None and cfg.auth.tokens_file == path
    assert dict(cfg.auth.tokens) == {READ_TOKEN: "read", ADMIN_TOKEN: "admin"}
    assert READ_TOKEN not in repr(cfg), "a token must never reach a log line through repr(config)"


def test_tokens_file_from_the_environment(tmp_path: Path) -> None:
    path = write_tokens(tmp_path, f'"{READ_TOKEN}" = "write"\n')
    cfg = parse_config(base_data(), {"CONSENSUS_AUTH_TOKENS_FILE": path})
    assert cfg.auth is not None and dict(cfg.auth.tokens) == {READ_TOKEN: "write"}


BAD_TOKEN_FILES = [
    # (header, body, field)
    ("[tokens]\n", f'"{READ_TOKEN}" = "root"\n', "auth.tokens[0]"),  # unknown role
    ("[tokens]\n", f'"{READ_TOKEN}" = "read"\n"{ADMIN_TOKEN}" = 3\n', "auth.tokens[1]"),
    ("[tokens]\n", '"" = "read"\n', "auth.tokens[0]"),  # empty token
    ("[tokens]\n", '"short" = "read"\n', "auth.tokens[0]"),
    ("[tokens]\n", '"has space in it, long enough" = "read"\n', "auth.tokens[0]"),
    ("[tokens]\n", "", "auth.tokens"),  # no token at all
    ("", 'tokens = "everyone"\n', "auth.tokens"),  # not a table
    ("", "", "auth.tokens"),  # no [tokens] table
    ("[tokens]\n", f'"{READ_TOKEN}" = "read"\n[extra]\n', "auth.extra"),
    ("", "tokens = [\n", "auth.tokens_file"),  # not TOML
]


@pytest.mark.parametrize("header,body,field", BAD_TOKEN_FILES)
def test_invalid_tokens_file_names_the_field_and_never_shows_a_token(
    tmp_path: Path, header: str, body: str, field: str
) -> None:
    path = write_tokens(tmp_path, body, header=header)
    with pytest.raises(ConfigError) as info:
        parse_config(with_("auth", {"tokens_file": path}), {})
    assert info.value.field == field
    assert READ_TOKEN not in str(info.value) and ADMIN_TOKEN not in str(info.value)


def test_role_written_where_the_token_belongs_is_not_shown(tmp_path: Path) -> None:
    path = write_tokens(tmp_path, f'admin = "{ADMIN_TOKEN}"\n')
    with pytest.raises(ConfigError) as info:
        parse_config(with_("auth", {"tokens_file": path}), {})
    assert ADMIN_TOKEN not in str(info.value)


INVALID_CLIENT_API: List[Any] = [
    (with_("client_tls", {"cert": "/nonexistent/c.pem", "key": "/nonexistent/k.pem"}), "client_tls.cert"),
    (with_("client_tls", {"cert": __file__}), "client_tls.key"),
    (with_("client_tls", {"cert": __file__, "key": __file__, "ca": "/nonexistent/ca.pem"}), "client_tls.ca"),
    (with_("client_tls", {"cert": __file__, "key": __file__, "ca": ""}), "client_tls.ca"),
    (with_("client_tls", {"cert": __file__, "key": __file__, "verify": False}), "client_tls.verify"),
    (with_("client_tls", "on"), "client_tls"),
    (with_("client_tls", {}), "client_tls.cert"),  # an empty table is not "off"
    (with_("auth", {"tokens_file": "/nonexistent/tokens.toml"}), "auth.tokens_file"),
    (with_("auth", {"tokens_file": 7}), "auth.tokens_file"),
    (with_("auth", {}), "auth.tokens_file"),
    (with_("auth", {"tokens": {"x": "read"}}), "auth.tokens"),
    (with_("auth", True), "auth"),
    (with_("metrics_public", "yes"), "metrics_public"),
    (with_("client_connections_max", 0), "client_connections_max"),
    (with_("client_connections_max", 10_000_000), "client_connections_max"),
    (with_("client_idle_timeout_ms", 0), "client_idle_timeout_ms"),
    (with_("client_idle_timeout_ms", 1.5), "client_idle_timeout_ms"),
]


@pytest.mark.parametrize("data,field", INVALID_CLIENT_API, ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID_CLIENT_API)])
def test_invalid_client_api_setting_names_the_field(data: Dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {}, source="node.toml")
    assert info.value.field == field


@pytest.mark.parametrize(
    "variable,text,field",
    [
        ("CONSENSUS_METRICS_PUBLIC", "perhaps", "metrics_public"),
        ("CONSENSUS_CLIENT_CONNECTIONS_MAX", "many", "client_connections_max"),
        ("CONSENSUS_CLIENT_TLS_KEY", "/nonexistent.pem", "client_tls.cert"),  # key alone: cert is missing
        ("CONSENSUS_AUTH_TOKENS_FILE", "/nonexistent/tokens.toml", "auth.tokens_file"),
    ],
)
def test_invalid_client_api_override_names_the_field(variable: str, text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(base_data(), {variable: text}, source="node.toml")
    assert info.value.field == field


def test_a_protocol_this_version_does_not_run_is_refused_by_validation(tmp_path: Path) -> None:
    """Zab is planned, not built: a node file naming it fails at load, not when the node starts."""
    from consensus import protocols

    assert set(PROTOCOLS_ACCEPTED) == set(protocols.PROTOCOLS)
    for name in ("zab", "Raft", ""):
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, BASE.replace('protocol = "raft"', f'protocol = "{name}"')), env={})
        assert info.value.field == "protocol"


def test_the_protocol_registry_is_the_compiled_cores_list() -> None:
    """One fact, one place (docs/design.md §6): the Python registry, the configuration's accepted
    names, the handshake ids and the simulator's protocols all come from the core's list."""
    from consensus import _core, protocols
    from consensus.transport.base import PROTOCOL_IDS

    core = dict(_core.PROTOCOLS)
    assert list(protocols.PROTOCOLS) == [name for name, _ in _core.PROTOCOLS]
    assert {name: spec.protocol_id for name, spec in protocols.PROTOCOLS.items()} == core
    assert PROTOCOLS_ACCEPTED == tuple(core)
    assert PROTOCOL_IDS == core
    assert not set(protocols.PLANNED) & set(core)
    assert not set(protocols.PLANNED.values()) & set(core.values()), "a planned protocol reuses an id"
