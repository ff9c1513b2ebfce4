"""Sending a message in Implementation B: permission, idempotency, moderation, insert.

The one write path for messages (the Hasura ``sendMessage`` Action calls it). Blocking
psycopg calls: run it in a worker thread from async code.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import attrs
import psycopg
from psycopg.types.json import Jsonb
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from synapse_phenom.lite.moderation import LiteModeration, Sender, message_content

NOT_A_MEMBER = "You cannot post in this room: you are not a member of it."
NOT_YOURS = "You can only edit your own messages."
NO_MESSAGE = "No such message (or it was deleted)."
REACTION_TYPE = "m.reaction"
DELETED = "This message was deleted and cannot be edited."
AGENTS_ONLY = "The agent role can only be used by an agent account."


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


Body = Annotated[str, Field(max_length=65536), AfterValidator(_not_blank)]


class SendMessageInput(BaseModel):
    """The ``sendMessage`` arguments (hasura/metadata/actions.graphql)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    room_id: uuid.UUID
    body: Body
    formatted_body: str | None = Field(default=None, max_length=131072)
    reply_to_id: uuid.UUID | None = None
    thread_root_id: uuid.UUID | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)


class EditMessageInput(BaseModel):
    """The ``editMessage`` arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: uuid.UUID
    body: Body
    formatted_body: str | None = Field(default=None, max_length=131072)


class AddReactionInput(BaseModel):
    """The ``addReaction`` arguments: one emoji (or short text: Matrix reaction keys are any
    text, moderated like a message's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: uuid.UUID
    emoji: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_not_blank)]


class SendError(Exception):
    """A refusal: ``status`` (4xx), the text shown to the user, a stable code, extras."""

    def __init__(self, status: int, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extensions = extensions


@attrs.frozen
class Sent:
    message_id: str
    room_id: str
    seq: int
    created_at: str
    duplicate: bool
    pending_links: tuple[str, ...] = ()

    def output(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "room_id": self.room_id,
            "seq": self.seq,
            "created_at": self.created_at,
            "duplicate": self.duplicate,
        }


def _existing(
    conn: psycopg.Connection[Any], user_id: str, room_id: str, key: str | None
) -> Sent | None:
    if key is None:
        return None
    row = conn.execute(
        "SELECT id::text, seq, created_at FROM chat.messages"
        " WHERE sender_id = %s AND room_id = %s AND idempotency_key = %s",
        (user_id, room_id, key),
    ).fetchone()
    return None if row is None else Sent(row[0], room_id, row[1], row[2].isoformat(), True)


def _sender(
    conn: psycopg.Connection[Any], user_id: str, room_id: str, role: str
) -> tuple[str, Sender]:
    """(room key, sender); SendError when the caller may not post there (one answer for
    unknown rooms and closed ones: a room's existence is not revealed)."""
    row = conn.execute(
        """
        SELECT r.key, u.is_agent, u.groups, extract(epoch FROM u.created_at)::float8, m.role
        FROM chat.rooms r
        JOIN chat.users u ON u.id = %s
        JOIN chat.memberships m ON m.room_id = r.id AND m.user_id = u.id
        WHERE r.id = %s AND chat.user_can_post_room(u.id, r.id)
        """,
        (user_id, room_id),
    ).fetchone()
    if row is None:
        raise SendError(403, NOT_A_MEMBER, "not_a_member")
    key, is_agent, groups, created_s, member_role = row
    if role == "agent" and not is_agent:
        raise SendError(403, AGENTS_ONLY, "forbidden")
    return key, Sender(user_id, is_agent, frozenset(groups or ()), member_role, created_s)


def _check_links(conn: psycopg.Connection[Any], room_id: str, inp: SendMessageInput) -> None:
    for field, value in (("reply_to_id", inp.reply_to_id), ("thread_root_id", inp.thread_root_id)):
        if value is None:
            continue
        row = conn.execute(
            "SELECT deleted_at IS NULL FROM chat.messages WHERE id = %s AND room_id = %s",
            (value, room_id),
        ).fetchone()
        if row is None:
            raise SendError(400, f"{field}: no such message in this room", "invalid_input")


def send_message(
    conn: psycopg.Connection[Any],
    moderation: LiteModeration,
    user_id: str,
    role: str,
    inp: SendMessageInput,
    previews: Sequence[dict[str, Any]] = (),
    pending_links: Sequence[str] = (),
) -> Sent:
    """Check, moderate and insert. A refusal by moderation is audited (and counted) even
    though nothing is sent; any other refusal writes nothing."""
    room_id = str(inp.room_id)
    refusal: SendError | None = None
    with conn.transaction():
        key, sender = _sender(conn, user_id, room_id, role)
        duplicate = _existing(conn, user_id, room_id, inp.idempotency_key)
        if duplicate is not None:
            return duplicate  # already moderated and sent: a retry changes nothing
        _check_links(conn, room_id, inp)
        content = message_content(inp.body, inp.formatted_body)
        violation = moderation.check(conn, key, room_id, sender, content)
        if violation is not None:
            refusal = _refusal(violation)
        else:
            row = conn.execute(
                """
                INSERT INTO chat.messages (room_id, sender_id, body, formatted_body, reply_to_id,
                    thread_root_id, idempotency_key, previews, previews_pending)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT ON CONSTRAINT messages_idempotency DO NOTHING
                RETURNING id::text, seq, created_at
                """,
                (
                    room_id,
                    user_id,
                    inp.body,
                    inp.formatted_body,
                    inp.reply_to_id,
                    inp.thread_root_id,
                    inp.idempotency_key,
                    Jsonb(list(previews)),
                    bool(pending_links),
                ),
            ).fetchone()
            if row is None:  # the same key won a race a moment ago
                found = _existing(conn, user_id, room_id, inp.idempotency_key)
                assert found is not None
                return found
            return Sent(row[0], room_id, row[1], row[2].isoformat(), False, tuple(pending_links))
    # Outside the transaction block: the audit/flood writes of the refusal are committed.
    assert refusal is not None
    raise refusal


def _refusal(violation: Any) -> SendError:
    extensions: dict[str, Any] = {"rule": violation.rule, "errcode": violation.errcode}
    if violation.retry_after_ms is not None:
        extensions["retry_after_ms"] = violation.retry_after_ms
    status = 429 if violation.errcode == "M_LIMIT_EXCEEDED" else 403
    return SendError(status, violation.message, "moderation", **extensions)


def edit_message(
    conn: psycopg.Connection[Any],
    moderation: LiteModeration,
    user_id: str,
    role: str,
    inp: EditMessageInput,
) -> dict[str, Any]:
    """Replace the text of the caller's own message, moderated like a new message (A checks
    an edit as the m.room.message it is). The trigger keeps the previous text."""
    refusal: SendError | None = None
    with conn.transaction():
        row = conn.execute(
            "SELECT room_id::text, sender_id, deleted_at IS NOT NULL FROM chat.messages"
            " WHERE id = %s FOR UPDATE",
            (inp.message_id,),
        ).fetchone()
        if row is None or row[1] != user_id:
            raise SendError(403, NOT_YOURS, "forbidden")
        room_id, _, deleted = row
        key, sender = _sender(conn, user_id, room_id, role)
        if deleted:
            raise SendError(400, DELETED, "invalid_input")
        content = message_content(inp.body, inp.formatted_body)
        violation = moderation.check(conn, key, room_id, sender, content)
        if violation is not None:
            refusal = _refusal(violation)
        else:
            edited = conn.execute(
                "UPDATE chat.messages SET body = %s, formatted_body = %s WHERE id = %s"
                " RETURNING coalesce(edited_at, now())",
                (inp.body, inp.formatted_body, inp.message_id),
            ).fetchone()
            assert edited is not None
            return {"message_id": str(inp.message_id), "edited_at": edited[0].isoformat()}
    assert refusal is not None
    raise refusal


def add_reaction(
    conn: psycopg.Connection[Any],
    moderation: LiteModeration,
    user_id: str,
    role: str,
    inp: AddReactionInput,
    in_room: str | None = None,
) -> dict[str, Any]:
    """React to a message of a room the caller may post in (``in_room``: and only there),
    moderated as A moderates an ``m.reaction`` (its key read like text, flood and mutes
    counted). Reacting again with the same emoji returns the first reaction
    (``duplicate``) and writes nothing."""
    refusal: SendError | None = None
    with conn.transaction():
        row = conn.execute(
            "SELECT room_id::text FROM chat.messages WHERE id = %s AND deleted_at IS NULL",
            (inp.message_id,),
        ).fetchone()
        # One answer for a missing message and one in a room the caller cannot read.
        if row is None or in_room not in (None, row[0]) or not _may_read(conn, user_id, row[0]):
            raise SendError(404, NO_MESSAGE, "not_found")
        room_id = row[0]
        key, sender = _sender(conn, user_id, room_id, role)
        found = conn.execute(
            "SELECT id::text, created_at FROM chat.reactions"
            " WHERE message_id = %s AND user_id = %s AND emoji = %s",
            (inp.message_id, user_id, inp.emoji),
        ).fetchone()
        if found is not None:
            return _reacted(found, room_id, inp, duplicate=True)
        relation = {"rel_type": "m.annotation", "event_id": str(inp.message_id), "key": inp.emoji}
        violation = moderation.check(
            conn, key, room_id, sender, {"m.relates_to": relation}, event_type=REACTION_TYPE
        )
        if violation is not None:
            refusal = _refusal(violation)
        else:
            inserted = conn.execute(
                "INSERT INTO chat.reactions (room_id, message_id, user_id, emoji)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (message_id, user_id, emoji) DO NOTHING"
                " RETURNING id::text, created_at",
                (room_id, inp.message_id, user_id, inp.emoji),
            ).fetchone()
            if inserted is None:  # the same reaction won a race a moment ago
                inserted = conn.execute(
                    "SELECT id::text, created_at FROM chat.reactions"
                    " WHERE message_id = %s AND user_id = %s AND emoji = %s",
                    (inp.message_id, user_id, inp.emoji),
                ).fetchone()
                assert inserted is not None
                return _reacted(inserted, room_id, inp, duplicate=True)
            return _reacted(inserted, room_id, inp, duplicate=False)
    assert refusal is not None
    raise refusal


def _may_read(conn: psycopg.Connection[Any], user_id: str, room_id: str) -> bool:
    row = conn.execute(
        "SELECT chat.user_can_read_room(%s, %s::uuid)", (user_id, room_id)
    ).fetchone()
    return bool(row and row[0])


def _reacted(
    row: tuple[Any, ...], room_id: str, inp: AddReactionInput, duplicate: bool
) -> dict[str, Any]:
    return {
        "reaction_id": row[0],
        "room_id": room_id,
        "message_id": str(inp.message_id),
        "emoji": inp.emoji,
        "created_at": row[1].isoformat(),
        "duplicate": duplicate,
    }
