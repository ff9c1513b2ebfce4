"""Tables of the ops module (shared by every Synapse process): room lockdowns, revoked agents.

Run with ``ModuleApi.run_db_interaction``; ``?`` placeholders work on SQLite and PostgreSQL.
Admin audit rows go into the moderation module's ``phenom_moderation_audit``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from synapse_phenom.db import Txn

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS phenom_room_lockdowns (
        room_id TEXT NOT NULL PRIMARY KEY,
        until_ts BIGINT,
        level INTEGER NOT NULL,
        previous TEXT NOT NULL,
        locked_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        locked_ts BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS phenom_agent_revocations (
        user_id TEXT NOT NULL PRIMARY KEY,
        revoked_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        revoked_ts BIGINT NOT NULL
    )
    """,
)


def create_schema(txn: Txn) -> None:
    for sql in SCHEMA:
        txn.execute(sql)


@attrs.frozen
class Lockdown:
    room_id: str
    until_ts: int | None
    level: int
    previous: dict[str, Any]
    locked_by: str
    reason: str
    locked_ts: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


_COLUMNS = "room_id, until_ts, level, previous, locked_by, reason, locked_ts"


def _lockdown(row: tuple[Any, ...]) -> Lockdown:
    until = None if row[1] is None else int(row[1])
    return Lockdown(
        str(row[0]), until, int(row[2]), json.loads(row[3]), str(row[4]), str(row[5]), int(row[6])
    )


def get_lockdown(txn: Txn, room_id: str) -> Lockdown | None:
    txn.execute(f"SELECT {_COLUMNS} FROM phenom_room_lockdowns WHERE room_id = ?", (room_id,))
    row = txn.fetchone()
    return _lockdown(row) if row else None


def put_lockdown(txn: Txn, lock: Lockdown) -> None:
    """Insert, or update expiry/reason of an existing lockdown (its saved levels stay)."""
    txn.execute(
        f"""
        INSERT INTO phenom_room_lockdowns ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (room_id) DO UPDATE SET until_ts = excluded.until_ts,
            locked_by = excluded.locked_by, reason = excluded.reason
        """,
        (
            lock.room_id,
            lock.until_ts,
            lock.level,
            json.dumps(lock.previous),
            lock.locked_by,
            lock.reason,
            lock.locked_ts,
        ),
    )


def delete_lockdown(txn: Txn, room_id: str) -> None:
    txn.execute("DELETE FROM phenom_room_lockdowns WHERE room_id = ?", (room_id,))


def expired_lockdowns(txn: Txn, now_ms: int) -> list[Lockdown]:
    txn.execute(
        f"SELECT {_COLUMNS} FROM phenom_room_lockdowns WHERE until_ts IS NOT NULL AND until_ts <= "
        "?",
        (now_ms,),
    )
    return [_lockdown(r) for r in txn.fetchall()]


def list_lockdowns(txn: Txn) -> list[Lockdown]:
    txn.execute(f"SELECT {_COLUMNS} FROM phenom_room_lockdowns ORDER BY locked_ts")
    return [_lockdown(r) for r in txn.fetchall()]


def revoked_agents(txn: Txn) -> list[dict[str, Any]]:
    txn.execute(
        "SELECT user_id, revoked_by, reason, revoked_ts FROM phenom_agent_revocations ORDER BY "
        "user_id"
    )
    return [
        {
            "user_id": str(r[0]),
            "revoked_by": str(r[1]),
            "reason": str(r[2]),
            "revoked_ts": int(r[3]),
        }
        for r in txn.fetchall()
    ]


def set_revoked(txn: Txn, user_id: str, revoked: bool, by: str, reason: str, now_ms: int) -> bool:
    """Revoke or re-enable; True when that changed anything."""
    txn.execute("SELECT 1 FROM phenom_agent_revocations WHERE user_id = ?", (user_id,))
    exists = txn.fetchone() is not None
    if revoked == exists:
        return False
    if revoked:
        txn.execute(
            "INSERT INTO phenom_agent_revocations (user_id, revoked_by, reason, revoked_ts) "
            "VALUES (?, ?, ?, ?)",
            (user_id, by, reason, now_ms),
        )
    else:
        txn.execute("DELETE FROM phenom_agent_revocations WHERE user_id = ?", (user_id,))
    return True


def active_mutes(txn: Txn, user_id: str, now_ms: int) -> list[tuple[str, int]]:
    """(room_id, until_ts) of the moderation module's mutes still running for ``user_id``."""
    txn.execute(
        "SELECT room_id, until_ts FROM phenom_moderation_mutes WHERE user_id = ? AND until_ts > ?",
        (user_id, now_ms),
    )
    return [(str(r[0]), int(r[1])) for r in txn.fetchall()]


def lift_mutes(txn: Txn, user_id: str, room_id: str | None, now_ms: int) -> None:
    """End the user's running mutes (in one room, or everywhere) now: an appeal granted."""
    sql = "UPDATE phenom_moderation_mutes SET until_ts = ? WHERE user_id = ? AND until_ts > ?"
    args: tuple[object, ...] = (now_ms, user_id, now_ms)
    if room_id is not None:
        sql += " AND room_id = ?"
        args = (*args, room_id)
    txn.execute(sql, args)
