"""``phenom-chat moderation log``: read the moderation audit log.

It calls the moderation module's admin-only endpoint
``GET /_synapse/client/phenom/v1/moderation/audit`` with an admin access token:
``$PHENOM_ADMIN_TOKEN`` or, on a dev stack, the dev admin user of ``--data-dir``
(the same way ``provision-user`` does).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx2
from rich.table import Table

from synapse_phenom.cli._common import CliError, add_admin_target, admin_target, console, fail
from synapse_phenom.endpoints import AUDIT_PATH
from synapse_phenom.ops.admin_client import MatrixError, raise_for_matrix

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float | None = None) -> int:
    """``--since``: a duration back from now (``30m``, ``2h``, ``7d``), an ISO date/time
    (UTC unless it says otherwise) or milliseconds since the epoch. Returns epoch ms."""
    now = time.time() if now is None else now
    value = value.strip()
    rel = _RELATIVE.match(value)
    if rel:
        return int((now - int(rel.group(1)) * _UNITS[rel.group(2)]) * 1000)
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use e.g. 30m, 2h, 7d, 2026-11-25T10:00 or epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("moderation", help="moderation tools (audit log)")
    msub = p.add_subparsers(dest="moderation_command", required=True, metavar="SUBCOMMAND")
    log = msub.add_parser("log", help="list moderation actions, newest first")
    add_admin_target(log)
    log.add_argument("--room", help="room id, alias, or room key (community, partners, internal)")
    log.add_argument("--user", help="user: localpart or full Matrix ID")
    log.add_argument("--since", help="only actions since: 30m, 2h, 7d, an ISO time or epoch ms")
    log.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    log.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    log.set_defaults(func=run_log)


def _resolve_room(http: httpx2.Client, room: str, server_name: str) -> str:
    if room.startswith("!"):
        return room
    alias = room if room.startswith("#") else f"#{room}:{server_name}"
    if ":" not in alias:
        alias = f"{alias}:{server_name}"
    body = raise_for_matrix(http.get(f"/_matrix/client/v3/directory/room/{quote(alias)}"))
    return str(body["room_id"])


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_log(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as err:
        return fail(f"--since: {err}")
    try:
        base_url, token = admin_target(args)
    except CliError as err:
        return fail(str(err))
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx2.Client(base_url=base_url, headers=headers, timeout=30) as http:
            me = str(raise_for_matrix(http.get("/_matrix/client/v3/account/whoami"))["user_id"])
            server_name = me.split(":", 1)[1]
            params: dict[str, Any] = {"limit": args.limit}
            if args.room:
                params["room_id"] = _resolve_room(http, args.room, server_name)
            if args.user:
                params["user_id"] = (
                    args.user if args.user.startswith("@") else f"@{args.user}:{server_name}"
                )
            if since is not None:
                params["since"] = since
            entries = raise_for_matrix(http.get(AUDIT_PATH, params=params))["entries"]
    except MatrixError as err:
        return fail(f"{err.errcode}: {err.error}")
    except (OSError, httpx2.TransportError) as err:
        return fail(f"cannot reach the homeserver at {base_url}: {err}")
    if args.json:
        for entry in entries:
            console.print_json(json.dumps(entry))
        return 0
    table = Table(title=f"Moderation log ({len(entries)} entries, newest first)")
    for column in ("time (UTC)", "action", "rule", "user", "room", "policy", "event", "detail"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            _when(e["ts"]),
            e["action"],
            e["rule"],
            e["user_id"],
            e["room_id"],
            e["policy"],
            e["event_type"],
            e["detail"],
        )
    console.print(table)
    return 0
