"""``wait_for_messages`` of the ``synapse`` backend: nothing lost, however many arrive.

Each room has its own position (a Matrix pagination token); the messages after it are read
with forward ``/messages`` pagination, which, unlike a ``/sync`` timeline, never drops the
middle of a burst. ``/sync`` is only the long poll that wakes us. At most ``WAIT_LIMIT``
messages per result, oldest first across rooms: a cut result says ``more`` and its cursor
continues right after the last message returned in each room.

The cursor is opaque to agents: ``w1.`` + base64url(JSON ``{"s": sync token, "r": {room
id: token}}``). A bare sync token (what earlier versions returned) is still accepted.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from synapse_phenom.mcp import matrix_events as me
from synapse_phenom.mcp.backend import InvalidRequest
from synapse_phenom.mcp.config import AgentProfile
from synapse_phenom.mcp.matrix_session import _q
from synapse_phenom.mcp.models import WAIT_LIMIT, Message, WaitResult

if TYPE_CHECKING:
    from synapse_phenom.mcp.synapse_backend import SynapseBackend

_PREFIX = "w1."
_BAD_CURSOR = "since is not a cursor returned by wait_for_messages; omit it to start from now."


# -- pure logic --------------------------------------------------------------------------


@attrs.frozen
class Cursor:
    sync: str  # the /sync position the long poll waits after
    rooms: Mapping[str, str]  # room id -> pagination token: the messages after it are new

    def position(self, room_id: str) -> str:
        return self.rooms.get(room_id, self.sync)

    def encode(self) -> str:
        raw = json.dumps({"s": self.sync, "r": dict(self.rooms)}, separators=(",", ":"))
        return _PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_cursor(text: str) -> Cursor:
    """The cursor an earlier result returned; ``InvalidRequest`` for anything else."""
    if not text.startswith(_PREFIX):
        return Cursor(sync=text, rooms={})  # a bare sync token: every room from there
    data = text[len(_PREFIX) :]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidRequest(_BAD_CURSOR) from None
    sync = decoded.get("s") if isinstance(decoded, dict) else None
    rooms = decoded.get("r") if isinstance(decoded, dict) else None
    if (
        not isinstance(sync, str)
        or not isinstance(rooms, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in rooms.items())
    ):
        raise InvalidRequest(_BAD_CURSOR)
    return Cursor(sync=sync, rooms=rooms)


def cut(
    chunks: Mapping[str, Sequence[Mapping[str, Any]]], limit: int
) -> tuple[dict[str, int], bool]:
    """How many events of each room's chunk (in that room's order) the result keeps.

    The oldest ``limit`` events across the rooms (by ``origin_server_ts``; each room's kept
    events are a prefix of its chunk, so its position can continue right after them), and
    whether anything was left out.
    """
    merged = heapq.merge(
        *(
            [(int(e.get("origin_server_ts", 0)), room_id) for e in events]
            for room_id, events in chunks.items()
        ),
        key=lambda pair: pair[0],
    )
    kept = dict.fromkeys(chunks, 0)
    for _, room_id in merged:
        if sum(kept.values()) >= limit:
            return kept, True
        kept[room_id] += 1
    return kept, False


# -- I/O -----------------------------------------------------------------------------------


def _messages_filter(agent_user: str) -> str:
    return json.dumps(
        {"types": ["m.room.message"], "not_senders": [agent_user], "lazy_load_members": True}
    )


def _wake_filter(room_ids: Sequence[str], agent_user: str) -> str:
    """A /sync that returns as soon as one of these rooms has a message from someone else."""
    return json.dumps(
        {
            "presence": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
            "room": {
                "rooms": list(room_ids),
                "timeline": {"types": ["m.room.message"], "limit": 1, "not_senders": [agent_user]},
                "state": {"types": []},
                "ephemeral": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
            },
        }
    )


async def _page(
    backend: SynapseBackend, agent: AgentProfile, room_id: str, since: str, limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """(events, member state, position after them) of up to ``limit`` events after ``since``."""
    found = await backend._call(
        "GET",
        f"/_matrix/client/v3/rooms/{_q(room_id)}/messages",
        agent,
        params={
            "dir": "f",
            "from": since,
            "limit": limit,
            "filter": _messages_filter(backend.user_id(agent)),
        },
    )
    events = [e for e in found.get("chunk") or [] if isinstance(e, dict)]
    return events, list(found.get("state") or []), str(found.get("end") or since)


async def _now(
    backend: SynapseBackend, agent: AgentProfile, room_ids: Sequence[str], sync_filter: str
) -> Cursor:
    """ "From now on": each room's current position from ``/messages`` backwards without a
    ``from`` (exact, never cached). The sync token only wakes the long poll: Synapse may
    answer an identical ``/sync`` from its response cache (an older position), which at
    worst wakes it once early, never returns an old message as new."""
    first = await backend._call(
        "GET", "/_matrix/client/v3/sync", agent, params={"filter": sync_filter, "timeout": 0}
    )
    rooms = {}
    for room_id in room_ids:
        page = await backend._call(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/messages",
            agent,
            params={"dir": "b", "limit": 1},
        )
        rooms[room_id] = str(page["start"])
    return Cursor(sync=str(first["next_batch"]), rooms=rooms)


async def _collect(
    backend: SynapseBackend, agent: AgentProfile, room_ids: Sequence[str], cursor: Cursor
) -> tuple[list[Message], dict[str, str], bool]:
    """The new messages (oldest first, at most WAIT_LIMIT), the positions after them, more."""
    pages = {
        room_id: await _page(backend, agent, room_id, cursor.position(room_id), WAIT_LIMIT + 1)
        for room_id in room_ids
    }
    kept, more = cut({r: p[0] for r, p in pages.items()}, WAIT_LIMIT)
    positions = {r: cursor.position(r) for r in room_ids}
    messages: list[Message] = []
    for room_id, (events, state, end) in pages.items():
        count = kept[room_id]
        if count == 0 and events:
            continue  # nothing of this room fits: its position stays
        if count < len(events):
            # Cut inside this room: read exactly the kept events again for the token after them.
            events, state, end = await _page(backend, agent, room_id, positions[room_id], count)
            events = events[:count]
        positions[room_id] = end
        names = me.display_names([*state, *events])
        messages.extend(m for m in (me.message_from_event(e, room_id, names) for e in events) if m)
    messages.sort(key=lambda m: m.timestamp)
    return messages, positions, more


async def wait(
    backend: SynapseBackend,
    agent: AgentProfile,
    room_ids: Sequence[str],
    since: str | None,
    timeout_seconds: int,
) -> WaitResult:
    sync_filter = _wake_filter(room_ids, backend.user_id(agent))
    if since:
        cursor = parse_cursor(since)
    else:
        cursor = await _now(backend, agent, room_ids, sync_filter)
    deadline = anyio.current_time() + timeout_seconds
    try:
        while True:
            messages, positions, more = await _collect(backend, agent, room_ids, cursor)
            cursor = Cursor(sync=cursor.sync, rooms=positions)
            remaining = deadline - anyio.current_time()
            if messages or more or remaining <= 0:
                return WaitResult(
                    messages=messages,
                    next_cursor=cursor.encode(),
                    timed_out=not messages and not more,
                    more=more,
                )
            # Sleep until something new for this agent arrives in its rooms (or the timeout).
            woke = await backend._call(
                "GET",
                "/_matrix/client/v3/sync",
                agent,
                params={
                    "filter": sync_filter,
                    "since": cursor.sync,
                    "timeout": int(remaining * 1000),
                },
                wait=remaining + 30,
            )
            cursor = Cursor(sync=str(woke["next_batch"]), rooms=positions)
    except InvalidRequest:
        raise InvalidRequest(_BAD_CURSOR) from None
