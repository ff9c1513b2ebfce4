"""What the moderation module reads from a Synapse event beyond its content.

Where an event came from (a client transaction or the server itself), whether Synapse's
legacy name-highlight push rules read its body, and the failure counter that separates
content from infrastructure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from synapse_phenom.moderation.rules import Violation, is_preview_card
from synapse_phenom.previews.signing import split_cards

if TYPE_CHECKING:
    from synapse.events import EventBase

CHECK_FAILURES = Counter(
    "phenom_moderation_check_failures_total",
    "Checks that failed: reason=content (the event was refused as unreadable) or "
    "reason=infrastructure (database/state unavailable; fail_closed decides; alert on it)",
    ["reason"],
)

PREVIEW_CARD_FORGED = Violation(
    "preview_card",
    "Link preview cards are created by the server only; this event was not sent.",
    "client-sent preview card",
)
PREVIEW_CARD_UNSIGNED = Violation(
    "preview_card",
    "Your message was not sent: it carries a link preview card the server did not make "
    "(rule 'preview_card'). Send it without m.url_previews / com.beeper.linkpreviews (the "
    "server adds Phenom cards itself), or with the composer endpoint's 'preview' entry "
    "unmodified.",
    "client-made preview entry",
)


def server_made(event: EventBase) -> bool:
    """Created by the server itself (a module's ``create_and_send_event_into_room``), not
    through the client API: no transaction, device, delay or access-token id in its
    internal metadata, and not a state event (modules send none of these)."""
    meta = event.internal_metadata
    for name in ("txn_id", "device_id", "delay_id", "token_id"):
        try:
            if getattr(meta, name) is not None:
                return False
        except AttributeError:
            continue
    return not event.is_state()


def card_verdict(event: EventBase, key: bytes) -> tuple[dict[str, Any], Violation | None, bool]:
    """(content without the server-signed preview entries, a refusal, is the server's own
    follow-up card). Signed entries are the server's words, never the user's: the rules do
    not read them. A card event sent through the client API (it could put any text under
    anyone's message) and any unsigned entry (a card a client made up, for any URL:
    clients render bundled previews for every link) are refused."""
    card_event = is_preview_card(event.type, event.content)
    if card_event and not server_made(event):
        return {}, PREVIEW_CARD_FORGED, False
    # A signed card counts only under its own link (previews/signing.py); the server's
    # follow-up has no body: its cards were built from the message it references.
    content, unsigned = split_cards(event.content, key, placed_by_server=card_event)
    if unsigned:
        return content, PREVIEW_CARD_UNSIGNED, False
    return content, None, card_event


def has_legacy_body(content: Mapping[str, Any]) -> bool:
    """A body Synapse's legacy name-highlight push rules read (no ``m.mentions``)."""
    return "m.mentions" not in content and isinstance(content.get("body"), str)
