"""Benchmark: the MCP sidecar vs the Matrix client API it wraps, all traffic on 127.0.0.1.

Same Synapse (SQLite, all Phenom modules), same agent identity, same room:

* baseline — the Matrix client API straight from Python (application-service token,
  ``?user_id=@agent-…``, the calls the Synapse backend makes): PUT /send and GET /messages;
* MCP — ``send_message`` / ``get_messages`` through the real ``mcp`` client over streamable
  HTTP (bearer JWT check, scope check, rate limit, Markdown, JSON-RPC + SSE framing).

Latency: sequential calls, rounds interleaved (baseline, MCP, baseline, …), p50 overhead
target <= 5 ms. Throughput: N concurrent callers for a fixed number of operations, target >= 90 %.

Then A vs B through MCP (``bench_ab``): the same MCP server on ``backend: hasura`` (the chat
tables on a fresh database of ``--postgres-dsn``) next to the Synapse one, same calls.

    .venv/bin/python bench/bench_mcp.py [--calls 300] [--concurrency 8] [--ops 600]
        [--postgres-dsn postgresql://postgres@127.0.0.1:5432/postgres | --no-hasura] [--pin]

``--pin``: the sidecar alone on the last CPU (every thread), Synapse and the load generator on
the others — the sidecar on its own core, as in production (its own container).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SynapseStack, free_port
from rich.console import Console
from rich.table import Table

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.mcp.appservice import read_as_token
from synapse_phenom.mcp.devkeys import DEV_CLIENT_ID
from synapse_phenom.ops import devstack, hsconfig

BENCH_ROOM = "internal"
FILTER = '{"types":["m.room.message"],"lazy_load_members":true}'


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class Baseline:
    """The Matrix client API as the Synapse backend calls it, without the MCP layer."""

    def __init__(self, http: httpx2.AsyncClient, room_id: str, user_id: str) -> None:
        self.http = http
        self.room = quote(room_id, safe="")
        self.params = {"user_id": user_id, "device_id": "PHENOM_MCP"}

    async def send(self, body: str) -> None:
        resp = await self.http.put(
            f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/b{uuid.uuid4().hex}",
            params=self.params,
            json={
                "msgtype": "m.text",
                "body": body,
                "format": "org.matrix.custom.html",
                "formatted_body": body,
            },
        )
        resp.raise_for_status()

    async def read(self) -> None:
        resp = await self.http.get(
            f"/_matrix/client/v3/rooms/{self.room}/messages",
            params={**self.params, "dir": "b", "limit": 20, "filter": FILTER},
        )
        resp.raise_for_status()
        resp.json()


async def mcp_call(client: Client, tool: str, args: dict[str, Any]) -> None:
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise RuntimeError(f"{tool}: {result.content}")


class RawMcp:
    """A minimal MCP client: one JSON-RPC POST per call, the SSE answer parsed by hand.

    Isolates the server's overhead from the Python SDK client's own work (pydantic parsing,
    JSON-Schema validation of every result against the tool's output schema)."""

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.ids = 0

    async def call(self, tool: str, args: dict[str, Any]) -> None:
        self.ids += 1
        resp = await self.http.post(
            self.url,
            headers={
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
            },
            content=json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": self.ids,
                    "method": "tools/call",
                    "params": {"name": tool, "arguments": args},
                }
            ),
        )
        resp.raise_for_status()
        if resp.headers.get("content-type", "").startswith("application/json"):
            data = resp.text  # the server's plain-JSON answer (no progress was asked for)
        else:
            data = next(line[5:] for line in resp.text.splitlines() if line.startswith("data:"))
        if json.loads(data)["result"].get("isError"):
            raise RuntimeError(f"{tool}: {data[:200]}")


async def timed(fn: Callable[[], Awaitable[None]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def throughput(
    make: Callable[[int], Callable[[], Awaitable[None]]], ops: int, concurrency: int
) -> float:
    per_worker = ops // concurrency
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(concurrency):
            fn = make(w)

            async def worker(fn: Callable[[], Awaitable[None]] = fn) -> None:
                for _ in range(per_worker):
                    await fn()

            tg.start_soon(worker)
    return per_worker * concurrency / (time.perf_counter() - start)


def pin(sidecar: int, synapse: int) -> None:
    """Every thread of the sidecar on the last CPU; Synapse's and ours on the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least two CPUs")
    alone, rest = {cpus[-1]}, set(cpus[:-1])
    for pid, where in ((sidecar, alone), (synapse, rest), (os.getpid(), rest)):
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), where)
    print(f"pinned: sidecar on CPU {sorted(alone)}, Synapse and load generator on {sorted(rest)}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    stack: SynapseStack,
    mcp_url: str,
    token: str,
    as_token: str,
    args: argparse.Namespace,
    mcp_pid: int,
) -> tuple[list[list[str]], list[list[str]]]:
    # Internal: its policy has no flood limit (Community allows 10 messages per 10 s, and agents
    # are not exempt), so the bench measures sending, not the flood refusal.
    room_id = stack.rooms[BENCH_ROOM]
    agent = stack.user_id("agent-dev")
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        httpx2.AsyncClient(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {as_token}"}, limits=limits
        ) as http,
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits
        ) as mcp_http,
        Client(streamable_http_client(mcp_url, http_client=mcp_http)) as client,
    ):
        base = Baseline(http, room_id, agent)
        raw = RawMcp(mcp_http, mcp_url)
        paths: dict[str, dict[str, Callable[[], Awaitable[None]]]] = {
            "send_message": {
                "api": lambda: base.send("bench"),
                "raw": lambda: raw.call("send_message", {"room": room_id, "body": "bench"}),
                "sdk": lambda: mcp_call(client, "send_message", {"room": room_id, "body": "bench"}),
            },
            "get_messages (20)": {
                "api": base.read,
                "raw": lambda: raw.call("get_messages", {"room": room_id, "limit": 20}),
                "sdk": lambda: mcp_call(client, "get_messages", {"room": room_id, "limit": 20}),
            },
        }
        await mcp_call(client, "list_rooms", {})  # agent registered and joined
        for _ in range(20):  # warm-up every path; also fills the room for get_messages
            for fns in paths.values():
                for fn in fns.values():
                    await fn()
        rounds = 10
        per = max(1, args.calls // rounds)
        lat: dict[tuple[str, str], list[float]] = {
            (op, k): [] for op in paths for k in ("api", "raw", "sdk")
        }
        tput: dict[tuple[str, str], list[float]] = {key: [] for key in lat}
        # CPU per operation of each server process: load-independent, unlike wall-clock numbers.
        cpu: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in lat}
        synapse_pid = stack.process.popen.pid
        for _ in range(rounds):  # interleaved, so drift hits every path alike
            for op, fns in paths.items():
                for kind, fn in fns.items():
                    lat[(op, kind)] += await timed(fn, per)
        for _ in range(3):
            for op, fns in paths.items():
                for kind, fn in fns.items():
                    before = (cpu_seconds(synapse_pid), cpu_seconds(mcp_pid))
                    tput[(op, kind)].append(
                        await throughput(lambda w, fn=fn: fn, args.ops, args.concurrency)  # type: ignore[misc]
                    )
                    done = (args.ops // args.concurrency) * args.concurrency
                    cpu[(op, kind)].append(
                        (
                            1000 * (cpu_seconds(synapse_pid) - before[0]) / done,
                            1000 * (cpu_seconds(mcp_pid) - before[1]) / done,
                        )
                    )
    rows = []
    for op in paths:
        med = {k: statistics.median(lat[(op, k)]) for k in ("api", "raw", "sdk")}
        ops = {k: statistics.median(tput[(op, k)]) for k in ("api", "raw", "sdk")}
        rows.append(
            [
                op,
                f"{med['api']:.2f} / {percentile(lat[(op, 'api')], 95):.2f}",
                f"{med['raw']:.2f} / {percentile(lat[(op, 'raw')], 95):.2f}",
                f"{med['sdk']:.2f} / {percentile(lat[(op, 'sdk')], 95):.2f}",
                f"{med['raw'] - med['api']:+.2f}",
                f"{med['sdk'] - med['api']:+.2f}",
                f"{ops['api']:.0f}",
                f"{ops['raw']:.0f} ({100 * ops['raw'] / ops['api']:.0f} %)",
                f"{ops['sdk']:.0f} ({100 * ops['sdk'] / ops['api']:.0f} %)",
            ]
        )
    cpu_rows = []
    for op in paths:
        for kind in ("api", "raw", "sdk"):
            synapse_ms = statistics.median(c[0] for c in cpu[(op, kind)])
            mcp_ms = statistics.median(c[1] for c in cpu[(op, kind)])
            cpu_rows.append([op, kind, f"{synapse_ms:.2f}", f"{mcp_ms:.2f}"])
    return rows, cpu_rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", type=int, default=300, help="sequential calls per path and operation"
    )
    parser.add_argument("--ops", type=int, default=600, help="operations per throughput run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "PHENOM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server for B (a fresh database is created and dropped)",
    )
    parser.add_argument(
        "--no-hasura", action="store_true", help="skip A vs B (Implementation B, backend hasura)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="sidecar alone on the last CPU; Synapse and this load generator on the others",
    )
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers and B's database go too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    ab_rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        data_dir = Path(tmp)
        registration = mcp_dev.write_registration_file(data_dir / "mcp", "localhost")
        stack = SynapseStack.start(
            data_dir / "synapse",
            hsconfig.DevDatabase(),
            extra_values={"app_service_config_files": [str(registration)]},
        )
        port = free_port()
        files = mcp_dev.prepare_mcp(data_dir / "mcp", stack.base_url, port=port)
        mcp = mcp_dev.start_mcp(files.config, "127.0.0.1", port)
        try:
            devstack.wait_http(f"http://127.0.0.1:{port}/health", [mcp], timeout=60)
            if args.pin:
                pin(mcp.popen.pid, stack.process.popen.pid)
            token = files.signer.token(DEV_CLIENT_ID, ["read", "write"])
            rows, cpu_rows = anyio.run(
                run,
                stack,
                f"http://127.0.0.1:{port}/mcp",
                token,
                read_as_token(registration),
                args,
                mcp.popen.pid,
            )
            if not args.no_hasura:
                import bench_ab

                a = bench_ab.Target(
                    "A (synapse)", f"http://127.0.0.1:{port}/mcp", token, stack.rooms[BENCH_ROOM]
                )
                with bench_ab.hasura_server(
                    data_dir / "mcp-hasura", args.postgres_dsn, free_port()
                ) as b:
                    ab_rows = anyio.run(bench_ab.compare, [a, b], args)
        finally:
            mcp.stop()
            stack.stop()
    table = Table(
        title=f"MCP vs Matrix client API ({args.calls} sequential calls, "
        f"{args.concurrency} concurrent for throughput)"
    )
    columns = (
        "operation",
        "API p50/p95 ms",
        "MCP raw p50/p95 ms",
        "MCP SDK p50/p95 ms",
        "raw overhead p50",
        "SDK overhead p50",
        "API ops/s",
        "MCP raw ops/s",
        "MCP SDK ops/s",
    )
    for col in columns:
        table.add_column(col, justify="right" if col != "operation" else "left")
    for row in rows:
        table.add_row(*row)
    console = Console(width=200)
    console.print(table)
    cpu_table = Table(title="CPU per operation during the throughput runs (ms)")
    for col in ("operation", "path", "Synapse CPU ms/op", "MCP server CPU ms/op"):
        cpu_table.add_column(col, justify="right" if "CPU" in col else "left")
    for row in cpu_rows:
        cpu_table.add_row(*row)
    console.print(cpu_table)
    if ab_rows:
        ab_table = Table(
            title=f"A (synapse) vs B (hasura) through MCP ({args.calls} sequential calls, "
            f"{args.concurrency} concurrent)"
        )
        for col in ("operation", "backend", "client", "p50 ms", "p95 ms", "ops/s"):
            ab_table.add_column(
                col, justify="left" if col in ("operation", "backend", "client") else "right"
            )
        for row in ab_rows:
            ab_table.add_row(*row)
        console.print(ab_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
