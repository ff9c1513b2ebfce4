"""Pure rules of the admin commands: lockdown power levels, slow mode, durations, audit rows.

No Synapse imports: the ops module (``synapse_phenom.modules.ops``) and the CLI
(``phenom-chat admin``) both use these.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs
from pydantic import Field

from synapse_phenom.config import FrozenModel
from synapse_phenom.endpoints import (  # the HTTP contract; re-exported for the adapters
    ADMIN_AUDIT_PATH,
    AGENT_REVOCATIONS_PATH,
    BAN_PATH,
    HEALTH_PATH,
    LOCKDOWN_PATH,
    REVOKED_AGENTS_PATH,
    SLOW_MODE_PATH,
    UNMUTE_PATH,
)

__all__ = [
    "ADMIN_AUDIT_PATH",
    "AGENT_REVOCATIONS_PATH",
    "BAN_PATH",
    "HEALTH_PATH",
    "LOCKDOWN_PATH",
    "REVOKED_AGENTS_PATH",
    "SLOW_MODE_PATH",
    "UNMUTE_PATH",
]

# Audit rows written by admin actions: policy "admin", rule "admin:<command>".
ADMIN_POLICY = "admin"

# Non-state event types a lockdown closes besides ``events_default`` (when a room's
# power levels list them lower).
MESSAGE_TYPES = (
    "m.room.message",
    "m.reaction",
    "m.sticker",
    "m.room.redaction",
    "m.poll.start",
    "m.poll.response",
    "org.matrix.msc3381.poll.start",
    "org.matrix.msc3381.poll.response",
)

_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_LOCKDOWN_SECONDS = 30 * 86400


class OpsConfig(FrozenModel):
    """Config of ``synapse_phenom.modules.ops.PhenomOps``; see docs/operations.md."""

    # Who may still post in a locked room (moderators).
    moderator_level: int = Field(default=50, ge=1, le=100)
    # How often the background task lifts expired lockdowns.
    expiry_check_seconds: float = Field(default=5.0, gt=0, le=300)
    # Post a (server-written) notice in a room when it is locked or reopened.
    room_notices: bool = True
    # Application services (registration id) that may read the revoked agents.
    appservice_ids: list[str] = Field(default_factory=lambda: ["phenom-mcp"])


def parse_duration(value: str) -> int:
    """``--until``/``--interval``: ``90s``, ``10m``, ``2h``, ``1d`` -> seconds (ValueError "
    "otherwise)."""
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a duration: use e.g. 30s, 10m, 2h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


@attrs.frozen
class LockPlan:
    """New power levels for a lockdown, and what to restore on unlock."""

    content: dict[str, Any] | None  # None: already read-only, nothing to send
    previous: dict[str, Any]  # {"events_default": n, "events": {type: n or None}}


def _level(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def lock_power_levels(pl: Mapping[str, Any], level: int) -> LockPlan:
    """Make the room read-only below ``level``: raise ``events_default`` and any lower
    per-type level of message-like events to ``level``."""
    content = json.loads(json.dumps(dict(pl)))
    previous: dict[str, Any] = {"events_default": _level(pl.get("events_default")), "events": {}}
    changed = False
    if previous["events_default"] < level:
        content["events_default"] = level
        changed = True
    events = content.get("events") if isinstance(content.get("events"), dict) else {}
    for event_type in MESSAGE_TYPES:
        if event_type in events and _level(events[event_type]) < level:
            previous["events"][event_type] = events[event_type]
            events[event_type] = level
            changed = True
    if events:
        content["events"] = events
    return LockPlan(content if changed else None, previous)


def unlock_power_levels(
    pl: Mapping[str, Any], previous: Mapping[str, Any] | None, level: int
) -> dict[str, Any] | None:
    """Power levels with the pre-lockdown levels restored (only where the lockdown's level
    is still in place: a moderator's later change wins). None: nothing to change.

    Without a saved ``previous`` (locked by hand, or the saved row is gone) a room still
    at ``level`` or higher goes back to ``events_default: 0``.
    """
    content = json.loads(json.dumps(dict(pl)))
    changed = False
    saved = previous or {"events_default": 0, "events": {}}
    current, restored = _level(pl.get("events_default")), _level(saved.get("events_default"))
    ours = current == level or (previous is None and current >= level)
    if ours and current != restored:
        content["events_default"] = restored
        changed = True
    events = content.get("events") if isinstance(content.get("events"), dict) else {}
    for event_type, old in (saved.get("events") or {}).items():
        if event_type in events and _level(events[event_type]) == level:
            if old is None:
                del events[event_type]
            else:
                events[event_type] = old
            changed = True
    return content if changed else None


def is_locked(pl: Mapping[str, Any], level: int) -> bool:
    return _level(pl.get("events_default")) >= level


def lock_notice(until_ts: int | None) -> str:
    """The room notice of a lockdown: server-written text only (no operator input)."""
    import time

    if until_ts is None:
        return "This room is read-only for now: only moderators can post until it reopens."
    when = time.strftime("%H:%M UTC", time.gmtime(until_ts / 1000))
    return f"This room is read-only for now: only moderators can post until it reopens at {when}."


UNLOCK_NOTICE = "This room is open again: everyone can post."


def slow_mode_content(live: Mapping[str, Any] | None, seconds: int) -> dict[str, Any]:
    """The live moderation policy with slow mode on (``seconds`` > 0: one message per
    ``seconds`` per user) or off (0: the configured flood limit applies again)."""
    content = dict(live or {})
    if seconds > 0:
        content["flood"] = {"messages": 1, "per_seconds": seconds}
    else:
        content.pop("flood", None)
    return content


def audit_detail(by: str, reason: str, **changes: Any) -> str:
    """Detail of an admin audit row: who, why, and what changed (JSON, for moderators)."""
    return json.dumps({"by": by, "reason": reason, **changes}, sort_keys=True, ensure_ascii=False)
