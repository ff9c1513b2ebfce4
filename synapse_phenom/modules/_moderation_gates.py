"""Who may join or be invited into a room: a mixin of ``PhenomModeration``.

Synapse's ``user_may_join_room`` / ``user_may_invite`` spam-checker hooks: ban lists (a banned
user can neither join, be invited, nor invite), mutes (a muted user may leave, not come back
or bring others in until the mute ends) and, with ``display_names: profile``, the name a join
would carry (``_moderation_names``; invites carry none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes
from synapse.module_api import NOT_SPAM

from synapse_phenom.moderation.rules import Violation, ban_message
from synapse_phenom.modules._moderation_names import DisplayNames


class MembershipGates(DisplayNames):
    """Mixed into ``PhenomModeration`` (which provides ``act`` and ``_reply``)."""

    if TYPE_CHECKING:

        @staticmethod
        def _reply(v: Violation) -> tuple[Codes, dict[str, Any]]: ...

    async def _user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Any:
        result = await self._ban_gate(user_id, room_id, "join", user_id)
        muted = await self._muted_refusal(room_id, user_id) if result is NOT_SPAM else None
        if muted is not None:  # a muted user may leave, not come back until the mute ends
            return self._reply(muted)
        if result is NOT_SPAM and self._config.display_names == "profile":
            v = await self._refuse_join_name(user_id, room_id)
            if v is not None:
                return self._reply(v)
        return result

    async def _user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        for who in (inviter, invitee):
            result = await self._ban_gate(who, room_id, "invite", invitee)
            if result is not NOT_SPAM:
                return result
        muted = await self._muted_refusal(room_id, inviter)
        if muted is not None:
            return self._reply(muted)
        return NOT_SPAM

    async def _ban_gate(self, user_id: str, room_id: str, what: str, target: str) -> Any:
        if user_id == self._system_user or not self._config.ban_lists:
            return NOT_SPAM
        ban = (await self.ban_list()).match(user_id)
        if ban is None:
            return NOT_SPAM
        if what == "invite" and user_id == target:
            message = (
                f"{target} cannot be invited: they are banned by the moderation policy list "
                f"{ban.source}."
            )
        else:
            message = ban_message(ban)
        v = Violation("ban_list", message, f"{ban.source}: {ban.entity}")
        view = await self.room_view(room_id)
        await self.act(view, room_id, user_id, f"m.room.member/{what}", v, action="ban")
        return (Codes.FORBIDDEN, {"error": message})
