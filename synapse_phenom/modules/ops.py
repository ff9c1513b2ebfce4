"""Admin actions that need the system user, the health endpoint, lockdown expiry.

Load with::

    modules:
      - module: synapse_phenom.modules.ops.PhenomOps
        config: {}   # see docs/operations.md

Thin glue over ``synapse_phenom.ops.admin_core``: ``phenom-chat admin`` calls these
admin-only endpoints for what Synapse's admin API cannot do (the admin is not in the
rooms; the system user owns them): lock a room (power levels; the expiry is a row of
``phenom_room_lockdowns``, lifted by the background-task process even after a restart),
slow mode (the live moderation policy), bans from the Phenom rooms, admin audit rows
(into the moderation audit log) and the revoked-agents list the MCP server reads.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.module_api import ModuleApi

from synapse_phenom.admin import core, store
from synapse_phenom.moderation import store as moderation_store
from synapse_phenom.modules import _ops_actions as actions
from synapse_phenom.modules._compat import require_module_api
from synapse_phenom.modules._config import parse_module_config
from synapse_phenom.modules._guard import guarded
from synapse_phenom.modules._health import mark_loaded
from synapse_phenom.modules._ops_resources import Endpoint, HealthResource, RevokedAgentsResource
from synapse_phenom.modules._registry import rooms_module

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)
MODULE = "synapse_phenom.modules.ops.PhenomOps"
_EXPIRY_TOLERANCE_MS = 60_000


def _now_ms() -> int:
    return int(time.time() * 1000)


class PhenomOps:
    def __init__(self, config: core.OpsConfig, api: ModuleApi) -> None:
        require_module_api("ops", api)
        self.config = config
        self.api = api
        self._schema_ready = False
        self._system_admin_ok = False
        api.register_web_resource(core.HEALTH_PATH, HealthResource(api))
        api.register_web_resource(
            core.LOCKDOWN_PATH, Endpoint(self, {"POST": self.lockdown, "GET": self.lockdowns})
        )
        api.register_web_resource(
            core.SLOW_MODE_PATH, Endpoint(self, {"POST": partial(actions.slow_mode, self)})
        )
        api.register_web_resource(
            core.BAN_PATH, Endpoint(self, {"POST": partial(actions.ban, self)})
        )
        api.register_web_resource(
            core.UNMUTE_PATH, Endpoint(self, {"POST": partial(actions.unmute, self)})
        )
        api.register_web_resource(
            core.ADMIN_AUDIT_PATH, Endpoint(self, {"POST": partial(actions.write_audit, self)})
        )
        api.register_web_resource(
            core.AGENT_REVOCATIONS_PATH,
            Endpoint(
                self,
                {"POST": partial(actions.revoke, self), "GET": partial(actions.revocations, self)},
            ),
        )
        api.register_web_resource(core.REVOKED_AGENTS_PATH, RevokedAgentsResource(self))
        if api.should_run_background_tasks():
            api.looping_background_call(
                self.lift_expired,
                int(config.expiry_check_seconds * 1000),
                desc="phenom_ops_lockdown_expiry",
            )
        mark_loaded(api, MODULE)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> core.OpsConfig:
        return parse_module_config(core.OpsConfig, config, MODULE)

    # -- helpers ---------------------------------------------------------------------

    async def db(self, desc: str, fn: Any, *args: Any) -> Any:
        if not self._schema_ready:
            await self.api.run_db_interaction("phenom_ops_schema", store.create_schema)
            await self.api.run_db_interaction(
                "phenom_moderation_schema", moderation_store.create_schema
            )
            self._schema_ready = True
        return await self.api.run_db_interaction(desc, fn, *args)

    def system_user(self) -> str:
        rooms = rooms_module(self.api)
        if rooms is None:
            raise SynapseError(503, "The Phenom rooms module is not loaded", Codes.UNKNOWN)
        return rooms.system_user_id

    async def room(self, value: Any) -> str:
        """A room id from a room id, an alias or a room key (community)."""
        if not isinstance(value, str) or not value:
            raise SynapseError(
                400,
                "'room' must be a room id, alias or key such as 'community'",
                Codes.INVALID_PARAM,
            )
        if value.startswith("!"):
            return value
        if value.startswith("#"):
            try:
                room_id, _ = await self.api.lookup_room_alias(value)
            except SynapseError:
                raise SynapseError(404, f"No room has the alias {value}", Codes.NOT_FOUND) from None
            return str(room_id)
        rooms = rooms_module(self.api)
        key_room = await rooms.room_id(value) if rooms and value in rooms.config.rooms else None
        if key_room is None:
            raise SynapseError(
                404,
                f"{value!r} is not a Phenom room key (internal, partners, community)",
                Codes.NOT_FOUND,
            )
        return key_room

    async def audit(
        self, room_id: str, user_id: str, command: str, action: str, detail: str
    ) -> None:
        row = moderation_store.AuditRow(
            _now_ms(),
            room_id,
            user_id,
            core.ADMIN_POLICY,
            f"admin:{command}",
            action,
            "admin",
            detail,
        )
        await self.db("phenom_ops_audit", moderation_store.record, row)

    async def send(self, room_id: str, event: dict[str, Any]) -> None:
        try:
            await self.api.create_and_send_event_into_room(
                {"room_id": room_id, "sender": self.system_user(), **event}
            )
        except SynapseError as err:
            raise SynapseError(
                409, f"The system user could not change {room_id}: {err.msg}", Codes.FORBIDDEN
            ) from None

    async def notice(self, room_id: str, text: str) -> None:
        if not self.config.room_notices:
            return
        try:
            await self.send(
                room_id,
                {"type": "m.room.message", "content": {"msgtype": "m.notice", "body": text}},
            )
        except Exception:
            logger.exception("Could not post the notice in %s", room_id)

    async def power_levels(self, room_id: str) -> dict[str, Any]:
        state = await self.api.get_room_state(room_id, [("m.room.power_levels", "")])
        event = state.get(("m.room.power_levels", ""))
        if event is None:
            raise SynapseError(
                404,
                f"{room_id} has no power levels (is it a room of this server?)",
                Codes.NOT_FOUND,
            )
        return dict(event.get_dict()["content"])

    # -- lockdown ----------------------------------------------------------------------

    async def lockdown(self, by: str, body: dict[str, Any]) -> dict[str, Any]:
        room_id = await self.room(body.get("room"))
        lock, dry_run = bool(body.get("lock", True)), bool(body.get("dry_run", False))
        until = body.get("until_ts")
        if until is not None and (not isinstance(until, int) or until <= _now_ms()):
            raise SynapseError(
                400, "'until_ts' must be a future time in ms since the epoch", Codes.INVALID_PARAM
            )
        reason = str(body.get("reason") or "")
        if lock:
            changes = await self._lock(room_id, until, by, reason, dry_run)
        else:
            changes = await self._unlock(room_id, by, reason, dry_run)
        existing = await self.db("phenom_ops_get_lockdown", store.get_lockdown, room_id)
        return {
            "room_id": room_id,
            "dry_run": dry_run,
            "changes": changes,
            "locked": core.is_locked(await self.power_levels(room_id), self.config.moderator_level),
            "lockdown": existing.to_json() if existing else None,
        }

    async def _lock(
        self, room_id: str, until: int | None, by: str, reason: str, dry_run: bool
    ) -> list[str]:
        level = self.config.moderator_level
        pl = await self.power_levels(room_id)
        existing = await self.db("phenom_ops_get_lockdown", store.get_lockdown, room_id)
        plan = core.lock_power_levels(pl, level)
        changes: list[str] = []
        if plan.content is not None:
            changes.append(
                f"power levels: events_default {plan.previous['events_default']} -> {level}"
            )
            changes.extend(
                f"power levels: {t} {old} -> {level}" for t, old in plan.previous["events"].items()
            )
        elif existing is None:
            return []  # read-only already, not by a lockdown: nothing of ours to expire
        if existing is not None and not _same_expiry(existing.until_ts, until):
            changes.append(f"expiry: {_when(existing.until_ts)} -> {_when(until)}")
        elif existing is None:
            changes.append(f"expiry: {_when(until)}")
        if not changes or dry_run:
            return changes
        previous = existing.previous if existing is not None else plan.previous
        row = store.Lockdown(room_id, until, level, previous, by, reason, _now_ms())
        await self.db("phenom_ops_put_lockdown", store.put_lockdown, row)
        if plan.content is not None:
            try:
                await self.send(
                    room_id,
                    {"type": "m.room.power_levels", "state_key": "", "content": plan.content},
                )
            except Exception:
                if existing is None:  # nothing half-done: no row without the power levels
                    await self.db("phenom_ops_delete_lockdown", store.delete_lockdown, room_id)
                raise
        detail = core.audit_detail(by, reason, changes=changes, until_ts=until)
        await self.audit(room_id, by, "lockdown", "lockdown", detail)
        await self.notice(room_id, core.lock_notice(until))
        logger.info("Room %s locked by %s until %s", room_id, by, until)
        return changes

    async def _unlock(self, room_id: str, by: str, reason: str, dry_run: bool) -> list[str]:
        level = self.config.moderator_level
        pl = await self.power_levels(room_id)
        existing = await self.db("phenom_ops_get_lockdown", store.get_lockdown, room_id)
        content = core.unlock_power_levels(pl, existing.previous if existing else None, level)
        changes: list[str] = []
        if content is not None:
            changes.append(
                f"power levels: events_default {pl.get('events_default', 0)} -> "
                f"{content.get('events_default', 0)}"
            )
        if existing is not None:
            changes.append("lockdown record removed")
        if not changes or dry_run:
            return changes
        if content is not None:
            await self.send(
                room_id, {"type": "m.room.power_levels", "state_key": "", "content": content}
            )
        await self.db("phenom_ops_delete_lockdown", store.delete_lockdown, room_id)
        await self.audit(
            room_id, by, "unlock", "unlock", core.audit_detail(by, reason, changes=changes)
        )
        await self.notice(room_id, core.UNLOCK_NOTICE)
        logger.info("Room %s unlocked by %s (%s)", room_id, by, reason)
        return changes

    async def lockdowns(self, by: str, body: dict[str, Any]) -> dict[str, Any]:
        rows = await self.db("phenom_ops_list_lockdowns", store.list_lockdowns)
        return {"lockdowns": [r.to_json() for r in rows]}

    @guarded("ops", fallback=None)
    async def lift_expired(self) -> None:
        if not self._system_admin_ok:
            await self.ensure_system_admin()
        for lock in await self.db("phenom_ops_expired", store.expired_lockdowns, _now_ms()):
            try:
                await self._unlock(lock.room_id, "expiry", "lockdown expired", dry_run=False)
            except Exception:
                logger.exception("Could not lift the expired lockdown of %s", lock.room_id)

    @guarded("ops", fallback=None)
    async def ensure_system_admin(self) -> None:
        """The system user (created by the rooms module) is a server admin: it acts for
        ``phenom-chat admin`` and the doctor checks it."""
        rooms = rooms_module(self.api)
        if rooms is None or not await self.api.check_user_exists(rooms.system_user_id):
            return
        if not await self.api.is_user_admin(rooms.system_user_id):
            await self.api.set_user_admin(rooms.system_user_id, True)
            logger.info("Made the system user %s a server admin", rooms.system_user_id)
        self._system_admin_ok = True  # once per start; the doctor watches it afterwards


def _same_expiry(a: int | None, b: int | None) -> bool:
    """Repeating ``--until 10m`` a few seconds later is the same lockdown (idempotent)."""
    if a is None or b is None:
        return a == b
    return abs(a - b) < _EXPIRY_TOLERANCE_MS


def _when(ts: int | None) -> str:
    return "none" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts / 1000))
