"""Notices to the moderators' room: the moderation module's mixin.

Posted by the system user in the background after an action in a Phenom-managed room, at
most one per user, room and rule kind a minute (a mute always notifies). Only
server-generated fields: no user-controlled text ever reaches the moderators' room.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from synapse_phenom.memo import TtlMemo
from synapse_phenom.moderation.config import RoomPolicy
from synapse_phenom.modules._registry import rooms_module

if TYPE_CHECKING:
    from synapse.module_api import ModuleApi

logger = logging.getLogger("synapse_phenom.modules.moderation")

_NOTICE_DEDUPE_S = 60.0
_MAX_NOTICE_KEYS = 50_000


def kind_of(rule: str) -> str:
    """``keywords:blocked words`` -> ``keywords``."""
    return rule.split(":", 1)[0]


class ModeratorNotices:
    """Mixed into ``PhenomModeration``."""

    _api: ModuleApi

    @property
    def _system_user(self) -> str | None:
        rooms = rooms_module(self._api)
        return rooms.system_user_id if rooms else None

    def _init_notices(self) -> None:
        self._notified: TtlMemo[bool] = TtlMemo(_MAX_NOTICE_KEYS, _NOTICE_DEDUPE_S)

    async def _notify(
        self,
        policy: RoomPolicy,
        policy_name: str,
        room_id: str,
        user_id: str,
        kind: str,
        action: str,
        muted_until: int | None,
    ) -> None:
        """An ``m.notice`` made only of server-generated fields: the action, the rule kind,
        the user ID, the Phenom room key and the room ID. Never a rule name, keyword, link or
        error text (those can come from users: a message, a live policy, an invalid regex);
        the audit log has the detail. The caller posts notices only for managed rooms."""
        try:
            target, system = policy.notify_room, self._system_user
            if not target or not system:
                return
            key = (user_id, room_id, kind)
            if muted_until is None and self._notified.get(key):
                return  # one notice per user, room and rule kind a minute (floods would spam)
            self._notified.put(key, True)
            notify_room_id = await self._resolve_room(target)
            if notify_room_id is None:
                return
            text = f"Moderation: {action} — {user_id} in {policy_name} ({room_id}), rule '{kind}'"
            if muted_until is not None:
                until = time.strftime("%H:%M:%S UTC", time.gmtime(muted_until / 1000))
                text += f"; muted until {until}"
            await self._api.create_and_send_event_into_room(
                {
                    "type": "m.room.message",
                    "room_id": notify_room_id,
                    "sender": system,
                    "content": {
                        "msgtype": "m.notice",
                        "body": text,
                        "m.mentions": {},
                        "app.phenom.moderation": {
                            "action": action,
                            "user_id": user_id,
                            "room_id": room_id,
                            "room_key": policy_name,
                            "rule": kind,
                        },
                    },
                }
            )
        except Exception:
            logger.exception("Could not post the moderation notice for %s", user_id)

    async def _resolve_room(self, target: str) -> str | None:
        if target.startswith("!"):
            return target
        if target.startswith("#"):
            room_id, _ = await self._api.lookup_room_alias(target)
            return room_id
        rooms = rooms_module(self._api)
        return await rooms.room_id(target) if rooms else None
