"""Tool logic, independent of MCP and of the backend: validation, scopes, rate limits, audit.

``ChatTools`` checks arguments (arguments.py), the caller's scope and rate limit, turns
Markdown into HTML, calls the backend and audit-logs writes. Backend errors become ``ToolFailure``
with a text the model can act on; ``server`` turns that into an MCP tool error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from synapse_phenom.mcp import backend as b
from synapse_phenom.mcp.arguments import (
    IDEMPOTENCY_KEY,
    MAX_BODY_CHARS,
    MAX_CONTENT_BYTES,
    TOO_LARGE,
    TokenBucket,
    ToolFailure,
    bounded_limit,
    check_cursor,
    check_event_id,
    check_room_ref,
    render_markdown,
)
from synapse_phenom.mcp.config import AgentProfile
from synapse_phenom.mcp.models import (
    Deletion,
    LinkPreview,
    MemberList,
    MessagePage,
    Reaction,
    RoomList,
    SentMessage,
    WaitResult,
)

audit_logger = logging.getLogger("synapse_phenom.mcp.audit")

T = TypeVar("T")

# Scope (suffix after "<resource-server>/") each tool needs.
TOOL_SCOPES: dict[str, str] = {
    "list_rooms": "read",
    "get_messages": "read",
    "search_messages": "read",
    "send_message": "write",
    "react_to_message": "write",
    "list_room_members": "read",
    "wait_for_messages": "read",
    "delete_message": "moderate",
    "get_link_preview": "read",
}
WRITE_TOOLS = frozenset({"send_message", "react_to_message", "delete_message"})


@attrs.frozen
class Principal:
    """Who is calling: the Cognito app client and the agent profile it maps to."""

    client_id: str
    agent: AgentProfile
    scopes: frozenset[str]  # short names: read, write, moderate


def required_scope(tool: str) -> str:
    return TOOL_SCOPES[tool]


@attrs.define
class ChatTools:
    backend: b.ChatBackend
    resource_server: str = "chat-mcp"
    max_wait_seconds: int = 60
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, TokenBucket] = attrs.field(factory=dict)

    # -- shared checks ---------------------------------------------------------------

    def _admit(self, who: Principal, tool: str) -> None:
        scope = TOOL_SCOPES[tool]
        if scope not in who.scopes:
            raise ToolFailure(
                f"Not allowed: {tool} needs the scope {self.resource_server}/{scope}, which this "
                "app client's token does not carry."
            )
        bucket = self._buckets.get(who.client_id)
        if bucket is None or bucket.rate_per_minute != who.agent.rate_limit_per_minute:
            bucket = self._buckets[who.client_id] = TokenBucket(
                who.agent.rate_limit_per_minute, self.clock
            )
        wait = bucket.take()
        if wait > 0:
            raise ToolFailure(
                f"Rate limited: this agent may make {who.agent.rate_limit_per_minute} calls per "
                "minute; "
                f"retry in {wait:.1f} s."
            )

    async def _run(
        self, who: Principal, tool: str, room: str | None, call: Callable[[], Awaitable[T]]
    ) -> T:
        self._admit(who, tool)
        try:
            result = await call()
        except b.RateLimited as err:
            self._audit(who, tool, room, None, "rate_limited")
            retry = f" Retry in {err.retry_after_seconds:.1f} s." if err.retry_after_seconds else ""
            raise ToolFailure(f"Rate limited: {err}.{retry}") from None
        except b.BackendError as err:
            self._audit(who, tool, room, None, type(err).__name__)
            raise ToolFailure(str(err)) from None
        except Exception:
            self._audit(who, tool, room, None, "error")
            raise
        event_id = getattr(result, "event_id", None) or getattr(result, "redaction_event_id", None)
        self._audit(who, tool, room or getattr(result, "room_id", None), event_id, "ok")
        return result

    def _audit(
        self, who: Principal, tool: str, room: str | None, event_id: str | None, outcome: str
    ) -> None:
        if tool not in WRITE_TOOLS:
            return
        record: dict[str, Any] = {
            "audit": "mcp_write",
            "agent": who.agent.localpart,
            "client_id": who.client_id,
            "tool": tool,
            "room": room,
            "event_id": event_id,
            "outcome": outcome,
        }
        audit_logger.info(json.dumps(record, sort_keys=True))

    # -- the nine tools ------------------------------------------------------------------

    async def list_rooms(self, who: Principal) -> RoomList:
        return await self._run(who, "list_rooms", None, lambda: self.backend.list_rooms(who.agent))

    async def get_messages(
        self,
        who: Principal,
        room: str,
        limit: int = 20,
        before: str | None = None,
        thread_id: str | None = None,
    ) -> MessagePage:
        ref = check_room_ref(room)
        limit = bounded_limit(limit)
        cursor = check_cursor(before, "before")
        thread = check_event_id(thread_id) if thread_id else None
        return await self._run(
            who,
            "get_messages",
            ref,
            lambda: self.backend.get_messages(who.agent, ref, limit, cursor, thread),
        )

    async def search_messages(
        self,
        who: Principal,
        query: str,
        room: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> MessagePage:
        # NUL is never searchable and PostgreSQL cannot take it as text: a word separator.
        query = query.replace("\x00", " ").strip()
        if not query or len(query) > 500:
            raise ToolFailure("query must be 1 to 500 characters of words to search for.")
        ref = check_room_ref(room) if room else None
        limit = bounded_limit(limit)
        token = check_cursor(cursor, "cursor")
        return await self._run(
            who,
            "search_messages",
            ref,
            lambda: self.backend.search_messages(who.agent, query, ref, limit, token),
        )

    async def send_message(
        self,
        who: Principal,
        room: str,
        body: str,
        reply_to: str | None = None,
        thread_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> SentMessage:
        ref = check_room_ref(room)
        if not body.strip():
            raise ToolFailure("body is empty: write the message text (Markdown allowed).")
        if "\x00" in body:
            raise ToolFailure("body contains NUL characters (\\u0000); remove them and send again.")
        if len(body) > MAX_BODY_CHARS:
            raise ToolFailure(
                f"body is {len(body)} characters; the limit is {MAX_BODY_CHARS}. Shorten or "
                "split it."
            )
        if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
            raise ToolFailure(
                "idempotency_key must be 1-128 characters of letters, digits and . _ : ~ -"
            )
        html = render_markdown(body)
        size = len(json.dumps({"body": body, "formatted_body": html}, ensure_ascii=False).encode())
        if size > MAX_CONTENT_BYTES:
            raise ToolFailure(TOO_LARGE.format(size=size, limit=MAX_CONTENT_BYTES))
        message = b.OutgoingMessage(
            body=body,
            formatted_body=html,
            reply_to=check_event_id(reply_to) if reply_to else None,
            thread_id=check_event_id(thread_id) if thread_id else None,
            idempotency_key=idempotency_key,
        )
        return await self._run(
            who, "send_message", ref, lambda: self.backend.send_message(who.agent, ref, message)
        )

    async def react_to_message(
        self, who: Principal, room: str, event_id: str, emoji: str
    ) -> Reaction:
        ref = check_room_ref(room)
        target = check_event_id(event_id)
        emoji = emoji.strip()
        if not emoji or len(emoji) > 32:
            raise ToolFailure("emoji must be one reaction such as 👍 (at most 32 characters).")
        return await self._run(
            who, "react_to_message", ref, lambda: self.backend.react(who.agent, ref, target, emoji)
        )

    async def list_room_members(self, who: Principal, room: str) -> MemberList:
        ref = check_room_ref(room)
        return await self._run(
            who, "list_room_members", ref, lambda: self.backend.list_members(who.agent, ref)
        )

    async def wait_for_messages(
        self,
        who: Principal,
        room: str | None = None,
        since: str | None = None,
        timeout_seconds: int = 30,
    ) -> WaitResult:
        rooms = [check_room_ref(room)] if room else None
        token = check_cursor(since, "since")
        if timeout_seconds < 0 or timeout_seconds > self.max_wait_seconds:
            raise ToolFailure(f"timeout_seconds must be between 0 and {self.max_wait_seconds}.")
        return await self._run(
            who,
            "wait_for_messages",
            room,
            lambda: self.backend.wait_for_messages(who.agent, rooms, token, timeout_seconds),
        )

    async def delete_message(
        self, who: Principal, room: str, event_id: str, reason: str | None = None
    ) -> Deletion:
        ref = check_room_ref(room)
        target = check_event_id(event_id)
        if reason is not None and len(reason) > 500:
            raise ToolFailure("reason is limited to 500 characters.")
        return await self._run(
            who,
            "delete_message",
            ref,
            lambda: self.backend.delete_message(who.agent, ref, target, reason),
        )

    async def get_link_preview(self, who: Principal, url: str) -> LinkPreview:
        url = url.strip()
        if not url.lower().startswith(("https://", "http://")) or len(url) > 2000 or " " in url:
            raise ToolFailure("url must be an http:// or https:// link of at most 2000 characters.")
        return await self._run(
            who, "get_link_preview", None, lambda: self.backend.link_preview(who.agent, url)
        )
