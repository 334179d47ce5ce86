"""The load generator's ceiling: one aiohttp process answering the consensus write API from a dict.

No replication, no disk. Run as the benchmark's optional `ceiling` system, it shows how many writes
per second the HTTP client and an asyncio HTTP server can exchange on this machine at all, which bounds
what any HTTP-fronted system can show here (the cores are shared with the load generator).

    python benches/peers/ceiling_server.py --port 8080
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_common import ClusterStartError, MemberProcess, free_ports  # noqa: E402

# Values above this are refused, as the real service refuses values over its limit.
value_bytes_max = 1 << 20
# Keys kept before the dict is cleared; a long run must not grow without bound.
keys_max = 1_000_000


def build_app() -> web.Application:
    data: Dict[str, str] = {}
    revision = [0]

    async def put(request: web.Request) -> web.Response:
        body = await request.read()
        if len(body) > value_bytes_max + 64:
            return web.json_response({"error": "value too large", "code": "too_large"}, status=413)
        try:
            value = json.loads(body)["value"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected {\"value\": text}", "code": "bad_request"}, status=400)
        if len(data) >= keys_max:
            data.clear()
        data[request.match_info["key"]] = value
        revision[0] += 1
        return web.json_response({"revision": revision[0]})

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"id": 1, "protocol": "none", "role": "leader", "term": 1, "leader": 1,
                                  "commit_index": revision[0], "applied_index": revision[0]})

    app = web.Application(client_max_size=value_bytes_max + 1024)
    app.router.add_put("/v1/kv/{key}", put)
    app.router.add_get("/v1/status", status)
    return app


class CeilingServer:
    """One ceiling server process, shaped like the clusters (a single member that always leads)."""

    name = "ceiling"

    def __init__(self, workdir: Path, python: str = sys.executable) -> None:
        self.workdir = Path(workdir)
        self.python = python
        self.members: List[MemberProcess] = []
        self.client_urls: List[str] = []
        self.data_dirs: List[Path] = []

    def start(self, timeout_s: float = 30.0) -> None:
        import asyncio

        from loadgen import ConsensusRequests, find_leader

        self.workdir.mkdir(parents=True, exist_ok=True)
        port = free_ports(1)[0]
        self.client_urls = [f"http://127.0.0.1:{port}"]
        command = [self.python, str(Path(__file__).resolve()), "--port", str(port)]
        self.members = [MemberProcess("ceiling", command, self.workdir / "ceiling.log")]
        self.members[0].start()
        try:
            asyncio.run(find_leader(ConsensusRequests(), self.client_urls, timeout_s))
        except TimeoutError as exc:
            failure = self.members[0].describe_failure()
            self.stop()
            raise ClusterStartError(f"ceiling server did not start: {exc}\n{failure}") from None

    def leader_index(self, timeout_s: float = 30.0) -> int:
        return 0

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="The load generator's ceiling: a dict behind HTTP.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(build_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
