"""``phenom-chat dev``: the whole stack on this machine, on SQLite, offline."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from rich.table import Table

from synapse_phenom.cli._common import add_data_dir, console, fail
from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.ops import dev_sso, devstack, hsconfig
from synapse_phenom.ops.cognito_emulator import EmulatorError
from synapse_phenom.rooms.config import RoomsConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dev", help="run the dev stack (Synapse with all Phenom modules) until Ctrl-C"
    )
    add_data_dir(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8008, help="Synapse client port (default 8008)")
    p.add_argument("--mcp-port", type=int, default=3001, help="MCP server port (default 3001)")
    p.add_argument(
        "--content-origin",
        metavar="URL",
        help="fetch Phenom link previews from this copy of the site (e.g. http://127.0.0.1:3000); "
        "trusted, so it may be loopback",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="URL clients reach the homeserver at (default: from --host; with 0.0.0.0 this "
        "machine's LAN address, e.g. http://192.168.1.20:8008)",
    )
    p.add_argument(
        "--sso",
        action="store_true",
        help="sign in with Cognito: start the offline Cognito emulator with test users",
    )
    p.add_argument(
        "--cognito-port", type=int, default=9229, help="Cognito emulator port (default 9229)"
    )
    p.add_argument(
        "--backend",
        choices=("synapse", "hasura"),
        default="synapse",
        help="synapse (default): Synapse + MCP server; hasura: the MCP server on Implementation B "
        "(the chat tables in PostgreSQL)",
    )
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="with --backend hasura: PostgreSQL to use (postgresql://...); default: an embedded "
        "PostgreSQL in DIR/postgres (pip extra 'dev': pgserver)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if args.backend == "hasura":
        from synapse_phenom.cli.dev_hasura import run_hasura

        if args.sso or args.public_url:
            return fail(
                "--sso and --public-url are for the Synapse dev stack, not --backend hasura"
            )

        return run_hasura(args, data_dir, stop)
    if args.database_url:
        return fail(
            "--database-url is for --backend hasura (Synapse's dev stack runs on SQLite)", code=2
        )

    busy = devstack.busy_ports(
        [
            (args.host, args.port, "Synapse (--port)"),
            (args.host, args.mcp_port, "the MCP server (--mcp-port)"),
        ]
    )
    if busy:
        return fail(
            "cannot start the dev stack:\n  "
            + "\n  ".join(busy)
            + "\nStop what uses it (another `phenom-chat dev`?) or choose other ports with "
            "--port / --mcp-port.",
            code=2,
        )
    first_run = not (data_dir / "homeserver.yaml").exists()
    overrides = None
    if args.content_origin:
        try:
            overrides = hsconfig.content_origin_overrides(args.content_origin)
        except ValueError as err:
            return fail(f"--content-origin: {err}", code=2)
    try:
        public_base = dev_sso.public_base_url(args.host, args.port, args.public_url)
    except ValueError as err:
        return fail(f"--public-url: {err}", code=2)
    procs: list[devstack.ManagedProcess] = []
    sso = None
    if args.sso:
        try:
            with console.status("starting the Cognito emulator…"):
                sso = dev_sso.start(data_dir, public_base, args.host, args.cognito_port)
        except (EmulatorError, devstack.StackError) as err:
            return fail(f"--sso: {err}", code=1)
        procs.append(sso.emulator.process)
    try:
        # The MCP server's application service registration must exist before Synapse starts.
        registration = mcp_dev.write_registration_file(data_dir, "localhost")
        config_path = devstack.prepare_synapse(
            data_dir,
            host=args.host,
            port=args.port,
            module_overrides=overrides,
            extra_values={
                "app_service_config_files": [str(registration)],
                "public_baseurl": public_base,
                **(sso.synapse_values if sso else {}),
            },
        )
        with console.status("starting Synapse…"):
            synapse = devstack.start_synapse(config_path)
            procs.append(synapse)
            base_url = devstack.base_url_of(config_path)
            devstack.wait_http(f"{base_url}/_matrix/client/versions", procs, timeout=120)
            aliases = [f"#{spec.alias}:localhost" for spec in RoomsConfig().rooms.values()]
            rooms = devstack.wait_rooms(base_url, aliases)
        with console.status("starting the MCP server…"):
            mcp_files = mcp_dev.prepare_mcp(data_dir, base_url, host=args.host, port=args.mcp_port)
            procs.append(mcp_dev.start_mcp(mcp_files.config, args.host, args.mcp_port))
            mcp_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            mcp_url = f"http://{mcp_host}:{args.mcp_port}"
            devstack.wait_http(f"{mcp_url}/health", procs, timeout=60)
        extra_rows = [
            ("MCP server (agents)", f"{mcp_url}/mcp"),
            ("Agent token", str(mcp_files.token)),
        ]
        if args.content_origin:
            extra_rows.append(("Link previews fetched from", args.content_origin))
        if public_base.rstrip("/") not in (base_url, base_url.replace("127.0.0.1", "localhost")):
            extra_rows.insert(0, ("Public URL (phones, SSO)", public_base.rstrip("/")))
        if sso is not None:
            _print_sso(sso, data_dir)
        _print_welcome(data_dir, base_url, rooms, first_run, extra_rows)
        while not stop.wait(0.5):
            dead = [p for p in procs if not p.alive()]
            if dead:
                return fail(f"{dead[0].name} stopped unexpectedly:\n{dead[0].log_tail()}", code=1)
        console.print("stopping…")
        return 0
    except devstack.StackError as err:
        return fail(str(err), code=1)
    finally:
        for proc in reversed(procs):
            proc.stop()


def _own_command() -> str:
    """How the user can run phenom-chat again: bare if it is on PATH, else its full path."""
    path = Path(sys.argv[0]).resolve()
    found = shutil.which(path.name)
    return path.name if found and Path(found).resolve() == path else str(path)


def _print_welcome(
    data_dir: Path,
    base_url: str,
    rooms: dict[str, str],
    first_run: bool,
    extra_rows: list[tuple[str, str]],
) -> None:
    console.print(
        f"[bold green]Phenom chat dev stack is up[/] ({'new' if first_run else 'existing'} data "
        f"in {data_dir})"
    )
    table = Table(show_header=False, box=None)
    table.add_row("Homeserver (client URL)", base_url)
    table.add_row("Server name", "localhost")
    for alias, room_id in rooms.items():
        table.add_row(f"Room {alias}", room_id)
    for label, value in extra_rows:
        table.add_row(label, value)
    table.add_row("Config", str(data_dir / "homeserver.yaml"))
    table.add_row("Log", str(data_dir / "homeserver.log"))
    console.print(table)
    # soft_wrap: a narrow terminal may fold the command visually, but never breaks it with
    # a newline (copy-paste keeps working).
    console.print(
        "Create a user (in another terminal):\n"
        f"  {_own_command()} provision-user --data-dir {data_dir} --username alice "
        "--password 'choose-one' --groups team\n"
        "then sign in from Element (homeserver "
        f"{base_url}) or any Matrix client. Ctrl-C stops everything.",
        soft_wrap=True,
        highlight=False,
    )


def _print_sso(sso: dev_sso.DevSso, data_dir: Path) -> None:
    table = Table(title="Cognito test users (hosted UI of the emulator)", box=None)
    for column in ("email (username)", "password", "groups"):
        table.add_column(column)
    for user, groups in sso.users:
        table.add_row(user.email, user.password, ", ".join(groups) or "(none: Community only)")
    console.print(table)
    console.print(
        f"Cognito emulator {sso.emulator.public_endpoint} (user pool {sso.emulator.pool_id})\n"
        "SSO sign-in URL (the app opens it; back to phenom://auth?loginToken=…):\n"
        f"  {sso.sso_url}\n"
        "Or sign in from this shell (prints a Matrix access token):\n"
        f"  {_own_command()} sso-login --data-dir {data_dir} --email {sso.users[0][0].email}"
    )
