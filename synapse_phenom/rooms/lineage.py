"""Room upgrades: which rooms are the same managed room under another ID.

A room upgrade (``POST /rooms/{id}/upgrade``) makes a new room whose ``m.room.create``
names the old one as ``predecessor`` and ends the old one with an ``m.room.tombstone``
naming the new one; the alias moves to the new room. The group gate must hold on the whole
chain: the old room still holds the history (members can still invite there), the new one
is the room people use, and for up to a minute another process still resolves the alias to
the old room.

Either half alone is forgeable: anyone may create a room claiming any ``predecessor``, and
anyone may tombstone their own room pointing at any replacement. So a link counts only when
it comes from a room already known to be managed (its creation content was written by the
upgrade, by someone with power there), or when both halves agree. Pure: no synapse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Upgrade chains are short; a longer one is cut here (each hop is a state read).
MAX_HOPS = 16


def predecessor_of(create_content: Mapping[str, Any] | None) -> str | None:
    """The room a room was upgraded from, per its ``m.room.create`` content."""
    if not isinstance(create_content, Mapping):
        return None
    pred = create_content.get("predecessor")
    room_id = pred.get("room_id") if isinstance(pred, Mapping) else None
    return room_id if isinstance(room_id, str) and room_id.startswith("!") else None


def replacement_of(tombstone_content: Mapping[str, Any] | None) -> str | None:
    """The room a tombstoned room was replaced by."""
    if not isinstance(tombstone_content, Mapping):
        return None
    room_id = tombstone_content.get("replacement_room")
    return room_id if isinstance(room_id, str) and room_id.startswith("!") else None


def is_confirmed_successor(
    room_id: str,
    create_content: Mapping[str, Any] | None,
    predecessor_tombstone: Mapping[str, Any] | None,
) -> bool:
    """``room_id`` is the upgrade of its predecessor: both rooms say so."""
    pred = predecessor_of(create_content)
    return pred is not None and replacement_of(predecessor_tombstone) == room_id
