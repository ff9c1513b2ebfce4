"""Pure parts of the hasura backend: ids, cursors, cutting a wait result."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from synapse_phenom.mcp import hasura_sql as q
from synapse_phenom.mcp.backend import InvalidRequest
from synapse_phenom.mcp.hasura_wait import WAIT_LIMIT, positions_from, result_of
from synapse_phenom.mcp.pg_notify import _room_of

ROOM_A, ROOM_B = str(uuid.uuid4()), str(uuid.uuid4())


def row(seq: int, room: str) -> tuple[object, ...]:
    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    return (uuid.uuid4(), seq, uuid.UUID(room), "ada", "Ada", f"m{seq}", when, None, None, [])


def test_ids_and_cursors_round_trip() -> None:
    mid = uuid.uuid4()
    assert q.parse_uuid(q.event_ref(mid), "$") == mid
    assert q.parse_uuid(q.room_ref(mid), "$") is None and q.parse_uuid("$nope", "$") is None
    assert (
        q.parse_seq_cursor("b.42", "b", "before") == 42
        and q.parse_seq_cursor(None, "b", "before") is None
    )
    for bad in ("s.42", "b.-1", "b.", "b.1e3", "b." + "9" * 20, "42"):
        with pytest.raises(InvalidRequest, match="pass next_cursor back unchanged"):
            q.parse_seq_cursor(bad, "b", "before")
    assert q.parse_wait_cursor(q.wait_cursor({ROOM_B: 7, ROOM_A: 3})) == {ROOM_A: 3, ROOM_B: 7}
    for bad in ("x.1", "w.nope:1", f"w.{ROOM_A}", f"w.{ROOM_A}:x"):
        with pytest.raises(InvalidRequest, match="omit it to start from now"):
            q.parse_wait_cursor(bad)
    assert q.redaction_ref(mid) == q.redaction_ref(mid) != q.event_ref(mid)


def test_a_cut_wait_result_continues_right_after_its_last_message() -> None:
    positions = {ROOM_A: 10, ROOM_B: 20}
    rows = [row(21 + i, ROOM_A if i % 2 else ROOM_B) for i in range(WAIT_LIMIT + 1)]
    result = result_of(rows, positions, "localhost")
    assert result.more is True and len(result.messages) == WAIT_LIMIT
    shown = rows[:WAIT_LIMIT]
    last = {str(r[2]): r[1] for r in shown}
    assert q.parse_wait_cursor(result.next_cursor) == last
    assert positions == {ROOM_A: 10, ROOM_B: 20}  # the input is not changed
    whole = result_of(rows[:3], positions, "localhost")
    assert whole.more is False and whole.messages[0].sender == "@ada:localhost"
    assert whole.messages[0].timestamp == "2026-11-30T12:00:00.000Z"


def test_positions_from_cursor_and_new_rooms() -> None:
    cursor = q.wait_cursor({ROOM_A: 5})
    assert positions_from(cursor, [ROOM_A, ROOM_B]) == ({ROOM_A: 5}, [ROOM_B])
    assert positions_from(None, [ROOM_A]) == ({}, [ROOM_A])


def test_notification_payloads() -> None:
    assert _room_of(f'{{"room_id": "{ROOM_A}", "seq": 3}}') == ROOM_A
    assert _room_of("not json") is None and _room_of("[]") is None
