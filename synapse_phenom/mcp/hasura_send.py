"""Writes of the ``hasura`` backend that share code with the rest of Implementation B:
sending a message and the link-preview card cache (``chat.link_previews``)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import TYPE_CHECKING, Any

import psycopg

from synapse_phenom.mcp import hasura_sql as q
from synapse_phenom.mcp.backend import (
    Forbidden,
    InvalidRequest,
    OutgoingMessage,
    RateLimited,
    Unavailable,
)
from synapse_phenom.mcp.config import AgentProfile, HasuraBackendConfig
from synapse_phenom.mcp.models import PreviewCard

if TYPE_CHECKING:
    from synapse_phenom.lite.actions import ActionHandler
    from synapse_phenom.mcp.hasura_backend import HasuraBackend


def _target(ref: str | None, what: str) -> uuid.UUID | None:
    if ref is None:
        return None
    parsed = q.parse_uuid(ref, "$")
    if parsed is None:
        raise InvalidRequest(f"{what}: no such message in this room")
    return parsed


def provision(config: HasuraBackendConfig, row_id: str, agent: AgentProfile) -> None:
    """The agent's row and rooms, by B's provisioning (the rooms core decides); blocking."""
    from synapse_phenom.lite.provision import provision_agent

    with psycopg.connect(config.database_url, autocommit=True) as conn:
        provision_agent(
            conn, config.rooms, row_id, agent.localpart, agent.rooms, agent.display_name
        )


def action_handler(config: HasuraBackendConfig) -> ActionHandler:
    """The send Action's handler, used in-process: the same send path as the app's sends."""
    from psycopg_pool import ConnectionPool

    from synapse_phenom.lite.actions import ActionHandler, ActionSettings
    from synapse_phenom.moderation.config import ModerationConfig, default_module_config

    moderation = config.moderation or ModerationConfig.model_validate(default_module_config())
    # No HTTP here, so no caller can present it; the handler insists on a non-empty secret.
    settings = ActionSettings(
        config.database_url, secrets.token_urlsafe(32), moderation, config.previews
    )
    pool: ConnectionPool[Any] = ConnectionPool(
        config.database_url,
        min_size=1,
        max_size=config.pool_max_size,
        open=False,
        kwargs={"options": f"-c statement_timeout={config.statement_timeout_ms}"},
        name="phenom-mcp-send",
    )
    return ActionHandler(settings, pool)


async def send(
    backend: HasuraBackend, agent: AgentProfile, room_id: str, message: OutgoingMessage
) -> str:
    """Send as the agent through the send Action's code: permission, moderation (A's rules
    and texts), idempotency per agent and room, preview cards."""
    from synapse_phenom.lite.send import SendError, SendMessageInput

    inp = SendMessageInput(
        room_id=uuid.UUID(room_id),
        body=message.body,
        formatted_body=message.formatted_body,
        reply_to_id=_target(message.reply_to, "reply_to"),
        thread_root_id=_target(message.thread_id, "thread_id"),
        idempotency_key=message.idempotency_key,
    )
    try:
        sent = await (await backend.actions()).send(backend.row_id(agent), "agent", inp)
    except SendError as err:
        raise _backend_error(err) from None
    except psycopg.Error as err:
        raise Unavailable(
            f"The chat database failed ({type(err).__name__}); try again shortly."
        ) from None
    return sent.message_id


async def react(
    backend: HasuraBackend, agent: AgentProfile, room_id: str, message_id: str, emoji: str
) -> str | None:
    """React as the agent through ``lite.react``: the send path's permission check and
    moderation (A moderates ``m.reaction`` like a message). None: no such message."""
    from synapse_phenom.lite.send import SendError

    try:
        handler = await backend.actions()
        return await handler.react(backend.row_id(agent), "agent", room_id, message_id, emoji)
    except SendError as err:
        raise _backend_error(err) from None
    except psycopg.Error as err:
        raise Unavailable(
            f"The chat database failed ({type(err).__name__}); try again shortly."
        ) from None


def _backend_error(err: Any) -> Exception:
    """A ``lite.send.SendError`` as the tools' backend error."""
    if err.status == 429:
        retry_ms = err.extensions.get("retry_after_ms")
        return RateLimited(
            f"the chat server is throttling this agent ({err.message})",
            (retry_ms or 1000) / 1000,
        )
    if err.status == 403:
        return Forbidden(f"Not allowed: {err.message}")
    return InvalidRequest(err.message)


# -- link previews ------------------------------------------------------------------------------


def _as_tool_card(url: str, card: Any) -> PreviewCard:
    from synapse_phenom.previews import Card

    parsed = Card.model_validate(card)
    return PreviewCard(
        url=url,
        title=parsed.title,
        description=parsed.description,
        image=parsed.image.mxc if parsed.image else parsed.image_url,
        site_name=parsed.site_name,
    )


async def preview_card(backend: HasuraBackend, url: str) -> PreviewCard | None:
    """The card for ``url`` the way the link-preview Lambda and the send Action get it: B's
    cache (``lite.previews_cache``), else the Lambda's resolver function, cached for them too."""
    from synapse_phenom.lite import previews_cache
    from synapse_phenom.previews.policy import OriginPolicy

    config = backend.config.previews
    policy = OriginPolicy.from_config(config)
    if not policy.is_phenom_link(url):
        origins = ", ".join(o.url for o in policy.origins)
        raise InvalidRequest(f"Only links to {origins} get previews (M_INVALID_PARAM)")
    pool = (await backend.actions()).pool

    def lookup() -> tuple[int, dict[str, Any]] | None:
        with pool.connection() as conn:
            return previews_cache.lookup(conn, url)

    def store(status: int, result: dict[str, Any]) -> None:
        with pool.connection() as conn:
            previews_cache.store(conn, status, result)

    try:
        found = await asyncio.to_thread(lookup)
        if found is None:
            found = await previews_cache.resolve(url, config)
            await asyncio.to_thread(store, *found)
    except psycopg.Error as err:
        raise Unavailable(
            f"The chat database failed ({type(err).__name__}); try again shortly."
        ) from None
    status, result = found
    if status == 400:
        raise InvalidRequest(
            f"{result.get('error') or 'this link gets no preview'} (M_INVALID_PARAM)"
        )
    card = result.get("card")
    return _as_tool_card(url, card) if isinstance(card, dict) else None
