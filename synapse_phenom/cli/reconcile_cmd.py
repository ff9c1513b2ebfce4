"""``phenom-chat reconcile``: make every chat account's groups match Cognito now."""

from __future__ import annotations

import argparse
import os

from synapse_phenom.cli._common import CliError, add_admin_target, admin_target, console, fail
from synapse_phenom.ops import devstack
from synapse_phenom.ops.admin_client import MatrixError, SynapseAdmin


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconcile",
        help="compare every Cognito group with the groups chat has stored and fix the differences",
    )
    add_admin_target(p)
    p.add_argument(
        "--user-pool-id",
        default=os.environ.get("PHENOM_COGNITO_USER_POOL_ID"),
        help="Cognito user pool id (default $PHENOM_COGNITO_USER_POOL_ID)",
    )
    p.add_argument("--region", help="AWS region (default: the pool id's)")
    p.add_argument(
        "--idp-id",
        default=os.environ.get("PHENOM_COGNITO_IDP_ID", "cognito"),
        help="Synapse idp_id of the Cognito provider (default cognito)",
    )
    p.add_argument("--dry-run", action="store_true", help="only print what would change")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:  # boto3: the `lambda` extra
        from botocore.exceptions import BotoCoreError, ClientError

        from synapse_phenom.lambdas import group_sync, user_provisioner
    except ImportError as err:
        return fail(f"{err.name} is missing: pip install 'synapse-phenom[lambda]'")

    if not args.user_pool_id:
        return fail("--user-pool-id (or PHENOM_COGNITO_USER_POOL_ID) is required")
    try:
        base_url, token = admin_target(args)
    except CliError as err:
        return fail(str(err))
    region = args.region or str(args.user_pool_id).split("_", 1)[0]
    settings = user_provisioner.Settings(
        homeserver_url=base_url, server_name="", idp_id=args.idp_id, dev_token=token
    )
    try:
        with SynapseAdmin(base_url, token) as admin:
            report = group_sync.reconcile_pool(
                group_sync.cognito_client(region),
                admin,
                settings,
                args.user_pool_id,
                dry_run=args.dry_run,
            )
    except MatrixError as err:
        return fail(f"{err.errcode}: {err.error}")
    except (BotoCoreError, ClientError) as err:
        return fail(f"Cognito: {err}")
    except (OSError, devstack.StackError) as err:
        return fail(f"cannot reach the homeserver at {base_url}: {err}")
    console.print(
        f"{report.cognito_members} Cognito users with groups, "
        f"{report.chat_users_with_groups} chat users with groups"
    )
    verb = "would change" if args.dry_run else "changed"
    for change in report.changes:
        mark = " [red](failed)[/]" if change.user_id in report.failed else ""
        console.print(
            f"  {verb} {change.user_id}: {', '.join(change.was) or '(none)'} → "
            f"{', '.join(change.groups) or '(none)'}{mark}"
        )
    if not report.changes:
        console.print("  nothing to change", style="green")
    for user_id, error in report.failed.items():
        console.print(f"  {user_id}: {error}", style="red")
    return 1 if report.failed else 0
