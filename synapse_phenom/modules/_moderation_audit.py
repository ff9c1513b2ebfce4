"""``/_synapse/client/phenom/v1/moderation/audit``: the admin-only audit log reader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.module_api import DirectServeJsonResource, ModuleApi

from synapse_phenom.modules import _http

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest as Request

    from synapse_phenom.modules.moderation import PhenomModeration


class AuditResource(DirectServeJsonResource):
    """Admin-only ``GET ?room_id=&user_id=&since=<ms>&limit=``: the audit log, newest first."""

    def __init__(self, module: PhenomModeration, api: ModuleApi) -> None:
        super().__init__()
        self._module = module
        self._api = api

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        requester = await _http.requester(self._api.get_user_by_req, request)
        if not await self._api.is_user_admin(requester.user.to_string()):
            raise SynapseError(
                403, "Only server administrators may read the moderation audit log", Codes.FORBIDDEN
            )
        # since: ms since the epoch
        since = _http.query_int(request, "since", default=-1, minimum=0)
        limit = _http.query_int(request, "limit", default=100, minimum=1, maximum=10_000)
        rows = await self._module.audit(
            _http.query_str(request, "room_id", max_chars=255),
            _http.query_str(request, "user_id", max_chars=255),
            since if since >= 0 else None,
            limit,
        )
        return 200, {"entries": [r.to_json() for r in rows]}
