"""Server-signed preview cards: a card in a message is Phenom's only if the server signed it.

Every MSC4095 entry the server hands out (inline, follow-up, composer endpoint) carries
``app.phenom.card.sig``: HMAC-SHA256, keyed by a secret derived from the homeserver's
``macaroon_secret_key`` (the same in every worker), over the canonical JSON of the entry
without the signature. ``matched_url`` is inside the signed part, so a card cannot be
moved to another link, and any change to a field (title, description, image...) breaks it.
The moderation module strips signed entries before reading the user's text and refuses
unsigned ones (docs/link-previews.md, "Which cards clients trust").

A signature says what the card is, not where it may be shown: a signed card is copyable
(the composer endpoint hands them to anyone). So a card counts as the server's only in a
message whose body has its ``matched_url`` as one of its links, token for token as the
previewer reads links. Clients match ``matched_url`` against the body as a substring:
without this, the card of ``https://thephenom.app`` would show under
``https://thephenom.app@evil.example/`` (a link to evil.example) or under a message with no
Phenom link at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from synapse_phenom.previews.msc4095 import CARD_KEY, PREVIEW_KEYS, shows_link
from synapse_phenom.previews.policy import find_links

SIG_KEY = "sig"
_CONTEXT = b"app.phenom.card.v1"


def derive_key(server_secret: bytes) -> bytes:
    """The card-signing key from a server secret (never the secret itself)."""
    return hmac.new(server_secret, _CONTEXT, hashlib.sha256).digest()


def _canonical(entry: Mapping[str, Any]) -> bytes:
    body = dict(entry)
    extra = body.get(CARD_KEY)
    if isinstance(extra, Mapping):
        body[CARD_KEY] = {k: v for k, v in extra.items() if k != SIG_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _mac(entry: Mapping[str, Any], key: bytes) -> str:
    digest = hmac.new(key, _canonical(entry), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_entry(entry: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of ``entry`` carrying its signature in ``app.phenom.card.sig``."""
    out = dict(entry)
    extra = dict(out.get(CARD_KEY) or {})
    extra.pop(SIG_KEY, None)
    out[CARD_KEY] = extra
    extra[SIG_KEY] = _mac(out, key)
    return out


def verify_entry(entry: Any, key: bytes) -> bool:
    """Whether ``entry`` is exactly a card the server signed. Total: never raises."""
    try:
        if not isinstance(entry, Mapping):
            return False
        extra = entry.get(CARD_KEY)
        sig = extra.get(SIG_KEY) if isinstance(extra, Mapping) else None
        return isinstance(sig, str) and hmac.compare_digest(sig, _mac(entry, key))
    except Exception:
        return False


def _links(part: Any) -> frozenset[str]:
    body = part.get("body") if isinstance(part, Mapping) else None
    return frozenset(find_links(body)) if isinstance(body, str) else frozenset()


def is_placed(entry: Any, links: frozenset[str], html: Any = None) -> bool:
    """The entry's matched URLs are links of the body it is shown with, and of the HTML
    clients render instead of the body when there is one (``formatted_body``)."""
    if not isinstance(entry, Mapping):
        return False
    matched = entry.get("matched_url")
    if matched not in links or entry.get("matrix:matched_url", matched) not in links:
        return False
    return not isinstance(html, str) or shows_link(html, str(matched))


def split_cards(
    content: Mapping[str, Any], key: bytes, placed_by_server: bool = False
) -> tuple[dict[str, Any], int]:
    """(content without server-signed preview entries, number of entries not the server's),
    for the message itself and an edit's ``m.new_content``. An entry is the server's when it
    is signed and its ``matched_url`` is a link of the body it goes with (an edit's fallback
    may carry the new body's cards). ``placed_by_server``: the server's own follow-up event,
    whose cards belong to the message it references (no body of its own). Total."""
    unsigned = 0
    new_links = _links(content.get("m.new_content"))

    def strip(part: Mapping[str, Any], links: frozenset[str], check_html: bool) -> dict[str, Any]:
        nonlocal unsigned
        out = dict(part)
        for name in PREVIEW_KEYS:
            entries = out.get(name)
            if name not in out:
                continue
            if not isinstance(entries, list):
                unsigned += 1  # not a card list: nothing a client may render as ours
                continue
            html = part.get("formatted_body") if check_html else None
            kept = [
                e
                for e in entries
                if not (verify_entry(e, key) and (placed_by_server or is_placed(e, links, html)))
            ]
            unsigned += len(kept)
            if kept:
                out[name] = kept
            else:
                del out[name]
        return out

    new = content.get("m.new_content")
    # An edit's top level is the fallback for clients without edits: cards there follow
    # the new body, whose HTML is checked in m.new_content.
    result = strip(content, _links(content) | new_links, not isinstance(new, Mapping))
    new = result.get("m.new_content")
    if isinstance(new, Mapping):
        result["m.new_content"] = strip(new, new_links, True)
    return result, unsigned
