"""Adding a reaction in Implementation B: permission, moderation, insert — like a message.

A moderates ``m.reaction`` events like any other (the reaction key is text others see; a
muted user cannot react; reactions count towards flood control), so B does too: the
reaction goes through the send path's permission check and ``LiteModeration`` with the
content A would see. No role inserts into ``chat.reactions`` directly (Hasura metadata);
the MCP ``hasura`` backend calls this. Blocking psycopg calls: run it in a worker thread.
"""

from __future__ import annotations

from typing import Any

import psycopg

from synapse_phenom.lite.moderation import LiteModeration
from synapse_phenom.lite.send import SendError, _refusal, _sender

REACTION_TYPE = "m.reaction"

_INSERT = """
INSERT INTO chat.reactions (room_id, message_id, user_id, emoji)
SELECT m.room_id, m.id, %(user)s, %(emoji)s FROM chat.messages AS m
WHERE m.id = %(id)s AND m.room_id = %(room)s AND m.deleted_at IS NULL
ON CONFLICT (message_id, user_id, emoji) DO NOTHING
RETURNING id::text
"""
_EXISTING = """
SELECT id::text FROM chat.reactions
WHERE message_id = %(id)s AND user_id = %(user)s AND emoji = %(emoji)s
"""
_TARGET = """
SELECT 1 FROM chat.messages WHERE id = %(id)s AND room_id = %(room)s AND deleted_at IS NULL
"""


def reaction_content(message_id: str, emoji: str) -> dict[str, Any]:
    """The ``m.reaction`` content A's rules read."""
    return {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": f"${message_id}", "key": emoji}
    }


def add_reaction(
    conn: psycopg.Connection[Any],
    moderation: LiteModeration,
    user_id: str,
    role: str,
    room_id: str,
    message_id: str,
    emoji: str,
) -> str | None:
    """The reaction's id (the earlier one when reacting again), None when there is no such
    message in the room. Raises ``SendError`` (not a member, or moderation's refusal, which
    is audited and counted even though nothing is added)."""
    params = {"id": message_id, "room": room_id, "user": user_id, "emoji": emoji}
    refusal: SendError | None = None
    with conn.transaction():
        key, sender = _sender(conn, user_id, room_id, role)
        existing = conn.execute(_EXISTING, params).fetchone()
        if existing is not None:
            return str(existing[0])  # already moderated and added: a retry changes nothing
        if conn.execute(_TARGET, params).fetchone() is None:
            return None
        content = reaction_content(message_id, emoji)
        violation = moderation.check(conn, key, room_id, sender, content, event_type=REACTION_TYPE)
        if violation is not None:
            refusal = _refusal(violation)
        else:
            row = conn.execute(_INSERT, params).fetchone()
            if row is None:  # the same reaction won a race a moment ago
                row = conn.execute(_EXISTING, params).fetchone()
            return None if row is None else str(row[0])
    assert refusal is not None  # outside the block: the audit/flood writes are committed
    raise refusal
