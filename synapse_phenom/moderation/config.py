"""Config of the moderation module: one ``RoomPolicy`` per room key plus ``default``.

A room's policy can be changed live with the state event ``app.phenom.moderation.policy``
(see ``merge_live_policy``): its top-level keys replace those of the configured policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import re2
from pydantic import Field, ValidationError, field_validator, model_validator

from synapse_phenom.config import FrozenModel, InvalidConfig, describe_validation_error

POLICY_EVENT_TYPE = "app.phenom.moderation.policy"
DEFAULT_POLICY = "default"
# Keys a live policy may not change: they decide who may change the policy at all, and
# where the system user posts notices (any user tops the power levels of rooms they create).
CONFIG_ONLY_KEYS = frozenset({"allow_live_policy", "live_policy_power_level", "notify_room"})


def _parse_keyword(raw: str) -> str:
    term = raw.strip().strip("*").strip()
    if not term:
        raise ValueError(f"keyword {raw!r} is empty once the * wildcards are removed")
    if "*" in term:
        raise ValueError(f"keyword {raw!r}: '*' is only allowed at the start or end")
    return raw.strip()


# Rule names reach the moderators' notices in #internal and live policies may set them:
# keep them short and plain so a room creator cannot post arbitrary text there.
RuleName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,47}$")]


class KeywordRule(FrozenModel):
    """Discord-style keyword list: ``word`` whole word, ``word*`` prefix, ``*word`` suffix,
    ``*word*`` anywhere; a keyword with spaces is a phrase. ``allow`` lists exceptions
    (same syntax): a match inside an allowed term of the same rule is ignored."""

    name: RuleName = "blocked words"
    keywords: list[str] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)
    message: str | None = None

    @field_validator("keywords", "allow")
    @classmethod
    def _keywords(cls, v: list[str]) -> list[str]:
        return [_parse_keyword(k) for k in v]


class RegexRule(FrozenModel):
    """A pattern run by RE2 (linear time; no backreferences or lookaround)."""

    name: RuleName
    pattern: str
    message: str | None = None

    @field_validator("pattern")
    @classmethod
    def _re2(cls, v: str) -> str:
        try:
            re2.compile(v)
        except re2.error as err:
            raise ValueError(f"RE2 cannot compile {v!r}: {err}") from None
        return v


class LinkPolicy(FrozenModel):
    # off: no domain rule; allow: only ``domains`` (and their subdomains);
    # block: all but ``domains``
    mode: Literal["off", "allow", "block"] = "off"
    domains: list[str] = Field(default_factory=list)
    # matrix.to / matrix: links to rooms, room aliases and events (room invites)
    block_room_links: bool = False
    message: str | None = None

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            d = d.strip().lower().rstrip(".").removeprefix("*.")
            if not d or "/" in d or " " in d:
                raise ValueError(f"{d!r} is not a domain name such as 'thephenom.app'")
            out.append(d)
        return out


class MentionPolicy(FrozenModel):
    max_user_mentions: int | None = Field(default=None, ge=0)
    allow_room_mention: bool = True


class FloodPolicy(FrozenModel):
    messages: int = Field(ge=1)
    per_seconds: float = Field(gt=0, le=86400)
    # Every event a user sends into the room counts (any type, state included) except
    # these types. The default spares the link-preview module's follow-up cards.
    exempt_event_types: tuple[str, ...] = ("app.phenom.link_preview",)


class MediaPolicy(FrozenModel):
    # None = any; otherwise the msgtypes allowed in m.room.message (m.text etc. included by you)
    allowed_msgtypes: list[str] | None = None
    # None = any; globs such as "image/*"
    allowed_mimetypes: list[str] | None = None
    max_size_bytes: int | None = Field(default=None, ge=0)
    allow_stickers: bool = True


class NewAccountPolicy(FrozenModel):
    min_age_seconds: int = Field(ge=0)
    no_links: bool = True
    no_media: bool = True


class Exemptions(FrozenModel):
    # Power level in the room at or above which nothing is checked (None: nobody by level)
    power_level: int | None = 50
    # Phenom groups (rooms module's group store) whose members are exempt
    groups: list[str] = Field(default_factory=list)


class Escalation(FrozenModel):
    """``violations`` blocked messages within ``window_seconds`` -> muted for ``mute_seconds``."""

    violations: int = Field(default=3, ge=1)
    window_seconds: int = Field(default=600, ge=1)
    mute_seconds: int = Field(default=600, ge=1)


class RoomPolicy(FrozenModel):
    keywords: list[KeywordRule] = Field(default_factory=list)
    regexes: list[RegexRule] = Field(default_factory=list)
    links: LinkPolicy = LinkPolicy()
    mentions: MentionPolicy = MentionPolicy()
    flood: FloodPolicy | None = None
    media: MediaPolicy = MediaPolicy()
    new_accounts: NewAccountPolicy | None = None
    exemptions: Exemptions = Exemptions()
    # room key (internal/partners/community), room id or alias; None: no notices
    notify_room: str | None = "internal"
    escalation: Escalation | None = None
    # m.room.member display names are checked against keywords, regexes and links
    check_display_names: bool = True
    # the state event app.phenom.moderation.policy may change this policy in a room
    allow_live_policy: bool = True
    live_policy_power_level: int = 50

    @field_validator("regexes")
    @classmethod
    def _unique_regex_names(cls, v: list[RegexRule]) -> list[RegexRule]:
        names = [r.name for r in v]
        if len(names) != len(set(names)):
            raise ValueError("regex rule names must be unique")
        return v


class ModerationConfig(FrozenModel):
    """Config of ``synapse_phenom.modules.moderation.PhenomModeration``; see docs/moderation.md."""

    # room key of the rooms module (internal, partners, community) or "default" -> policy
    policies: dict[str, RoomPolicy] = Field(default_factory=lambda: {DEFAULT_POLICY: RoomPolicy()})
    # policy rooms (ids or aliases) whose m.policy.rule.user bans apply on every room
    ban_lists: list[str] = Field(default_factory=list)
    # when the module itself fails: False lets the event through, True refuses it
    fail_closed: bool = False
    # how long a worker re-uses room state (live policy, power levels, ban lists)
    cache_seconds: float = Field(default=2.0, ge=0, le=60)
    # a text longer than this is refused (rule 'unreadable'), never checked in part; events
    # are <= 64 KiB, so only a lowered limit refuses anything
    max_scan_chars: int = Field(default=65536, ge=1024)
    # RE2 memory budget per compiled regex set
    regex_max_mem: int = Field(default=8 << 20, ge=1 << 20)
    # Display names in m.room.member events (docs/moderation.md): "profile" resets a global
    # name that breaks the rules of a room the user is in to the localpart and refuses a
    # member event whose name breaks the room's rules; "rewrite" replaces such a name by
    # the localpart in that room's event (needs Synapse's check_event_allowed callback,
    # which makes Synapse load the room's whole current state for EVERY event: a
    # per-message cost that grows with the member count; docs/benchmarks.md); "off" leaves
    # names alone (policies' check_display_names are then unused).
    display_names: Literal["profile", "rewrite", "off"] = "profile"

    @model_validator(mode="before")
    @classmethod
    def _ensure_default(cls, data: Any) -> Any:
        policies = data.get("policies") if isinstance(data, Mapping) else None
        if isinstance(policies, Mapping) and DEFAULT_POLICY not in policies:
            data = {**data, "policies": {**policies, DEFAULT_POLICY: {}}}
        return data

    @field_validator("ban_lists")
    @classmethod
    def _rooms(cls, v: list[str]) -> list[str]:
        for room in v:
            if not room.startswith(("!", "#")) or ":" not in room:
                raise ValueError(f"{room!r} is not a room id ('!x:server') or alias ('#x:server')")
        return v


def merge_live_policy(base: RoomPolicy, content: Mapping[str, Any]) -> RoomPolicy:
    """The policy of a room whose ``app.phenom.moderation.policy`` state has ``content``.

    Each top-level key of ``content`` replaces the configured one; ``{}`` restores the
    configured policy. Raises InvalidConfig naming the bad key.
    """
    forbidden = sorted(CONFIG_ONLY_KEYS & set(content))
    if forbidden:
        raise InvalidConfig(
            f"{POLICY_EVENT_TYPE}.{forbidden[0]}: can only be set in the module config",
            (forbidden[0],),
        )
    merged = {**base.model_dump(), **dict(content)}
    try:
        return RoomPolicy.model_validate(merged)
    except ValidationError as err:
        raise InvalidConfig(describe_validation_error(err, POLICY_EVENT_TYPE), ()) from None


# Demo keyword list of the shipped Community policy (docs/moderation.md lists it).
DEMO_KEYWORDS = ["badword", "scam*", "*spamcoin*", "free crypto"]
DEMO_ALLOW = ["scampi"]


def default_module_config() -> dict[str, Any]:
    """The module config ``phenom-chat dev`` and the production template ship.

    Community is strict (Phenom links only, <= 5 mentions, no @room, 10 messages per
    10 s, demo keywords); Partners and Internal are lenient; other rooms (``default``:
    DMs, user-created rooms) have no rules until their moderators set a live policy.
    """
    staff = {"power_level": 50, "groups": ["team"]}
    return {
        "policies": {
            "community": {
                "keywords": [
                    {"name": "blocked words", "keywords": DEMO_KEYWORDS, "allow": DEMO_ALLOW}
                ],
                "links": {"mode": "allow", "domains": ["thephenom.app"], "block_room_links": True},
                "mentions": {"max_user_mentions": 5, "allow_room_mention": False},
                "flood": {"messages": 10, "per_seconds": 10},
                "exemptions": staff,
                "notify_room": "internal",
                "escalation": {"violations": 5, "window_seconds": 600, "mute_seconds": 300},
            },
            "partners": {
                "mentions": {"max_user_mentions": 20, "allow_room_mention": False},
                "exemptions": staff,
            },
            "internal": {"exemptions": staff},
            DEFAULT_POLICY: {},
        },
    }
