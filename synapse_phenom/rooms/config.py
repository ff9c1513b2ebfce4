"""Config of the rooms capability: the managed rooms and which groups belong in them.

Frozen pydantic models (validated when Synapse starts); the agents module's config lives
here too because it names the same rooms. Pure: no synapse, no twisted.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from synapse_phenom.config import FrozenModel

ROOM_KEYS = ("internal", "partners", "community")
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
    # Members' default notification level for this room, set once per member at join
    # (and for existing members at their next reconcile): ``mentions_only`` adds a
    # room-level push rule ``dont_notify`` (mentions, replies and keywords still notify
    # through override/content rules). The member may change it afterwards; it is never
    # re-applied. Large rooms need it: per-member push work is most of a message's cost.
    notifications: Literal["default", "mentions_only"] = "default"

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
            notifications="mentions_only",
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


class AgentsConfig(FrozenModel):
    """Config of ``synapse_phenom.modules.agents.PhenomAgents``; see docs/mcp.md."""

    # Application services (registration `id`) whose users may ask for rooms.
    appservice_ids: list[str] = Field(default_factory=lambda: ["phenom-mcp"])
    # Upper bound of what any agent may join (room keys); None: every managed room.
    allowed_rooms: list[str] | None = None
