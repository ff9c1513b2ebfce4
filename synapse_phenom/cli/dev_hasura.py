"""``phenom-chat dev --backend hasura``: the MCP server on Implementation B, one command.

PostgreSQL: ``--database-url``, else an embedded server (``pgserver`` wheel) in DIR/postgres
that lives as long as the command. The Hasura project's migrations are applied, the three
rooms provisioned from the rooms core, and the dev agent's token written to DIR/agent-token,
exactly as the Synapse dev stack does.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import psycopg
from rich.table import Table

from synapse_phenom.cli._common import console, fail
from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.mcp.hasura_dev import EmbeddedPostgres, prepare_database
from synapse_phenom.ops import devstack


def run_hasura(args: argparse.Namespace, data_dir: Path, stop: threading.Event) -> int:
    embedded: EmbeddedPostgres | None = None
    procs: list[devstack.ManagedProcess] = []
    try:
        if args.database_url:
            dsn = str(args.database_url)
            where = "given with --database-url"
        else:
            with console.status("starting the embedded PostgreSQL…"):
                embedded = EmbeddedPostgres(data_dir / "postgres").start()
            dsn = embedded.dsn
            where = f"embedded, data in {data_dir / 'postgres'}"
        with console.status("migrating the chat database…"):
            rooms = prepare_database(dsn)
        with console.status("starting the MCP server…"):
            files = mcp_dev.prepare_mcp_hasura(data_dir, dsn, host=args.host, port=args.mcp_port)
            procs.append(mcp_dev.start_mcp(files.config, args.host, args.mcp_port))
            host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            mcp_url = f"http://{host}:{args.mcp_port}"
            devstack.wait_http(f"{mcp_url}/health", procs, timeout=60)
        console.print(
            f"[bold green]Phenom chat dev stack (hasura backend) is up[/] (data in {data_dir})"
        )
        table = Table(show_header=False, box=None)
        table.add_row("MCP server (agents)", f"{mcp_url}/mcp")
        table.add_row("Agent token", str(files.token))
        table.add_row("Chat database", f"{_safe(dsn)} ({where})")
        for key, room_id in rooms.items():
            table.add_row(f"Room #{key}:localhost", f"!{room_id}")
        table.add_row("MCP log", str(data_dir / "mcp.log"))
        console.print(table)
        console.print(
            "Call the tools with the agent token, e.g. the MCP Inspector:\n"
            f"  npx @modelcontextprotocol/inspector --cli {mcp_url}/mcp --transport http "
            f'--header "Authorization: Bearer $(cat {files.token})" --method tools/list\n'
            "Ctrl-C stops everything."
        )
        while not stop.wait(0.5):
            dead = [p for p in procs if not p.alive()]
            if dead:
                return fail(f"{dead[0].name} stopped unexpectedly:\n{dead[0].log_tail()}", code=1)
        console.print("stopping…")
        return 0
    except (devstack.StackError, RuntimeError, ValueError, psycopg.Error) as err:
        return fail(str(err), code=1)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if embedded is not None:
            embedded.stop()


def _safe(dsn: str) -> str:
    """The URL without its password, for the banner."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn
