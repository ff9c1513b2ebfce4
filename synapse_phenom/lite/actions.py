"""The Hasura Action webhook of Implementation B (``sendMessage``, ``editMessage``,
``addReaction``), as an ASGI app.

Hasura POSTs ``{"action": {"name"}, "input", "session_variables", "request_query"}`` to
``{{PHENOM_ACTION_BASE_URL}}/hasura/actions`` with the ``X-Phenom-Action-Secret`` header
(metadata/actions.yaml). The caller is ``session_variables["x-hasura-user-id"]``, which
Hasura set from the verified token. Answers: 200 with the output object, or a 4xx
``{"message", "extensions": {"code", ...}}``, which Hasura turns into the GraphQL error the
app sees.

Preview cards: Phenom links whose card is in ``chat.link_previews`` are attached at once;
the others mark the message ``previews_pending``. They are resolved in the background
(same previews core as the link-preview Lambda), cached, and written into the message. The
update notifies subscribers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from synapse_phenom.config import describe_validation_error
from synapse_phenom.lite import previews_cache
from synapse_phenom.lite.moderation import LiteModeration
from synapse_phenom.lite.send import (
    AddReactionInput,
    EditMessageInput,
    SendError,
    SendMessageInput,
    Sent,
    add_reaction,
    edit_message,
    send_message,
)
from synapse_phenom.moderation.config import ModerationConfig
from synapse_phenom.previews.config import ResolverConfig
from synapse_phenom.previews.msc4095 import shows_link
from synapse_phenom.previews.policy import OriginPolicy

logger = logging.getLogger(__name__)

ACTIONS_PATH = "/hasura/actions"
SECRET_HEADER = "x-phenom-action-secret"
MAX_BODY_BYTES = 512 * 1024
CALLER_ROLES = frozenset({"user", "moderator", "agent", "admin"})
MAX_PREVIEWS = 3


# Action name -> its input (hasura/metadata/actions.graphql).
_INPUTS: dict[str, type[BaseModel]] = {
    "sendMessage": SendMessageInput,
    "editMessage": EditMessageInput,
    "addReaction": AddReactionInput,
}


class _ActionName(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class ActionPayload(BaseModel):
    """What Hasura sends to an Action handler."""

    model_config = ConfigDict(extra="allow")
    action: _ActionName
    input: dict[str, Any]
    session_variables: dict[str, str]
    request_query: str | None = None


@attrs.frozen
class ActionSettings:
    dsn: str
    secret: str = attrs.field(repr=False)
    moderation: ModerationConfig = attrs.field(factory=ModerationConfig)
    previews: ResolverConfig | None = None  # None: no preview cards


def error(status: int, message: str, code: str, **extensions: Any) -> JSONResponse:
    return JSONResponse({"message": message, "extensions": {"code": code, **extensions}}, status)


def preview_entry(link: str, card: dict[str, Any]) -> dict[str, Any]:
    """A message's preview card (the MCP tools' PreviewCard fields; image: the page's URL)."""
    return {
        "url": link,
        "title": card.get("title"),
        "description": card.get("description"),
        "image": card.get("image_url"),
        "site_name": card.get("site_name"),
    }


class ActionHandler:
    def __init__(self, settings: ActionSettings, pool: ConnectionPool[Any]) -> None:
        if not settings.secret:
            raise ValueError("PHENOM_ACTION_SECRET is empty: the webhook would accept anyone")
        self.settings = settings
        self.pool = pool
        self.moderation = LiteModeration(settings.moderation)
        self.origins = OriginPolicy.from_config(settings.previews) if settings.previews else None
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: Request) -> JSONResponse:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.settings.secret.encode()):
            return error(
                401,
                "This endpoint only answers Hasura (shared secret missing or wrong).",
                "unauthorized",
            )
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return error(413, "Request too large.", "invalid_input")
        try:
            payload = ActionPayload.model_validate_json(raw)
        except ValidationError as err:
            return error(
                400,
                f"Not a Hasura action payload: {describe_validation_error(err, 'payload')}",
                "invalid_payload",
            )
        name = payload.action.name
        model = _INPUTS.get(name)
        if model is None:
            return error(400, f"Unknown action {name!r}.", "unknown_action")
        session = {k.lower(): v for k, v in payload.session_variables.items()}
        user_id, role = session.get("x-hasura-user-id", ""), session.get("x-hasura-role", "")
        if not user_id or role not in CALLER_ROLES:
            return error(403, "Sign in to send messages.", "unauthenticated")
        try:
            inp = model.model_validate(payload.input)
        except ValidationError as err:
            return error(400, describe_validation_error(err, name), "invalid_input")
        try:
            if isinstance(inp, SendMessageInput):
                output = (await self.send(user_id, role, inp)).output()
            elif isinstance(inp, EditMessageInput):
                output = await anyio.to_thread.run_sync(self._edit, user_id, role, inp)
            else:
                assert isinstance(inp, AddReactionInput)
                output = await self.react(user_id, role, inp)
        except SendError as err:
            return error(err.status, err.message, err.code, **err.extensions)
        except psycopg.Error:
            logger.exception("%s: database error", name)
            return error(503, "Chat is unavailable right now; try again shortly.", "unavailable")
        return JSONResponse(output)

    async def react(
        self, user_id: str, role: str, inp: AddReactionInput, in_room: str | None = None
    ) -> dict[str, Any]:
        """React as ``user_id`` (the Action above and the MCP ``hasura`` backend); raises
        ``SendError`` or ``psycopg.Error`` like ``send``."""

        def run() -> dict[str, Any]:
            with self.pool.connection() as conn:
                return add_reaction(conn, self.moderation, user_id, role, inp, in_room)

        result: dict[str, Any] = await anyio.to_thread.run_sync(run)
        return result

    async def send(self, user_id: str, role: str, inp: SendMessageInput) -> Sent:
        """Send as ``user_id`` (cards from the cache inline, the rest filled in afterwards).

        The one send path of B: the Action above and the MCP ``hasura`` backend call it.
        Raises ``SendError`` (a refusal, with A's texts) or ``psycopg.Error``."""
        sent: Sent = await anyio.to_thread.run_sync(self._send, user_id, role, inp)
        if sent.pending_links:
            task = asyncio.create_task(self._fill_previews(sent.message_id, sent.pending_links))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return sent

    def _send(self, user_id: str, role: str, inp: SendMessageInput) -> Sent:
        with self.pool.connection() as conn:
            entries: list[dict[str, Any]] = []
            missing: list[str] = []
            links = self.origins.phenom_links(inp.body, MAX_PREVIEWS) if self.origins else []
            if inp.formatted_body is not None:  # as A: never under HTML linking elsewhere
                links = [link for link in links if shows_link(inp.formatted_body, link)]
            for link in links:
                cached = previews_cache.lookup(conn, link)
                if cached is None:
                    missing.append(link)
                elif cached[1].get("card"):
                    entries.append(preview_entry(link, cached[1]["card"]))
            conn.commit()
            return send_message(conn, self.moderation, user_id, role, inp, entries, missing)

    def _edit(self, user_id: str, role: str, inp: EditMessageInput) -> dict[str, Any]:
        with self.pool.connection() as conn:
            return edit_message(conn, self.moderation, user_id, role, inp)

    async def _fill_previews(self, message_id: str, links: Sequence[str]) -> None:
        """Resolve uncached cards, cache them, add them to the message; never raises."""
        assert self.settings.previews is not None
        results = []
        for link in links:
            try:
                results.append((link, *await previews_cache.resolve(link, self.settings.previews)))
            except Exception:
                logger.exception("sendMessage: preview of %s failed", link[:200])
        try:
            await anyio.to_thread.run_sync(self._store_previews, message_id, results)
        except Exception:
            logger.exception("sendMessage: storing previews of %s failed", message_id)

    def _store_previews(
        self, message_id: str, results: list[tuple[str, int, dict[str, Any]]]
    ) -> None:
        with self.pool.connection() as conn, conn.transaction():
            entries = []
            for link, status, result in results:
                previews_cache.store(conn, status, result)
                if result.get("card"):
                    entries.append(preview_entry(link, result["card"]))
            conn.execute(
                "UPDATE chat.messages SET previews = previews || %s, previews_pending = false"
                " WHERE id = %s AND deleted_at IS NULL",
                (Jsonb(entries), message_id),
            )

    async def drain(self) -> None:
        """Wait for background preview work (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def create_app(settings: ActionSettings) -> Starlette:
    pool: ConnectionPool[Any] = ConnectionPool(
        settings.dsn, min_size=1, max_size=8, open=False, name="phenom-actions"
    )
    handler = ActionHandler(settings, pool)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(pool.open)
        try:
            yield
        finally:
            await handler.drain()
            await anyio.to_thread.run_sync(pool.close)

    app = Starlette(
        routes=[Route(ACTIONS_PATH, handler.handle, methods=["POST"]), Route("/healthz", health)],
        lifespan=lifespan,
    )
    app.state.action_handler = handler
    return app
