"""Moderation tables, shared by every Synapse process: flood counters, mutes, audit log.

Run with ``ModuleApi.run_db_interaction``; ``?`` placeholders work on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from synapse_phenom.db import Txn
from synapse_phenom.moderation.rules import NON_ESCALATING_RULES, FloodDecision, flood_decision

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS phenom_moderation_flood (
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        window_ms BIGINT NOT NULL,
        bucket BIGINT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (user_id, room_id, window_ms, bucket)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS phenom_moderation_mutes (
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        until_ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, room_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS phenom_moderation_audit (
        ts BIGINT NOT NULL,
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        policy TEXT NOT NULL,
        rule TEXT NOT NULL,
        action TEXT NOT NULL,
        event_type TEXT NOT NULL,
        detail TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS phenom_moderation_audit_ts ON phenom_moderation_audit (ts)",
    "CREATE INDEX IF NOT EXISTS phenom_moderation_audit_user ON phenom_moderation_audit "
    "(user_id, room_id, ts)",
)


def create_schema(txn: Txn) -> None:
    for sql in SCHEMA:
        txn.execute(sql)


@attrs.frozen
class Gate:
    muted_until: int | None
    flood: FloodDecision | None


def gate(
    txn: Txn,
    user_id: str,
    room_id: str,
    now_ms: int,
    flood: tuple[int, int] | None,
) -> Gate:
    """Hot path, one transaction: is the user muted here; if not and ``flood`` is
    (window_ms, limit), count this message and decide. A refused message is not counted."""
    txn.execute(
        "SELECT until_ts FROM phenom_moderation_mutes WHERE user_id = ? AND room_id = ? AND "
        "until_ts > ?",
        (user_id, room_id, now_ms),
    )
    row = txn.fetchone()
    if row is not None:
        return Gate(int(row[0]), None)
    if flood is None:
        return Gate(None, None)
    window_ms, limit = flood
    bucket = now_ms // window_ms
    key = (user_id, room_id, window_ms)
    txn.execute(
        """
        INSERT INTO phenom_moderation_flood (user_id, room_id, window_ms, bucket, count)
        VALUES (?, ?, ?, ?, 1)
        ON CONFLICT (user_id, room_id, window_ms, bucket)
        DO UPDATE SET count = phenom_moderation_flood.count + 1
        """,
        (*key, bucket),
    )
    txn.execute(
        "SELECT bucket, count FROM phenom_moderation_flood"
        " WHERE user_id = ? AND room_id = ? AND window_ms = ? AND bucket IN (?, ?)",
        (*key, bucket - 1, bucket),
    )
    counts = {int(b): int(c) for b, c in txn.fetchall()}
    decision = flood_decision(
        counts.get(bucket - 1, 0), counts.get(bucket, 1), now_ms, window_ms, limit
    )
    if not decision.allowed:
        txn.execute(
            "UPDATE phenom_moderation_flood SET count = count - 1"
            " WHERE user_id = ? AND room_id = ? AND window_ms = ? AND bucket = ?",
            (*key, bucket),
        )
    return Gate(None, decision)


@attrs.frozen
class AuditRow:
    ts: int
    room_id: str
    user_id: str
    policy: str
    rule: str
    action: str
    event_type: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _storable(value: Any) -> Any:
    """Text any database stores: PostgreSQL refuses NUL in text, and a lone surrogate
    cannot be encoded. The audit row holds user text (a link, a msgtype, an event type):
    writing it must never fail."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8")


def _insert(txn: Txn, row: AuditRow) -> None:
    txn.execute(
        "INSERT INTO phenom_moderation_audit (ts, room_id, user_id, policy, rule, action, "
        "event_type, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        tuple(_storable(v) for v in attrs.astuple(row)),
    )


def record(txn: Txn, row: AuditRow, escalation: tuple[int, int, int] | None = None) -> int | None:
    """Write ``row``; with ``escalation`` (violations, window_ms, mute_ms) and a "block"
    row, mute the user once they reach ``violations`` blocks in the window (blocks from
    before their last mute ended do not count again). Returns the new mute's end, if any."""
    _insert(txn, row)
    if escalation is None or row.action != "block" or row.rule in NON_ESCALATING_RULES:
        return None
    violations, window_ms, mute_ms = escalation
    txn.execute(
        "SELECT until_ts FROM phenom_moderation_mutes WHERE user_id = ? AND room_id = ?",
        (row.user_id, row.room_id),
    )
    previous = txn.fetchone()
    since = max(row.ts - window_ms, int(previous[0]) if previous else 0)
    if previous is not None and int(previous[0]) > row.ts:
        return None  # already muted
    txn.execute(
        "SELECT COUNT(*) FROM phenom_moderation_audit"
        " WHERE user_id = ? AND room_id = ? AND action = 'block' AND ts >= ?"
        f" AND rule NOT IN ({', '.join('?' for _ in NON_ESCALATING_RULES)})",
        (row.user_id, row.room_id, since, *NON_ESCALATING_RULES),
    )
    count_row = txn.fetchone()
    if count_row is None or int(count_row[0]) < violations:
        return None
    until = row.ts + mute_ms
    txn.execute(
        """
        INSERT INTO phenom_moderation_mutes (user_id, room_id, until_ts) VALUES (?, ?, ?)
        ON CONFLICT (user_id, room_id) DO UPDATE SET until_ts = excluded.until_ts
        """,
        (row.user_id, row.room_id, until),
    )
    _insert(
        txn,
        attrs.evolve(
            row,
            ts=row.ts + 1,  # listed right after the block that caused it
            action="mute",
            detail=json.dumps({"until_ts": until, "violations": int(count_row[0])}),
        ),
    )
    return until


def list_audit(
    txn: Txn,
    room_id: str | None = None,
    user_id: str | None = None,
    since_ms: int | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    where: list[str] = []
    args: list[Any] = []
    if room_id:
        where.append("room_id = ?")
        args.append(room_id)
    if user_id:
        where.append("user_id = ?")
        args.append(user_id)
    if since_ms is not None:
        where.append("ts >= ?")
        args.append(since_ms)
    sql = (
        "SELECT ts, room_id, user_id, policy, rule, action, event_type, detail "
        "FROM phenom_moderation_audit"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts DESC LIMIT ?"
    txn.execute(sql, (*args, limit))
    return [AuditRow(int(r[0]), *(str(x) for x in r[1:])) for r in txn.fetchall()]


def cleanup(txn: Txn, now_ms: int) -> None:
    """Drop flood buckets no window can still see (windows are at most one day) and ended mutes."""
    txn.execute("DELETE FROM phenom_moderation_flood WHERE (bucket + 2) * window_ms < ?", (now_ms,))
    txn.execute("DELETE FROM phenom_moderation_mutes WHERE until_ts < ?", (now_ms - 86_400_000,))
