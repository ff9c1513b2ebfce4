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
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from synapse.api.errors import Codes
from synapse.module_api import NOT_SPAM, ModuleApi

from synapse_phenom.db import now_ms
from synapse_phenom.endpoints import AUDIT_PATH
from synapse_phenom.memo import TtlMemo
from synapse_phenom.moderation import store
from synapse_phenom.moderation.config import (
    DEFAULT_POLICY,
    POLICY_EVENT_TYPE,
    ModerationConfig,
    merge_live_policy,
)
from synapse_phenom.moderation.rules import (
    MUTE_ALLOWED_TYPES,
    Violation,
    ban_message,
    flood_counts,
    flood_violation,
    is_checked,
    mute_violation,
)
from synapse_phenom.modules._compat import require_module_api
from synapse_phenom.modules._config import parse_module_config
from synapse_phenom.modules._event_checks import add_event_check
from synapse_phenom.modules._guard import guarded
from synapse_phenom.modules._health import mark_loaded
from synapse_phenom.modules._link_preview_signing import card_signing_key
from synapse_phenom.modules._moderation_audit import AuditResource
from synapse_phenom.modules._moderation_content import ContentChecks
from synapse_phenom.modules._moderation_events import CHECK_FAILURES, card_verdict
from synapse_phenom.modules._moderation_gates import MembershipGates
from synapse_phenom.modules._moderation_notices import ModeratorNotices, kind_of
from synapse_phenom.modules._moderation_state import MAX_CACHED, RoomView

if TYPE_CHECKING:
    from synapse.events import EventBase

logger = logging.getLogger(__name__)
MODULE = "synapse_phenom.modules.moderation.PhenomModeration"

ACTIONS = Counter(
    "phenom_moderation_actions_total",
    "Moderation actions taken (block, mute, rename, ban, policy_change, policy_refused) by rule "
    "kind",
    ["policy", "rule", "action"],
)
CHECKS = Counter(
    "phenom_moderation_checks_total",
    "Events checked by the moderation module",
    ["policy", "result"],
)


class PhenomModeration(ContentChecks, MembershipGates, ModeratorNotices):
    def __init__(self, config: ModerationConfig, api: ModuleApi) -> None:
        require_module_api("moderation", api)
        self._config = config
        self._api = api
        self._compiled = {
            name: self._compile(name, policy) for name, policy in config.policies.items()
        }
        self._init_state()
        self._init_notices()
        # (user, room) seen unmuted: the flood/mute gate is skipped for cache_seconds.
        self._unmuted: TtlMemo[bool] = TtlMemo(MAX_CACHED, config.cache_seconds)
        self._schema_ready = False
        self._card_key = card_signing_key(api)

        # Guarded per instance: the fallback (fail-open or fail-closed) comes from config.
        spam_guard = guarded("moderation", fallback=self._fallback_spam, logger=logger)
        self.check_event_for_spam = spam_guard(self._check_event_for_spam)
        self.user_may_join_room = spam_guard(self._user_may_join_room)
        self.user_may_invite = spam_guard(self._user_may_invite)
        add_event_check(api, self.check_event_for_spam)  # one registration for all modules
        api.register_spam_checker_callbacks(
            user_may_join_room=self.user_may_join_room, user_may_invite=self.user_may_invite
        )
        self._register_display_names(config.display_names, self._fallback_allowed)
        api.register_web_resource(AUDIT_PATH, AuditResource(self, api))
        mark_loaded(api, MODULE)  # modules.ops health
        if api.should_run_background_tasks():
            api.looping_background_call(self._cleanup, 600_000, desc="phenom_moderation_cleanup")

    @staticmethod
    def parse_config(config: dict[str, Any]) -> ModerationConfig:
        return parse_module_config(ModerationConfig, config, MODULE)

    def _fallback_spam(self) -> Any:
        # Reached only by infrastructure failures (database, room state): the content
        # check itself is total and refuses what it cannot read (rule 'unreadable').
        CHECK_FAILURES.labels("infrastructure").inc()
        if self._config.fail_closed:
            return (
                Codes.FORBIDDEN,
                {
                    "error": "Moderation is unavailable right now; your message was not sent. "
                    "Try again shortly."
                },
            )
        return NOT_SPAM

    def _fallback_allowed(self) -> tuple[bool, None]:
        CHECK_FAILURES.labels("infrastructure").inc()
        return (not self._config.fail_closed, None)

    # -- state --------------------------------------------------------------------

    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            await self._api.run_db_interaction("phenom_moderation_schema", store.create_schema)
            self._schema_ready = True

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
        """Audit (and escalate) a violation; notify moderators in the background. The
        decision is made: a failure to record it never turns the refusal into an accept
        (it is logged and counted as an infrastructure failure)."""
        policy = view.compiled.policy
        esc = policy.escalation
        row = store.AuditRow(
            now_ms(), room_id, user_id, view.policy_name, v.rule, action, event_type, v.detail
        )
        escalation = (
            (esc.violations, esc.window_seconds * 1000, esc.mute_seconds * 1000) if esc else None
        )
        try:
            await self._ensure_schema()
            muted_until = await self._api.run_db_interaction(
                "phenom_moderation_record", store.record, row, escalation
            )
        except Exception:
            logger.exception("Could not record the moderation %s of %s", action, user_id)
            CHECK_FAILURES.labels("infrastructure").inc()
            muted_until = None
        # Label by rule kind only: rule names can come from live policies (unbounded).
        kind = kind_of(v.rule)
        ACTIONS.labels(view.policy_name, kind, action).inc()
        self._unmuted.pop((user_id, room_id))
        if muted_until is not None:
            ACTIONS.labels(view.policy_name, kind, "mute").inc()
        logger.info(
            "Moderation %s in %s: %s by %s (%s)", action, room_id, v.rule, user_id, v.detail
        )
        # Notices concern only Phenom-managed rooms: nobody can make the system user post
        # into the moderators' room by breaking the rules of a room they created.
        if view.policy_name != DEFAULT_POLICY:
            self._api.run_as_background_process(
                "phenom_moderation_notice",
                self._notify,
                policy,
                view.policy_name,
                room_id,
                user_id,
                kind,
                action,
                muted_until,
            )
        return muted_until

    @staticmethod
    def _reply(v: Violation) -> tuple[Codes, dict[str, Any]]:
        code = Codes.LIMIT_EXCEEDED if v.errcode == Codes.LIMIT_EXCEEDED else Codes.FORBIDDEN
        return (code, v.error_dict())

    # -- Synapse callbacks -----------------------------------------------------------

    async def _check_event_for_spam(self, event: EventBase) -> Any:
        is_state = event.is_state()
        if is_state and event.type == POLICY_EVENT_TYPE:
            return await self._check_policy_event(event)
        sender, room_id = event.sender, event.room_id
        if event.type == "m.room.create" or sender == self._system_user:
            return NOT_SPAM  # (a room being created has no state to read yet)
        view = await self.room_view(room_id)
        content, refusal, server_card = card_verdict(event, self._card_key)
        if refusal is not None:
            CHECKS.labels(view.policy_name, "block").inc()
            await self.act(view, room_id, sender, event.type, refusal)
            return self._reply(refusal)
        if server_card:  # the server's follow-up card: its message was judged already
            CHECKS.labels(view.policy_name, "pass").inc()
            return NOT_SPAM
        ban = (await self.ban_list()).match(sender)
        if ban is not None:
            v = Violation("ban_list", ban_message(ban), f"{ban.source}: {ban.entity}")
            await self.act(view, room_id, sender, event.type, v, action="ban")
            return self._reply(v)
        policy = view.compiled.policy
        violation = (
            await self._check_content(view, event, content)
            if is_checked(event.type, is_state)
            else None
        )
        # Flood control and mutes cover every event a user sends into the room, state
        # included (not while the room is being created: no power levels yet).
        needs_gate = bool(policy.flood or policy.escalation) and (
            not is_state or bool(view.power_levels)
        )
        # Exemptions (power level, groups) are looked up only when they could matter.
        if (violation is not None or needs_gate) and await self.is_exempt(view, sender):
            CHECKS.labels(view.policy_name, "exempt").inc()
            return NOT_SPAM
        flood = None
        if (
            violation is None
            and policy.flood
            and flood_counts(event.type, is_state, policy.flood.exempt_event_types)
        ):
            flood = (int(policy.flood.per_seconds * 1000), policy.flood.messages)
        unmuted_key = (sender, room_id)
        if needs_gate and flood is None and self._unmuted.get(unmuted_key):
            needs_gate = False  # seen unmuted; a mute reaches other workers within cache_seconds
        if needs_gate:
            await self._ensure_schema()
            now = now_ms()
            gate = await self._api.run_db_interaction(
                "phenom_moderation_gate", store.gate, sender, room_id, now, flood
            )
            if gate.muted_until is None:
                self._unmuted.put(unmuted_key, True)
            elif event.type not in MUTE_ALLOWED_TYPES:  # a muted user may still redact
                CHECKS.labels(view.policy_name, "muted").inc()
                return self._reply(mute_violation(gate.muted_until, now))
            if gate.flood is not None and not gate.flood.allowed and policy.flood:
                violation = flood_violation(
                    gate.flood, policy.flood.messages, policy.flood.per_seconds
                )
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
            return await refuse(
                f"{POLICY_EVENT_TYPE} must have an empty state key", Codes.INVALID_PARAM
            )
        if not base.allow_live_policy:
            return await refuse(
                f"Live policy changes are disabled for the '{name}' policy in the module config."
            )
        if (
            sender != self._system_user
            and self.power_level(view, sender) < base.live_policy_power_level
        ):
            return await refuse(
                "Changing the moderation policy needs power level "
                f"{base.live_policy_power_level} in this room."
            )
        try:
            compiled = self._compile(name, merge_live_policy(base, event.get_dict()["content"]))
        except Exception as err:  # InvalidConfig names the key; RE2 set errors say what failed
            return await refuse(f"Invalid moderation policy: {err}", Codes.BAD_JSON)
        self._live.put((name, event.event_id), compiled)
        self._rooms.pop(room_id)
        v = Violation("live_policy", "", json.dumps(sorted(event.get_dict()["content"])))
        await self.act(view, room_id, sender, event.type, v, action="policy_change")
        return NOT_SPAM

    @guarded("moderation", fallback=None)
    async def _cleanup(self) -> None:
        await self._ensure_schema()
        await self._api.run_db_interaction("phenom_moderation_cleanup", store.cleanup, now_ms())

    async def audit(
        self, room_id: str | None, user_id: str | None, since_ms: int | None, limit: int
    ) -> list[store.AuditRow]:
        await self._ensure_schema()
        return await self._api.run_db_interaction(
            "phenom_moderation_audit", store.list_audit, room_id, user_id, since_ms, limit
        )
