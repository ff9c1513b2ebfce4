"""Group → room rules, without Synapse."""

from __future__ import annotations

import pytest

from synapse_phenom.config import InvalidConfig, parse_model
from synapse_phenom.rooms.config import RoomsConfig
from synapse_phenom.rooms.membership import (
    denial_message,
    normalise_groups,
    plan_memberships,
    room_creation_request,
    rooms_for_groups,
)

DEFAULT = RoomsConfig()


@pytest.mark.parametrize(
    ("groups", "rooms"),
    [
        ([], {"community"}),
        (["team"], {"internal", "partners", "community"}),
        (["partners"], {"partners", "community"}),
        (["partners", "team"], {"internal", "partners", "community"}),
        (["unknown-group"], {"community"}),
    ],
)
def test_default_group_mapping(groups: list[str], rooms: set[str]) -> None:
    assert rooms_for_groups(DEFAULT, groups) == rooms


def test_plan_joins_missing_and_removes_lost() -> None:
    current = {"internal": "join", "partners": None, "community": "leave"}
    plan = plan_memberships(DEFAULT, ["partners"], current)
    assert plan.join == ("partners", "community")
    assert plan.remove == ("internal",)


def test_plan_never_rejoins_banned_and_skips_missing_rooms() -> None:
    plan = plan_memberships(DEFAULT, ["team"], {"internal": "ban", "community": "join"})
    assert plan.join == () and plan.remove == ()
    assert plan.empty


def test_plan_removes_pending_invites_and_knocks() -> None:
    plan = plan_memberships(
        DEFAULT, [], {"internal": "invite", "partners": "knock", "community": "join"}
    )
    assert plan.remove == ("internal", "partners")


def test_denial_message_names_groups_not_internals() -> None:
    msg = denial_message(DEFAULT, "internal", "example.org")
    assert "#internal:example.org" in msg and "'team'" in msg


def test_normalise_groups() -> None:
    assert normalise_groups([" team", "team", "", "partners"]) == ["partners", "team"]
    with pytest.raises(ValueError, match="invalid group name"):
        normalise_groups(["two words"])


def test_config_rejects_unknown_room_and_typos_with_key_path() -> None:
    with pytest.raises(InvalidConfig, match=r"cfg: .*groups.team names unknown room 'lobby'"):
        parse_model(RoomsConfig, {"groups": {"team": ["lobby"]}}, "cfg")
    with pytest.raises(InvalidConfig, match=r"cfg.rooms.internal.join_rule"):
        parse_model(
            RoomsConfig,
            {"rooms": {"internal": {"alias": "internal", "name": "I", "join_rule": "open"}}},
            "cfg",
        )
    with pytest.raises(InvalidConfig, match=r"cfg.everyon"):
        parse_model(RoomsConfig, {"everyon": ["community"]}, "cfg")
    with pytest.raises(InvalidConfig, match="unmanaged_users"):
        parse_model(RoomsConfig, {"unmanaged_users": ["(unclosed"]}, "cfg")


def test_alias_normalised_from_full_alias() -> None:
    cfg = parse_model(
        RoomsConfig,
        {
            "rooms": {"community": {"alias": "#lobby:example.org", "name": "Lobby"}},
            "groups": {},
            "everyone": ["community"],
        },
        "cfg",
    )
    assert cfg.rooms["community"].alias == "lobby"


def test_room_creation_request_unencrypted_by_default() -> None:
    body = room_creation_request(DEFAULT.rooms["community"], "@phenom:hs")
    assert body["preset"] == "public_chat" and body["visibility"] == "public"
    assert not any(s["type"] == "m.room.encryption" for s in body["initial_state"])
    spec = DEFAULT.rooms["internal"].model_copy(
        update={"encrypted": True, "power_levels": {"events_default": 50}}
    )
    body = room_creation_request(spec, "@phenom:hs")
    assert any(s["type"] == "m.room.encryption" for s in body["initial_state"])
    assert body["power_level_content_override"] == {"events_default": 50}
