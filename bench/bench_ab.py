"""A vs B through MCP, in the same run of ``bench_mcp.py`` on the same machine.

The same MCP server code (``phenom-chat mcp``) runs twice: ``backend: synapse`` (A, the
Synapse of the bench run) and ``backend: hasura`` (B, the ``chat`` tables on a fresh
database of ``--postgres-dsn``, migrated with the Hasura project's migrations). Both are
driven with the same calls, rounds interleaved (A, B, A, …) so load drift hits both alike:
``send_message`` and ``get_messages`` (20) p50/p95 latency and throughput, raw JSON-RPC
client and the Python SDK client.
"""

from __future__ import annotations

import argparse
import statistics
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx2
import psycopg
from bench_mcp import RawMcp, mcp_call, percentile, throughput, timed
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.mcp.devkeys import DEV_CLIENT_ID
from synapse_phenom.mcp.hasura_dev import prepare_database
from synapse_phenom.ops import devstack

KINDS = ("raw", "sdk")


@attrs.frozen
class Target:
    name: str  # "A (synapse)" / "B (hasura)"
    url: str
    token: str
    room: str  # room id as the tools show it


@contextmanager
def hasura_server(data_dir: Path, server_dsn: str, port: int) -> Iterator[Target]:
    """B's MCP server on a fresh database of ``server_dsn`` (dropped afterwards)."""
    name = f"phenom_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = urlunsplit(urlsplit(server_dsn)._replace(path=f"/{name}"))
    process = None
    try:
        rooms = prepare_database(dsn)
        files = mcp_dev.prepare_mcp_hasura(data_dir, dsn, port=port)
        process = mcp_dev.start_mcp(files.config, "127.0.0.1", port)
        devstack.wait_http(f"http://127.0.0.1:{port}/health", [process], timeout=60)
        token = files.signer.token(DEV_CLIENT_ID, ["read", "write"])
        yield Target("B (hasura)", f"http://127.0.0.1:{port}/mcp", token, f"!{rooms['internal']}")
    finally:
        if process is not None:
            process.stop()
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def compare(targets: list[Target], args: argparse.Namespace) -> list[list[str]]:
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    paths: dict[tuple[str, str, str], Callable[[], Awaitable[None]]] = {}
    clients = []
    try:
        for t in targets:
            http = httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {t.token}"}, timeout=60, limits=limits
            )
            client = Client(streamable_http_client(t.url, http_client=http))
            await client.__aenter__()
            clients.append((client, http))
            raw = RawMcp(http, t.url)
            send = {"room": t.room, "body": "bench"}
            read = {"room": t.room, "limit": 20}
            for op, tool, call_args in (
                ("send_message", "send_message", send),
                ("get_messages (20)", "get_messages", read),
            ):
                paths[(t.name, op, "raw")] = partial(raw.call, tool, call_args)
                paths[(t.name, op, "sdk")] = partial(mcp_call, client, tool, call_args)
        for _ in range(20):  # warm-up (agents provisioned, rooms filled, pools open)
            for fn in paths.values():
                await fn()
        lat: dict[tuple[str, str, str], list[float]] = {k: [] for k in paths}
        tput: dict[tuple[str, str, str], list[float]] = {k: [] for k in paths}
        rounds = 10
        for _ in range(rounds):
            for key, fn in paths.items():
                lat[key] += await timed(fn, max(1, args.calls // rounds))
        for _ in range(3):
            for key, fn in paths.items():
                tput[key].append(await throughput(lambda w, fn=fn: fn, args.ops, args.concurrency))  # type: ignore[misc]
    finally:
        for client, http in reversed(clients):
            await client.__aexit__(None, None, None)
            await http.aclose()
    rows = []
    for key in paths:
        values = lat[key]
        rows.append(
            [
                key[1],
                key[0],
                key[2],
                f"{statistics.median(values):.2f}",
                f"{percentile(values, 95):.2f}",
                f"{statistics.median(tput[key]):.0f}",
            ]
        )
    rows.sort(key=lambda r: (r[0], r[2], r[1]))
    return rows
