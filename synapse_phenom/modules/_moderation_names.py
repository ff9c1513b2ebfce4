"""Display names as rooms show them: a mixin of ``PhenomModeration``.

The module's ``display_names`` key picks the design (docs/moderation.md):

- ``profile`` (the default) keeps names clean at their source, with no per-event cost:
  Synapse's ``allow_per_room_profiles: false`` makes every member event carry the global
  profile (checked at startup), a global display-name change that breaks the rules of a
  room the user is in is reset to the user's localpart (``on_profile_update``; the reset
  reaches every room the usual way), and a join into a room whose rules the name breaks
  (a name set before the rules were) is refused once, with the name reset, so the next
  join goes through (``user_may_join_room``). What guarantees it is the member event
  itself: every local one is checked as built (name, reason, mutes), through Synapse's
  third-party-rules dispatcher for member events only (``_check_member_events``).
- ``rewrite`` replaces a breaking name by the localpart in that room's member event
  (``check_event_allowed``). Synapse then loads the room's whole current state for every
  event: a per-message cost that grows with the room (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import attrs
from synapse.module_api.errors import ConfigError
from synapse.types import UserID

from synapse_phenom.db import now_ms
from synapse_phenom.memo import TtlMemo
from synapse_phenom.moderation import store
from synapse_phenom.moderation.rules import Violation, mute_violation
from synapse_phenom.modules._guard import guarded
from synapse_phenom.modules._moderation_state import RoomState, RoomView

if TYPE_CHECKING:
    from synapse.events import EventBase
    from synapse.module_api import ProfileInfo

logger = logging.getLogger("synapse_phenom.modules.moderation")

_NAMED_MEMBERSHIPS = ("join", "knock")


class DisplayNames(RoomState):
    """Mixed into ``PhenomModeration`` (which provides ``act``)."""

    if TYPE_CHECKING:

        async def _ensure_schema(self) -> None: ...

        _unmuted: TtlMemo[bool]

    def _register_display_names(self, mode: str, fallback_allowed: Callable[[], Any]) -> None:
        if mode == "rewrite":
            self.check_event_allowed = guarded("moderation", fallback_allowed, logger)(
                self._check_event_allowed
            )
            # Synapse has no per-event-type filter: registered, it runs for every event.
            self._api.register_third_party_rules_callbacks(
                check_event_allowed=self.check_event_allowed
            )
        elif mode == "profile":
            server = self._api._hs.config.server
            # Invites: Synapse reads the invitee's profile before user_may_invite, and skips
            # that hook for server admins (the rooms module's system user is one).
            for key, why in (
                ("allow_per_room_profiles", "per-room names would go unchecked"),
                ("include_profile_data_on_invite", "invites would show unchecked names"),
            ):
                if getattr(server, key):
                    raise ConfigError(
                        f"display_names: profile needs '{key}: false' in homeserver.yaml "
                        f"({why}); or set the moderation module's display_names to rewrite "
                        "(costly) or off",
                        ("modules", "moderation", "display_names"),
                    )
            self.on_profile_update = guarded("moderation", None, logger)(self._on_profile_update)
            self._api.register_third_party_rules_callbacks(on_profile_update=self.on_profile_update)
            self._check_member_events(fallback_allowed)

    def _check_member_events(self, fallback_allowed: Callable[[], Any]) -> None:
        """Every local member event as built, what rooms show: the profile checks above
        cannot guarantee it alone. Synapse copies the global name into a join *before*
        ``user_may_join_room`` reads the profile again (a rename in between let a join carry
        a name no check saw) and runs no hook at all for a knock; ``reason`` is user text
        too. Registering ``check_event_allowed`` would make Synapse load the room's whole
        state for every event; wrapping its dispatcher lets member events alone reach
        ``_check_event_allowed`` (which reads no state), every other event goes on as before.
        """
        try:
            rules: Any = self._api._hs.get_module_api_callbacks().third_party_event_rules
            dispatch = rules.check_event_allowed  # the bound method Synapse's handlers call
        except AttributeError as err:  # a Synapse without it: never run names unchecked
            raise ConfigError(
                f"display_names: profile cannot check member events on this Synapse ({err}); "
                "set the moderation module's display_names to rewrite",
                ("modules", "moderation", "display_names"),
            ) from None
        check = guarded("moderation", fallback_allowed, logger)(self._check_event_allowed)

        async def check_event_allowed(
            event: EventBase, context: Any
        ) -> tuple[bool, dict[str, Any] | None]:
            if event.type != "m.room.member":
                return cast(tuple[bool, dict[str, Any] | None], await dispatch(event, context))
            allowed, ours = await check(event, None)
            if not allowed:
                return False, None
            allowed, theirs = await dispatch(event, context)
            if not allowed or ours is None:
                return allowed, theirs
            return True, ours if theirs is None else _merged(event, ours, theirs)

        rules.check_event_allowed = check_event_allowed

    def _own_name(self, event: EventBase) -> str | None:
        """The display name a local user gives themselves in a join/knock, else None."""
        if event.type != "m.room.member" or not event.is_state():
            return None
        name = event.content.get("displayname")
        if not isinstance(name, str) or not name:
            return None
        if event.content.get("membership") not in _NAMED_MEMBERSHIPS:
            return None
        user_id = event.state_key
        if event.sender != user_id or not self._api.is_mine(user_id):
            return None
        return None if user_id == self._system_user else name

    async def _name_violation(self, view: RoomView, user_id: str, name: str) -> Violation | None:
        v = view.compiled.check_display_name(name)
        if v is None or await self.is_exempt(view, user_id):
            return None
        return attrs.evolve(v, rule=f"display_name:{v.rule}")

    # -- display_names: profile -----------------------------------------------------

    async def _refuse_join_name(self, user_id: str, room_id: str) -> Violation | None:
        """A join whose global display name breaks the room's rules: the name is reset to
        the localpart and this join refused, so the next one goes through clean. (Invites
        carry no name: ``include_profile_data_on_invite: false``, checked at startup.)"""
        if user_id == self._system_user or not self._api.is_mine(user_id):
            return None
        localpart = UserID.from_string(user_id).localpart
        name = (await self._api.get_profile_for_user(localpart)).display_name
        if not name or name == localpart:
            return None
        view = await self.room_view(room_id)
        v = await self._name_violation(view, user_id, name)
        if v is None:
            return None
        # Synapse updates the user's other rooms in a background task: this never waits
        # on a membership lock of this room.
        await self._api.set_displayname(UserID.from_string(user_id), localpart)
        await self.act(view, room_id, user_id, "m.room.member/join", v, action="rename")
        message = (
            f"Your display name breaks this room's rules (rule '{v.rule}'), so it was "
            "reset to your username. Join again."
        )
        return attrs.evolve(v, message=message)

    async def _on_profile_update(
        self, user_id: str, new_profile: ProfileInfo, by_admin: bool, deactivation: bool
    ) -> None:
        """A global display name that breaks the rules of a room the user is in is reset
        to the localpart (a name only per-room rules allow is a per-room name's job)."""
        name = new_profile.display_name
        if deactivation or not name or not self._api.is_mine(user_id):
            return
        localpart = UserID.from_string(user_id).localpart
        if user_id == self._system_user or name == localpart:
            return  # (nothing better to reset to)
        # Private store API: the module API cannot list a user's rooms (Synapse caches it).
        store: Any = self._api._store
        for room_id in sorted(await store.get_rooms_for_user(user_id)):
            view = await self.room_view(room_id)
            v = await self._name_violation(view, user_id, name)
            if v is None:
                continue
            await self._api.set_displayname(UserID.from_string(user_id), localpart)
            await self.act(view, room_id, user_id, "m.room.member", v, action="rename")
            return

    # -- display_names: rewrite -----------------------------------------------------

    async def _check_event_allowed(
        self, event: EventBase, state_events: Any
    ) -> tuple[bool, dict[str, Any] | None]:
        """The user text of membership events, which ``check_event_for_spam`` never sees: a
        name breaking the room's rules is replaced by the user's localpart in that room
        (joins, knocks, and the invitee's name an invite shows); a ``reason`` (leave, join,
        knock, invite, kick: clients show it) breaking them is removed; a muted user's
        membership events other than leaving are refused. Leaving always goes through."""
        if event.type != "m.room.member" or not event.is_state():
            return True, None
        sender = event.sender
        if not self._api.is_mine(sender) or sender == self._system_user:
            return True, None
        content = event.content
        muted = content.get("membership") != "leave" and await self._muted_until(
            event.room_id, sender
        )
        if muted:
            logger.info("Refused a membership event of muted %s", sender)
            return False, None
        name = self._own_name(event)
        if name is None and content.get("membership") == "invite":
            shown = content.get("displayname")  # the invitee's, from their profile
            name = shown if isinstance(shown, str) and shown else None
        reason = content.get("reason")
        if not (isinstance(reason, str) and reason.strip()):
            reason = None
        if name is None and reason is None:
            return True, None
        view = await self.room_view(event.room_id)
        name_v = await self._name_violation(view, event.state_key, name) if name else None
        reason_v = None
        if reason is not None:
            # Checked as message text (keywords, regexes, links, @room).
            found = view.compiled.check("m.room.member", {"reason": reason})
            if found is not None and not await self.is_exempt(view, sender):
                reason_v = attrs.evolve(found, rule=f"member_reason:{found.rule}")
        if name_v is None and reason_v is None:
            return True, None
        new = event.get_dict()
        if name_v is not None:
            await self.act(view, event.room_id, event.state_key, "m.room.member", name_v, "rename")
            new["content"]["displayname"] = UserID.from_string(event.state_key).localpart
        if reason_v is not None:
            await self.act(view, event.room_id, sender, "m.room.member", reason_v, "strip_reason")
            del new["content"]["reason"]
        return True, new

    async def _muted_until(self, room_id: str, user_id: str) -> int | None:
        """When the mute of ``user_id`` (not exempt) in ``room_id`` ends, None when not
        muted (rooms whose policy mutes at all; a user seen unmuted is not re-read for
        ``cache_seconds``)."""
        view = await self.room_view(room_id)
        if view.compiled.policy.escalation is None or self._unmuted.get((user_id, room_id)):
            return None
        await self._ensure_schema()
        gate = await self._api.run_db_interaction(
            "phenom_moderation_gate", store.gate, user_id, room_id, now_ms(), None
        )
        if gate.muted_until is None:
            self._unmuted.put((user_id, room_id), True)
            return None
        # Exemptions only once muted: looking them up at every join would memoise a new
        # member's groups just before group sync gives them theirs.
        return None if await self.is_exempt(view, user_id) else gate.muted_until

    async def _muted_refusal(self, room_id: str, user_id: str) -> Violation | None:
        """The refusal of a join or invite by a muted user (with ``display_names: profile``
        no callback sees member events; the spam checker's join/invite hooks do)."""
        until = await self._muted_until(room_id, user_id)
        return None if until is None else mute_violation(until, now_ms())


def _merged(event: EventBase, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Another module's replacement of a member event with this module's changes on top
    (a replaced name, a removed reason)."""
    content = dict(theirs["content"])
    if ours["content"].get("displayname") != event.content.get("displayname"):
        content["displayname"] = ours["content"]["displayname"]
    if "reason" not in ours["content"]:
        content.pop("reason", None)
    return {**theirs, "content": content}
