"""Upgraded managed rooms stay managed: the rooms module's mixin (rooms/lineage.py says why).

Without it, a process that started after an upgrade knew only the room the alias points to:
the old room, with the whole history and its members, became an ordinary room where any
member could invite anyone, and a user who lost their group was never removed from it; and
for up to a minute after an upgrade the new room was unmanaged in processes that had
resolved the alias before.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synapse_phenom.db import now_ms
from synapse_phenom.rooms import lineage, membership, store

if TYPE_CHECKING:
    from synapse.module_api import ModuleApi

    from synapse_phenom.rooms.config import RoomsConfig

logger = logging.getLogger("synapse_phenom.modules.rooms")

_CREATE = ("m.room.create", "")
_TOMBSTONE = ("m.room.tombstone", "")


class RoomLineage:
    """Mixed into ``PhenomRooms``; shares its room-id maps."""

    _api: ModuleApi
    _config: RoomsConfig
    _room_ids: dict[str, str]
    _room_keys: dict[str, str]
    _resolved_at: dict[str, float]

    async def _state_content(self, room_id: str, key: tuple[str, str]) -> dict[str, Any] | None:
        try:
            state = await self._api.get_room_state(room_id, [key])
        except Exception:  # a room this server does not have (any more): no link
            logger.debug("cannot read %s of %s", key[0], room_id, exc_info=True)
            return None
        event = state.get(key)
        return None if event is None else event.get_dict()["content"]

    async def _adopt_predecessors(self, key: str, room_id: str) -> None:
        """Every room ``room_id`` was upgraded from is the managed room ``key`` too.

        ``room_id`` is trusted (the alias points to it), so its ``predecessor`` is too.
        """
        current = room_id
        for _ in range(lineage.MAX_HOPS):
            pred = lineage.predecessor_of(await self._state_content(current, _CREATE))
            if pred is None or self._room_keys.get(pred) == key:
                return
            self._room_keys[pred] = key
            logger.info("%s is an earlier version of managed room %s", pred, key)
            current = pred

    async def _successor_key(self, room_id: str, hops: int = lineage.MAX_HOPS) -> str | None:
        """The managed room ``room_id`` is the confirmed upgrade of, if any (before the
        alias cache notices the move; also an upgrade of an upgrade this process has not
        seen yet)."""
        create = await self._state_content(room_id, _CREATE)
        pred = lineage.predecessor_of(create)
        if pred is None:
            return None
        key = self._room_keys.get(pred)
        if key is None and hops > 1:
            key = await self._successor_key(pred, hops - 1)
        if key is None:
            return None
        if not lineage.is_confirmed_successor(
            room_id, create, await self._state_content(pred, _TOMBSTONE)
        ):
            return None
        self._room_keys[room_id] = key
        self._resolved_at[key] = float("-inf")  # the alias has moved: resolve it again
        logger.info("%s replaced managed room %s (%s)", room_id, key, pred)
        return key

    def alias(self, key: str) -> str:
        raise NotImplementedError

    async def _trusted_target(self, key: str, found: str | None, cached: str | None) -> str | None:
        """The managed room of ``key`` given the alias' current target ``found``.

        The room Phenom created for the alias (``phenom_room_claims``), or a confirmed
        upgrade of it (the claim follows). Anything else the alias points to is ignored: a
        room moderator may delete a local alias (Synapse lets whoever may change the
        canonical alias), and then anyone may point it at their own room.
        """
        alias = self.alias(key)
        claimed = await self._api.run_db_interaction(
            "phenom_claimed_room", store.claimed_room, alias
        )
        if claimed is None:
            if found is None:
                return cached
            # A room created before claims were kept: trust on first use. (None back: another
            # process is creating the room and has not recorded it yet; its alias is all
            # there is for the moment.)
            adopted = await self._api.run_db_interaction(
                "phenom_adopt_room", store.adopt_room, alias, found, now_ms()
            )
            return adopted or found
        if found is None:
            logger.error("%s does not resolve: %s stays the managed room", alias, claimed)
            return claimed
        if found == claimed:
            return claimed
        if await self._descends_from(found, claimed):
            await self._api.run_db_interaction(
                "phenom_move_claim", store.move_claim, alias, claimed, found
            )
            return found
        logger.error(
            "%s points to %s, which is neither the room created for it (%s) nor an upgrade "
            "of it: ignored (restore the alias with the admin API)",
            alias,
            found,
            claimed,
        )
        return claimed

    async def _descends_from(self, room_id: str, ancestor: str) -> bool:
        """``room_id`` is an upgrade (of an upgrade...) of ``ancestor``, every link confirmed."""
        current = room_id
        for _ in range(lineage.MAX_HOPS):
            create = await self._state_content(current, _CREATE)
            pred = lineage.predecessor_of(create)
            if pred is None or not lineage.is_confirmed_successor(
                current, create, await self._state_content(pred, _TOMBSTONE)
            ):
                return False
            if pred == ancestor:
                return True
            current = pred
        return False

    def _earlier_rooms(self, key: str) -> list[str]:
        """Known earlier versions of ``key`` (not the one the alias points to)."""
        current = self._room_ids.get(key)
        return [rid for rid, k in self._room_keys.items() if k == key and rid != current]

    async def membership_of(self, room_id: str, user_id: str) -> str | None:
        raise NotImplementedError

    async def _try(self, action: Any, key: str, *args: Any) -> bool:
        raise NotImplementedError

    async def _remove(self, key: str, user_id: str, room_id: str | None = None) -> None:
        raise NotImplementedError

    async def _remove_from_earlier_rooms(self, user_id: str, groups: list[str]) -> None:
        """Group loss also ends membership in upgraded-away versions of a room: they keep
        the history, and members can still post and invite there."""
        allowed = membership.rooms_for_groups(self._config, groups)
        for key in self._config.rooms:
            if key in allowed:
                continue
            for old in self._earlier_rooms(key):
                try:
                    current = await self.membership_of(old, user_id)
                except Exception:  # a room this server no longer has
                    logger.debug("cannot read membership in %s", old, exc_info=True)
                    continue
                if current in ("join", "invite", "knock"):
                    await self._try(self._remove, key, user_id, old)
