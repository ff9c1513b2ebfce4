"""The login half of Cognito sign-in: which groups an SSO login brought, once per login.

Cognito supplies groups; the rooms capability owns reconciliation. The rooms module's
``on_user_login`` hands each login to ``sync_sso_login`` together with itself as the
``GroupsSink``; this module only decides, through the database, what the login means:

1. ``m.login.sso`` half: take the groups the mapping provider parked for the user's
   ``sub`` (user → sub via Synapse's external ids), give them to the sink (it stores
   them and reconciles) and leave a mark;
2. ``m.login.token`` half of the same login (maybe another worker): consume the mark
   instead of reconciling again.

No synapse, no twisted: the database is anything with ``run_db_interaction`` (a
``ModuleApi``), the sink anything with the two methods below.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from prometheus_client import Counter

from synapse_phenom.cognito import store as cognito_store
from synapse_phenom.db import Txn, now_ms

SSO_LOGIN = "m.login.sso"
TOKEN_LOGIN = "m.login.token"
# The provider stores groups moments before the login callback, in the same request.
PENDING_MAX_AGE_MS = 10 * 60 * 1000
# Login tokens live 2 minutes by default; the token half follows within that.
MARK_MAX_AGE_MS = 5 * 60 * 1000

SSO_LOGIN_SYNCS = Counter(
    "phenom_sso_login_syncs_total",
    "Group syncs at SSO login: 'reconciled' (m.login.sso half), 'deduplicated' (m.login.token "
    "half skipped), 'no_groups' (SSO login without groups from the mapping provider)",
    ["outcome"],
)


class Database(Protocol):
    """The part of Synapse's ``ModuleApi`` used here."""

    def run_db_interaction(
        self, desc: str, func: Callable[..., Any], *args: Any
    ) -> Awaitable[Any]: ...


class GroupsSink(Protocol):
    """Who owns reconciliation (the rooms module)."""

    async def reconcile(self, user_id: str) -> Any: ...

    async def set_groups_and_reconcile(
        self, user_id: str, groups: list[str], source: str
    ) -> Any: ...


# Databases whose Cognito tables exist (weak: a test's ModuleApi does not outlive the test).
_schema_ready: weakref.WeakSet[Any] = weakref.WeakSet()


async def ensure_schema(db: Database) -> None:
    if db not in _schema_ready:
        await db.run_db_interaction("phenom_cognito_schema", cognito_store.create_schema)
        _schema_ready.add(db)


def put_and_purge(txn: Txn, sub: str, groups: list[str], issuer: str, now: int) -> None:
    """Mapping provider side: park the token's groups, drop parked groups nobody took."""
    cognito_store.purge_stale_pending(txn, now - PENDING_MAX_AGE_MS)
    cognito_store.put_pending_groups(txn, sub, groups, issuer, now)


async def sync_sso_login(
    db: Database,
    sink: GroupsSink,
    user_id: str,
    auth_provider_type: str | None,
    auth_provider_id: str | None,
) -> bool:
    """Group sync for an SSO login; False when this login is not one (caller reconciles)."""
    if not auth_provider_id or auth_provider_type not in (SSO_LOGIN, TOKEN_LOGIN):
        return False
    await ensure_schema(db)
    now = now_ms()
    if auth_provider_type == TOKEN_LOGIN:
        if await db.run_db_interaction(
            "phenom_cognito_take_mark", cognito_store.take_sso_mark, user_id, now - MARK_MAX_AGE_MS
        ):
            SSO_LOGIN_SYNCS.labels(outcome="deduplicated").inc()
            return True
        return False  # the SSO half did not reconcile (failed?): the caller does it now
    groups = await db.run_db_interaction(
        "phenom_cognito_take_groups",
        cognito_store.take_pending_groups,
        auth_provider_id,
        user_id,
        now - PENDING_MAX_AGE_MS,
    )
    if groups is None:
        SSO_LOGIN_SYNCS.labels(outcome="no_groups").inc()
        await sink.reconcile(user_id)
    else:
        await sink.set_groups_and_reconcile(user_id, groups, f"sso:{auth_provider_id}")
        SSO_LOGIN_SYNCS.labels(outcome="reconciled").inc()
    await db.run_db_interaction(
        "phenom_cognito_mark", cognito_store.mark_sso_reconciled, user_id, now
    )
    return True
