"""Everything a client could show from an event's content, gathered for the rules.

Rather than reading a fixed list of fields (which a crafted event would dodge), the
whole content is walked: every string is text, HTML fields are parsed for their text
and link targets, and media descriptions are collected wherever they appear (edits'
``m.new_content``, captions, polls, stickers, extensible-event blocks, previews).

Extraction is **total**: any JSON shape, any markup, yields a result and never raises.
HTML is parsed by Lexbor (``selectolax``), an HTML5 parser that recovers from any input
exactly as browsers do (first duplicate attribute wins, ``<![ x`` is a bogus comment).
Text is taken from every element a client might show, including ``<template>``
content, ruby annotations, ``<noscript>``, ``<title>``, comments and text-bearing
attributes (``alt``, ``title``, Element's ``data-mx-spoiler`` / ``data-mx-maths``):
when in doubt, more is read, never less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import unescape
from typing import Any

import attrs
from selectolax.lexbor import LexborHTMLParser, LexborNode

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
# Keys holding a media URI (never shown); an mxc:// string elsewhere is text like any other.
_MXC_KEYS = frozenset({"url", "thumbnail_url", "avatar_url", "og:image", "matrix:image"})
_HTML_KEYS = frozenset({"formatted_body", "m.html", "org.matrix.msc1767.html"})
_HTML_MIMETYPES = frozenset({"text/html", "application/xhtml+xml"})
_MEDIA_MSGTYPES = frozenset({"m.image", "m.video", "m.audio", "m.file"})
# Elements whose start and end break a line in every client: the block elements of the
# Matrix spec's HTML subset, which clients keep ("bad</p><p>word" is two words).
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td",
        "th", "thead", "tbody", "table", "blockquote", "pre", "hr", "details", "summary",
        "caption",
    }
)  # fmt: skip
# Elements a browser draws as a box (a block, an image, a form control, SVG/MathML) but
# that Matrix clients' sanitizers (outside the spec's subset) strip, keeping their text
# inline: "bad<section></section>word" is one word there, two in a browser. Marked
# SOFT_BREAK; the rules check both readings. (html, head and body, which the parser
# always adds around a fragment, separate nothing.)
_SOFT_TAGS = frozenset(
    {"img", "svg", "math", "button", "input", "select", "label", "textarea", "iframe", "video",
     "audio", "object", "embed", "canvas", "picture", "meter", "progress", "output", "section",
     "article", "header", "footer", "nav", "aside", "main", "figure", "figcaption", "address",
     "fieldset", "legend", "dd", "dt", "dl", "option"}
)  # fmt: skip
# Elements whose content a browser or a client may not show at all (a template, a script,
# the reply fallback clients strip, ruby annotations): their content is read with the
# text around it (a sanitizer keeps it inline) AND the text around it is read without it
# ("bad<template>x</template>word" shows "badword" in a browser).
_HIDDEN_TAGS = frozenset(
    {"template", "style", "script", "title", "noscript", "mx-reply", "rt", "rp"}
)
SOFT_BREAK = "\x1f"
HIDDEN_START, HIDDEN_END = "\x1e", "\x1d"
_HIDDEN_SPLIT = re.compile("([\x1e\x1d])")
# Attributes a client may show as text (tooltips, alt text, spoiler reasons, maths).
_TEXT_ATTRS = (
    "alt",
    "title",
    "aria-label",
    "aria-description",
    "placeholder",
    "value",
    "label",
    "summary",
    "data-mx-spoiler",
    "data-mx-maths",
)
# Attributes holding a link target.
_LINK_ATTRS = (
    "href",
    "src",
    "xlink:href",
    "cite",
    "action",
    "formaction",
    "poster",
    "background",
    "data",
    "longdesc",
    "ping",
)
_RAW_TAG = re.compile(r"<[a-zA-Z][^>]*")
_RAW_ATTR = re.compile(
    r"""[\s/"'](href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE
)


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
    # Top-level m.mentions present: Synapse then skips its legacy body rules (@room, names).
    # Only the top level counts, as in Synapse: an m.mentions nested anywhere else (an
    # edit's m.new_content, a custom key) must not switch the legacy checks off.
    mentions_declared: bool = False
    msgtypes: list[str] = attrs.field(factory=list)
    media: list[Media] = attrs.field(factory=list)
    bodies: list[str] = attrs.field(factory=list)  # plain "body" strings (legacy highlights)


def _hidden(value: str) -> str:
    return SOFT_BREAK + HIDDEN_START + value + HIDDEN_END + SOFT_BREAK


def _html_walk(node: LexborNode | None, text: list[str], links: list[str]) -> None:
    """Depth-first with an explicit stack (no recursion, whatever the nesting): text as
    rendered (inline tags join their neighbours, block tags break lines, inline boxes
    are soft breaks), link targets, template contents. Comments and text-bearing
    attributes (alt text, tooltips) are marked hidden where they stand: read on their own,
    with their neighbours (alt text replaces a broken image in the line) and without them.
    A stack entry is a node to visit, or a string to emit when an element closes."""
    stack: list[LexborNode | str | None] = [node]
    while stack:
        current = stack.pop()
        if current is None:
            continue
        if isinstance(current, str):
            text.append(current)
            continue
        stack.append(current.next)
        if current.is_text_node:
            value = current.text_content
            if value:
                text.append(value)
            continue
        if current.is_comment_node:
            value = current.comment_content
            if value:
                text.append(_hidden(value))
            continue
        tag = current.tag or ""
        if tag in _BLOCK_TAGS:
            opening = closing = "\n"
        elif tag in _HIDDEN_TAGS:
            opening, closing = SOFT_BREAK + HIDDEN_START, HIDDEN_END + SOFT_BREAK
        elif tag in _SOFT_TAGS:
            opening = closing = SOFT_BREAK
        else:
            opening = closing = ""
        attributes = current.attributes if current.is_element_node else {}
        if tag == "bdo" and str(attributes.get("dir") or "").strip().lower() == "rtl":
            # <bdo dir=rtl> draws its letters right to left, like U+202E: the rules then
            # also read it in the order shown (normalize.visual_variant).
            opening, closing = "\u202e", "\u202c"
        text.append(opening)
        for name in _TEXT_ATTRS:
            value = attributes.get(name)
            if value:
                text.append(_hidden(value))
        for name in _LINK_ATTRS:
            value = attributes.get(name)
            if value and not (name == "src" and value.strip().lower().startswith("mxc:")):
                links.append(value)
        if closing:
            stack.append(closing)
        stack.append(current.child)
        if tag == "template":
            # Its content is a separate fragment (nested templates: the first is its own).
            fragments = current.template_fragments()
            if fragments:
                stack.append(fragments[0].child)


def readings(text: str) -> tuple[str, ...]:
    """The ways a reader may see extracted HTML text: soft breaks as nothing or as a
    gap, hidden content shown or not. Plain text (no markers) has one reading."""
    if SOFT_BREAK not in text and HIDDEN_START not in text and HIDDEN_END not in text:
        return (text,)
    shown = text.replace(HIDDEN_START, "").replace(HIDDEN_END, "")
    out = {shown.replace(SOFT_BREAK, ""), shown.replace(SOFT_BREAK, " ")}
    if HIDDEN_START in text:
        # Without the hidden content: one pass, counting nesting (never quadratic).
        kept, depth = [], 0
        for part in _HIDDEN_SPLIT.split(text):
            if part == HIDDEN_START:
                depth += 1
            elif part == HIDDEN_END:
                depth = max(0, depth - 1)
            elif depth == 0:
                kept.append(part)
        out.add("".join(kept).replace(SOFT_BREAK, ""))
    return tuple(out)


def _raw_link_attributes(html: str) -> list[str]:
    """Every ``href``/``src`` value written in any start tag, duplicates included: a
    safety net for renderers that do not keep the first duplicate as HTML5 does."""
    out = []
    for tag in _RAW_TAG.findall(html):
        for name, *values in _RAW_ATTR.findall(tag):
            value = unescape(next((v for v in values if v), ""))
            if value and not (name.lower() == "src" and value.strip().lower().startswith("mxc:")):
                out.append(value)
    return out


def html_text_and_links(html: str) -> tuple[str, list[str]]:
    """Rendered text and link targets of an HTML fragment. Total: never raises."""
    if "<" not in html and "&" not in html:
        return html, []
    try:
        tree = LexborHTMLParser(html)
        text: list[str] = []
        links: list[str] = []
        first = tree.root
        while first is not None and first.prev is not None:
            first = first.prev  # comments before <html> are children of the document
        _html_walk(first, text, links)
        if "=" in html:
            seen = set(links)
            links.extend(v for v in _raw_link_attributes(html) if v not in seen)
        return "".join(text), links
    except Exception:  # pragma: no cover - Lexbor recovers from any input
        # Never fail open: the markup itself is then the text (every tag, link and word
        # in it is seen by the rules).
        return html, []


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
        raw_size = info.get("size")
        size = raw_size if isinstance(raw_size, int) and not isinstance(raw_size, bool) else None
    return Media(str(msgtype or "m.file"), mimetype, size)


def _add_html(out: Extracted, html: str) -> None:
    text, links = html_text_and_links(html)
    out.texts.append(text)
    out.hrefs.extend(links)


def _visit_mapping(value: Mapping[str, Any], out: Extracted, event_type: str) -> list[Any]:
    """Collect what a mapping itself says; return its (key, value) children to walk."""
    children: list[Any] = []
    mimetype = value.get("mimetype")
    body = value.get("body")
    # Extensible-events text block: {"mimetype": "text/html", "body": "<b>..</b>"}
    html_block = (
        isinstance(mimetype, str)
        and mimetype.split(";", 1)[0].strip().lower() in _HTML_MIMETYPES
        and isinstance(body, str)
    )
    if html_block and isinstance(body, str):
        _add_html(out, body)
    msgtype = value.get("msgtype")
    if isinstance(msgtype, str):
        out.msgtypes.append(msgtype)
    media = _media_of(value, event_type)
    if media is not None:
        out.media.append(media)
    mentions = value.get("m.mentions")
    if isinstance(mentions, Mapping):
        ids = mentions.get("user_ids")
        if isinstance(ids, list):
            out.user_mentions.update(i for i in ids if isinstance(i, str))
        if mentions.get("room") is True:
            out.room_mention = True
    if isinstance(body, str) and not html_block:
        out.bodies.append(body)
    for k, v in value.items():
        if html_block and k == "body":
            continue
        children.append((k if isinstance(k, str) else "", v))
    return children


def extract(event_type: str, content: Mapping[str, Any]) -> Extracted:
    """Texts, link targets, mentions and media of any event's content. Total: whatever
    the shape of ``content`` (nesting, types, markup), it returns and never raises."""
    out = Extracted()
    out.mentions_declared = isinstance(content, Mapping) and isinstance(
        content.get("m.mentions"), Mapping
    )
    stack: list[tuple[str, Any]] = [("", content)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, str):
            if key in _SKIP_KEYS or (key in _MXC_KEYS and value.startswith("mxc://")):
                continue
            if key in _HTML_KEYS:
                _add_html(out, value)
            else:
                out.texts.append(value)
        elif isinstance(value, list | tuple):
            stack.extend((key, item) for item in reversed(value))
        elif isinstance(value, Mapping):
            stack.extend(reversed(_visit_mapping(value, out, event_type)))
    return out
