"""Admin-only listing of the users who have groups, for the full Cognito reconcile.

``GET /_synapse/client/phenom/v1/groups_index?from=<user id>&limit=<n>`` →
``{"users": [{"user_id": "@ann:server", "groups": ["team"]}, ...], "next": "@ann:server" | null}``

Only users with at least one stored group are listed: those are the ones a reconcile may
have to take groups away from (``synapse_phenom.cognito.sync.plan_reconcile``). Pages are
ordered by user id; pass ``next`` as ``from`` until it is null. Registered by the rooms
module (it owns ``phenom_user_groups``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.module_api import DirectServeJsonResource, ModuleApi

from synapse_phenom.modules import _http
from synapse_phenom.rooms import store

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest as Request

    from synapse_phenom.modules.rooms import PhenomRooms

MAX_LIMIT = 1000


class GroupsIndexResource(DirectServeJsonResource):
    def __init__(self, rooms: PhenomRooms, api: ModuleApi) -> None:
        super().__init__()
        self._rooms = rooms
        self._api = api

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        requester = await _http.requester(self._api.get_user_by_req, request)
        if not await self._api.is_user_admin(requester.user.to_string()):
            raise SynapseError(403, "Only server administrators may list groups", Codes.FORBIDDEN)
        after = _http.query_str(request, "from", max_chars=255) or ""
        limit = _http.query_int(request, "limit", default=500, minimum=1, maximum=MAX_LIMIT)
        await self._rooms._ensure_schema()  # the rooms module owns the table
        rows = await self._api.run_db_interaction(
            "phenom_users_with_groups", store.users_with_groups, after, limit
        )
        return 200, {
            "users": [{"user_id": user_id, "groups": groups} for user_id, groups in rows],
            "next": rows[-1][0] if len(rows) == limit else None,
        }
