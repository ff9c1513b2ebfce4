"""The rooms module's gate: Synapse's spam-checker callbacks for joins and invites.

Mixed into ``PhenomRooms`` (``modules/rooms.py``); the decisions are the rooms core's
(``rooms/membership.py``). Every callback fails closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes
from synapse.module_api import NOT_SPAM

from synapse_phenom.modules._guard import guarded
from synapse_phenom.rooms import membership

if TYPE_CHECKING:
    from synapse.events import EventBase
    from synapse.module_api import ModuleApi

    from synapse_phenom.rooms.config import RoomsConfig

# State that decides who may join or read a room: the rooms module's to set (config, at
# creation), never a room moderator's. A moderator (power level 50 = state_default) could
# otherwise make Internal public: local joins stay gated, but a federated join never
# reaches user_may_join_room.
ACCESS_STATE = frozenset({"m.room.join_rules", "m.room.history_visibility", "m.room.guest_access"})


class RoomGate:
    """Mixed into ``PhenomRooms``."""

    _config: RoomsConfig
    _server_name: str
    _api: ModuleApi
    system_user_id: str

    async def room_key(self, room_id: str) -> str | None:
        raise NotImplementedError

    async def _may_be_in(self, user_id: str, key: str) -> bool:
        raise NotImplementedError

    # Fail closed: if we cannot tell whether someone belongs, they do not get in.
    @guarded(
        "rooms", fallback=(Codes.FORBIDDEN, {"error": "Membership check failed; try again later."})
    )
    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Any:
        key = await self.room_key(room_id)
        if key is None or await self._may_be_in(user_id, key):
            return NOT_SPAM
        return (
            Codes.FORBIDDEN,
            {"error": membership.denial_message(self._config, key, self._server_name)},
        )

    @guarded(
        "rooms", fallback=(Codes.FORBIDDEN, {"error": "Membership check failed; try again later."})
    )
    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        key = await self.room_key(room_id)
        if key is None or await self._may_be_in(invitee, key):
            return NOT_SPAM
        message = f"{invitee} cannot be invited: " + membership.denial_message(
            self._config, key, self._server_name
        )
        return (Codes.FORBIDDEN, {"error": message})

    @guarded(
        "rooms", fallback=(Codes.FORBIDDEN, {"error": "Membership check failed; try again later."})
    )
    async def user_may_send_3pid_invite(
        self, inviter_userid: str, medium: str, address: str, room_id: str
    ) -> Any:
        # Whoever claims an email invite is unknown here, and a remote claimant's join
        # never reaches user_may_join_room (federated joins skip it): only rooms open to
        # everyone take them.
        key = await self.room_key(room_id)
        if key is None or membership.is_open_to_everyone(self._config, key):
            return NOT_SPAM
        message = "Invite people to this room by their Matrix ID: " + membership.denial_message(
            self._config, key, self._server_name
        )
        return (Codes.FORBIDDEN, {"error": message})

    @guarded(
        "rooms", fallback=(Codes.FORBIDDEN, {"error": "Room settings check failed; try again."})
    )
    async def check_event_for_spam(self, event: EventBase) -> Any:
        if event.type not in ACCESS_STATE or not event.is_state():
            return NOT_SPAM
        key = await self.room_key(event.room_id)
        if key is None or event.sender == self.system_user_id:
            return NOT_SPAM
        if self._api.is_mine(event.sender) and await self._api.is_user_admin(event.sender):
            return NOT_SPAM
        alias = f"#{self._config.rooms[key].alias}:{self._server_name}"
        return (
            Codes.FORBIDDEN,
            {
                "error": f"Who may join or read {alias} is set by Phenom (its join rule, history "
                "visibility and guest access): ask a server administrator."
            },
        )
