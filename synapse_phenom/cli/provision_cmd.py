"""``phenom-chat provision-user``: create a user, set their groups, reconcile rooms.

``--backend synapse`` (default) works through Synapse's admin API; ``--backend hasura``
writes Implementation B's ``chat`` tables; ``both`` does one, then the other. Both use the
same rooms core, so the same groups give the same rooms.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import psycopg

from synapse_phenom.cli._common import CliError, add_admin_target, admin_target, console, fail
from synapse_phenom.config import InvalidConfig
from synapse_phenom.lite import provision as lite
from synapse_phenom.lite.settings import DSN_ENV, dsn_from, rooms_config
from synapse_phenom.ops import devstack
from synapse_phenom.ops.admin_client import MatrixError, SynapseAdmin


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "provision-user",
        help="create or update a user, store their groups and fix their room memberships now",
    )
    add_admin_target(p)
    p.add_argument("--username", required=True, help="localpart or full Matrix ID")
    p.add_argument("--groups", default="", help="comma-separated groups, e.g. team,partners")
    p.add_argument("--display-name", help="display name to set")
    p.add_argument("--password", help="set a password (dev: lets the user sign in from Element)")
    p.add_argument(
        "--backend",
        choices=["synapse", "hasura", "both"],
        default="synapse",
        help="synapse (A, default), hasura (B: chat tables in PostgreSQL) or both",
    )
    p.add_argument("--dsn", help=f"B: chat database URL (default ${DSN_ENV})")
    p.add_argument("--sub", help="B: the user's Cognito sub (needed to create a user in B)")
    p.add_argument("--email", help="B: email to store for a new user")
    p.add_argument(
        "--rooms-config", type=Path, help="B: rooms config YAML (default: built-in rooms)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    groups = [g for g in args.groups.split(",") if g.strip()]
    if args.backend in ("synapse", "both"):
        code = _run_synapse(args, groups)
        if code:
            return code
    if args.backend in ("hasura", "both"):
        return _run_hasura(args, groups)
    return 0


def _report(
    who: str, created: bool, groups: list[str] | tuple[str, ...], joined: object, removed: object
) -> None:
    console.print(
        f"[bold]{who}[/] {'created' if created else 'updated'}; "
        f"groups: {', '.join(groups) or '(none)'}"
    )
    if joined:
        console.print(f"  joined: {', '.join(joined)}", style="green")  # type: ignore[arg-type]
    if removed:
        console.print(f"  removed from: {', '.join(removed)}", style="yellow")  # type: ignore[arg-type]


def _run_synapse(args: argparse.Namespace, groups: list[str]) -> int:
    try:
        base_url, token = admin_target(args)
    except CliError as err:
        return fail(str(err))
    try:
        with SynapseAdmin(base_url, token) as admin:
            server_name = admin.whoami().split(":", 1)[1]
            user_id = (
                args.username
                if args.username.startswith("@")
                else f"@{args.username}:{server_name}"
            )
            result = admin.provision(
                user_id, groups, displayname=args.display_name, source="cli", password=args.password
            )
    except MatrixError as err:
        return fail(f"{err.errcode}: {err.error}")
    except ValueError as err:
        return fail(f"--groups: {err}")
    except (OSError, devstack.StackError) as err:
        return fail(f"cannot reach the homeserver at {base_url}: {err}")
    _report(result.user_id, result.created, result.groups, result.joined, result.removed)
    return 0


def _run_hasura(args: argparse.Namespace, groups: list[str]) -> int:
    username = args.username.removeprefix("@").split(":", 1)[0]
    try:
        dsn = dsn_from(args.dsn, os.environ)
        config = rooms_config(args.rooms_config, os.environ)
    except InvalidConfig as err:
        return fail(str(err))
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            sub = args.sub
            if not sub:
                row = conn.execute(
                    "SELECT id FROM chat.users WHERE username = %s", (username,)
                ).fetchone()
                if row is None:
                    return fail(
                        f"no user {username!r} in the chat database yet: "
                        "pass --sub (their Cognito sub)"
                    )
                sub = row[0]
            user = lite.LiteUser(sub, username, args.display_name, args.email, tuple(groups))
            result = lite.provision_user(
                conn, config, user, source="cli", display_name=args.display_name
            )
    except ValueError as err:
        return fail(str(err))
    except psycopg.errors.UndefinedTable:
        return fail("the chat schema is missing: run `phenom-chat lite migrate up` first")
    except psycopg.Error as err:
        return fail(f"chat database: {str(err).strip()}")
    _report(
        f"{result.username} ({result.user_id}) in B",
        result.created,
        result.groups,
        result.joined,
        result.removed,
    )
    return 0
