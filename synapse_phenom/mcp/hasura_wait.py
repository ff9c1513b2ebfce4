"""``wait_for_messages`` of the ``hasura`` backend: LISTEN-woken, never a polling loop.

Subscribe to the process's LISTEN fan-out first, then read; sleep until a notification for
one of the rooms (or the timeout); read again. The cursor keeps one position per room, and a
room's messages commit in seq order (migration ``messages_room_order``), so "after position
N" never skips a message that committed late. At most ``WAIT_LIMIT`` messages per result: a
cut result says ``more`` and its cursor continues right after the last message returned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synapse_phenom.mcp import hasura_sql as q
from synapse_phenom.mcp.config import AgentProfile
from synapse_phenom.mcp.models import WAIT_LIMIT, WaitResult

if TYPE_CHECKING:
    from synapse_phenom.mcp.hasura_backend import HasuraBackend


def positions_from(since: str | None, room_ids: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """(positions the cursor gives for these rooms, rooms it does not cover: start from now)."""
    if not since:
        return {}, list(room_ids)
    given = q.parse_wait_cursor(since)
    return {r: given[r] for r in room_ids if r in given}, [r for r in room_ids if r not in given]


def result_of(
    rows: Sequence[tuple[Any, ...]], positions: dict[str, int], server_name: str
) -> WaitResult:
    """Rows (seq order, up to WAIT_LIMIT + 1) -> the result and the positions after it."""
    more = len(rows) > WAIT_LIMIT
    rows = rows[:WAIT_LIMIT]
    after = dict(positions)
    for row in rows:  # seq order: each room's position ends at its last row shown
        after[str(row[2])] = int(row[1])
    messages = [q.message(row, server_name) for row in rows]
    return WaitResult(
        messages=messages, next_cursor=q.wait_cursor(after), timed_out=False, more=more
    )


async def wait(
    backend: HasuraBackend,
    agent: AgentProfile,
    room_ids: Sequence[str],
    since: str | None,
    timeout_seconds: int,
) -> WaitResult:
    positions, missing = positions_from(since, room_ids)
    if missing:
        heads = await backend.fetch(q.HEADS, {"rooms": missing})
        positions.update({str(r): int(seq) for r, seq in heads})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    params = {
        "rooms": list(positions),
        "after": list(positions.values()),
        "agent": backend.row_id(agent),
    }
    with backend.notifier.subscribe(positions) as woken:
        while True:
            woken.clear()
            rows = await backend.fetch(q.WAIT, {**params, "limit": WAIT_LIMIT + 1})
            if rows:
                return result_of(rows, positions, backend.config.server_name)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return WaitResult(messages=[], next_cursor=q.wait_cursor(positions), timed_out=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), remaining)
