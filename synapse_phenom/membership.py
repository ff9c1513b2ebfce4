"""Group-based room membership: which Phenom rooms a user may be in, and what to change.

Pure logic, no Synapse: the rooms module feeds it config, stored groups and current
memberships, and carries out the plan it returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs
from pydantic import Field, field_validator, model_validator

from synapse_phenom.config import FrozenModel

ROOM_KEYS = ("internal", "partners", "community")
# Admin-only endpoint of the rooms module: read/write a user's groups.
GROUPS_PATH = "/_synapse/client/phenom/v1/groups"
_ALIAS_LOCALPART = re.compile(r"^[a-z0-9._=\-/]+$")
_GROUP_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")  # Cognito group name alphabet


class RoomSpec(FrozenModel):
    """One managed room. Applied when the room is created; name/topic are kept in sync."""

    alias: str
    name: str
    topic: str = ""
    join_rule: Literal["public", "invite", "knock"] = "invite"
    history_visibility: Literal["shared", "invited", "joined", "world_readable"] = "shared"
    # Listed in the public room directory.
    published: bool = False
    # Off by default: moderation, link previews and agents must read message content.
    encrypted: bool = False
    # Merged over Synapse's defaults in createRoom's power_level_content_override.
    power_levels: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alias")
    @classmethod
    def _alias_localpart(cls, v: str) -> str:
        v = v.removeprefix("#").split(":", 1)[0]
        if not _ALIAS_LOCALPART.match(v):
            raise ValueError(
                "must be an alias localpart such as 'community' (lower-case letters, digits, ._=-/)"
            )
        return v


def _default_rooms() -> dict[str, RoomSpec]:
    return {
        "internal": RoomSpec(
            alias="internal",
            name="Internal",
            topic="Phenom team chat",
            join_rule="invite",
        ),
        "partners": RoomSpec(
            alias="partners",
            name="Partners",
            topic="Phenom team and partners",
            join_rule="invite",
        ),
        "community": RoomSpec(
            alias="community",
            name="Community",
            topic="Everyone using the Phenom app",
            join_rule="public",
            published=True,
        ),
    }


class RoomsConfig(FrozenModel):
    """Config of ``synapse_phenom.modules.rooms.PhenomRooms``; see docs/rooms.md."""

    system_user: str = "phenom"
    system_display_name: str = "Phenom"
    rooms: dict[str, RoomSpec] = Field(default_factory=_default_rooms)
    # group name -> room keys its members belong in
    groups: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "team": ["internal", "partners", "community"],
            "partners": ["partners", "community"],
        }
    )
    # room keys every user belongs in, whatever their groups
    everyone: list[str] = Field(default_factory=lambda: ["community"])
    # regexes of user IDs this module never joins or removes (e.g. agent users)
    unmanaged_users: list[str] = Field(default_factory=list)
    # server admins may join any managed room
    admins_exempt: bool = True

    @field_validator("system_user")
    @classmethod
    def _localpart(cls, v: str) -> str:
        v = v.removeprefix("@").split(":", 1)[0]
        if not re.match(r"^[a-z0-9._=\-/+]+$", v):
            raise ValueError("must be a user localpart such as 'phenom'")
        return v

    @field_validator("groups")
    @classmethod
    def _group_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in v:
            if not _GROUP_NAME.match(name):
                raise ValueError(f"group name {name!r} is not a valid Cognito group name")
        return v

    @field_validator("unmanaged_users")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"invalid regex {pattern!r}: {err}") from None
        return v

    @model_validator(mode="after")
    def _known_room_keys(self) -> RoomsConfig:
        known = set(self.rooms)
        for group, keys in self.groups.items():
            for key in keys:
                if key not in known:
                    raise ValueError(
                        f"groups.{group} names unknown room {key!r}; known: {sorted(known)}"
                    )
        for key in self.everyone:
            if key not in known:
                raise ValueError(f"everyone names unknown room {key!r}; known: {sorted(known)}")
        aliases = [r.alias for r in self.rooms.values()]
        if len(aliases) != len(set(aliases)):
            raise ValueError("two rooms share one alias")
        return self


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


def plan_memberships(
    config: RoomsConfig,
    groups: Iterable[str],
    current: Mapping[str, str | None],
) -> MembershipPlan:
    """Compare wanted rooms with ``current`` (room key -> membership or None).

    Rooms missing from ``current`` (not created yet) are left out of the plan. A banned
    user is never re-joined: a moderator's ban outranks group membership.
    """
    wanted = rooms_for_groups(config, groups)
    join = []
    remove = []
    for key in config.rooms:
        if key not in current:
            continue
        membership = current[key]
        if key in wanted:
            if membership not in ("join", "ban"):
                join.append(key)
        elif membership in _PRESENT:
            remove.append(key)
    return MembershipPlan(join=tuple(join), remove=tuple(remove))


def removal_reason(config: RoomsConfig, room_key: str) -> str:
    groups = groups_granting(config, room_key)
    if not groups:
        return "This room is closed to your account."
    return "You are no longer in the group " + " or ".join(repr(g) for g in groups) + "."


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
    }
    if spec.power_levels:
        body["power_level_content_override"] = dict(spec.power_levels)
    return body
