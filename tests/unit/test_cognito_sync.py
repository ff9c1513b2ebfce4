"""Pure logic of the Cognito → chat group sync (event parsing, reconcile planning)."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_phenom.cognito import sync as cognito_sync
from synapse_phenom.cognito.sync import Change, CognitoMember, EventError, parse_event


def event(name: str = "AdminRemoveUserFromGroup", **params: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.cognito-idp",
        "region": "eu-west-1",
        "detail": {
            "eventSource": "cognito-idp.amazonaws.com",
            "eventName": name,
            "awsRegion": "eu-west-1",
            "requestParameters": {"userPoolId": "eu-west-1_AbC", **params},
        },
    }


def test_user_event() -> None:
    got = parse_event(event(username="ann@example.com", groupName="team"))
    assert got.scope == "user"
    assert (got.user_pool_id, got.username, got.group, got.region) == (
        "eu-west-1_AbC",
        "ann@example.com",
        "team",
        "eu-west-1",
    )


def test_redacted_username_needs_a_reconcile_unless_sub_is_given() -> None:
    hidden = event(username=cognito_sync.REDACTED, groupName="team")
    assert parse_event(hidden).scope == "pool"
    hidden["detail"]["additionalEventData"] = {"sub": "1234-abcd"}
    got = parse_event(hidden)
    assert (got.scope, got.username, got.sub) == ("user", None, "1234-abcd")


def test_group_deleted_needs_a_reconcile() -> None:
    assert parse_event(event("DeleteGroup", groupName="team")).scope == "pool"


@pytest.mark.parametrize(
    "change",
    [
        {"eventName": "AdminGetUser"},  # not a group change
        {"errorCode": "UserNotFoundException"},  # the call failed
    ],
)
def test_ignored(change: dict[str, Any]) -> None:
    raw = event(username="ann", groupName="team")
    raw["detail"].update(change)
    assert parse_event(raw).scope == "ignore"


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
        {**event(), "detail-type": "Object Created"},
        {**event(), "detail": {"eventSource": "iam.amazonaws.com", "eventName": "AddUserToGroup"}},
    ],
)
def test_not_a_cognito_cloudtrail_event(raw: Any) -> None:
    with pytest.raises(EventError):
        parse_event(raw)


def test_missing_pool_is_an_error() -> None:
    raw = event(username="ann")
    del raw["detail"]["requestParameters"]["userPoolId"]
    with pytest.raises(EventError, match="userPoolId"):
        parse_event(raw)


def test_desired_groups_skips_disabled_users() -> None:
    desired = cognito_sync.desired_groups(
        {
            "team": [CognitoMember("s1", "ann", True), CognitoMember("s2", "bob", False)],
            "partners": [CognitoMember("s1", "ann", True), CognitoMember("s3", "cy", True)],
        }
    )
    assert desired == {"s1": ["partners", "team"], "s3": ["partners"]}


def test_plan_reconcile() -> None:
    desired = {"s1": ["team"], "s2": ["partners"], "s9": ["team"]}  # s9: no chat account
    accounts = {"s1": "@ann:hs", "s2": "@bob:hs"}
    stored = {"@ann:hs": ["team"], "@cy:hs": ["partners"], "@dev:hs": ["team"], "@eve:hs": ["x"]}
    linked = {"@cy:hs": "s3", "@dev:hs": None, "@eve:hs": "s1"}
    assert cognito_sync.plan_reconcile(desired, accounts, stored, linked) == [
        Change("@bob:hs", ["partners"], []),  # gained a group
        Change("@cy:hs", [], ["partners"]),  # removed / disabled / deleted in Cognito
    ]
    # @ann unchanged; @dev is not a Cognito account; @eve's sub is a desired one (left alone).
