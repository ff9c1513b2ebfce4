"""The three Phenom rooms, with membership decided by the user's groups.

Load with::

    modules:
      - module: synapse_phenom.modules.rooms.PhenomRooms
        config: {}   # see docs/rooms.md

The one process that runs background tasks creates the rooms (owned by the system
user). Groups live in the ``phenom_user_groups`` table; they are written through the
admin-only endpoint ``/_synapse/client/phenom/v1/groups`` (``phenom-chat
provision-user``, the user-provisioner Lambda) or by the Cognito mapping provider.
Memberships are reconciled whenever groups are written, at registration and at login.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

import re2
from synapse.api.errors import LimitExceededError, SynapseError
from synapse.module_api import ModuleApi
from synapse.types import UserID

from synapse_phenom.cognito.login import sync_sso_login
from synapse_phenom.db import now_ms
from synapse_phenom.endpoints import GROUPS_INDEX_PATH, GROUPS_PATH
from synapse_phenom.modules import _rooms_push_defaults as push_defaults
from synapse_phenom.modules._compat import require_module_api
from synapse_phenom.modules._config import parse_module_config
from synapse_phenom.modules._event_checks import add_event_check
from synapse_phenom.modules._guard import guarded
from synapse_phenom.modules._health import mark_loaded
from synapse_phenom.modules._registry import register_rooms, rooms_module
from synapse_phenom.modules._rooms_creation import RoomCreation
from synapse_phenom.modules._rooms_gate import RoomGate
from synapse_phenom.modules._rooms_groups_index import GroupsIndexResource
from synapse_phenom.modules._rooms_http import GroupsResource
from synapse_phenom.modules._rooms_lineage import RoomLineage
from synapse_phenom.rooms import membership, store
from synapse_phenom.rooms.config import RoomsConfig
from synapse_phenom.rooms.membership import MembershipPlan

logger = logging.getLogger(__name__)

_ALIAS_TTL_S = 60.0
_MAX_RETRIES = 8
AUTO_INVITE_CONTENT = {"msgtype": "m.notice", "reason": "Joined automatically for your group."}


def get_rooms_module(api: ModuleApi) -> PhenomRooms | None:
    """The rooms module loaded with ``api`` (same ``ModuleApi`` = same homeserver)."""
    return rooms_module(api)


class PhenomRooms(RoomCreation, RoomLineage, RoomGate):
    def __init__(self, config: RoomsConfig, api: ModuleApi) -> None:
        require_module_api("rooms", api)
        self._config = config
        self._api = api
        self._server_name = api.server_name
        self.system_user_id = UserID(config.system_user, api.server_name).to_string()
        self._unmanaged = [re2.compile(p) for p in config.unmanaged_users]
        self._room_ids: dict[str, str] = {}  # room key -> room id, filled as aliases resolve
        self._room_keys: dict[str, str] = {}  # room id -> room key
        self._resolved_at: dict[str, float] = {}  # room key -> when its alias was last resolved
        self._schema_ready = False
        self._retries: dict[str, int] = {}  # user id -> rate-limited reconcile attempts so far
        self._retry_pending: set[str] = set()
        self._claim_owner = f"{api.worker_name or 'main'}:{uuid.uuid4()}"

        api.register_spam_checker_callbacks(
            user_may_join_room=self.user_may_join_room,
            user_may_invite=self.user_may_invite,
            user_may_send_3pid_invite=self.user_may_send_3pid_invite,
        )
        add_event_check(api, self.check_event_for_spam)  # one registration for all modules
        api.register_account_validity_callbacks(
            on_user_registration=self.on_user_registration,
            on_user_login=self.on_user_login,
        )
        api.register_web_resource(GROUPS_PATH, GroupsResource(self, api))
        api.register_web_resource(GROUPS_INDEX_PATH, GroupsIndexResource(self, api))
        if api.should_run_background_tasks():
            api.delayed_background_call(100, self.ensure_rooms, desc="phenom_ensure_rooms")
            # Self-healing: cheap when every alias resolves.
            api.looping_background_call(self.ensure_rooms, 60_000, desc="phenom_ensure_rooms")
        if push_defaults.available(api):  # the push-rules writer: defaults members never got
            sweep, desc = self.sweep_notification_defaults, "phenom_notification_sweep"
            api.delayed_background_call(10_000, sweep, desc=desc)  # once the rooms exist
            api.looping_background_call(sweep, 3_600_000, desc=desc, run_on_all_instances=True)
        register_rooms(api, self)
        mark_loaded(api, "synapse_phenom.modules.rooms.PhenomRooms")  # modules.ops health

    @staticmethod
    def parse_config(config: dict[str, Any]) -> RoomsConfig:
        return parse_module_config(RoomsConfig, config, "synapse_phenom.modules.rooms.PhenomRooms")

    @property
    def config(self) -> RoomsConfig:
        return self._config

    # -- room ids ---------------------------------------------------------------

    def alias(self, key: str) -> str:
        return f"#{self._config.rooms[key].alias}:{self._server_name}"

    async def room_id(self, key: str) -> str | None:
        """Room id of a managed room, or None while it does not exist yet.

        Re-resolved every ``_ALIAS_TTL_S``: a room upgrade moves the alias to a new room,
        which must not stay unmanaged (open to any invite) until a restart. Rooms the
        alias pointed at before stay managed too, and so does every room the current one
        was upgraded from (also in a process started after the upgrade).
        """
        cached = self._room_ids.get(key)
        if cached is not None and time.monotonic() < self._resolved_at.get(key, 0.0) + _ALIAS_TTL_S:
            return cached
        try:
            found: str | None = (await self._api.lookup_room_alias(self.alias(key)))[0]
        except SynapseError as err:
            if err.code != 404:
                raise
            found = None
        # The alias is only a pointer, and room moderators may delete it (and anyone may
        # then take it): only the room Phenom created, or a confirmed upgrade of it, counts.
        await self._ensure_schema()
        room_id = await self._trusted_target(key, found, cached)
        if room_id is None:
            return None  # not created yet: looked up again next time
        if cached is not None and cached != room_id:
            logger.warning(
                "%s moved from %s to %s (room upgrade); both are managed",
                self.alias(key),
                cached,
                room_id,
            )
        self._room_ids[key] = room_id
        self._room_keys[room_id] = key
        self._resolved_at[key] = time.monotonic()
        if cached != room_id:
            await self._adopt_predecessors(key, room_id)
        return room_id

    async def room_key(self, room_id: str) -> str | None:
        """Which managed room ``room_id`` is, if any."""
        if room_id in self._room_keys:
            return self._room_keys[room_id]
        for key in self._config.rooms:  # cached lookups unless an alias is due
            await self.room_id(key)
        if room_id in self._room_keys:
            return self._room_keys[room_id]
        # An upgrade of a managed room that the alias cache has not seen yet.
        return await self._successor_key(room_id)

    async def room_ids(self) -> dict[str, str]:
        for key in self._config.rooms:
            await self.room_id(key)
        return dict(self._room_ids)

    # -- groups -----------------------------------------------------------------

    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            await self._api.run_db_interaction("phenom_rooms_schema", store.create_schema)
            self._schema_ready = True

    async def get_groups(self, user_id: str) -> list[str] | None:
        await self._ensure_schema()
        return await self._api.run_db_interaction("phenom_get_groups", store.get_groups, user_id)

    async def set_groups(self, user_id: str, groups: list[str], source: str) -> bool:
        """Store groups (normalised); True when they changed."""
        await self._ensure_schema()
        return await self._api.run_db_interaction(
            "phenom_set_groups",
            store.set_groups,
            user_id,
            membership.normalise_groups(groups),
            source,
            now_ms(),
        )

    def is_managed_user(self, user_id: str) -> bool:
        if user_id == self.system_user_id or not self._api.is_mine(user_id):
            return False
        return not any(p.search(user_id) for p in self._unmanaged)

    async def _may_be_in(self, user_id: str, key: str) -> bool:
        if membership.is_open_to_everyone(self._config, key) or user_id == self.system_user_id:
            return True
        if self._api.is_mine(user_id):
            groups = await self.get_groups(user_id) or []
            if key in membership.rooms_for_groups(self._config, groups):
                return True
            if self._config.admins_exempt and await self._api.is_user_admin(user_id):
                return True
        return False

    # -- reconciliation ---------------------------------------------------------

    async def membership_of(self, room_id: str, user_id: str) -> str | None:
        state = await self._api.get_room_state(room_id, [("m.room.member", user_id)])
        event = state.get(("m.room.member", user_id))
        return None if event is None else event.content.get("membership")

    async def reconcile(self, user_id: str) -> MembershipPlan:
        """Join the user to the rooms their groups allow and remove them from the rest.

        Returns what was actually done. Each room is handled on its own: one failure is
        logged and does not stop the others.
        """
        if not self.is_managed_user(user_id):
            return MembershipPlan(join=(), remove=())
        groups = await self.get_groups(user_id) or []
        current: dict[str, str | None] = {}
        for key in self._config.rooms:
            room_id = await self.room_id(key)
            if room_id is not None:
                current[key] = await self.membership_of(room_id, user_id)
        plan = membership.plan_memberships(self._config, groups, current)
        joined, removed = [], []
        for key in plan.join:
            if await self._try(self.join, key, user_id, current[key]):
                joined.append(key)
        for key in plan.remove:
            if await self._try(self._remove, key, user_id):
                removed.append(key)
        await self._remove_from_earlier_rooms(user_id, groups)
        for key in {k for k, m in current.items() if m == "join"} | set(joined):
            await self._try(self._notification_default, key, user_id)
        if joined or removed:
            logger.info(
                "Reconciled %s (groups %s): joined %s, removed %s", user_id, groups, joined, removed
            )
        return MembershipPlan(join=tuple(joined), remove=tuple(removed))

    async def _try(self, action: Any, key: str, *args: Any) -> bool:
        try:
            try:
                await action(key, *args)
            except SynapseError as err:
                # The moderation module refused a join for the display name and reset the
                # name to the localpart (display_names: profile): the next join goes through.
                rule = err.error_dict(None).get("app.phenom.moderation.rule")
                if not (isinstance(rule, str) and rule.startswith("display_name:")):
                    raise
                await action(key, *args)
            return True
        except LimitExceededError as err:
            # A burst of sign-ins can hit Synapse's per-room join limit: finish later.
            self._schedule_retry(args[0], (err.retry_after_ms or 1000) / 1000)
            return False
        except Exception:
            logger.exception("Membership change in %s failed for %s", self.alias(key), args[0])
            # A failed removal leaves someone in a room their groups no longer allow until
            # their next login: try again (backoff, bounded) instead of waiting for that.
            self._schedule_retry(args[0], 5.0)
            return False

    def _schedule_retry(self, user_id: str, delay_s: float) -> None:
        attempt = self._retries.get(user_id, 0) + 1
        if attempt > _MAX_RETRIES:
            logger.warning("Giving up reconciling %s until their next login: rate limited", user_id)
            self._retries.pop(user_id, None)
            return
        if user_id in self._retry_pending:
            return
        self._retries[user_id] = attempt
        self._retry_pending.add(user_id)
        # Jittered exponential backoff: a burst of users retrying together would keep
        # hitting the same per-room limit.
        delay_s += random.uniform(0, min(2.0**attempt, 60.0))
        logger.info("Rate limited reconciling %s; retry %d in %.1fs", user_id, attempt, delay_s)
        self._api.run_as_background_process("phenom_reconcile_retry", self._retry, user_id, delay_s)

    @guarded("rooms", fallback=None)
    async def _retry(self, user_id: str, delay_s: float) -> None:
        await self._api.sleep(delay_s)
        self._retry_pending.discard(user_id)
        plan = await self.reconcile(user_id)
        if user_id not in self._retry_pending:  # no new rate limit: done
            self._retries.pop(user_id, None)
        logger.info(
            "Retried reconcile of %s: joined %s, removed %s", user_id, plan.join, plan.remove
        )

    async def join(self, key: str, user_id: str, current: str | None) -> None:
        room_id = self._room_ids[key]
        if self._config.rooms[key].join_rule != "public" and current != "invite":
            # Only a way in for the join below, never a notification: an m.notice msgtype
            # makes the default override rule .m.rule.suppress_notices (dont_notify) match
            # before .m.rule.invite_for_me, so no push and no /notifications entry.
            await self._api.update_room_membership(
                self.system_user_id, user_id, room_id, "invite", content=AUTO_INVITE_CONTENT
            )
        await self._api.update_room_membership(user_id, user_id, room_id, "join")

    async def _notification_default(self, key: str, user_id: str) -> None:
        level = self._config.rooms[key].notifications
        await push_defaults.apply_room_default(self._api, user_id, self._room_ids[key], level)

    async def _remove(self, key: str, user_id: str, room_id: str | None = None) -> None:
        await self._api.update_room_membership(
            self.system_user_id,
            user_id,
            room_id or self._room_ids[key],
            "leave",
            content=membership.removal_content(self._config, key),
        )

    async def set_groups_and_reconcile(
        self, user_id: str, groups: list[str], source: str
    ) -> MembershipPlan:
        await self.set_groups(user_id, groups, source)
        return await self.reconcile(user_id)

    # -- Synapse callbacks -------------------------------------------------------

    @guarded("rooms", fallback=None)
    async def on_user_registration(self, user_id: str) -> None:
        await self.reconcile(user_id)

    @guarded("rooms", fallback=None)
    async def on_user_login(
        self, user_id: str, auth_provider_type: str | None, auth_provider_id: str | None
    ) -> None:
        # SSO logins take their groups from the ID token (Cognito supplies them, this
        # module reconciles), once per login although Synapse fires this twice
        # (m.login.sso, then m.login.token): see synapse_phenom.cognito.login.
        if await sync_sso_login(self._api, self, user_id, auth_provider_type, auth_provider_id):
            return
        await self.reconcile(user_id)
