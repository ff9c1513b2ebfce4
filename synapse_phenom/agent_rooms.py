"""Which Phenom rooms an AI agent is in: pure rules for ``modules.agents``.

Agents (application-service users, ``@agent-*``) are unmanaged by the rooms module:
no group sync joins or removes them. Their rooms come from their MCP profile instead;
to pass the rooms module's join check they get the smallest groups granting those rooms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import Field

from synapse_phenom.config import FrozenModel
from synapse_phenom.membership import MembershipPlan, RoomsConfig, groups_granting, rooms_for_groups

AGENT_ROOMS_PATH = "/_synapse/client/phenom/v1/agent_rooms"


class AgentsConfig(FrozenModel):
    """Config of ``synapse_phenom.modules.agents.PhenomAgents``; see docs/mcp.md."""

    # Application services (registration `id`) whose users may ask for rooms.
    appservice_ids: list[str] = Field(default_factory=lambda: ["phenom-mcp"])
    # Upper bound of what any agent may join (room keys); None: every managed room.
    allowed_rooms: list[str] | None = None


def groups_for_rooms(config: RoomsConfig, wanted: Iterable[str]) -> list[str]:
    """The fewest-rooms groups that together admit an agent to every wanted room.

    ValueError when a wanted room is open to no group (only admins could join it).
    """
    groups: set[str] = set()
    for key in sorted(set(wanted)):
        if key in config.everyone or key in rooms_for_groups(config, groups):
            continue
        candidates = groups_granting(config, key)
        if not candidates:
            raise ValueError(f"no group grants the room {key!r}")
        groups.add(min(candidates, key=lambda g: (len(config.groups[g]), g)))
    return sorted(groups)


def check_wanted(config: RoomsConfig, agents: AgentsConfig, wanted: Iterable[str]) -> list[str]:
    keys = sorted(set(wanted))
    for key in keys:
        if key not in config.rooms:
            raise ValueError(f"unknown room {key!r}; known: {sorted(config.rooms)}")
        if agents.allowed_rooms is not None and key not in agents.allowed_rooms:
            raise ValueError(
                f"agents may not join {key!r} on this server (modules.agents allowed_rooms)"
            )
    return keys


def plan_agent_rooms(
    config: RoomsConfig, wanted: Iterable[str], current: Mapping[str, str | None]
) -> MembershipPlan:
    """Join the wanted rooms, leave the other managed rooms; bans stay as they are."""
    wanted_set = set(wanted)
    join = tuple(
        k
        for k in config.rooms
        if k in current and k in wanted_set and current[k] not in ("join", "ban")
    )
    leave = tuple(
        k
        for k in config.rooms
        if k in current and k not in wanted_set and current[k] in ("join", "invite", "knock")
    )
    return MembershipPlan(join=join, remove=leave)
