"""Tables of the rooms capability (groups, room-creation claims), shared by every process.

Functions here take a Synapse ``LoggingTransaction`` and are run with
``ModuleApi.run_db_interaction``; ``?`` placeholders work on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

from synapse_phenom import db
from synapse_phenom.db import Txn

GROUPS_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS phenom_user_groups (
        user_id TEXT NOT NULL PRIMARY KEY,
        groups_json TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_ts BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS phenom_room_claims (
        alias TEXT NOT NULL PRIMARY KEY,
        owner TEXT NOT NULL,
        claimed_ts BIGINT NOT NULL,
        room_id TEXT
    )
    """,
    # A room's default notification level, applied once per member (then it is theirs).
    """
    CREATE TABLE IF NOT EXISTS phenom_notification_defaults (
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        level TEXT NOT NULL,
        applied_ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, room_id)
    )
    """,
)


def create_schema(txn: Txn) -> None:
    db.create_schema(txn, GROUPS_SCHEMA)


def get_groups(txn: Txn, user_id: str) -> list[str] | None:
    """The user's stored groups, or None when nothing was ever stored for them."""
    txn.execute("SELECT groups_json FROM phenom_user_groups WHERE user_id = ?", (user_id,))
    row = txn.fetchone()
    if row is None:
        return None
    groups = json.loads(row[0])
    return [str(g) for g in groups]


def set_groups(txn: Txn, user_id: str, groups: list[str], source: str, now_ms: int) -> bool:
    """Store the user's groups; return True when they differ from what was stored."""
    previous = get_groups(txn, user_id)
    txn.execute(
        """
        INSERT INTO phenom_user_groups (user_id, groups_json, source, updated_ts)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (user_id) DO UPDATE SET
            groups_json = excluded.groups_json,
            source = excluded.source,
            updated_ts = excluded.updated_ts
        """,
        (user_id, json.dumps(sorted(groups)), source, now_ms),
    )
    return previous is None or sorted(previous) != sorted(groups)


def claim_alias(txn: Txn, alias: str, owner: str, now_ms: int, stale_after_ms: int) -> bool:
    """Take the right to create the room for ``alias``.

    Exactly one process wins; a claim whose owner died before recording a room id is
    taken over once it is ``stale_after_ms`` old.
    """
    txn.execute(
        """
        INSERT INTO phenom_room_claims (alias, owner, claimed_ts, room_id)
        VALUES (?, ?, ?, NULL)
        ON CONFLICT (alias) DO UPDATE SET owner = excluded.owner, claimed_ts = excluded.claimed_ts
        WHERE phenom_room_claims.room_id IS NULL AND phenom_room_claims.claimed_ts < ?
        """,
        (alias, owner, now_ms, now_ms - stale_after_ms),
    )
    txn.execute("SELECT owner, room_id FROM phenom_room_claims WHERE alias = ?", (alias,))
    row = txn.fetchone()
    return row is not None and row[0] == owner and row[1] is None


def record_claimed_room(txn: Txn, alias: str, owner: str, room_id: str) -> None:
    txn.execute(
        "UPDATE phenom_room_claims SET room_id = ? WHERE alias = ? AND owner = ?",
        (room_id, alias, owner),
    )


def release_claim(txn: Txn, alias: str, owner: str) -> None:
    txn.execute(
        "DELETE FROM phenom_room_claims WHERE alias = ? AND owner = ? AND room_id IS NULL",
        (alias, owner),
    )


def claimed_room(txn: Txn, alias: str) -> str | None:
    txn.execute("SELECT room_id FROM phenom_room_claims WHERE alias = ?", (alias,))
    row = txn.fetchone()
    return None if row is None else row[0]


def users_with_groups(txn: Txn, after: str, limit: int) -> list[tuple[str, list[str]]]:
    """Users whose stored groups are not empty, by user id after ``after`` (paging)."""
    txn.execute(
        "SELECT user_id, groups_json FROM phenom_user_groups"
        " WHERE user_id > ? AND groups_json <> '[]' ORDER BY user_id LIMIT ?",
        (after, limit),
    )
    return [(str(row[0]), [str(g) for g in json.loads(row[1])]) for row in txn.fetchall()]


def notification_default_applied(txn: Txn, user_id: str, room_id: str) -> bool:
    txn.execute(
        "SELECT 1 FROM phenom_notification_defaults WHERE user_id = ? AND room_id = ?",
        (user_id, room_id),
    )
    return txn.fetchone() is not None


def notification_defaults_of_room(txn: Txn, room_id: str) -> frozenset[str]:
    """The members a room's notification default was applied to (once each)."""
    txn.execute("SELECT user_id FROM phenom_notification_defaults WHERE room_id = ?", (room_id,))
    return frozenset(str(row[0]) for row in txn.fetchall())


def mark_notification_default(
    txn: Txn, user_id: str, room_id: str, level: str, now_ms: int
) -> None:
    txn.execute(
        """
        INSERT INTO phenom_notification_defaults (user_id, room_id, level, applied_ts)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (user_id, room_id) DO NOTHING
        """,
        (user_id, room_id, level, now_ms),
    )


def adopt_room(txn: Txn, alias: str, room_id: str, now_ms: int) -> str | None:
    """Record ``room_id`` as the room of ``alias`` when no claim exists (a room created before
    claims were kept); the claimed room either way."""
    txn.execute(
        """
        INSERT INTO phenom_room_claims (alias, owner, claimed_ts, room_id)
        VALUES (?, 'adopted', ?, ?)
        ON CONFLICT (alias) DO NOTHING
        """,
        (alias, now_ms, room_id),
    )
    return claimed_room(txn, alias)


def move_claim(txn: Txn, alias: str, old_room_id: str, new_room_id: str) -> None:
    """The room of ``alias`` was upgraded: the claim follows it."""
    txn.execute(
        "UPDATE phenom_room_claims SET room_id = ? WHERE alias = ? AND room_id = ?",
        (new_room_id, alias, old_room_id),
    )
