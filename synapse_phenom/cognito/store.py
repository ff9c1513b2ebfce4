"""Tables that carry Cognito groups from the SSO callback to the login callback.

The OIDC mapping provider sees the ID token (groups) but not yet the Matrix user (a
first login registers the user after it ran); the ``on_user_login`` callback knows
the user but not the token. They are separate objects, possibly in different
worker processes, so the hand-over goes through the database:

1. ``put_pending_groups`` — mapping provider, keyed by the Cognito ``sub``;
2. ``take_pending_groups`` — login callback (``m.login.sso``): finds the user's
   ``sub`` through Synapse's ``user_external_ids`` and consumes the row;
3. ``mark_sso_reconciled`` / ``take_sso_mark`` — the ``m.login.token`` half of the
   same login consumes the mark instead of reconciling a second time.
"""

from __future__ import annotations

import json

from synapse_phenom import db
from synapse_phenom.db import Txn

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS phenom_sso_pending_groups (
        remote_user_id TEXT NOT NULL PRIMARY KEY,
        groups_json TEXT NOT NULL,
        issuer TEXT NOT NULL,
        stored_ts BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS phenom_sso_login_marks (
        user_id TEXT NOT NULL PRIMARY KEY,
        reconciled_ts BIGINT NOT NULL
    )
    """,
)


def create_schema(txn: Txn) -> None:
    db.create_schema(txn, SCHEMA)


def put_pending_groups(
    txn: Txn, remote_user_id: str, groups: list[str], issuer: str, now_ms: int
) -> None:
    txn.execute(
        """
        INSERT INTO phenom_sso_pending_groups (remote_user_id, groups_json, issuer, stored_ts)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (remote_user_id) DO UPDATE SET
            groups_json = excluded.groups_json,
            issuer = excluded.issuer,
            stored_ts = excluded.stored_ts
        """,
        (remote_user_id, json.dumps(sorted(groups)), issuer, now_ms),
    )


def take_pending_groups(
    txn: Txn, auth_provider: str, user_id: str, not_before_ms: int
) -> list[str] | None:
    """Groups the mapping provider stored for this user's ``sub`` on ``auth_provider``.

    The row is deleted either way; one older than ``not_before_ms`` is ignored (the
    provider writes it moments before the login callback runs, in the same request).
    """
    # Synapse's own table (no module API reads it): which sub this account is linked to.
    txn.execute(
        "SELECT external_id FROM user_external_ids WHERE auth_provider = ? AND user_id = ?",
        (auth_provider, user_id),
    )
    subs = [row[0] for row in txn.fetchall()]
    found: tuple[int, list[str]] | None = None
    for sub in subs:
        txn.execute(
            "SELECT groups_json, stored_ts FROM phenom_sso_pending_groups WHERE remote_user_id = ?",
            (sub,),
        )
        row = txn.fetchone()
        if row is None:
            continue
        txn.execute("DELETE FROM phenom_sso_pending_groups WHERE remote_user_id = ?", (sub,))
        stored_ts = int(row[1])
        if stored_ts >= not_before_ms and (found is None or stored_ts > found[0]):
            found = (stored_ts, [str(g) for g in json.loads(row[0])])
    return None if found is None else found[1]


def purge_stale_pending(txn: Txn, not_before_ms: int) -> None:
    """Drop rows whose login never completed (e.g. the browser was closed)."""
    txn.execute("DELETE FROM phenom_sso_pending_groups WHERE stored_ts < ?", (not_before_ms,))
    txn.execute("DELETE FROM phenom_sso_login_marks WHERE reconciled_ts < ?", (not_before_ms,))


def mark_sso_reconciled(txn: Txn, user_id: str, now_ms: int) -> None:
    txn.execute(
        """
        INSERT INTO phenom_sso_login_marks (user_id, reconciled_ts) VALUES (?, ?)
        ON CONFLICT (user_id) DO UPDATE SET reconciled_ts = excluded.reconciled_ts
        """,
        (user_id, now_ms),
    )


def take_sso_mark(txn: Txn, user_id: str, not_before_ms: int) -> bool:
    """True (and the mark is consumed) when an SSO login reconciled this user recently."""
    txn.execute("SELECT reconciled_ts FROM phenom_sso_login_marks WHERE user_id = ?", (user_id,))
    row = txn.fetchone()
    if row is None:
        return False
    txn.execute("DELETE FROM phenom_sso_login_marks WHERE user_id = ?", (user_id,))
    return int(row[0]) >= not_before_ms
