"""Cognito claims → Matrix identity: the pure rules shared by SSO and the Lambda."""

from __future__ import annotations

import pytest

from synapse_phenom.cognito import claims as cc
from synapse_phenom.cognito.config import CognitoMappingConfig

SUB = "62b4ade9-34f2-4701-8778-e5c6d3839531"


def test_remote_id_is_sub_never_username() -> None:
    assert cc.remote_user_id({"sub": SUB, "cognito:username": "ann"}) == SUB
    with pytest.raises(cc.ClaimError, match="sub"):
        cc.remote_user_id({"cognito:username": "ann"})
    with pytest.raises(cc.ClaimError):
        cc.remote_user_id({"sub": "  "})


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"preferred_username": "Ann.Lee", "cognito:username": "other"}, "ann.lee"),
        ({"cognito:username": "bob_smith"}, "bob_smith"),
        # Email-username pools: cognito:username is the sub, so the email names the account.
        ({"cognito:username": SUB, "email": "Carla.Diaz@example.com"}, "carla.diaz"),
        ({"cognito:username": SUB}, None),
        ({"preferred_username": "Zoë Ångström"}, "zoe_angstrom"),
        ({"preferred_username": "__admin__"}, "admin"),  # Synapse refuses a leading _
        ({"preferred_username": "12345"}, "u12345"),  # all-digit localparts are for guests
        ({"preferred_username": "日本", "email": "jp@example.com"}, "jp"),  # nothing ASCII left
        ({"preferred_username": "a" * 200}, "a" * cc.MAX_LOCALPART),
        ({"preferred_username": "x+tag@y"}, "x+tag_y"),
    ],
)
def test_localpart_rules(claims: dict[str, str], expected: str | None) -> None:
    assert cc.localpart_of({"sub": SUB, **claims}) == expected


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"name": " Ann Lee ", "given_name": "A"}, "Ann Lee"),
        ({"given_name": "Ann", "family_name": "Lee"}, "Ann Lee"),
        ({"family_name": "Lee"}, "Lee"),
        ({"preferred_username": "annl"}, "annl"),
        ({"cognito:username": SUB, "email": "ann@example.com"}, "ann"),
        ({"cognito:username": SUB}, None),
    ],
)
def test_display_name_rules(claims: dict[str, str], expected: str | None) -> None:
    assert cc.display_name_of(claims) == expected


@pytest.mark.parametrize(
    ("verified", "expected"),
    [
        ("true", "ann@example.com"),
        ("True", "ann@example.com"),
        (True, "ann@example.com"),
        ("false", None),
        (False, None),
        (None, None),
        ("yes", None),
        (1, None),
    ],
)
def test_email_only_when_verified(verified: object, expected: str | None) -> None:
    claims: dict[str, object] = {"email": "ann@example.com"}
    if verified is not None:
        claims["email_verified"] = verified
    assert cc.email_of(claims) == expected


def test_groups_missing_claim_means_none_and_bad_names_dropped() -> None:
    assert cc.groups_of({}) == ()
    assert cc.groups_of({"cognito:groups": ["team", "partners", "team"]}) == ("partners", "team")
    assert cc.groups_of({"cognito:groups": "team"}) == ("team",)
    assert cc.groups_of({"cognito:groups": ["team", "bad group!", 7, ""]}) == ("team",)
    assert cc.groups_of({"cognito:groups": {"team": 1}}) == ()


def test_identity_from_id_token_claims() -> None:
    identity = cc.identity_from_claims(
        {
            "sub": SUB,
            "cognito:username": SUB,
            "email": "ann@example.com",
            "email_verified": True,
            "name": "Ann Example",
            "cognito:groups": ["team"],
        }
    )
    assert identity == cc.CognitoIdentity(
        sub=SUB,
        localpart="ann",
        display_name="Ann Example",
        email="ann@example.com",
        groups=("team",),
    )


def test_lambda_attributes_map_like_the_id_token() -> None:
    attributes = {
        "sub": SUB,
        "email": "ann@example.com",
        "email_verified": "true",
        "name": "Ann Example",
    }
    claims = cc.claims_from_user_attributes(attributes, SUB, ["team"])
    token_claims = {
        **attributes,
        "email_verified": True,
        "cognito:username": SUB,
        "cognito:groups": ["team"],
    }
    assert cc.identity_from_claims(claims) == cc.identity_from_claims(token_claims)


def test_collisions_use_the_failures_counter() -> None:
    assert [cc.candidate_localpart("ann", SUB, n) for n in range(3)] == ["ann", "ann1", "ann2"]
    # No usable name: the sub names the account.
    assert cc.candidate_localpart(None, SUB, 0) == "cognito-62b4ade9"
    # Reserved names are skipped without spending a failure.
    reserved = ["phenom", "phenom1"]
    assert [cc.candidate_localpart("phenom", SUB, n, reserved) for n in range(2)] == [
        "phenom2",
        "phenom3",
    ]
    long = cc.candidate_localpart("a" * cc.MAX_LOCALPART, SUB, 12)
    assert len(long) == cc.MAX_LOCALPART and long.endswith("12")
    with pytest.raises(ValueError):
        cc.candidate_localpart("ann", SUB, -1)


def test_agent_namespace_is_never_handed_to_people() -> None:
    # A self-chosen preferred_username such as "agent-helper" would land a person in the
    # MCP agents' namespace: unmanaged by group sync (never removed from a room) and an
    # account the MCP adopts as its agent (with that agent's rooms).
    prefixes = ["agent-"]
    assert cc.candidate_localpart("agent-helper", SUB, 0, (), prefixes) == "cognito-62b4ade9"
    assert cc.candidate_localpart("agent-helper", SUB, 1, (), prefixes) == "cognito-62b4ade91"
    assert cc.candidate_localpart("agentur", SUB, 0, (), prefixes) == "agentur"
    assert CognitoMappingConfig().reserved_prefixes == ["agent-"]


def test_external_id_matches_synapse_prefix() -> None:
    assert cc.external_id("cognito", SUB) == {"auth_provider": "oidc-cognito", "external_id": SUB}
