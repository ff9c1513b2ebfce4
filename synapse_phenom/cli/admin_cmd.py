"""``phenom-chat admin``: emergency and moderation actions against a running homeserver.

Every action is audited (moderation audit log: who, what, why), prints what it changed,
is safe to repeat, and has ``--dry-run``. Credentials: ``--token-file``, else
``$PHENOM_ADMIN_TOKEN``, else the dev admin user of ``--data-dir`` (like ``moderation log``).
The logic lives in ``synapse_phenom.ops.admin_actions``; docs/operations.md has the runbook.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import yaml
from rich.table import Table

from synapse_phenom.admin.core import parse_duration
from synapse_phenom.cli._common import CliError, add_admin_target, admin_target, console, fail
from synapse_phenom.cli.moderation_cmd import parse_since
from synapse_phenom.ops.admin_actions import SCOPE_NOTE, AdminOps, Outcome
from synapse_phenom.ops.admin_client import MatrixError

ROOM_KEYS = ("internal", "partners", "community")


def _common(p: argparse.ArgumentParser, reason: bool = True) -> None:
    add_admin_target(p)
    p.add_argument("--token-file", type=Path, help="file holding an admin access token")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    if reason:
        p.add_argument("--reason", default="", help="why (goes into the audit log)")
        p.add_argument(
            "--dry-run", action="store_true", help="show what would change; change nothing"
        )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="admin actions: lockdown, slow mode, users, agents (audited)")
    a = p.add_subparsers(dest="admin_command", required=True, metavar="ACTION")

    for name, helptext in (
        ("lockdown", "make a room read-only below moderator"),
        ("unlock", "reopen a room"),
    ):
        r = a.add_parser(name, help=helptext)
        _common(r)
        where = r.add_mutually_exclusive_group(required=True)
        where.add_argument(
            "--room", help="room key (community, partners, internal), alias or room id"
        )
        where.add_argument("--all", action="store_true", help="the three Phenom rooms")
        if name == "lockdown":
            r.add_argument(
                "--until", help="lift it by itself after 30s, 10m, 2h, 1d (survives restarts)"
            )
        r.set_defaults(func=run_room, lock=name == "lockdown")

    s = a.add_parser(
        "slow-mode", help="at most one message per interval per user (live moderation policy)"
    )
    _common(s)
    s.add_argument("--room", required=True, help="room key, alias or room id")
    mode = s.add_mutually_exclusive_group(required=True)
    mode.add_argument("--interval", help="e.g. 30s, 2m")
    mode.add_argument("--off", action="store_true", help="back to the configured flood limit")
    s.set_defaults(func=run_slow_mode)

    st = a.add_parser("status", help="rooms under lockdown")
    _common(st, reason=False)
    st.set_defaults(func=run_status)

    u = a.add_parser("user", help="suspend, shadow-ban, ban, redact, deactivate or show a user")
    us = u.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    for name, helptext in (
        ("suspend", "user cannot send, join or invite (Synapse suspension)"),
        ("unsuspend", "lift a suspension"),
        ("shadow-ban", "user's messages silently reach nobody (--undo lifts it)"),
        ("ban", "ban from the three Phenom rooms (--undo unbans)"),
        ("unmute", "lift moderation mutes now (--room R: one room)"),
        ("redact", "redact the user's messages (--since 2h)"),
        ("deactivate", "log out and deactivate for good (--erase: also erase their data)"),
        ("show", "groups, rooms, devices, last seen, recent moderation actions"),
    ):
        c = us.add_parser(name, help=helptext)
        _common(c, reason=name != "show")
        c.add_argument("user", help="localpart or full Matrix ID")
        if name in ("shadow-ban", "ban"):
            c.add_argument("--undo", action="store_true", help="lift it")
        if name == "unmute":
            c.add_argument("--room", help="room key, alias or id (default: every room)")
        if name == "redact":
            c.add_argument(
                "--since", help="only messages since 30m, 2h, 7d, an ISO time or epoch ms"
            )
        if name == "deactivate":
            c.add_argument(
                "--erase", action="store_true", help="also erase messages for new joiners, profile"
            )
        c.set_defaults(func=run_user, action=name)

    ag = a.add_parser("agents", help="AI agents: list, revoke, enable")
    ags = ag.add_subparsers(dest="agents_command", required=True, metavar="ACTION")
    lst = ags.add_parser("list", help="agents with last activity and revocation state")
    _common(lst, reason=False)
    lst.add_argument(
        "--mcp-config",
        type=Path,
        help="mcp.yaml: also list configured agents (default DIR/mcp.yaml)",
    )
    lst.set_defaults(func=run_agents_list)
    for name, helptext in (
        ("revoke", "MCP refuses its tokens; its Matrix user is suspended"),
        ("enable", "undo a revoke"),
    ):
        c = ags.add_parser(name, help=helptext)
        _common(c)
        c.add_argument("agent", help="agent localpart (agent-helper) or Matrix ID")
        c.set_defaults(func=run_agent_revoke, revoke=name == "revoke")


def _ops(args: argparse.Namespace) -> AdminOps:
    if not args.token_file:
        return AdminOps(*admin_target(args))
    try:
        token = args.token_file.read_text().strip()
    except OSError as err:
        raise CliError(f"--token-file: {err}") from None
    if not token:
        raise CliError(f"--token-file: {args.token_file} is empty")
    config_path = args.data_dir / "homeserver.yaml"
    if args.homeserver:
        return AdminOps(str(args.homeserver), token)
    if config_path.exists():
        from synapse_phenom.ops import devstack

        return AdminOps(devstack.base_url_of(config_path), token)
    raise CliError("pass --homeserver URL with --token-file")


def _run(args: argparse.Namespace, action: Callable[[AdminOps], Any]) -> int:
    try:
        with _ops(args) as ops:
            result = action(ops)
    except CliError as err:
        return fail(str(err))
    except MatrixError as err:
        return fail(f"{err.errcode}: {err.error}")
    except ValueError as err:
        return fail(str(err))
    except (OSError, httpx2.TransportError) as err:
        return fail(f"cannot reach the homeserver: {err}")
    outcomes = result if isinstance(result, list) else [result]
    if all(isinstance(o, Outcome) for o in outcomes):
        _print_outcomes(args, outcomes)
    return 0


def _print_outcomes(args: argparse.Namespace, outcomes: list[Outcome]) -> None:
    if args.json:
        for o in outcomes:
            console.print_json(
                json.dumps(
                    {"target": o.target, "dry_run": o.dry_run, "changes": o.changes, **o.extra}
                )
            )
        return
    for o in outcomes:
        if not o.changes:
            console.print(f"{o.target}: nothing to change (already in that state)")
            continue
        head = "[yellow]DRY RUN, would change[/]" if o.dry_run else "[green]changed[/]"
        console.print(f"{o.target}: {head}")
        for change in o.changes:
            console.print(f"  - {change}")
    console.print(f"[dim]Audited in the moderation log unless a dry run; {SCOPE_NOTE}.[/]")


def _rooms(args: argparse.Namespace) -> list[str]:
    return list(ROOM_KEYS) if args.all else [args.room]


def run_room(args: argparse.Namespace) -> int:
    try:
        until = parse_duration(args.until) if getattr(args, "until", None) else None
    except ValueError as err:
        return fail(f"--until: {err}")
    if args.lock:
        return _run(
            args,
            lambda ops: [ops.lockdown(r, until, args.reason, args.dry_run) for r in _rooms(args)],
        )
    return _run(args, lambda ops: [ops.unlock(r, args.reason, args.dry_run) for r in _rooms(args)])


def run_slow_mode(args: argparse.Namespace) -> int:
    try:
        seconds = 0 if args.off else parse_duration(args.interval)
    except ValueError as err:
        return fail(f"--interval: {err}")
    return _run(args, lambda ops: ops.slow_mode(args.room, seconds, args.reason, args.dry_run))


def _when(ms: int | None) -> str:
    return "-" if not ms else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_status(args: argparse.Namespace) -> int:
    def show(ops: AdminOps) -> None:
        rows = ops.lockdowns()
        if args.json:
            console.print_json(json.dumps(rows))
            return
        table = Table(title=f"Rooms under lockdown ({len(rows)})")
        for col in ("room", "until (UTC)", "by", "reason", "since (UTC)"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                r["room_id"],
                _when(r["until_ts"]) if r["until_ts"] else "until unlocked",
                r["locked_by"],
                r["reason"],
                _when(r["locked_ts"]),
            )
        console.print(table)

    return _run(args, show)


def run_user(args: argparse.Namespace) -> int:
    action, user = args.action, args.user
    if action == "show":
        return _run(args, lambda ops: _print_user(args, ops.show(user)))
    if action == "redact":
        try:
            since = parse_since(args.since) if args.since else None
        except ValueError as err:
            return fail(f"--since: {err}")
        return _run(args, lambda ops: ops.redact(user, since, args.reason, args.dry_run))
    calls: dict[str, Callable[[AdminOps], Outcome]] = {
        "suspend": lambda ops: ops.suspend(user, True, args.reason, args.dry_run),
        "unsuspend": lambda ops: ops.suspend(user, False, args.reason, args.dry_run),
        "shadow-ban": lambda ops: ops.shadow_ban(user, not args.undo, args.reason, args.dry_run),
        "ban": lambda ops: ops.ban(user, args.undo, args.reason, args.dry_run),
        "unmute": lambda ops: ops.unmute(user, args.room, args.reason, args.dry_run),
        "deactivate": lambda ops: ops.deactivate(user, args.erase, args.reason, args.dry_run),
    }
    return _run(args, calls[action])


def _print_user(args: argparse.Namespace, info: dict[str, Any]) -> None:
    if args.json:
        console.print_json(json.dumps(info))
        return
    table = Table(title=info["user_id"], show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    flags = [f for f in ("admin", "deactivated", "suspended", "shadow_banned") if info[f]]
    table.add_row("display name", str(info["displayname"] or "-"))
    table.add_row("status", ", ".join(flags) or "active")
    table.add_row("created (UTC)", _when(info["created_ts"]))
    table.add_row("last seen (UTC)", _when(info["last_seen_ts"]))
    table.add_row("groups", ", ".join(info["groups"]) or "-")
    table.add_row("rooms", "\n".join(info["rooms"]) or "-")
    table.add_row(
        "devices",
        "\n".join(
            f"{d['device_id']} {d.get('display_name') or ''} last {_when(d.get('last_seen_ts'))} "
            f"{d.get('last_seen_ip') or ''}"
            for d in info["devices"]
        )
        or "-",
    )
    table.add_row(
        "moderation (recent)",
        "\n".join(
            f"{_when(e['ts'])} {e['action']} {e['rule']} {e['room_id']}" for e in info["moderation"]
        )
        or "-",
    )
    console.print(table)


def run_agents_list(args: argparse.Namespace) -> int:
    path = args.mcp_config or args.data_dir / "mcp.yaml"
    configured: dict[str, str] = {}
    if args.mcp_config or path.exists():
        try:
            agents = (yaml.safe_load(path.read_text()) or {}).get("agents") or {}
        except (OSError, yaml.YAMLError) as err:
            return fail(f"--mcp-config: {err}")
        configured = {
            str(p["localpart"]): str(cid) for cid, p in agents.items() if isinstance(p, dict)
        }

    def show(ops: AdminOps) -> None:
        rows = ops.agents(configured)
        if args.json:
            console.print_json(json.dumps(rows))
            return
        table = Table(title=f"Agents ({len(rows)})")
        for col in ("agent", "Cognito client id", "name", "last activity (UTC)", "state"):
            table.add_column(col, overflow="fold")
        for r in rows:
            state = "REVOKED" if r["revoked"] else ("suspended" if r["suspended"] else "active")
            if not r["exists"]:
                state += " (no Matrix user yet)"
            table.add_row(
                r["user_id"],
                r["client_id"] or "-",
                r["displayname"] or "-",
                _when(r["last_seen_ts"]),
                state,
            )
        console.print(table)

    return _run(args, show)


def run_agent_revoke(args: argparse.Namespace) -> int:
    return _run(
        args, lambda ops: ops.agent_revoke(args.agent, args.revoke, args.reason, args.dry_run)
    )
