"""Writes of the ``hasura`` backend that share code with the rest of Implementation B:
sending a message and the link-preview card cache (``chat.link_previews``)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from synapse_phenom.mcp import hasura_sql as q
from synapse_phenom.mcp.backend import InvalidRequest, NotFound, OutgoingMessage, Unavailable
from synapse_phenom.mcp.config import AgentProfile
from synapse_phenom.mcp.models import PreviewCard

if TYPE_CHECKING:
    from synapse_phenom.mcp.hasura_backend import HasuraBackend

INSERT = """
INSERT INTO chat.messages (room_id, sender_id, body, formatted_body, reply_to_id, thread_root_id, idempotency_key)
VALUES (%(room)s, %(agent)s, %(body)s, %(html)s, %(reply)s, %(thread)s, %(key)s)
ON CONFLICT ON CONSTRAINT messages_idempotency DO NOTHING
RETURNING id
"""
EXISTING = """
SELECT id FROM chat.messages WHERE sender_id = %(agent)s AND room_id = %(room)s AND idempotency_key = %(key)s
"""


def _target(ref: str | None, what: str) -> uuid.UUID | None:
    if ref is None:
        return None
    parsed = q.parse_uuid(ref, "$")
    if parsed is None:
        raise NotFound(f"Not found: no message {ref} in this room to {what}.")
    return parsed


async def send(backend: HasuraBackend, agent: AgentProfile, key: str, room_id: str, message: OutgoingMessage) -> str:
    """Insert the agent's message; an idempotency key already used in this room returns its message."""
    params: dict[str, Any] = {
        "room": room_id,
        "agent": backend.row_id(agent),
        "body": message.body,
        "html": message.formatted_body,
        "reply": _target(message.reply_to, "reply to"),
        "thread": _target(message.thread_id, "post in the thread of"),
        "key": message.idempotency_key,
    }
    try:
        rows = await backend.fetch(INSERT, params)
    except psycopg.errors.ForeignKeyViolation:
        raise NotFound("Not found: the message replied to (or the thread root) is not in this room.") from None
    except psycopg.errors.CheckViolation as err:
        raise InvalidRequest(f"The message was refused by the database: {err.diag.message_primary}") from None
    if not rows:
        rows = await backend.fetch(EXISTING, params)
    if not rows:
        raise Unavailable("The message could not be stored; try again with the same idempotency_key.")
    return str(rows[0][0])


# -- link previews ------------------------------------------------------------------------------

LOOKUP = "SELECT card, error FROM chat.link_previews WHERE url = %(url)s AND expires_at > now()"
STORE = """
INSERT INTO chat.link_previews (url, card, preview, error, reason, fetched_at, expires_at)
VALUES (%(url)s, %(card)s, %(preview)s, %(error)s, %(reason)s, now(), now() + make_interval(secs => %(ttl)s))
ON CONFLICT (url) DO UPDATE SET
    card = excluded.card, preview = excluded.preview, error = excluded.error, reason = excluded.reason,
    fetched_at = excluded.fetched_at, expires_at = excluded.expires_at
"""


def _as_tool_card(url: str, card: Any) -> PreviewCard | None:
    from synapse_phenom.previews import Card

    parsed = Card.model_validate(card)
    return PreviewCard(
        url=url,
        title=parsed.title,
        description=parsed.description,
        image=parsed.image.mxc if parsed.image else None,
        site_name=parsed.site_name,
    )


async def preview_card(backend: HasuraBackend, url: str) -> PreviewCard | None:
    """The previews core's card for ``url``, through B's card cache; None when the page has none."""
    from synapse_phenom.previews import PreviewResolver, Refused, msc4095
    from synapse_phenom.previews.fetch_httpx import HttpxFetcher
    from synapse_phenom.previews.policy import normalise_url

    config = backend.config.previews
    if backend._resolver is None:
        fetcher = HttpxFetcher(config)
        backend._resolver = (PreviewResolver(config, fetcher), fetcher)
    resolver = backend._resolver[0]
    if not resolver.policy.is_phenom_link(url):
        origins = ", ".join(o.url for o in resolver.policy.origins)
        raise InvalidRequest(f"Only links to {origins} get previews (M_INVALID_PARAM)")
    key = normalise_url(url)
    cached = await backend.fetch(LOOKUP, {"url": key})
    if cached:
        card, _error = cached[0]
        return _as_tool_card(url, card) if card is not None else None
    try:
        result = await resolver.resolve(key)
    except Refused as err:
        raise InvalidRequest(str(err)) from None
    card_json = result.card.model_dump(mode="json") if result.card is not None else None
    await backend.fetch(
        STORE,
        {
            "url": key,
            "card": Jsonb(card_json) if card_json is not None else None,
            "preview": Jsonb(msc4095.preview_entry(key, result.card)) if result.card is not None else None,
            "error": result.error,
            "reason": result.reason,
            "ttl": max(int(result.ttl_s), 1),
        },
    )
    return _as_tool_card(url, card_json) if card_json is not None else None
