"""Group-based room membership: which Phenom rooms a user or an AI agent may be in, and
what to change.

Pure logic, no Synapse: the rooms and agents modules feed it config, stored groups (or an
agent's wanted rooms) and current memberships, and carry out the plan it returns. People
and agents go through one planner, ``plan_memberships``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from synapse_phenom.rooms.config import _GROUP_NAME, AgentsConfig, RoomsConfig, RoomSpec

__all__ = [
    "MembershipPlan",
    "check_wanted",
    "denial_message",
    "groups_for_rooms",
    "groups_granting",
    "is_open_to_everyone",
    "normalise_groups",
    "plan_agent_rooms",
    "plan_memberships",
    "plan_rooms",
    "removal_reason",
    "room_creation_request",
    "rooms_for_groups",
]


def rooms_for_groups(config: RoomsConfig, groups: Iterable[str]) -> frozenset[str]:
    """Room keys a user with these groups belongs in."""
    keys = set(config.everyone)
    for group in groups:
        keys.update(config.groups.get(group, ()))
    return frozenset(keys)


def groups_granting(config: RoomsConfig, room_key: str) -> list[str]:
    """Groups whose members may be in ``room_key`` (for error messages)."""
    return sorted(g for g, keys in config.groups.items() if room_key in keys)


def is_open_to_everyone(config: RoomsConfig, room_key: str) -> bool:
    return room_key in config.everyone


def denial_message(config: RoomsConfig, room_key: str, server_name: str) -> str:
    alias = f"#{config.rooms[room_key].alias}:{server_name}"
    groups = groups_granting(config, room_key)
    if not groups:
        return f"{alias} is closed to everyone but server administrators."
    who = " or ".join(repr(g) for g in groups)
    return (
        f"{alias} is only for members of the group {who}. "
        "Ask a Phenom administrator to add you to that group, then sign in again."
    )


@attrs.frozen
class MembershipPlan:
    """What to change for one user: rooms to join, rooms to be removed from."""

    join: tuple[str, ...]
    remove: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.join and not self.remove


# Memberships that count as "in the room" for removal; "ban" is left alone either way.
_PRESENT = frozenset({"join", "invite", "knock"})


def plan_rooms(
    config: RoomsConfig,
    wanted: Iterable[str],
    current: Mapping[str, str | None],
) -> MembershipPlan:
    """The one planner: join the ``wanted`` room keys, leave the other managed rooms.

    ``current`` maps room key -> membership or None. Rooms missing from it (not created
    yet) are left out of the plan. A banned user is never re-joined: a moderator's ban
    outranks group membership (and an agent's wish).
    """
    wanted_set = frozenset(wanted)
    join = []
    remove = []
    for key in config.rooms:
        if key not in current:
            continue
        membership = current[key]
        if key in wanted_set:
            if membership not in ("join", "ban"):
                join.append(key)
        elif membership in _PRESENT:
            remove.append(key)
    return MembershipPlan(join=tuple(join), remove=tuple(remove))


def plan_memberships(
    config: RoomsConfig,
    groups: Iterable[str],
    current: Mapping[str, str | None],
) -> MembershipPlan:
    """A person: the rooms their groups grant, through ``plan_rooms``."""
    return plan_rooms(config, rooms_for_groups(config, groups), current)


def plan_agent_rooms(
    config: RoomsConfig, wanted: Iterable[str], current: Mapping[str, str | None]
) -> MembershipPlan:
    """An AI agent: the rooms of its MCP profile, through ``plan_rooms``; bans stay."""
    return plan_rooms(config, wanted, current)


def groups_for_rooms(config: RoomsConfig, wanted: Iterable[str]) -> list[str]:
    """The fewest-rooms groups that together admit an agent to every wanted room.

    Agents are unmanaged by group sync; to pass the rooms module's join check they get
    the smallest groups granting their rooms. ValueError when a wanted room is open to no
    group (only admins could join it).
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
    """An agent's wanted room keys, sorted; ValueError for unknown or disallowed ones."""
    keys = sorted(set(wanted))
    for key in keys:
        if key not in config.rooms:
            raise ValueError(f"unknown room {key!r}; known: {sorted(config.rooms)}")
        if agents.allowed_rooms is not None and key not in agents.allowed_rooms:
            raise ValueError(
                f"agents may not join {key!r} on this server (modules.agents allowed_rooms)"
            )
    return keys


def removal_reason(config: RoomsConfig, room_key: str) -> str:
    groups = groups_granting(config, room_key)
    if not groups:
        return "This room is closed to your account."
    return "You are no longer in the group " + " or ".join(repr(g) for g in groups) + "."


REMOVAL_KEY = "app.phenom.removal"


def removal_content(config: RoomsConfig, room_key: str) -> dict[str, object]:
    """Content of the kick when groups no longer allow a room: text plus a machine-readable part.

    ``app.phenom.removal``: ``{"code": "group_required", "room": <room key>, "groups": [...]}``
    (``groups``: any one of them would let the user back in; empty: closed to the account).
    """
    return {
        "reason": removal_reason(config, room_key),
        REMOVAL_KEY: {
            "code": "group_required",
            "room": room_key,
            "groups": list(groups_granting(config, room_key)),
        },
    }


def normalise_groups(groups: Iterable[str]) -> list[str]:
    """Sorted, de-duplicated, stripped group names; rejects names Cognito could not have."""
    out = set()
    for g in groups:
        g = g.strip()
        if not g:
            continue
        if not _GROUP_NAME.match(g):
            raise ValueError(f"invalid group name {g!r}")
        out.add(g)
    return sorted(out)


def room_creation_request(spec: RoomSpec, system_user_id: str) -> dict[str, Any]:
    """The createRoom body for a managed room."""
    initial_state: list[dict[str, Any]] = [
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": spec.join_rule}},
        {
            "type": "m.room.history_visibility",
            "state_key": "",
            "content": {"history_visibility": spec.history_visibility},
        },
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
    ]
    if spec.encrypted:
        initial_state.append(
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        )
    body: dict[str, Any] = {
        "room_alias_name": spec.alias,
        "name": spec.name,
        "topic": spec.topic,
        "preset": "public_chat" if spec.join_rule == "public" else "private_chat",
        "visibility": "public" if spec.published else "private",
        "initial_state": initial_state,
        # Members come from Cognito groups: a remote server's users could join without
        # ever passing the group gate (federated joins skip user_may_join_room).
        "creation_content": {"m.federate": False},
    }
    if spec.power_levels:
        body["power_level_content_override"] = dict(spec.power_levels)
    return body
