"""``/_synapse/client/phenom/v1/moderation/audit``: the admin-only audit log reader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.module_api import DirectServeJsonResource, ModuleApi

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
