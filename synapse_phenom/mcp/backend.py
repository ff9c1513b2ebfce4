"""The chat backend interface the tools run against.

``synapse`` (an application service on the Matrix client API) implements it in
``synapse_backend``; a PostgreSQL ("Hasura Lite") backend can implement the same
Protocol without touching the tools. Backends raise ``BackendError`` subclasses whose
text is shown to the model, so it must say what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

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


class BackendError(Exception):
    """A failure the agent can act on; ``str(err)`` is shown to the model."""


class NotFound(BackendError):
    pass


class Forbidden(BackendError):
    pass


class RateLimited(BackendError):
    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class InvalidRequest(BackendError):
    pass


class Unavailable(BackendError):
    """The backend cannot be reached or answered with an unexpected error."""


@attrs.frozen
class OutgoingMessage:
    body: str
    formatted_body: str | None
    reply_to: str | None
    thread_id: str | None
    idempotency_key: str | None


class ChatBackend(Protocol):
    """Every call acts as ``agent``; ``room`` is a room key, alias or room ID already
    syntax-checked by the tools; the backend enforces that it is one of the agent's rooms."""

    async def health(self) -> dict[str, object]:
        """{"ok": bool, ...details}; must not raise."""
        ...

    async def list_rooms(self, agent: AgentProfile) -> RoomList: ...

    async def get_messages(
        self, agent: AgentProfile, room: str, limit: int, before: str | None, thread_id: str | None
    ) -> MessagePage: ...

    async def search_messages(
        self, agent: AgentProfile, query: str, room: str | None, limit: int, cursor: str | None
    ) -> MessagePage: ...

    async def send_message(
        self, agent: AgentProfile, room: str, message: OutgoingMessage
    ) -> SentMessage: ...

    async def react(
        self, agent: AgentProfile, room: str, event_id: str, emoji: str
    ) -> Reaction: ...

    async def list_members(self, agent: AgentProfile, room: str) -> MemberList: ...

    async def wait_for_messages(
        self,
        agent: AgentProfile,
        rooms: Sequence[str] | None,
        since: str | None,
        timeout_seconds: int,
    ) -> WaitResult: ...

    async def delete_message(
        self, agent: AgentProfile, room: str, event_id: str, reason: str | None
    ) -> Deletion: ...

    async def link_preview(self, agent: AgentProfile, url: str) -> LinkPreview: ...

    async def aclose(self) -> None: ...
