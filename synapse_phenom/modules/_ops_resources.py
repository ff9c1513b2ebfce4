"""HTTP resources of the ops module (``synapse_phenom.modules.ops``): thin request glue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.module_api import DirectServeJsonResource, ModuleApi

from synapse_phenom.admin import store
from synapse_phenom.modules._health import loaded_modules

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest as Request

    from synapse_phenom.modules.ops import PhenomOps


class Endpoint(DirectServeJsonResource):
    """Admin-only JSON endpoint: each method is ``handler(admin_user_id, body)``."""

    def __init__(self, ops: PhenomOps, handlers: dict[str, Any]) -> None:
        super().__init__()
        self._ops = ops
        self._handlers = handlers

    async def _handle(self, method: str, request: Request) -> tuple[int, dict[str, Any]]:
        from synapse.http.servlet import parse_json_object_from_request

        requester = await self._ops.api.get_user_by_req(request)
        by = requester.user.to_string()
        if not await self._ops.api.is_user_admin(by):
            raise SynapseError(403, "Only server administrators may do this", Codes.FORBIDDEN)
        body = parse_json_object_from_request(request) if method == "POST" else {}
        return 200, await self._handlers[method](by, body)

    async def _async_render_POST(self, request: Request) -> tuple[int, dict[str, Any]]:
        return await self._handle("POST", request)

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        if "GET" not in self._handlers:
            raise SynapseError(405, "Use POST", Codes.UNRECOGNIZED)
        return await self._handle("GET", request)


class RevokedAgentsResource(DirectServeJsonResource):
    """``GET``: revoked agents' user ids, for the MCP application service (its token) or admins."""

    def __init__(self, ops: PhenomOps) -> None:
        super().__init__()
        self._ops = ops

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        requester = await self._ops.api.get_user_by_req(request)
        allowed = requester.app_service_id in self._ops.config.appservice_ids
        if not allowed and not await self._ops.api.is_user_admin(requester.user.to_string()):
            raise SynapseError(
                403, "Only the Phenom MCP application service may read this", Codes.FORBIDDEN
            )
        rows = await self._ops.db("phenom_ops_revoked", store.revoked_agents)
        return 200, {"revoked": [r["user_id"] for r in rows]}


class HealthResource(DirectServeJsonResource):
    """``GET``: this process's loaded Phenom modules (no auth; nothing secret)."""

    def __init__(self, api: ModuleApi) -> None:
        super().__init__()
        self._api = api

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        return 200, {
            "status": "ok",
            "modules": loaded_modules(self._api),
            "worker": self._api.worker_name or "main",
            "server_name": self._api.server_name,
        }
