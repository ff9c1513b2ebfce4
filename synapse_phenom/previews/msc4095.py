"""MSC4095 bundled URL previews: cards into message content, as today's clients read them.

Element Web, Beeper and mautrix read ``com.beeper.linkpreviews``; the stable name is
``m.url_previews``. Both carry the same list; ``[]`` means "the sender wants no preview".
Clients show an entry only when its ``matched_url`` appears in the body, so it is the
link exactly as written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from synapse_phenom.previews.card import Card

UNSTABLE_KEY = "com.beeper.linkpreviews"
STABLE_KEY = "m.url_previews"
PREVIEW_KEYS = (UNSTABLE_KEY, STABLE_KEY)
# Fields MSC4095 does not define, namespaced so clients can ignore them.
CARD_KEY = "app.phenom.card"
# The follow-up event for cards resolved after the message was sent.
FOLLOW_UP_TYPE = "app.phenom.link_preview"


def preview_entry(matched_url: str, card: Card) -> dict[str, Any]:
    """One MSC4095 preview object (og:image only when re-hosted: clients fetch mxc only)."""
    entry: dict[str, Any] = {
        "matched_url": matched_url,
        "matrix:matched_url": matched_url,
        "og:url": card.canonical_url,
        "og:title": card.title,
        "og:type": card.kind,
    }
    if card.description:
        entry["og:description"] = card.description
    if card.site_name:
        entry["og:site_name"] = card.site_name
    if card.image is not None:
        entry["og:image"] = card.image.mxc
        entry["og:image:type"] = card.image.mimetype
        entry["matrix:image:size"] = card.image.size
        if card.image.width and card.image.height:
            entry["og:image:width"] = card.image.width
            entry["og:image:height"] = card.image.height
    extra: dict[str, Any] = {"kind": card.kind, "facts": [f.model_dump() for f in card.facts]}
    if card.theme_color:
        extra["theme_color"] = card.theme_color
    entry[CARD_KEY] = extra
    return entry


def previews_for(
    cards: Sequence[tuple[str, Card]], sign: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Entries for ``cards``, each passed through ``sign`` (``signing.sign_entry``)."""
    return [sign(preview_entry(matched, card)) for matched, card in cards]


def sender_chose(content: Mapping[str, Any]) -> bool:
    """True when the sender's client already decided (its own previews, or ``[]`` for none)."""
    return any(key in content for key in PREVIEW_KEYS)


def message_body(content: Mapping[str, Any]) -> tuple[str, bool]:
    """(text to scan for links, is an edit). For edits the new content is what counts."""
    new = content.get("m.new_content")
    relates = content.get("m.relates_to")
    if (
        isinstance(new, Mapping)
        and isinstance(relates, Mapping)
        and relates.get("rel_type") == "m.replace"
    ):
        body = new.get("body")
        return (body if isinstance(body, str) else ""), True
    body = content.get("body")
    return (body if isinstance(body, str) else ""), False


def wants_previews(content: Mapping[str, Any]) -> bool:
    """Whether the module may add previews to this message content at all."""
    if sender_chose(content):
        return False
    new = content.get("m.new_content")
    return not (isinstance(new, Mapping) and sender_chose(new))


def with_previews(content: Mapping[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of ``content`` carrying the previews under both keys (edits: also in
    m.new_content)."""
    out = dict(content)
    out[UNSTABLE_KEY] = entries
    out[STABLE_KEY] = entries
    _, is_edit = message_body(content)
    if is_edit:
        new = dict(content["m.new_content"])
        new[UNSTABLE_KEY] = entries
        new[STABLE_KEY] = entries
        out["m.new_content"] = new
    return out


def follow_up_content(target_event_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Content of the ``app.phenom.link_preview`` event that attaches cards to a sent message."""
    return {
        "m.relates_to": {"rel_type": "m.reference", "event_id": target_event_id},
        UNSTABLE_KEY: entries,
        STABLE_KEY: entries,
    }


def _entries(content: Mapping[str, Any]) -> Any:
    return content[UNSTABLE_KEY] if UNSTABLE_KEY in content else content.get(STABLE_KEY)


def opted_out(content: Mapping[str, Any]) -> bool:
    """The sender sent ``[]`` (no preview), for the message or for an edit's new content."""
    new = content.get("m.new_content")
    return any(_entries(c) == [] for c in (content, new) if isinstance(c, Mapping))


def previewed_urls(content: Mapping[str, Any]) -> set[str]:
    """Links that already have a preview in the message (inline, ours or the client's)."""
    entries = _entries(content) or []
    return {e.get("matched_url", "") for e in entries if isinstance(e, Mapping)}


def rendered_html(content: Mapping[str, Any]) -> str | None:
    """The HTML clients show instead of the body, if any (an edit: its new content's)."""
    _, is_edit = message_body(content)
    part = content["m.new_content"] if is_edit else content
    html = part.get("formatted_body")
    return html if isinstance(html, str) else None


def shows_link(html: str, url: str) -> bool:
    """Whether rendered ``html`` shows ``url`` as a link that goes there: an anchor to it, or
    the URL as plain text (clients linkify it); and no anchor shows it while going elsewhere.
    A card under ``<a href="https://evil.example">https://thephenom.app/p/x</a>`` (or under
    "click here" linking elsewhere, the URL only in the plain body) would vouch for a link
    that does not go to the page it shows."""
    from selectolax.lexbor import LexborHTMLParser

    from synapse_phenom.previews.policy import normalise_url

    target = normalise_url(url)
    tree = LexborHTMLParser(html)
    found = False
    for anchor in tree.css("a"):
        href = (anchor.attributes.get("href") or "").strip()
        goes_there = bool(href) and normalise_url(href) == target
        if url in anchor.text(deep=True) and not goes_there:
            return False
        found = found or goes_there
        anchor.decompose()
    body = tree.body
    return found or (body is not None and url in body.text(deep=True))
