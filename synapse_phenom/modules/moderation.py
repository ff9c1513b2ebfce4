"""Moderation inside the homeserver: AutoMod-style rules no client or bot can bypass.

Load with::

    modules:
      - module: synapse_phenom.modules.moderation.PhenomModeration
        config: {policies: {community: {...}, default: {}}}   # see docs/moderation.md

Thin glue over ``synapse_phenom.moderation``: it finds the room's policy (configured,
or live from the room's ``app.phenom.moderation.policy`` state, re-read every
``cache_seconds``), decides exemptions, asks the pure rules, and acts: refuse with a
clear error, audit, notify the moderators room, mute on repeated violations. Flood
counters, mutes and the audit log are database tables, so every worker agrees.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from prometheus_client import Counter, Histogram
from synapse.api.errors import Codes, SynapseError
from synapse.module_api import NOT_SPAM, DirectServeJsonResource, ModuleApi
from synapse.types import UserID

from synapse_phenom.config import parse_module_config
from synapse_phenom.moderation import store
from synapse_phenom.moderation.config import (
    AUDIT_PATH,
    DEFAULT_POLICY,
    POLICY_EVENT_TYPE,
    ModerationConfig,
    RoomPolicy,
    merge_live_policy,
)
from synapse_phenom.moderation.rules import (
    BAN_RULE_TYPES,
    FLOOD_COUNTED_TYPES,
    BanList,
    CompiledPolicy,
    Violation,
    ban_message,
    flood_violation,
    is_checked,
    mute_violation,
)
from synapse_phenom.modules._guard import guarded
from synapse_phenom.modules._health import mark_loaded
from synapse_phenom.modules.rooms import get_rooms_module

if TYPE_CHECKING:
    from synapse.events import EventBase
    from synapse.http.site import SynapseRequest as Request

logger = logging.getLogger(__name__)
MODULE = "synapse_phenom.modules.moderation.PhenomModeration"

ACTIONS = Counter(
    "phenom_moderation_actions_total",
    "Moderation actions taken (block, mute, rename, ban, policy_change, policy_refused) by rule kind",
    ["policy", "rule", "action"],
)
CHECKS = Counter(
    "phenom_moderation_checks_total",
    "Events checked by the moderation module",
    ["policy", "result"],
)
CHECK_SECONDS = Histogram(
    "phenom_moderation_check_seconds",
    "Time spent in the pure rule check of one event",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25),
)
_NOTICE_DEDUPE_MS = 60_000
_MAX_CACHED_USERS = 50_000


def kind_of(rule: str) -> str:
    """``keywords:blocked words`` -> ``keywords``."""
    return rule.split(":", 1)[0]


def _now_ms() -> int:
    return int(time.time() * 1000)


@attrs.frozen
class RoomView:
    """What a worker knows about a room for ``cache_seconds``."""

    policy_name: str
    compiled: CompiledPolicy
    power_levels: Mapping[str, Any]
    creators: frozenset[str]  # room v12+: creators outrank every power level
    expires: float


class PhenomModeration:
    def __init__(self, config: ModerationConfig, api: ModuleApi) -> None:
        self._config = config
        self._api = api
        self._compiled = {
            name: self._compile(name, policy) for name, policy in config.policies.items()
        }
        self._rooms: dict[str, RoomView] = {}
        self._live: dict[tuple[str, str], CompiledPolicy] = {}  # (policy name, event id)
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._created_s: dict[str, float] = {}
        self._managed: dict[str, bool] = {}
        self._bans: tuple[float, BanList] = (0.0, BanList([]))
        self._notified: dict[tuple[str, str, str], int] = {}
        self._unmuted: dict[tuple[str, str], float] = {}  # (user, room) -> seen unmuted until
        self._schema_ready = False

        # Guarded per instance: the fallback (fail-open or fail-closed) comes from config.
        spam_guard = guarded("moderation", fallback=self._fallback_spam, logger=logger)
        self.check_event_for_spam = spam_guard(self._check_event_for_spam)
        self.user_may_join_room = spam_guard(self._user_may_join_room)
        self.user_may_invite = spam_guard(self._user_may_invite)
        self.check_event_allowed = guarded(
            "moderation", fallback=self._fallback_allowed, logger=logger
        )(self._check_event_allowed)
        api.register_spam_checker_callbacks(
            check_event_for_spam=self.check_event_for_spam,
            user_may_join_room=self.user_may_join_room,
            user_may_invite=self.user_may_invite,
        )
        api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)
        api.register_web_resource(AUDIT_PATH, AuditResource(self, api))
        mark_loaded(api, "synapse_phenom.modules.moderation.PhenomModeration")  # modules.ops health
        if api.should_run_background_tasks():
            api.looping_background_call(self._cleanup, 600_000, desc="phenom_moderation_cleanup")

    @staticmethod
    def parse_config(config: dict[str, Any]) -> ModerationConfig:
        return parse_module_config(ModerationConfig, config, MODULE)

    def _compile(self, name: str, policy: RoomPolicy) -> CompiledPolicy:
        return CompiledPolicy(name, policy, self._config.max_scan_chars, self._config.regex_max_mem)

    def _fallback_spam(self) -> Any:
        if self._config.fail_closed:
            return (
                Codes.FORBIDDEN,
                {
                    "error": "Moderation is unavailable right now; your message was not sent. Try again shortly."
                },
            )
        return NOT_SPAM

    def _fallback_allowed(self) -> tuple[bool, None]:
        return (not self._config.fail_closed, None)

    # -- state --------------------------------------------------------------------

    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            await self._api.run_db_interaction("phenom_moderation_schema", store.create_schema)
            self._schema_ready = True

    @property
    def _system_user(self) -> str | None:
        rooms = get_rooms_module()
        return rooms.system_user_id if rooms else None

    async def _policy_name(self, room_id: str) -> str:
        rooms = get_rooms_module()
        key = await rooms.room_key(room_id) if rooms else None
        return key if key in self._config.policies else DEFAULT_POLICY

    async def room_view(self, room_id: str, refresh: bool = False) -> RoomView:
        now = time.monotonic()
        view = self._rooms.get(room_id)
        if view is not None and view.expires > now and not refresh:
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
            name,
            compiled,
            pl.get_dict()["content"] if pl is not None else {},
            creators,
            now + self._config.cache_seconds,
        )
        if len(self._rooms) > _MAX_CACHED_USERS:
            self._rooms.clear()
        self._rooms[room_id] = view
        return view

    def _live_policy(
        self, name: str, base: RoomPolicy, event_id: str, content: Mapping[str, Any]
    ) -> CompiledPolicy | None:
        key = (name, event_id)
        if key not in self._live:
            try:
                self._live[key] = self._compile(name, merge_live_policy(base, content))
            except Exception as err:
                # Accepted once, invalid now (e.g. the module config changed): use config.
                logger.warning("Ignoring live moderation policy %s: %s", event_id, err)
                return None
            if len(self._live) > 1000:
                self._live.pop(next(iter(self._live)))
        return self._live[key]

    def power_level(self, view: RoomView, user_id: str) -> float:
        if user_id in view.creators:
            return float("inf")
        users = view.power_levels.get("users") or {}
        level = users.get(user_id, view.power_levels.get("users_default", 0))
        return float(level) if isinstance(level, int | float) else 0.0

    async def _user_groups(self, user_id: str) -> frozenset[str]:
        now = time.monotonic()
        cached = self._groups.get(user_id)
        if cached and cached[0] > now:
            return cached[1]
        rooms = get_rooms_module()
        groups = frozenset(await rooms.get_groups(user_id) or ()) if rooms else frozenset()
        if len(self._groups) > _MAX_CACHED_USERS:
            self._groups.clear()
        self._groups[user_id] = (now + max(self._config.cache_seconds, 1.0), groups)
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
            rooms = get_rooms_module()
            if rooms is None:
                return False
            managed = rooms.is_managed_user(user_id)
            if len(self._managed) > _MAX_CACHED_USERS:
                self._managed.clear()
            self._managed[user_id] = managed
        return managed

    async def _new_account_until(self, policy: RoomPolicy, user_id: str) -> float | None:
        if policy.new_accounts is None or policy.new_accounts.min_age_seconds == 0:
            return None
        created = self._created_s.get(user_id)
        if created is None:
            info = await self._api.get_userinfo_by_id(user_id)
            created = float(info.creation_ts) if info and info.creation_ts else 0.0
            if len(self._created_s) > _MAX_CACHED_USERS:
                self._created_s.clear()
            self._created_s[user_id] = created
        until = created + policy.new_accounts.min_age_seconds
        return until if until > time.time() else None

    async def ban_list(self) -> BanList:
        expires, bans = self._bans
        if not self._config.ban_lists or expires > time.monotonic():
            return bans
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
        self._bans = (time.monotonic() + self._config.cache_seconds, bans)
        return bans

    # -- actions -------------------------------------------------------------------

    async def act(
        self,
        view: RoomView,
        room_id: str,
        user_id: str,
        event_type: str,
        v: Violation,
        action: str = "block",
    ) -> int | None:
        """Audit (and escalate) a violation; notify moderators in the background."""
        await self._ensure_schema()
        policy = view.compiled.policy
        esc = policy.escalation
        row = store.AuditRow(
            _now_ms(), room_id, user_id, view.policy_name, v.rule, action, event_type, v.detail
        )
        escalation = (
            (esc.violations, esc.window_seconds * 1000, esc.mute_seconds * 1000) if esc else None
        )
        muted_until = await self._api.run_db_interaction(
            "phenom_moderation_record", store.record, row, escalation
        )
        # Label by rule kind only: rule names can come from live policies (unbounded).
        kind = kind_of(v.rule)
        ACTIONS.labels(view.policy_name, kind, action).inc()
        self._unmuted.pop((user_id, room_id), None)
        if muted_until is not None:
            ACTIONS.labels(view.policy_name, kind, "mute").inc()
        logger.info(
            "Moderation %s in %s: %s by %s (%s)", action, room_id, v.rule, user_id, v.detail
        )
        # A room's own live policy is written by whoever holds power there (any room
        # creator): its rule names and keywords must not become text in the moderators' room.
        live = view.compiled is not self._compiled.get(view.policy_name)
        self._api.run_as_background_process(
            "phenom_moderation_notice",
            self._notify,
            policy,
            room_id,
            user_id,
            v,
            action,
            muted_until,
            live,
        )
        return muted_until

    async def _notify(
        self,
        policy: RoomPolicy,
        room_id: str,
        user_id: str,
        v: Violation,
        action: str,
        muted_until: int | None,
        live: bool = False,
    ) -> None:
        try:
            target, system = policy.notify_room, self._system_user
            if not target or not system:
                return
            now = _now_ms()
            rule = f"{kind_of(v.rule)} (room's live policy)" if live else v.rule
            key = (user_id, room_id, rule)
            if muted_until is None and now - self._notified.get(key, 0) < _NOTICE_DEDUPE_MS:
                return  # one notice per user, room and rule a minute (floods would spam)
            self._notified[key] = now
            if len(self._notified) > _MAX_CACHED_USERS:
                self._notified.clear()
            notify_room_id = await self._resolve_room(target)
            if notify_room_id is None:
                return
            text = f"Moderation: {action} — {user_id} in {room_id}, rule '{rule}'"
            if v.detail and not live:
                text += f" ({v.detail})"
            if muted_until is not None:
                text += f"; muted until {time.strftime('%H:%M:%S UTC', time.gmtime(muted_until / 1000))}"
            await self._api.create_and_send_event_into_room(
                {
                    "type": "m.room.message",
                    "room_id": notify_room_id,
                    "sender": system,
                    "content": {
                        "msgtype": "m.notice",
                        "body": text,
                        "app.phenom.moderation": {
                            "action": action,
                            "user_id": user_id,
                            "room_id": room_id,
                            "rule": rule,
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
        rooms = get_rooms_module()
        return await rooms.room_id(target) if rooms else None

    @staticmethod
    def _reply(v: Violation) -> tuple[Codes, dict[str, Any]]:
        code = Codes.LIMIT_EXCEEDED if v.errcode == Codes.LIMIT_EXCEEDED else Codes.FORBIDDEN
        return (code, v.error_dict())

    # -- Synapse callbacks -----------------------------------------------------------

    async def _check_event_for_spam(self, event: EventBase) -> Any:
        is_state = event.is_state()
        if is_state and event.type == POLICY_EVENT_TYPE:
            return await self._check_policy_event(event)
        if not is_checked(event.type, is_state):
            return NOT_SPAM
        sender, room_id = event.sender, event.room_id
        if sender == self._system_user:
            return NOT_SPAM
        view = await self.room_view(room_id)
        bans = await self.ban_list()
        ban = bans.match(sender)
        if ban is not None:
            v = Violation("ban_list", ban_message(ban), f"{ban.source}: {ban.entity}")
            await self.act(view, room_id, sender, event.type, v, action="ban")
            return self._reply(v)
        policy = view.compiled.policy
        new_until = await self._new_account_until(policy, sender)
        started = time.perf_counter()
        violation = view.compiled.check(
            event.type, event.content, is_state=is_state, new_account_until_s=new_until
        )
        CHECK_SECONDS.observe(time.perf_counter() - started)
        needs_gate = not is_state and bool(policy.flood or policy.escalation)
        # Exemptions (power level, groups) are looked up only when they could matter.
        if (violation is not None or needs_gate) and await self.is_exempt(view, sender):
            CHECKS.labels(view.policy_name, "exempt").inc()
            return NOT_SPAM
        flood = None
        if violation is None and policy.flood and event.type in FLOOD_COUNTED_TYPES:
            flood = (int(policy.flood.per_seconds * 1000), policy.flood.messages)
        unmuted_key = (sender, room_id)
        if needs_gate and flood is None and self._unmuted.get(unmuted_key, 0.0) > time.monotonic():
            needs_gate = False  # recently seen unmuted; a mute reaches other workers within cache_seconds
        if needs_gate:
            await self._ensure_schema()
            now = _now_ms()
            gate = await self._api.run_db_interaction(
                "phenom_moderation_gate", store.gate, sender, room_id, now, flood
            )
            if gate.muted_until is None:
                if len(self._unmuted) > _MAX_CACHED_USERS:
                    self._unmuted.clear()
                self._unmuted[unmuted_key] = time.monotonic() + self._config.cache_seconds
            else:
                CHECKS.labels(view.policy_name, "muted").inc()
                return self._reply(mute_violation(gate.muted_until, now))
            if gate.flood is not None and not gate.flood.allowed and policy.flood:
                violation = flood_violation(gate.flood, policy.flood.messages, policy.flood.per_seconds)
        if violation is None:
            CHECKS.labels(view.policy_name, "pass").inc()
            return NOT_SPAM
        CHECKS.labels(view.policy_name, "block").inc()
        await self.act(view, room_id, sender, event.type, violation)
        return self._reply(violation)

    async def _check_policy_event(self, event: EventBase) -> Any:
        room_id, sender = event.room_id, event.sender
        name = await self._policy_name(room_id)
        base = self._config.policies[name]
        view = await self.room_view(room_id, refresh=True)

        async def refuse(message: str, code: Codes = Codes.FORBIDDEN) -> Any:
            v = Violation("live_policy", message, message)
            await self.act(view, room_id, sender, event.type, v, action="policy_refused")
            return (code, {"error": message})

        if event.state_key != "":
            return await refuse(f"{POLICY_EVENT_TYPE} must have an empty state key", Codes.INVALID_PARAM)
        if not base.allow_live_policy:
            return await refuse(
                f"Live policy changes are disabled for the '{name}' policy in the module config."
            )
        if (
            sender != self._system_user
            and self.power_level(view, sender) < base.live_policy_power_level
        ):
            return await refuse(
                f"Changing the moderation policy needs power level {base.live_policy_power_level} in this room."
            )
        try:
            compiled = self._compile(name, merge_live_policy(base, event.get_dict()["content"]))
        except Exception as err:  # InvalidConfig names the key; RE2 set errors say what failed
            return await refuse(f"Invalid moderation policy: {err}", Codes.BAD_JSON)
        self._live[(name, event.event_id)] = compiled
        self._rooms.pop(room_id, None)
        v = Violation("live_policy", "", json.dumps(sorted(event.get_dict()["content"])))
        await self.act(view, room_id, sender, event.type, v, action="policy_change")
        return NOT_SPAM

    async def _user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Any:
        return await self._ban_gate(user_id, room_id, "join", user_id)

    async def _user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        for who in (inviter, invitee):
            result = await self._ban_gate(who, room_id, "invite", invitee)
            if result is not NOT_SPAM:
                return result
        return NOT_SPAM

    async def _ban_gate(self, user_id: str, room_id: str, what: str, target: str) -> Any:
        if user_id == self._system_user or not self._config.ban_lists:
            return NOT_SPAM
        ban = (await self.ban_list()).match(user_id)
        if ban is None:
            return NOT_SPAM
        if what == "invite" and user_id == target:
            message = f"{target} cannot be invited: they are banned by the moderation policy list {ban.source}."
        else:
            message = ban_message(ban)
        v = Violation("ban_list", message, f"{ban.source}: {ban.entity}")
        view = await self.room_view(room_id)
        await self.act(view, room_id, user_id, f"m.room.member/{what}", v, action="ban")
        return (Codes.FORBIDDEN, {"error": message})

    async def _check_event_allowed(
        self, event: EventBase, state_events: Any
    ) -> tuple[bool, dict[str, Any] | None]:
        """Display names shown in a room: a name breaking the room's rules is replaced by
        the user's localpart in that room (the event goes through, the name does not)."""
        if event.type != "m.room.member" or not event.is_state():
            return True, None
        name = event.content.get("displayname")
        if not isinstance(name, str) or not name or event.content.get("membership") != "join":
            return True, None
        user_id = event.state_key
        if (
            event.sender != user_id
            or not self._api.is_mine(user_id)
            or user_id == self._system_user
        ):
            return True, None
        view = await self.room_view(event.room_id)
        v = view.compiled.check_display_name(name)
        if v is None or await self.is_exempt(view, user_id):
            return True, None
        replacement = UserID.from_string(user_id).localpart
        await self.act(
            view,
            event.room_id,
            user_id,
            "m.room.member",
            attrs.evolve(v, rule=f"display_name:{v.rule}"),
            action="rename",
        )
        new = event.get_dict()
        new["content"]["displayname"] = replacement
        return True, new

    @guarded("moderation", fallback=None)
    async def _cleanup(self) -> None:
        await self._ensure_schema()
        await self._api.run_db_interaction("phenom_moderation_cleanup", store.cleanup, _now_ms())

    async def audit(
        self, room_id: str | None, user_id: str | None, since_ms: int | None, limit: int
    ) -> list[store.AuditRow]:
        await self._ensure_schema()
        return await self._api.run_db_interaction(
            "phenom_moderation_audit", store.list_audit, room_id, user_id, since_ms, limit
        )


class AuditResource(DirectServeJsonResource):
    """Admin-only ``GET ?room_id=&user_id=&since=<ms>&limit=``: the audit log, newest first."""

    def __init__(self, module: PhenomModeration, api: ModuleApi) -> None:
        super().__init__()
        self._module = module
        self._api = api

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        requester = await self._api.get_user_by_req(request)
        if not await self._api.is_user_admin(requester.user.to_string()):
            raise SynapseError(
                403, "Only server administrators may read the moderation audit log", Codes.FORBIDDEN
            )
        args = request.args or {}

        def arg(name: str) -> str | None:
            raw = args.get(name.encode(), [b""])[0].decode()
            return raw or None

        try:
            since = int(arg("since") or -1)
            limit = int(arg("limit") or 100)
        except ValueError:
            raise SynapseError(
                400,
                "'since' and 'limit' must be integers (since: ms since the epoch)",
                Codes.INVALID_PARAM,
            ) from None
        if not 1 <= limit <= 10_000:
            raise SynapseError(400, "'limit' must be between 1 and 10000", Codes.INVALID_PARAM)
        rows = await self._module.audit(
            arg("room_id"), arg("user_id"), since if since >= 0 else None, limit
        )
        return 200, {"entries": [r.to_json() for r in rows]}
