"""Checks of tool arguments, with errors the model can act on, and the per-agent limiter.

Pure: no MCP, no backend. ``ChatTools`` (tools.py) applies them before any backend call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import attrs
from markdown_it import MarkdownIt

from synapse_phenom.mcp.config import ROOM_KEYS

MAX_LIMIT = 100
MAX_BODY_CHARS = 30_000  # Matrix events are capped at 64 KiB; leave room for HTML and JSON.
# The message content as JSON (body + rendered HTML), in UTF-8 bytes: the 64 KiB event cap
# less room for the event's envelope (ids, signatures, hashes, relations).
MAX_CONTENT_BYTES = 60_000
TOO_LARGE = (
    "The message is too large for the chat server: {size} bytes as sent (text plus its "
    "rendered HTML; at most {limit}). Shorten it or split it into several messages."
)
_ROOM_HELP = (
    "Use internal, partners or community, an alias like #community:server, or a room ID like "
    "!abc:server"
)
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:~-]{1,128}$")
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table")


class ToolFailure(Exception):
    """Shown to the model as the tool's error text."""


def check_room_ref(room: str) -> str:
    """A room key, alias or room ID, normalised; ToolFailure naming the accepted forms."""
    value = room.strip()
    if value.lower() in ROOM_KEYS:
        return value.lower()
    if value.startswith("#") and ":" in value and " " not in value and len(value) <= 255:
        return value
    if (
        value.startswith("!")
        and len(value) > 1
        and not any(c.isspace() for c in value)
        and len(value) <= 255
    ):
        return value
    raise ToolFailure(f"Invalid room {room!r}. {_ROOM_HELP}.")


def check_event_id(event_id: str) -> str:
    value = event_id.strip()
    if (
        not value.startswith("$")
        or len(value) < 2
        or len(value) > 255
        or any(c.isspace() for c in value)
    ):
        raise ToolFailure(
            f"Invalid event ID {event_id!r}: event IDs look like $abc123 (take them from "
            "get_messages)."
        )
    return value


def check_cursor(cursor: str | None, name: str) -> str | None:
    if cursor is None or cursor == "":
        return None
    if len(cursor) > 2000 or any(c.isspace() for c in cursor):
        raise ToolFailure(
            f"Invalid {name}: pass back a cursor exactly as a previous result returned it."
        )
    return cursor


def render_markdown(body: str) -> str:
    """Markdown -> HTML for ``formatted_body``; raw HTML in the input is escaped, not passed on."""
    html = _MARKDOWN.render(body).strip()
    # A lone paragraph is sent without <p>, as Matrix clients do.
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]
    return html


@attrs.define
class TokenBucket:
    """Per-agent limiter: ``rate_per_minute`` calls, bursting up to that many."""

    rate_per_minute: int
    clock: Callable[[], float] = time.monotonic
    _tokens: float = attrs.field(init=False)
    _updated: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._tokens = float(self.rate_per_minute)
        self._updated = self.clock()

    def take(self) -> float:
        """0 when allowed; otherwise seconds until the next call would be allowed."""
        now = self.clock()
        rate = self.rate_per_minute / 60.0
        self._tokens = min(float(self.rate_per_minute), self._tokens + (now - self._updated) * rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / rate


def bounded_limit(limit: int) -> int:
    if limit < 1 or limit > MAX_LIMIT:
        raise ToolFailure(f"limit must be between 1 and {MAX_LIMIT}.")
    return limit
