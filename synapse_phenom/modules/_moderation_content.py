"""The moderation module's content callbacks: a mixin of ``PhenomModeration``.

The pure content check of an event (with the sender's account age and, for bodies
without ``m.mentions``, the room's members for Synapse's legacy name highlights).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram

from synapse_phenom.moderation.rules import UNREADABLE, Violation
from synapse_phenom.modules._moderation_events import CHECK_FAILURES, has_legacy_body
from synapse_phenom.modules._moderation_state import RoomState, RoomView

if TYPE_CHECKING:
    from synapse.events import EventBase

logger = logging.getLogger("synapse_phenom.modules.moderation")

CHECK_SECONDS = Histogram(
    "phenom_moderation_check_seconds",
    "Time spent in the pure rule check of one event",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25),
)


class ContentChecks(RoomState):
    """Mixed into ``PhenomModeration`` (which provides ``act``)."""

    async def _check_content(
        self, view: RoomView, event: EventBase, content: Mapping[str, Any]
    ) -> Violation | None:
        """The pure content check (total: what it cannot read it refuses as unreadable) of
        ``content``: the event's content without the server-signed preview cards."""
        policy = view.compiled.policy
        new_until = await self._new_account_until(policy, event.sender)
        members = None
        if policy.mentions.max_user_mentions is not None and has_legacy_body(event.content):
            members = await self.member_index(event.room_id)
        started = time.perf_counter()
        violation = view.compiled.check(
            event.type,
            content,
            is_state=event.is_state(),
            new_account_until_s=new_until,
            members=members,
        )
        CHECK_SECONDS.observe(time.perf_counter() - started)
        if violation is not None and violation.rule == UNREADABLE:
            CHECK_FAILURES.labels("content").inc()
            logger.warning(
                "Refused unreadable %s from %s: %s", event.type, event.sender, violation.detail
            )
        return violation
