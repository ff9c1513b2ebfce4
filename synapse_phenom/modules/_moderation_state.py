"""What the moderation module knows about rooms and users, memoised per process.

A mixin of ``PhenomModeration``: the room's policy (configured, or live from the room's
``app.phenom.moderation.policy`` state), power levels and creators, exemptions, account
ages and ban lists. Every cache is a ``synapse_phenom.memo.TtlMemo``; entries that can
change live ``cache_seconds``, so a change reaches every worker within that time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from synapse.api.errors import SynapseError

from synapse_phenom.memo import TtlMemo
from synapse_phenom.moderation.config import (
    DEFAULT_POLICY,
    POLICY_EVENT_TYPE,
    ModerationConfig,
    RoomPolicy,
    merge_live_policy,
)
from synapse_phenom.moderation.mentions import MemberNames
from synapse_phenom.moderation.rules import BAN_RULE_TYPES, BanList, CompiledPolicy, Violation
from synapse_phenom.modules._registry import rooms_module

if TYPE_CHECKING:
    from synapse.module_api import ModuleApi

logger = logging.getLogger("synapse_phenom.modules.moderation")

MAX_CACHED = 50_000
_MAX_LIVE_POLICIES = 1000
_NO_BANS = BanList([])
# Joins/renames since the member index was built before it is rebuilt (in a thread).
_MEMBERS_REBUILD_DRIFT = 256


@attrs.frozen
class RoomView:
    """What a worker knows about a room (memoised for ``cache_seconds``)."""

    policy_name: str
    compiled: CompiledPolicy
    power_levels: Mapping[str, Any]
    creators: frozenset[str]  # room v12+: creators outrank every power level


class RoomState:
    """Mixed into ``PhenomModeration`` (which provides ``act``: audit, escalate, notify)."""

    if TYPE_CHECKING:

        async def act(
            self,
            view: RoomView,
            room_id: str,
            user_id: str,
            event_type: str,
            v: Violation,
            action: str = "block",
        ) -> int | None: ...

    _config: ModerationConfig
    _api: ModuleApi
    _compiled: dict[str, CompiledPolicy]

    def _init_state(self) -> None:
        ttl = self._config.cache_seconds
        self._rooms: TtlMemo[RoomView] = TtlMemo(MAX_CACHED, ttl)
        # Compiled live policies, by (policy name, event id): immutable, kept until evicted.
        self._live: TtlMemo[CompiledPolicy] = TtlMemo(_MAX_LIVE_POLICIES, math.inf)
        self._groups: TtlMemo[frozenset[str]] = TtlMemo(MAX_CACHED, max(ttl, 1.0))
        self._created_s: TtlMemo[float] = TtlMemo(MAX_CACHED, math.inf)
        self._managed: TtlMemo[bool] = TtlMemo(MAX_CACHED, math.inf)  # depends on config only
        self._bans: TtlMemo[BanList] = TtlMemo(1, ttl)
        # By room: (Synapse's cached member list the index was made from, the index).
        self._members: TtlMemo[tuple[object, MemberNames]] = TtlMemo(10_000, math.inf)

    def _compile(self, name: str, policy: RoomPolicy) -> CompiledPolicy:
        return CompiledPolicy(name, policy, self._config.max_scan_chars, self._config.regex_max_mem)

    @property
    def _system_user(self) -> str | None:
        rooms = rooms_module(self._api)
        return rooms.system_user_id if rooms else None

    async def _policy_name(self, room_id: str) -> str:
        rooms = rooms_module(self._api)
        key = await rooms.room_key(room_id) if rooms else None
        return key if key in self._config.policies else DEFAULT_POLICY

    async def room_view(self, room_id: str, refresh: bool = False) -> RoomView:
        view = self._rooms.get(room_id)
        if view is not None and not refresh:
            return view
        name = await self._policy_name(room_id)
        base = self._config.policies[name]
        state = await self._api.get_room_state(
            room_id, [(POLICY_EVENT_TYPE, ""), ("m.room.power_levels", ""), ("m.room.create", "")]
        )
        compiled = self._compiled[name]
        live = state.get((POLICY_EVENT_TYPE, ""))
        if live is not None and base.allow_live_policy and live.content:
            compiled = (
                self._live_policy(name, base, live.event_id, live.get_dict()["content"]) or compiled
            )
        pl = state.get(("m.room.power_levels", ""))
        create = state.get(("m.room.create", ""))
        creators: frozenset[str] = frozenset()
        if create is not None and create.room_version.msc4289_creator_power_enabled:
            extra = create.content.get("additional_creators") or []
            creators = frozenset([create.sender, *[c for c in extra if isinstance(c, str)]])
        view = RoomView(
            name, compiled, pl.get_dict()["content"] if pl is not None else {}, creators
        )
        self._rooms.put(room_id, view)
        return view

    def _live_policy(
        self, name: str, base: RoomPolicy, event_id: str, content: Mapping[str, Any]
    ) -> CompiledPolicy | None:
        key = (name, event_id)
        compiled = self._live.get(key)
        if compiled is None:
            try:
                compiled = self._compile(name, merge_live_policy(base, content))
            except Exception as err:
                # Accepted once, invalid now (e.g. the module config changed): use config.
                logger.warning("Ignoring live moderation policy %s: %s", event_id, err)
                return None
            self._live.put(key, compiled)
        return compiled

    def power_level(self, view: RoomView, user_id: str) -> float:
        if user_id in view.creators:
            return float("inf")
        users = view.power_levels.get("users") or {}
        level = users.get(user_id, view.power_levels.get("users_default", 0))
        return float(level) if isinstance(level, int | float) else 0.0

    async def _user_groups(self, user_id: str) -> frozenset[str]:
        cached = self._groups.get(user_id)
        if cached is not None:
            return cached
        rooms = rooms_module(self._api)
        groups = frozenset(await rooms.get_groups(user_id) or ()) if rooms else frozenset()
        self._groups.put(user_id, groups)
        return groups

    async def is_exempt(self, view: RoomView, user_id: str) -> bool:
        if user_id == self._system_user:
            return True
        ex = view.compiled.policy.exemptions
        if ex.power_level is not None and self.power_level(view, user_id) >= ex.power_level:
            return True
        if not ex.groups:
            return False
        # Groups exempt people (staff). Users the rooms module leaves alone (agents, whose
        # groups only exist to let them into their rooms) never inherit an exemption.
        if not self._is_managed(user_id):
            return False
        return not (await self._user_groups(user_id)).isdisjoint(ex.groups)

    def _is_managed(self, user_id: str) -> bool:
        """``is_managed_user``, remembered (it depends only on config): spares every gated
        message two RE2 searches of the ``unmanaged_users`` patterns."""
        managed = self._managed.get(user_id)
        if managed is None:
            rooms = rooms_module(self._api)
            if rooms is None:
                return False
            managed = rooms.is_managed_user(user_id)
            self._managed.put(user_id, managed)
        return managed

    async def member_index(self, room_id: str) -> MemberNames:
        """The room's joined members by localpart and display name (for the body
        highlights of Synapse's legacy push rules), exact at every call.

        Synapse's own cache of the member list (the one its push rules read) returns the
        same object until a membership changes on any worker, so an unchanged room costs
        a lookup; a change costs one pass over the list, and the index is rebuilt, in a
        thread, only once many members have changed since it was built."""
        # Private store API: the module API has no cached member list with room profiles.
        # (Any: mypy cannot see through Synapse's @cached descriptor.)
        store: Any = self._api._store
        profiles = await store.get_users_in_room_with_profiles(room_id)
        cached = self._members.get(room_id)
        if cached is not None and cached[0] is profiles:
            return cached[1]
        members = {user_id: info.display_name for user_id, info in profiles.items()}
        if cached is None:
            names = await self._api.defer_to_thread(MemberNames, members)
        else:
            names = cached[1].moved_to(members)
            if names.drift > _MEMBERS_REBUILD_DRIFT:
                names = await self._api.defer_to_thread(MemberNames, members)
        self._members.put(room_id, (profiles, names))
        return names

    async def _new_account_until(self, policy: RoomPolicy, user_id: str) -> float | None:
        if policy.new_accounts is None or policy.new_accounts.min_age_seconds == 0:
            return None
        created = self._created_s.get(user_id)
        if created is None:
            info = await self._api.get_userinfo_by_id(user_id)
            created = float(info.creation_ts) if info and info.creation_ts else 0.0
            self._created_s.put(user_id, created)
        until = created + policy.new_accounts.min_age_seconds
        return until if until > time.time() else None

    async def ban_list(self) -> BanList:
        if not self._config.ban_lists:
            return _NO_BANS
        cached = self._bans.get("")
        if cached is not None:
            return cached
        rules = []
        for room in self._config.ban_lists:
            room_id = room
            if room.startswith("#"):
                try:
                    room_id, _ = await self._api.lookup_room_alias(room)
                except SynapseError:
                    continue  # not created yet
            state = await self._api.get_room_state(room_id)
            rules.extend(
                BanList.from_state(
                    room, ((t, e.content) for (t, _), e in state.items() if t in BAN_RULE_TYPES)
                )
            )
        bans = BanList(rules)
        self._bans.put("", bans)
        return bans
