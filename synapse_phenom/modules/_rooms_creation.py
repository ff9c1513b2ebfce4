"""Creating the managed rooms (background-task process only): the rooms module's mixin.

The system user owns the rooms. Creation is single-shot across processes: a claim row
in ``phenom_room_claims`` decides who creates a room whose alias does not resolve.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError

from synapse_phenom.db import now_ms
from synapse_phenom.modules import _rooms_push_defaults as push_defaults
from synapse_phenom.modules._guard import guarded
from synapse_phenom.rooms import membership, store

if TYPE_CHECKING:
    from synapse.module_api import ModuleApi

    from synapse_phenom.rooms.config import RoomsConfig

logger = logging.getLogger("synapse_phenom.modules.rooms")

_CLAIM_STALE_MS = 5 * 60 * 1000


class RoomCreation:
    """Mixed into ``PhenomRooms``; uses its room-id cache and schema helper."""

    _config: RoomsConfig
    _api: ModuleApi
    _claim_owner: str
    _room_ids: dict[str, str]
    _room_keys: dict[str, str]
    _resolved_at: dict[str, float]
    system_user_id: str

    def alias(self, key: str) -> str:
        raise NotImplementedError

    async def room_id(self, key: str) -> str | None:
        raise NotImplementedError

    async def _ensure_schema(self) -> None:
        raise NotImplementedError

    def is_managed_user(self, user_id: str) -> bool:
        raise NotImplementedError

    @guarded("rooms", fallback=None)
    async def ensure_rooms(self) -> None:
        await self._ensure_schema()
        await self._ensure_system_user()
        for key in self._config.rooms:
            room_id = await self.room_id(key)
            if room_id is None:
                room_id = await self._create_room(key)
            if room_id is not None:
                await self._sync_room_profile(key, room_id)
                await self._sync_directory(key, room_id)

    @guarded("rooms", fallback=None)
    async def sweep_notification_defaults(self) -> None:
        """On the push-rules writer: each managed room's notification default for members
        it never reached (at an upgrade, or a room's ``notifications`` set later)."""
        for key, spec in self._config.rooms.items():
            room_id = await self.room_id(key)
            if room_id is None or spec.notifications == "default":
                continue
            changed = await push_defaults.sweep_room(
                self._api, room_id, spec.notifications, self._sweep_applies_to
            )
            if changed:
                logger.info(
                    "Notification default %s set for %d members of %s",
                    spec.notifications,
                    changed,
                    self.alias(key),
                )

    def _sweep_applies_to(self, user_id: str) -> bool:
        return self.is_managed_user(user_id)

    async def _ensure_system_user(self) -> None:
        if not await self._api.check_user_exists(self.system_user_id):
            try:
                # A server admin from the start: it acts for `phenom-chat admin` (modules.ops
                # also promotes a system user created before, on its next expiry check).
                await self._api.register_user(
                    self._config.system_user,
                    displayname=self._config.system_display_name,
                    admin=True,
                )
            except SynapseError as err:
                if err.errcode != Codes.USER_IN_USE:  # another process won the race
                    raise
        # Never throttled (it invites and kicks for group sync): Synapse's own per-user
        # override, what its admin API `override_ratelimit` writes (0 = no limit), read from a
        # cache before any limiter. A module rate-limit callback would instead cost every
        # user's every limiter check a callback dispatch (docs/benchmarks.md).
        store: Any = self._api._store  # @cached methods: typed by Synapse's mypy plugin only
        current = await store.get_ratelimit_for_user(self.system_user_id)
        if current is None or current.messages_per_second or current.burst_count:
            await store.set_ratelimit_for_user(self.system_user_id, 0, 0)

    async def _create_room(self, key: str) -> str | None:
        spec = self._config.rooms[key]
        alias = self.alias(key)
        claimed = await self._api.run_db_interaction(
            "phenom_claim_alias",
            store.claim_alias,
            alias,
            self._claim_owner,
            now_ms(),
            _CLAIM_STALE_MS,
        )
        if not claimed:
            existing = await self._api.run_db_interaction(
                "phenom_claimed_room", store.claimed_room, alias
            )
            if existing:
                logger.error(
                    "%s does not resolve but room %s was created for it; not creating another. "
                    "Restore the alias with the admin API.",
                    alias,
                    existing,
                )
            return None
        try:
            room_id, _ = await self._api.create_room(
                self.system_user_id,
                membership.room_creation_request(spec, self.system_user_id),
                ratelimit=False,
            )
        except Exception:
            await self._api.run_db_interaction(
                "phenom_release_claim", store.release_claim, alias, self._claim_owner
            )
            raise
        await self._api.run_db_interaction(
            "phenom_record_room", store.record_claimed_room, alias, self._claim_owner, room_id
        )
        self._room_ids[key] = room_id
        self._room_keys[room_id] = key
        self._resolved_at[key] = time.monotonic()
        logger.info("Created %s as %s", alias, room_id)
        return room_id

    async def _sync_directory(self, key: str, room_id: str) -> None:
        """``published`` rooms are in the room directory (``publicRooms``), others are not.

        Through the module API, not the creation request's ``visibility``: Synapse's default
        ``room_list_publication_rules`` deny publishing and creation then silently leaves
        the room out. Also reconciles rooms created before (or published by hand).
        """
        wanted = self._config.rooms[key].published
        directory = self._api.public_room_list_manager
        if await directory.room_is_in_public_room_list(room_id) == wanted:
            return
        if wanted:
            await directory.add_room_to_public_room_list(room_id)
        else:
            await directory.remove_room_from_public_room_list(room_id)
        logger.info(
            "%s %s the room directory", self.alias(key), "added to" if wanted else "removed from"
        )

    async def _sync_room_profile(self, key: str, room_id: str) -> None:
        """Keep name and topic as configured (they may change in config after creation)."""
        spec = self._config.rooms[key]
        wanted = {"m.room.name": {"name": spec.name}, "m.room.topic": {"topic": spec.topic}}
        state = await self._api.get_room_state(room_id, [(t, "") for t in wanted])
        for event_type, content in wanted.items():
            event = state.get((event_type, ""))
            field = next(iter(content))
            if event is not None and event.content.get(field) == content[field]:
                continue
            await self._api.create_and_send_event_into_room(
                {
                    "type": event_type,
                    "room_id": room_id,
                    "sender": self.system_user_id,
                    "state_key": "",
                    "content": content,
                }
            )
