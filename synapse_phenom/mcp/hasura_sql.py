"""SQL of the ``hasura`` backend over the ``chat`` schema, and its rows as tool models.

Every read names the caller and goes through ``chat.user_can_read_room`` (the one SQL
statement of who may read which room, shared with Hasura's permissions and the send
Action), so the MCP path cannot read more than the GraphQL path. Public ids wrap the
table keys the way Matrix ids look, so the tools' syntax checks hold on both backends:
rooms ``!<uuid>``, messages and reactions ``$<uuid>``, users ``@<username>:<server_name>``.
Cursors are opaque to agents: ``b.<seq>`` (timeline), ``s.<seq>`` (search),
``w.<room uuid>:<seq>,…`` (wait_for_messages: one position per room, see ``wait``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from synapse_phenom.mcp import matrix_events as me
from synapse_phenom.mcp.backend import InvalidRequest
from synapse_phenom.mcp.models import Member, Message, PreviewCard, Room

# -- ids and cursors -------------------------------------------------------------------------


def room_ref(room_id: uuid.UUID | str) -> str:
    return f"!{room_id}"


def event_ref(message_id: uuid.UUID | str) -> str:
    return f"${message_id}"


def parse_uuid(ref: str, sigil: str) -> uuid.UUID | None:
    if not ref.startswith(sigil):
        return None
    try:
        return uuid.UUID(ref[1:])
    except ValueError:
        return None


def redaction_ref(message_id: uuid.UUID) -> str:
    """B has no redaction event: a stable id derived from the deleted message."""
    return f"${uuid.uuid5(message_id, 'deletion')}"


def parse_seq_cursor(cursor: str | None, prefix: str, what: str) -> int | None:
    if cursor is None:
        return None
    head, _, tail = cursor.partition(".")
    if head != prefix or not tail.isdigit() or len(tail) > 19:
        raise InvalidRequest(
            f"{what} is not a cursor returned by this tool; pass next_cursor back unchanged."
        )
    return int(tail)


def wait_cursor(positions: Mapping[str, int]) -> str:
    return "w." + ",".join(f"{room}:{seq}" for room, seq in sorted(positions.items()))


def parse_wait_cursor(cursor: str) -> dict[str, int]:
    head, _, tail = cursor.partition(".")
    out: dict[str, int] = {}
    try:
        if head != "w":
            raise ValueError
        for part in tail.split(",") if tail else []:
            room, seq = part.split(":")
            out[str(uuid.UUID(room))] = int(seq)
    except ValueError:
        raise InvalidRequest(
            "since is not a cursor returned by wait_for_messages; omit it to start from now."
        ) from None
    return out


# -- rows -> models ----------------------------------------------------------------------------

MESSAGE_COLUMNS = """
    m.id, m.seq, m.room_id, u.username, u.display_name, m.body, m.created_at,
    m.reply_to_id, m.thread_root_id, m.previews
"""
MESSAGE_FROM = "chat.messages AS m JOIN chat.users AS u ON u.id = m.sender_id"


def user_ref(username: str, server_name: str) -> str:
    return f"@{username}:{server_name}"


def _card(raw: Any) -> PreviewCard | None:
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("url"), str):

        def text(key: str) -> str | None:
            value = raw.get(key)
            return value if isinstance(value, str) else None

        image = raw.get("image")
        if isinstance(image, dict):  # a full previews-core card: its image object
            image = image.get("mxc") or image.get("url")
        return PreviewCard(
            url=raw["url"],
            title=text("title"),
            description=text("description"),
            image=image if isinstance(image, str) else None,
            site_name=text("site_name"),
        )
    return me.preview_card(raw)  # an MSC4095 entry


def message(row: Sequence[Any], server_name: str) -> Message:
    mid, _seq, room_id, username, display_name, body, created_at, reply_to, thread, previews = row[
        :10
    ]
    assert isinstance(created_at, datetime)
    return Message(
        event_id=event_ref(mid),
        room_id=room_ref(room_id),
        sender=user_ref(username, server_name),
        sender_display_name=display_name,
        body=body,
        timestamp=me.iso_timestamp(int(created_at.timestamp() * 1000)),
        reply_to=event_ref(reply_to) if reply_to else None,
        thread_id=event_ref(thread) if thread else None,
        previews=[c for c in (_card(p) for p in (previews or [])) if c],
    )


def room(row: Sequence[Any], server_name: str) -> Room:
    room_id, key, alias, name, topic, count = row
    return Room(
        room_id=room_ref(room_id),
        key=key,
        alias=alias if alias.startswith("#") else f"#{alias}:{server_name}",
        name=name,
        topic=topic or None,
        member_count=int(count),
    )


POWER = {"admin": 100, "moderator": 50, "member": 0}


def member(row: Sequence[Any], server_name: str) -> Member:
    username, display_name, role = row
    return Member(
        user_id=user_ref(username, server_name),
        display_name=display_name,
        role=role if role in POWER else "member",
        power_level=POWER.get(role, 0),
    )


# -- statements --------------------------------------------------------------------------------

AGENT_ROOMS = """
SELECT r.key, r.id FROM chat.rooms AS r
WHERE r.key = ANY(%(keys)s) AND chat.user_can_read_room(%(agent)s, r.id)
"""

ROOMS = """
SELECT r.id, r.key, r.alias, r.name, r.topic,
       (SELECT count(*) FROM chat.room_readers AS rr WHERE rr.room_id = r.id)
FROM chat.rooms AS r
WHERE r.key = ANY(%(keys)s) AND chat.user_can_read_room(%(agent)s, r.id)
ORDER BY r.key
"""

ROOM_BY_ALIAS = "SELECT id FROM chat.rooms WHERE alias = %(alias)s OR alias = %(local)s"

PAGE = f"""
SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM}
WHERE m.room_id = %(room)s AND m.deleted_at IS NULL AND m.seq < %(before)s
  AND (%(thread)s::uuid IS NULL OR m.thread_root_id = %(thread)s)
  AND chat.user_can_read_room(%(agent)s, m.room_id)
ORDER BY m.seq DESC LIMIT %(limit)s
"""

SEARCH = f"""
SELECT {MESSAGE_COLUMNS}
FROM chat.search_messages(%(query)s) AS m JOIN chat.users AS u ON u.id = m.sender_id
WHERE m.room_id = ANY(%(rooms)s) AND m.seq < %(before)s
  AND chat.user_can_read_room(%(agent)s, m.room_id)
ORDER BY m.seq DESC LIMIT %(limit)s
"""

# wait_for_messages: the messages after a position per room. Positions are per room because
# a room's messages commit in seq order (chat.messages_room_order locks the room while a
# message is inserted), while across rooms a later seq may commit first.
WAIT = f"""
SELECT {MESSAGE_COLUMNS}
FROM unnest(%(rooms)s::uuid[], %(after)s::bigint[]) AS c(room_id, after)
JOIN chat.messages AS m ON m.room_id = c.room_id AND m.seq > c.after
JOIN chat.users AS u ON u.id = m.sender_id
WHERE m.deleted_at IS NULL AND m.sender_id <> %(agent)s
  AND chat.user_can_read_room(%(agent)s, m.room_id)
ORDER BY m.seq LIMIT %(limit)s
"""

# "From now on": the newest committed seq per room (0 for an empty room).
HEADS = """
SELECT r.id, coalesce((SELECT max(m.seq) FROM chat.messages AS m WHERE m.room_id = r.id), 0)
FROM chat.rooms AS r WHERE r.id = ANY(%(rooms)s)
"""

MEMBERS = """
SELECT u.username, u.display_name, mb.role
FROM chat.memberships AS mb JOIN chat.users AS u ON u.id = mb.user_id
WHERE mb.room_id = %(room)s AND mb.membership = 'join' AND NOT u.disabled
  AND chat.user_can_read_room(%(agent)s, mb.room_id)
"""

MESSAGE_IN_ROOM = """
SELECT m.sender_id, m.deleted_at IS NOT NULL FROM chat.messages AS m
WHERE m.id = %(id)s AND m.room_id = %(room)s AND chat.user_can_read_room(%(agent)s, m.room_id)
"""

# Reactions are added by lite/send.add_reaction (moderated like a message), never here.

DELETE = """
UPDATE chat.messages AS m
SET deleted_at = now(), deleted_by = %(agent)s, delete_reason = %(reason)s
WHERE m.id = %(id)s AND m.room_id = %(room)s
  AND chat.user_can_read_room(%(agent)s, m.room_id)
  AND (m.sender_id = %(agent)s OR chat.user_can_moderate_room(%(agent)s, m.room_id))
RETURNING m.id
"""
