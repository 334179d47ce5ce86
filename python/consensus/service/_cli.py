"""The `consensus` command.

    consensus serve --config node.toml [--join]     run a node (HTTP KV service + peer transport)
    consensus status URL...                          nodes' status
    consensus members list|add|promote|remove ...    membership at runtime
    consensus transfer-leader URL --to ID            hand the leadership to another voter
    consensus snapshot save URL FILE                 back up the replicated state
    consensus snapshot restore FILE --config F       seed a new node's data dir from a backup
    consensus demo [--protocol raft|paxos]           the 3-process failover demo (make run)
    consensus simulate --seeds 0-9999                the deterministic simulator

The commands that talk to nodes take ``--token`` (default: the CONSENSUS_TOKEN environment
variable) for clusters with ``[auth]``, and ``--cacert``, ``--cert``, ``--key`` for HTTPS nodes
(``[client_tls]``; a URL without a scheme means https:// once one of them is given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, Dict, List, Optional

from consensus import protocols


def _parse_seeds(text: str) -> range:
    """`"0-9999"` or `"42"` to a range of seeds."""
    try:
        if "-" in text:
            low, high = text.split("-", 1)
            return range(int(low), int(high) + 1)
        seed = int(text)
        return range(seed, seed + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0-9999 or 42, not {text!r}") from None


TOKEN_ENV = "CONSENSUS_TOKEN"

#: How the node commands connect, set from the command line by `main` (token, TLS files).
_connection: Dict[str, Optional[str]] = {}


def _uses_tls() -> bool:
    return any(_connection.get(name) for name in ("cacert", "cert", "key"))


def _url(text: str) -> str:
    if text.startswith(("http://", "https://")):
        return text
    return f"{'https' if _uses_tls() else 'http'}://{text}"


def _client(urls: List[str], **kwargs: Any) -> Any:
    """A KVClient for `urls` with the command line's token and TLS settings."""
    from consensus.service._client import KVClient, tls_context

    context = None
    if _uses_tls():
        context = tls_context(_connection.get("cacert"), _connection.get("cert"), _connection.get("key"))
    return KVClient([_url(u) for u in urls], token=_connection.get("token"), ssl_context=context, **kwargs)


async def _http(url: str, method: str, path: str, body: Any = None) -> "tuple[int, Dict[str, Any]]":
    async with _client([url]) as client:
        return await client.request(_url(url).rstrip("/"), method, path, body)


async def _leader_call(urls: List[str], method: str, path: str, body: Any = None) -> Dict[str, Any]:
    async with _client(urls, retry_for=10.0) as client:
        return await client.call(method, path, body)


def _print(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))


def _status(urls: List[str]) -> int:
    code = 0
    for url in urls:
        try:
            status, payload = asyncio.run(_http(url, "GET", "/v1/status"))
        except Exception as exc:  # noqa: BLE001 - report every node, even unreachable ones
            print(f"{url}: unreachable ({exc})")
            code = 1
            continue
        if status != 200:
            print(f"{url}: HTTP {status} {payload}")
            code = 1
            continue
        print(
            f"{url}: node {payload['id']} {payload['role']} term={payload['term']} leader={payload['leader']} "
            f"commit={payload['commit_index']} applied={payload['applied_index']} members={payload['members']}"
        )
        for peer, health in sorted(payload.get("peers", {}).items()):
            print(f"    peer {peer}: {health}")
    return code


def _snapshot_save(url: str, path: str) -> int:
    async def fetch() -> bytes:
        async with _client([url], timeout=600.0) as client:
            headers = {"Authorization": f"Bearer {client.token}"} if client.token is not None else {}
            async with client.session.get(_url(url).rstrip("/") + "/v1/snapshot", headers=headers) as resp:
                if resp.status != 200:
                    raise SystemExit(f"snapshot save: HTTP {resp.status}: {await resp.text()}")
                return await resp.read()

    from consensus.service import _backup as snapshotfile

    blob = asyncio.run(fetch())
    backup = snapshotfile.decode(blob)
    with open(path, "wb") as f:
        f.write(blob)
    print(f"saved the state at index {backup.index} ({len(blob)} bytes) to {path}")
    return 0


def _snapshot_restore(path: str, config_path: str) -> int:
    from consensus import protocols
    from consensus.service import _backup as snapshotfile
    from consensus.config import load_config
    from consensus.runtime._datadir import Identity, identity_path, write_identity
    from consensus.service._server import storage_path

    cfg = load_config(config_path)
    with open(path, "rb") as f:
        backup = snapshotfile.decode(f.read())
    if os.path.exists(identity_path(cfg.data_dir)):
        print(f"snapshot restore: {cfg.data_dir} belongs to a node already; restore into an empty data_dir", file=sys.stderr)
        return 1
    spec = protocols.get(cfg.protocol)
    storage = spec.open_storage(storage_path(cfg), cfg.fsync)
    try:
        if storage.last_index() > 0 or storage.snapshot().index > 0:
            print(f"snapshot restore: {cfg.data_dir} already holds data; restore into an empty data_dir", file=sys.stderr)
            return 1
        voters = [m.id for m in cfg.members]
        conf = spec.conf_state(voters, [], [])
        storage.apply_snapshot(spec.snapshot(backup.index, backup.term, conf, backup.state))
    finally:
        storage.close()
    # Not yet a member's state: the node passes the start gate like a new one, so a member wiped
    # and restored from an old backup is refused by the peers that remember it.
    write_identity(cfg.data_dir, Identity(cfg.cluster_id, cfg.id, cfg.protocol, state=False))
    print(f"restored index {backup.index} into {cfg.data_dir} for a cluster of {voters}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="consensus", description="Raft and Multi-Paxos for Python services.")
    commands = parser.add_subparsers(dest="command", required=True)
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default: ${TOKEN_ENV})")
    conn.add_argument("--cacert", help="CA file that signed the nodes' HTTPS certificates")
    conn.add_argument("--cert", help="client certificate, for nodes that require one")
    conn.add_argument("--key", help="the client certificate's private key")

    serve = commands.add_parser("serve", help="run a node: HTTP KV service and peer transport")
    serve.add_argument("--config", required=True, help="the node's TOML file (CONSENSUS_* variables override it)")
    serve.add_argument(
        "--join",
        action="store_true",
        help='join a running cluster: initial_state = "existing" (add it with `members add`)',
    )

    status = commands.add_parser("status", help="show nodes' status", parents=[conn])
    status.add_argument("urls", nargs="+", help="client addresses (host:port or http://host:port)")

    members = commands.add_parser("members", help="membership at runtime")
    members_cmd = members.add_subparsers(dest="members_command", required=True)
    m_list = members_cmd.add_parser("list", help="members and their addresses", parents=[conn])
    m_list.add_argument("urls", nargs="+")
    m_add = members_cmd.add_parser("add", help="add a node as a learner (it catches up, then promote it)", parents=[conn])
    m_add.add_argument("urls", nargs="+")
    m_add.add_argument("--id", type=int, required=True)
    m_add.add_argument("--peer", required=True, help="its peer address host:port")
    m_add.add_argument("--client", required=True, help="its client address host:port")
    m_promote = members_cmd.add_parser("promote", help="make a caught-up learner a voter", parents=[conn])
    m_promote.add_argument("urls", nargs="+")
    m_promote.add_argument("--id", type=int, required=True)
    m_remove = members_cmd.add_parser("remove", help="remove a voter or learner", parents=[conn])
    m_remove.add_argument("urls", nargs="+")
    m_remove.add_argument("--id", type=int, required=True)

    transfer = commands.add_parser("transfer-leader", help="hand the leadership to another voter", parents=[conn])
    transfer.add_argument("urls", nargs="+")
    transfer.add_argument("--to", type=int, required=True)

    snapshot = commands.add_parser("snapshot", help="back up or restore the replicated state")
    snapshot_cmd = snapshot.add_subparsers(dest="snapshot_command", required=True)
    save = snapshot_cmd.add_parser("save", help="download a node's state (after a read barrier) to FILE", parents=[conn])
    save.add_argument("url")
    save.add_argument("file")
    restore = snapshot_cmd.add_parser("restore", help="seed an empty data_dir from a backup, for a new cluster")
    restore.add_argument("file")
    restore.add_argument("--config", required=True)

    demo = commands.add_parser("demo", help="3 node processes through a leader SIGKILL (the main job)")
    demo.add_argument("--writes", type=int, default=500, help="writes before and again after the failover")
    demo.add_argument("--protocol", default="raft", help="the protocol: " + " or ".join(protocols.PROTOCOLS))
    demo.add_argument("--in-process", action="store_true", help="the in-process variant (no sockets, no disk)")

    simulate = commands.add_parser("simulate", help="run the deterministic simulator over many seeds")
    simulate.add_argument("--protocol", default="raft", choices=["raft", "paxos"])
    simulate.add_argument("--seeds", type=_parse_seeds, default=range(0, 100))
    simulate.add_argument("--nodes", type=int, default=5)
    simulate.add_argument("--steps", type=int, default=None)
    simulate.add_argument("--faults", default="all", choices=["all", "none"])
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")

    args = parser.parse_args(argv)
    _connection.clear()
    _connection.update({name: getattr(args, name, None) for name in ("token", "cacert", "cert", "key")})
    if _connection["key"] and not _connection["cert"]:
        parser.error("--key needs --cert")
    from consensus._core import ConsensusError
    from consensus.service._client import ClientError

    try:
        return _run(args)
    except ConsensusError as exc:
        print(f"consensus {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"consensus {args.command}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from consensus.config import load_config
        from consensus.service._server import run

        return run(load_config(args.config), join=args.join)
    if args.command == "status":
        return _status(args.urls)
    if args.command == "members":
        if args.members_command == "list":
            _print(asyncio.run(_leader_call(args.urls, "GET", "/v1/members")))
        elif args.members_command == "add":
            from consensus.config import parse_address

            parse_address(args.peer, "--peer")  # checked here: a bad address is never proposed
            parse_address(args.client, "--client")
            body = {"id": args.id, "peer": args.peer, "client": args.client}
            _print(asyncio.run(_leader_call(args.urls, "POST", "/v1/members", body)))
        elif args.members_command == "promote":
            _print(asyncio.run(_leader_call(args.urls, "POST", f"/v1/members/{args.id}/promote")))
        else:
            _print(asyncio.run(_leader_call(args.urls, "DELETE", f"/v1/members/{args.id}")))
        return 0
    if args.command == "transfer-leader":
        _print(asyncio.run(_leader_call(args.urls, "POST", "/v1/leader/transfer", {"to": args.to})))
        return 0
    if args.command == "snapshot":
        if args.snapshot_command == "save":
            return _snapshot_save(args.url, args.file)
        return _snapshot_restore(args.file, args.config)
    if args.command == "demo":
        if args.in_process:
            from consensus.testing._demo import run_in_process_demo

            if args.protocol != "raft":
                print(
                    f"consensus demo: --in-process runs Raft only; `consensus demo --protocol {args.protocol}` "
                    "runs the process demo",
                    file=sys.stderr,
                )
                return 2
            return run_in_process_demo(writes=args.writes)
        from consensus.testing._demo import run_demo

        return run_demo(writes=args.writes, protocol=args.protocol)
    if args.command == "simulate":
        from consensus.sim import simulate_many

        return simulate_many(
            protocol=args.protocol,
            seeds=args.seeds,
            nodes=args.nodes,
            steps=args.steps,
            faults=args.faults,
            progress=not args.quiet,
        )
    return 2


__all__ = [
    "TOKEN_ENV",
    "main",
]
