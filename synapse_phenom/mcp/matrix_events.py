"""Matrix events -> tool models, and the event contents agents send. Pure functions."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from synapse_phenom.mcp.backend import OutgoingMessage
from synapse_phenom.mcp.models import Message, PreviewCard

PREVIEW_KEYS = ("m.url_previews", "com.beeper.linkpreviews")


def iso_timestamp(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def preview_card(raw: Mapping[str, Any]) -> PreviewCard | None:
    """An MSC4095 bundled preview (or a preview endpoint's og:* answer) as a card."""
    url = raw.get("matrix:matched_url") or raw.get("matched_url") or raw.get("og:url")
    if not isinstance(url, str):
        return None

    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None

    return PreviewCard(
        url=url,
        title=text("og:title"),
        description=text("og:description"),
        image=text("og:image"),
        site_name=text("og:site_name"),
    )


def message_from_event(
    event: Mapping[str, Any], room_id: str, display_names: Mapping[str, str]
) -> Message | None:
    """A readable message, or None for what agents should not see as one (redacted, edits,
    non-text)."""
    if event.get("type") != "m.room.message":
        return None
    content = event.get("content") or {}
    body = content.get("body")
    if not isinstance(body, str):
        return None  # redacted
    relates = content.get("m.relates_to") or {}
    if relates.get("rel_type") == "m.replace":
        return None  # an edit; the original carries the conversation
    reply = (relates.get("m.in_reply_to") or {}).get("event_id")
    thread = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
    if thread and relates.get("is_falling_back"):
        reply = None  # the thread fallback is not a real reply
    previews = []
    for key in PREVIEW_KEYS:
        if isinstance(content.get(key), list):
            previews = [
                c for c in (preview_card(p) for p in content[key] if isinstance(p, dict)) if c
            ]
            break
    sender = str(event.get("sender", ""))
    return Message(
        event_id=str(event.get("event_id", "")),
        room_id=room_id,
        sender=sender,
        sender_display_name=display_names.get(sender),
        body=body,
        timestamp=iso_timestamp(int(event.get("origin_server_ts", 0))),
        reply_to=reply if isinstance(reply, str) else None,
        thread_id=thread if isinstance(thread, str) else None,
        previews=previews,
    )


def display_names(member_events: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    names = {}
    for event in member_events:
        if event.get("type") == "m.room.member" and isinstance(event.get("state_key"), str):
            name = (event.get("content") or {}).get("displayname")
            if isinstance(name, str) and name:
                names[event["state_key"]] = name
    return names


def message_content(message: OutgoingMessage) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": "m.text", "body": message.body}
    if message.formatted_body is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = message.formatted_body
    if message.thread_id:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": message.thread_id,
            "is_falling_back": message.reply_to is None,
            "m.in_reply_to": {"event_id": message.reply_to or message.thread_id},
        }
    elif message.reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": message.reply_to}}
    return content


def txn_id(*parts: str) -> str:
    """A deterministic Matrix transaction id: the same parts always give the same id, so a
    retried send (on any replica) is deduplicated by Synapse instead of posted twice."""
    return "mcp." + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


_CREATOR_POWER_ROOM_VERSIONS = ("12", "org.matrix.hydra.11")


def implicit_creators(create_event: Mapping[str, Any]) -> set[str]:
    """Users with creator power in a room, from its m.room.create event (empty before v12)."""
    content = create_event.get("content") or {}
    if str(content.get("room_version", "1")) not in _CREATOR_POWER_ROOM_VERSIONS:
        return set()
    extra = content.get("additional_creators") or []
    return {str(create_event.get("sender", "")), *(str(u) for u in extra if isinstance(u, str))}


def role_for(power: int | None) -> str:
    """None: a room creator, above every power level (room version 12+)."""
    if power is None or power >= 100:
        return "admin"
    if power >= 50:
        return "moderator"
    return "member"


# Synapse's search (synapse/storage/databases/main/search.py) reads "phrases", `or` and a
# leading `-` (not) and skips these stop words; on SQLite it turns that into an FTS4 MATCH
# where NOT/OR must stand between two terms and NEAR/AND/OR/NOT in capitals are operators.
_STOP_WORDS = frozenset({"the", "a", "you", "me", "and", "but"})
_TERM = re.compile(r"(?P<neg>(?<![\w-])-)?(?P<word>\w+)")


def search_query(query: str) -> str:
    """The query as Synapse's search reads it without error on SQLite and PostgreSQL.

    Words (lower-cased, so no word is an FTS operator), balanced "phrases", `or` only
    between two terms and `-word` only after a term (SQLite's NOT is binary); everything
    else (quotes left open, `*`, `(`, `--`, `'`, NUL) is dropped. Empty when nothing
    searchable is left.
    """
    parts = query.split('"')
    if len(parts) % 2 == 0:  # an unbalanced quote: what follows it is plain words
        parts[-2:] = [f"{parts[-2]} {parts[-1]}"]
    out: list[str] = []
    either = False  # an `or` is waiting for the term after it
    for i, part in enumerate(parts):
        if i % 2:  # inside a phrase
            words = [w for w in re.findall(r"\w+", part.lower()) if w not in _STOP_WORDS]
            if words:
                out.append(("or " if either and out else "") + '"' + " ".join(words) + '"')
                either = False
            continue
        for term in _TERM.finditer(part):
            word = term["word"].lower()
            if word in _STOP_WORDS:
                continue
            if word == "or" and not term["neg"]:
                either = bool(out)
                continue
            if term["neg"]:
                if out:  # "a or -b" is read as "a -b": NOT right after OR is a syntax error
                    out.append(f"-{word}")
                either = False
                continue
            out.append(("or " if either else "") + word)
            either = False
    return " ".join(out)
