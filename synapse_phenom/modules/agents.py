"""Rooms of AI agents: the MCP application service asks, this module joins.

Load with::

    modules:
      - module: synapse_phenom.modules.agents.PhenomAgents
        config: {}   # see docs/mcp.md

``POST /_synapse/client/phenom/v1/agent_rooms?user_id=@agent-x:server`` with the
application service's token and ``{"rooms": ["community", "partners"]}`` stores the
groups those rooms need (so the rooms module's checks pass), has the system user invite
the agent where the room is invite-only, joins it, and leaves the managed rooms not
listed. Only users of the configured application services may call it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.module_api import DirectServeJsonResource, ModuleApi

from synapse_phenom.endpoints import AGENT_ROOMS_PATH
from synapse_phenom.modules import _http
from synapse_phenom.modules._compat import requester_app_service_id, require_module_api
from synapse_phenom.modules._config import parse_module_config
from synapse_phenom.modules._health import mark_loaded
from synapse_phenom.modules._registry import rooms_module
from synapse_phenom.rooms.config import AgentsConfig
from synapse_phenom.rooms.membership import check_wanted, groups_for_rooms, plan_agent_rooms

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest as Request

logger = logging.getLogger(__name__)


class PhenomAgents:
    def __init__(self, config: AgentsConfig, api: ModuleApi) -> None:
        require_module_api("agents", api)
        self._config = config
        self._api = api
        api.register_web_resource(AGENT_ROOMS_PATH, AgentRoomsResource(config, api))
        mark_loaded(api, "synapse_phenom.modules.agents.PhenomAgents")  # modules.ops health

    @staticmethod
    def parse_config(config: dict[str, Any]) -> AgentsConfig:
        return parse_module_config(
            AgentsConfig, config, "synapse_phenom.modules.agents.PhenomAgents"
        )


class AgentRoomsResource(DirectServeJsonResource):
    def __init__(self, config: AgentsConfig, api: ModuleApi) -> None:
        super().__init__()
        self._config = config
        self._api = api

    async def _async_render_POST(self, request: Request) -> tuple[int, dict[str, Any]]:
        requester = await _http.requester(self._api.get_user_by_req, request)
        if requester_app_service_id(requester) not in self._config.appservice_ids:
            raise SynapseError(
                403,
                "Only the Phenom MCP application service may manage agent rooms",
                Codes.FORBIDDEN,
            )
        rooms = rooms_module(self._api)
        if rooms is None:
            raise SynapseError(503, "The Phenom rooms module is not loaded", Codes.UNKNOWN)
        raw = _http.body_str_list(_http.json_object(request), "rooms", example="['community']")
        try:
            wanted = check_wanted(rooms.config, self._config, raw)
            groups = groups_for_rooms(rooms.config, wanted)
        except ValueError as err:
            raise SynapseError(400, str(err), Codes.INVALID_PARAM) from None
        user_id = requester.user.to_string()
        await rooms.set_groups(user_id, groups, "mcp-agent")
        current: dict[str, str | None] = {}
        room_ids: dict[str, str] = {}
        for key in rooms.config.rooms:
            room_id = await rooms.room_id(key)
            if room_id is not None:
                room_ids[key] = room_id
                current[key] = await rooms.membership_of(room_id, user_id)
        plan = plan_agent_rooms(rooms.config, wanted, current)
        for key in plan.join:
            # The rooms module's own invite-then-join, so agents enter exactly like people.
            await rooms.join(key, user_id, current[key])
        for key in plan.remove:
            await self._api.update_room_membership(user_id, user_id, room_ids[key], "leave")
        if not plan.empty:
            logger.info(
                "Agent %s rooms %s: joined %s, left %s", user_id, wanted, plan.join, plan.remove
            )
        return 200, {
            "user_id": user_id,
            "groups": groups,
            "rooms": {k: room_ids[k] for k in wanted if k in room_ids},
            "joined": list(plan.join),
            "left": list(plan.remove),
        }
