"""What the moderation module reads from a Synapse event beyond its content.

Where an event came from (a client transaction or the server itself), whether Synapse's
legacy name-highlight push rules read its body, and the failure counter that separates
content from infrastructure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from synapse_phenom.moderation.rules import Violation

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


def has_legacy_body(content: Mapping[str, Any]) -> bool:
    """A body Synapse's legacy name-highlight push rules read (no ``m.mentions``)."""
    return "m.mentions" not in content and isinstance(content.get("body"), str)
