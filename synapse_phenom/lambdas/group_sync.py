"""Cognito group changes → chat rooms, without waiting for the user's next sign-in.

Two Lambda entry points (docs/cognito.md, "Group changes without a sign-in"):

- ``handler``: target of an EventBridge rule on CloudTrail's record of
  ``AdminAddUserToGroup`` / ``AdminRemoveUserFromGroup`` (and ``AdminDisableUser``,
  ``AdminEnableUser``, ``AdminDeleteUser``, ``DeleteGroup``). It re-reads the user's
  groups from Cognito and stores them through the same admin endpoint the
  post-authentication provisioner uses; the rooms module joins and removes at once.
  When CloudTrail hides the username (``HIDDEN_DUE_TO_SECURITY_REASONS``) and gives no
  ``sub``, or the user is gone, it runs the full reconcile instead.
- ``reconcile_handler``: an EventBridge schedule (e.g. every 15 minutes), the safety
  net for lost or late events. ``phenom-chat reconcile`` runs the same code.

Only users who already have a chat account are updated (accounts are created at sign-in
by the provisioner). Environment: as the provisioner (``PHENOM_HOMESERVER_URL``,
``PHENOM_SERVER_NAME``, ``PHENOM_ADMIN_TOKEN_SECRET_ID``, ``PHENOM_OIDC_IDP_ID``), plus
``PHENOM_COGNITO_USER_POOL_ID`` (required by the reconcile; for events, other pools'
events are ignored when it is set). Unlike the sign-in trigger, failures raise, so
Lambda's asynchronous retries (two) run again.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import attrs
import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from synapse_phenom.cognito import claims as cognito_claims
from synapse_phenom.cognito import sync as cognito_sync
from synapse_phenom.lambdas import user_provisioner
from synapse_phenom.ops.admin_client import MatrixError, SynapseAdmin

logger = logging.getLogger("synapse_phenom.group_sync")
logger.setLevel(logging.INFO)

SOURCE = "cognito-sync"
# Adaptive retries: a full reconcile may run into Cognito's request-rate quotas.
_BOTO_CONFIG = BotoConfig(
    connect_timeout=2, read_timeout=10, retries={"max_attempts": 6, "mode": "adaptive"}
)
_cognito_clients: dict[str, Any] = {}


def cognito_client(region: str) -> Any:
    if region not in _cognito_clients:
        _cognito_clients[region] = boto3.client(
            "cognito-idp", region_name=region or None, config=_BOTO_CONFIG
        )
    return _cognito_clients[region]


@attrs.frozen
class UserSync:
    """What one user's sync did (``user_id`` None: no chat account yet)."""

    user_id: str | None
    groups: list[str]
    joined: list[str] = attrs.field(factory=list)
    removed: list[str] = attrs.field(factory=list)


@attrs.frozen
class ReconcileReport:
    cognito_members: int
    chat_users_with_groups: int
    changes: list[cognito_sync.Change]
    failed: dict[str, str]  # user id -> error


def _provider(settings: user_provisioner.Settings) -> str:
    return str(cognito_claims.external_id(settings.idp_id, "x")["auth_provider"])


def _attributes(user: dict[str, Any], key: str) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in user.get(key) or []}


def _user_not_found(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") == "UserNotFoundException"


def sync_user(
    cognito: Any,
    admin: SynapseAdmin,
    settings: user_provisioner.Settings,
    pool_id: str,
    username: str | None = None,
    sub: str | None = None,
) -> UserSync | None:
    """Store one user's current Cognito groups in chat; None when that needs a reconcile.

    A disabled or deleted user keeps no group (Community only).
    """
    enabled = True
    if username is not None:
        try:
            user = cognito.admin_get_user(UserPoolId=pool_id, Username=username)
        except ClientError as err:
            if not _user_not_found(err):
                raise
            if sub is None:
                return None  # deleted, and nothing left that names their chat account
            user, enabled = None, False
        if user is not None:
            sub = _attributes(user, "UserAttributes").get("sub") or sub
            enabled = bool(user.get("Enabled", True))
            username = str(user["Username"])
    elif sub is not None:
        found = cognito.list_users(UserPoolId=pool_id, Filter=f'sub = "{sub}"', Limit=1)
        users = found.get("Users") or []
        username = str(users[0]["Username"]) if users else None
        enabled = bool(users[0].get("Enabled", True)) if users else False
    if sub is None:
        return None
    groups: list[str] = []
    if username is not None and enabled:
        groups = user_provisioner.cognito_groups(cognito, pool_id, username)
    user_id = admin.user_by_external_id(_provider(settings), sub)
    if user_id is None:
        return UserSync(user_id=None, groups=groups)
    result = admin.set_groups(user_id, groups, SOURCE)
    return UserSync(
        user_id=user_id,
        groups=list(result["groups"]),
        joined=list(result["joined"]),
        removed=list(result["removed"]),
    )


def _paginate(cognito: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in cognito.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key) or [])
    return items


def cognito_members(cognito: Any, pool_id: str) -> dict[str, list[cognito_sync.CognitoMember]]:
    """group -> its members, from ListGroups + ListUsersInGroup (paginated)."""
    out: dict[str, list[cognito_sync.CognitoMember]] = {}
    for group in _paginate(cognito, "list_groups", "Groups", UserPoolId=pool_id):
        name = str(group["GroupName"])
        members = _paginate(
            cognito, "list_users_in_group", "Users", UserPoolId=pool_id, GroupName=name
        )
        out[name] = [
            cognito_sync.CognitoMember(
                sub=_attributes(m, "Attributes").get("sub") or str(m["Username"]),
                username=str(m["Username"]),
                enabled=bool(m.get("Enabled", True)),
            )
            for m in members
        ]
    return out


def reconcile_pool(
    cognito: Any,
    admin: SynapseAdmin,
    settings: user_provisioner.Settings,
    pool_id: str,
    dry_run: bool = False,
) -> ReconcileReport:
    """Make every chat account's groups match Cognito; see cognito.sync.plan_reconcile."""
    provider = _provider(settings)
    by_group = cognito_members(cognito, pool_id)
    desired = cognito_sync.desired_groups(by_group)
    stored = admin.users_with_groups()
    accounts: dict[str, str] = {}
    for sub in desired:
        user_id = admin.user_by_external_id(provider, sub)
        if user_id is not None:
            accounts[sub] = user_id
    known = set(accounts.values())
    linked = {u: admin.external_id_of(u, provider) for u in stored if u not in known}
    changes = cognito_sync.plan_reconcile(desired, accounts, stored, linked)
    failed: dict[str, str] = {}
    if not dry_run:
        for change in changes:
            try:
                admin.set_groups(change.user_id, change.groups, SOURCE)
            except MatrixError as err:  # one bad account must not stop the others
                failed[change.user_id] = str(err)
    return ReconcileReport(
        cognito_members=len(desired),
        chat_users_with_groups=len(stored),
        changes=changes,
        failed=failed,
    )


def _admin(settings: user_provisioner.Settings, region: str) -> SynapseAdmin:
    token = user_provisioner.admin_token(settings, region)
    return SynapseAdmin(settings.homeserver_url, token, timeout=10.0)


def _run_reconcile(
    settings: user_provisioner.Settings, region: str, pool_id: str
) -> dict[str, Any]:
    started = time.monotonic()
    with _admin(settings, region) as admin:
        report = reconcile_pool(cognito_client(region), admin, settings, pool_id)
    logger.info(
        "group sync: reconciled %s in %.1f s: %d Cognito users with groups, %d chat users with "
        "groups, %d changed, %d failed",
        pool_id,
        time.monotonic() - started,
        report.cognito_members,
        report.chat_users_with_groups,
        len(report.changes),
        len(report.failed),
    )
    for change in report.changes:
        logger.info(
            "group sync: %s groups %s -> %s",
            change.user_id,
            ",".join(change.was) or "-",
            ",".join(change.groups) or "-",
        )
    if report.failed:
        raise RuntimeError(f"reconcile failed for {len(report.failed)} users: {report.failed}")
    return {"status": "reconciled", "changed": len(report.changes)}


def handler(event: Any, context: Any) -> dict[str, Any]:
    """EventBridge target for CloudTrail's ``aws.cognito-idp`` API-call events."""
    try:
        parsed = cognito_sync.parse_event(event)
    except cognito_sync.EventError as err:
        logger.error("group sync: ignoring event: %s", err)
        return {"status": "ignored", "reason": str(err)}
    if parsed.scope == "ignore":
        logger.info("group sync: ignoring %s: %s", parsed.event_name, parsed.reason)
        return {"status": "ignored", "reason": parsed.reason}
    wanted_pool = os.environ.get("PHENOM_COGNITO_USER_POOL_ID", "")
    if wanted_pool and parsed.user_pool_id != wanted_pool:
        logger.info("group sync: ignoring %s of pool %s", parsed.event_name, parsed.user_pool_id)
        return {"status": "ignored", "reason": "another user pool"}
    settings = user_provisioner.Settings.from_env(os.environ)
    region = parsed.region or os.environ.get("AWS_REGION", "")
    try:
        if parsed.scope == "user":
            with _admin(settings, region) as admin:
                done = sync_user(
                    cognito_client(region),
                    admin,
                    settings,
                    parsed.user_pool_id,
                    parsed.username,
                    parsed.sub,
                )
            if done is not None:
                logger.info(
                    "group sync: %s %s: %s groups %s; joined %s; removed %s",
                    parsed.event_name,
                    parsed.group or "-",
                    done.user_id or "(no chat account yet)",
                    ",".join(done.groups) or "-",
                    ",".join(done.joined) or "-",
                    ",".join(done.removed) or "-",
                )
                return {"status": "synced", "user_id": done.user_id, "groups": done.groups}
            reason = "the user is gone from the pool"
        else:
            reason = parsed.reason
        logger.info("group sync: %s: %s; running a full reconcile", parsed.event_name, reason)
        return _run_reconcile(settings, region, parsed.user_pool_id)
    except MatrixError as err:
        if err.status == 401:
            user_provisioner.reset_caches()
        logger.error("group sync: Synapse refused %s: %s", parsed.event_name, err)
        raise


def reconcile_handler(event: Any, context: Any) -> dict[str, Any]:
    """Scheduled full reconcile of ``PHENOM_COGNITO_USER_POOL_ID``."""
    pool_id = os.environ.get("PHENOM_COGNITO_USER_POOL_ID", "")
    if not pool_id:
        raise ValueError("missing environment variable: PHENOM_COGNITO_USER_POOL_ID")
    settings = user_provisioner.Settings.from_env(os.environ)
    region = os.environ.get("AWS_REGION", "") or pool_id.split("_", 1)[0]
    return _run_reconcile(settings, region, pool_id)
