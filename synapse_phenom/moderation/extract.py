"""Everything a client could show from an event's content, gathered for the rules.

Rather than reading a fixed list of fields (which a crafted event would dodge), the
whole content is walked: every string is text, HTML fields are parsed for their text
and link targets, and media descriptions are collected wherever they appear (edits'
``m.new_content``, captions, polls, stickers, extensible-event blocks, previews).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from bs4 import BeautifulSoup

# Values that are identifiers or machine data, never shown as text.
_SKIP_KEYS = frozenset(
    {
        "event_id",
        "rel_type",
        "msgtype",
        "format",
        "mimetype",
        "algorithm",
        "sender_key",
        "session_id",
        "device_id",
        "ciphertext",
        "hashes",
        "key_ops",
        "iv",
        "v",
        "alg",
        "kty",
        "k",
        "ext",
        "user_ids",
        "via",
        "is_falling_back",
        "org.matrix.msc1767.kind",
        "kind",
        "state_key",
        "room_id",
        "sender",
        "origin_server_ts",
        "duration",
        "w",
        "h",
        "size",
        "waveform",
        "m.mentions",
    }
)
_HTML_KEYS = frozenset({"formatted_body"})
_MEDIA_MSGTYPES = frozenset({"m.image", "m.video", "m.audio", "m.file"})
_MAX_DEPTH = 12
_BLOCK_TAGS = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "td",
    "th",
    "blockquote",
    "pre",
    "hr",
    "table",
    "details",
    "summary",
    "mx-reply",
]
_BLOCK_TAGS = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "td",
    "th",
    "blockquote",
    "pre",
    "hr",
    "table",
    "details",
    "summary",
    "mx-reply",
]


@attrs.frozen
class Media:
    msgtype: str  # m.image... or "m.sticker"
    mimetype: str | None
    size: int | None


@attrs.define
class Extracted:
    texts: list[str] = attrs.field(factory=list)
    hrefs: list[str] = attrs.field(factory=list)  # link targets from HTML
    user_mentions: set[str] = attrs.field(factory=set)  # from m.mentions
    room_mention: bool = False
    mentions_declared: bool = False  # m.mentions present (then body "@room" does not notify)
    msgtypes: list[str] = attrs.field(factory=list)
    media: list[Media] = attrs.field(factory=list)


def html_text_and_links(html: str) -> tuple[str, list[str]]:
    if "<" not in html and "&" not in html:
        return html, []
    soup = BeautifulSoup(html, "html.parser")
    links = [str(a["href"]) for a in soup.find_all(href=True)]
    links += [
        str(i["src"]) for i in soup.find_all(src=True) if not str(i["src"]).startswith("mxc:")
    ]
    # Text as rendered: inline tags join their neighbours ("bad<i></i>word" shows as one
    # word), block tags break lines.
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.append("\n")
    return soup.get_text(""), links


def _media_of(content: Mapping[str, Any], event_type: str) -> Media | None:
    msgtype = content.get("msgtype")
    if not isinstance(msgtype, str):
        msgtype = None  # junk in a nested (unvalidated) field: never let it raise
    info = content.get("info")
    if event_type == "m.sticker" and "url" in content:
        msgtype = "m.sticker"
    elif msgtype not in _MEDIA_MSGTYPES and not (isinstance(info, Mapping) and "url" in content):
        return None
    mimetype = size = None
    if isinstance(info, Mapping):
        mimetype = info.get("mimetype") if isinstance(info.get("mimetype"), str) else None
        size = info.get("size") if isinstance(info.get("size"), int) else None
    return Media(str(msgtype or "m.file"), mimetype, size)


def _walk(value: Any, out: Extracted, event_type: str, key: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, str):
        if key in _SKIP_KEYS or value.startswith("mxc://"):
            return
        if key in _HTML_KEYS:
            text, links = html_text_and_links(value)
            out.texts.append(text)
            out.hrefs.extend(links)
        else:
            out.texts.append(value)
        return
    if isinstance(value, list):
        for item in value:
            _walk(item, out, event_type, key, depth + 1)
        return
    if not isinstance(value, Mapping):
        return
    # Extensible-events text block: {"mimetype": "text/html", "body": "<b>..</b>"}
    if value.get("mimetype") == "text/html" and isinstance(value.get("body"), str):
        text, links = html_text_and_links(value["body"])
        out.texts.append(text)
        out.hrefs.extend(links)
        value = {k: v for k, v in value.items() if k != "body"}
    if isinstance(value.get("msgtype"), str):
        out.msgtypes.append(value["msgtype"])
    media = _media_of(value, event_type)
    if media is not None:
        out.media.append(media)
    mentions = value.get("m.mentions")
    if isinstance(mentions, Mapping):
        out.mentions_declared = True
        ids = mentions.get("user_ids")
        if isinstance(ids, list):
            out.user_mentions.update(i for i in ids if isinstance(i, str))
        if mentions.get("room") is True:
            out.room_mention = True
    for k, v in value.items():
        _walk(v, out, event_type, k, depth + 1)


def extract(event_type: str, content: Mapping[str, Any]) -> Extracted:
    """Texts, link targets, mentions and media of a message-like or state event's content."""
    out = Extracted()
    _walk(content, out, event_type, "", 0)
    return out
