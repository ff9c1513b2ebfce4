"""``/_synapse/client/phenom/v1/groups``: the rooms module's admin-only HTTP resource."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.module_api import DirectServeJsonResource, ModuleApi
from synapse.types import UserID

from synapse_phenom.modules import _http
from synapse_phenom.rooms import membership

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest as Request

    from synapse_phenom.modules.rooms import PhenomRooms


class GroupsResource(DirectServeJsonResource):
    """Admin-only: ``GET ?user_id=`` reads a user's groups, ``POST`` sets them and reconciles.

    POST body: ``{"user_id": "@u:server", "groups": ["team"], "source": "cli"}``.
    """

    def __init__(self, rooms: PhenomRooms, api: ModuleApi) -> None:
        super().__init__()
        self._rooms = rooms
        self._api = api

    async def _require_admin(self, request: Request) -> None:
        requester = await _http.requester(self._api.get_user_by_req, request)
        if not await self._api.is_user_admin(requester.user.to_string()):
            raise SynapseError(403, "Only server administrators may manage groups", Codes.FORBIDDEN)

    def _checked_user(self, user_id: str) -> str:
        try:
            parsed = UserID.from_string(user_id)
        except SynapseError:
            raise SynapseError(
                400, f"'user_id' {user_id!r} is not a Matrix user ID", Codes.INVALID_PARAM
            ) from None
        if not self._api.is_mine(parsed):
            raise SynapseError(400, f"{user_id} is not a user of this server", Codes.INVALID_PARAM)
        return user_id

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        await self._require_admin(request)
        raw = _http.query_str(request, "user_id", required=True, max_chars=255)
        user_id = self._checked_user(str(raw))
        groups = await self._rooms.get_groups(user_id)
        return 200, {"user_id": user_id, "groups": groups or [], "known": groups is not None}

    async def _async_render_POST(self, request: Request) -> tuple[int, dict[str, Any]]:
        await self._require_admin(request)
        body = _http.json_object(request)
        user_id = self._checked_user(
            str(_http.body_str(body, "user_id", max_chars=255, example="'@alice:server'"))
        )
        groups = _http.body_str_list(body, "groups", example="['team']")
        try:
            groups = membership.normalise_groups(groups)
        except ValueError as err:
            raise SynapseError(400, str(err), Codes.INVALID_PARAM) from None
        source = str(_http.body_str(body, "source", required=False, default="api", max_chars=64))
        if not await self._api.check_user_exists(user_id):
            raise SynapseError(
                404, f"{user_id} does not exist; create the user first", Codes.NOT_FOUND
            )
        plan = await self._rooms.set_groups_and_reconcile(user_id, groups, source)
        return 200, {
            "user_id": user_id,
            "groups": groups,
            "joined": [self._rooms.alias(k) for k in plan.join],
            "removed": [self._rooms.alias(k) for k in plan.remove],
        }
