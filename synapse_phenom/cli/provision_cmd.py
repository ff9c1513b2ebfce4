"""``phenom-chat provision-user``: create a user, set their groups, reconcile rooms."""

from __future__ import annotations

import argparse

from synapse_phenom.cli._common import CliError, add_admin_target, admin_target, console, fail
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
            groups = [g for g in args.groups.split(",") if g.strip()]
            result = admin.provision(
                user_id, groups, displayname=args.display_name, source="cli", password=args.password
            )
    except MatrixError as err:
        return fail(f"{err.errcode}: {err.error}")
    except ValueError as err:
        return fail(f"--groups: {err}")
    except (OSError, devstack.StackError) as err:
        return fail(f"cannot reach the homeserver at {base_url}: {err}")
    console.print(
        f"[bold]{result.user_id}[/] {'created' if result.created else 'updated'}; "
        f"groups: {', '.join(result.groups) or '(none)'}"
    )
    if result.joined:
        console.print(f"  joined: {', '.join(result.joined)}", style="green")
    if result.removed:
        console.print(f"  removed from: {', '.join(result.removed)}", style="yellow")
    return 0
