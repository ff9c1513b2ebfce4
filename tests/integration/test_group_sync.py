"""Group changes in Cognito reach chat without a sign-in (issue 16, item 4).

The group-sync Lambda gets CloudTrail's records as EventBridge delivers them (the real
envelope, built below), reads the Cognito emulator, and writes to the real Synapse.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fixtures_cognito import REGION, CognitoEmulator, CognitoUser, lambda_environment, sso_login
from harness import MatrixClient, SynapseStack, unique

from synapse_phenom.cognito import sync as cognito_sync
from synapse_phenom.lambdas import group_sync, user_provisioner

pytestmark = pytest.mark.synapse

ACCOUNT = "123456789012"


def cloudtrail_event(
    name: str, pool_id: str, username: str, group: str | None = None
) -> dict[str, Any]:
    """An EventBridge "AWS API Call via CloudTrail" event for a Cognito admin call."""
    params: dict[str, Any] = {"userPoolId": pool_id, "username": username}
    if group is not None:
        params["groupName"] = group
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.cognito-idp",
        "account": ACCOUNT,
        "time": now,
        "region": REGION,
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "AssumedRole",
                "principalId": "AROAEXAMPLE:ops",
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/ops",
                "accountId": ACCOUNT,
            },
            "eventTime": now,
            "eventSource": "cognito-idp.amazonaws.com",
            "eventName": name,
            "awsRegion": REGION,
            "sourceIPAddress": "192.0.2.10",
            "userAgent": "aws-cli/2.15.0",
            "requestParameters": params,
            "responseElements": None,
            "requestID": str(uuid.uuid4()),
            "eventID": str(uuid.uuid4()),
            "readOnly": False,
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
        },
    }


@pytest.fixture
def sync_env(
    monkeypatch: pytest.MonkeyPatch, synapse: SynapseStack, cognito_sso: CognitoEmulator
) -> CognitoEmulator:
    """Lambda environment: AWS APIs on the emulator, the admin token in Secrets Manager."""
    lambda_environment(
        monkeypatch, synapse, cognito_sso, PHENOM_COGNITO_USER_POOL_ID=cognito_sso.pool_id
    )
    user_provisioner.reset_caches()
    group_sync._cognito_clients.clear()
    return cognito_sso


def notified_invites(client: MatrixClient) -> list[str]:
    """Room ids of invites in the user's /notifications (what a push gateway got)."""
    resp = httpx2.get(
        f"{client.base_url}/_matrix/client/v3/notifications",
        headers={"Authorization": f"Bearer {client.access_token}"},
        timeout=10,
    )
    resp.raise_for_status()
    return [
        n["room_id"]
        for n in resp.json()["notifications"]
        if n["event"]["type"] == "m.room.member"
        and n["event"]["content"].get("membership") == "invite"
    ]


def signed_in(
    synapse: SynapseStack, cognito: CognitoEmulator, groups: list[str]
) -> tuple[CognitoUser, MatrixClient]:
    user = cognito.create_user(groups=groups)
    return user, sso_login(synapse, user.email, user.password).client


def test_removal_and_regain_apply_without_sign_in(
    synapse: SynapseStack, sync_env: CognitoEmulator
) -> None:
    cognito = sync_env
    internal, community = synapse.rooms["internal"], synapse.rooms["community"]
    user, client = signed_in(synapse, cognito, ["team"])
    assert synapse.joined_rooms_of(client.user_id) == set(synapse.rooms.values())

    # An admin removes the user from `team`; CloudTrail's record reaches the Lambda.
    cognito.set_groups(user, [])
    started = time.monotonic()
    result = group_sync.handler(
        cloudtrail_event("AdminRemoveUserFromGroup", cognito.pool_id, user.username, "team"),
        None,
    )
    assert result == {"status": "synced", "user_id": client.user_id, "groups": []}
    assert synapse.joined_rooms_of(client.user_id) == {community}
    assert time.monotonic() - started < 60
    with synapse.admin() as admin:
        assert admin.get_groups(client.user_id) == []

    # Back into `team`, this time with the username redacted by CloudTrail: the Lambda
    # cannot tell who changed, so it reconciles the whole pool.
    cognito.set_groups(user, ["team"])
    hidden = cloudtrail_event("AdminAddUserToGroup", cognito.pool_id, cognito_sync.REDACTED, "team")
    assert group_sync.handler(hidden, None)["status"] == "reconciled"
    assert internal in synapse.joined_rooms_of(client.user_id)

    # The automatic re-join is not pushed as an invite ...
    assert internal not in notified_invites(client)
    # ... while a person's invite is (the check can fail).
    other = synapse.register(unique("inviter"))
    room = other.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "private_chat"})[
        "room_id"
    ]
    other.invite(room, client.user_id)
    deadline = time.monotonic() + 10
    while room not in notified_invites(client) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert room in notified_invites(client)
    assert internal not in notified_invites(client)


def test_redacted_username_with_sub_syncs_that_user_only(
    synapse: SynapseStack, sync_env: CognitoEmulator
) -> None:
    cognito = sync_env
    user, client = signed_in(synapse, cognito, ["partners"])
    cognito.set_groups(user, ["team"])
    event = cloudtrail_event("AdminAddUserToGroup", cognito.pool_id, cognito_sync.REDACTED, "team")
    event["detail"]["additionalEventData"] = {"sub": user.sub}
    result = group_sync.handler(event, None)
    assert result == {"status": "synced", "user_id": client.user_id, "groups": ["team"]}
    assert synapse.joined_rooms_of(client.user_id) == set(synapse.rooms.values())

    # Deleted from the pool: the sub still names the chat account, which loses its groups.
    cognito.idp.admin_delete_user(UserPoolId=cognito.pool_id, Username=user.username)
    gone = cloudtrail_event("AdminDeleteUser", cognito.pool_id, cognito_sync.REDACTED)
    gone["detail"]["additionalEventData"] = {"sub": user.sub}
    assert group_sync.handler(gone, None)["groups"] == []
    assert synapse.joined_rooms_of(client.user_id) == {synapse.rooms["community"]}


def test_event_for_a_user_without_chat_account_and_foreign_events(
    synapse: SynapseStack, sync_env: CognitoEmulator
) -> None:
    cognito = sync_env
    user = cognito.create_user(groups=["partners"])  # never signed in to chat
    result = group_sync.handler(
        cloudtrail_event("AdminAddUserToGroup", cognito.pool_id, user.username, "partners"), None
    )
    assert result == {"status": "synced", "user_id": None, "groups": ["partners"]}

    failed = cloudtrail_event("AdminAddUserToGroup", cognito.pool_id, user.username, "team")
    failed["detail"]["errorCode"] = "UserNotFoundException"
    assert group_sync.handler(failed, None)["status"] == "ignored"
    other_pool = cloudtrail_event("AdminAddUserToGroup", f"{REGION}_Other", user.username, "team")
    assert group_sync.handler(other_pool, None)["status"] == "ignored"
    assert (
        group_sync.handler({"detail-type": "Scheduled Event", "detail": {}}, None)["status"]
        == "ignored"
    )


def test_reconcile_command_fixes_every_drift(
    synapse: SynapseStack, sync_env: CognitoEmulator
) -> None:
    """`phenom-chat reconcile`: removed, disabled and deleted users lose their groups."""
    cognito = sync_env
    partners, community = synapse.rooms["partners"], synapse.rooms["community"]
    removed, removed_client = signed_in(synapse, cognito, ["team"])
    disabled, disabled_client = signed_in(synapse, cognito, ["partners"])
    deleted, deleted_client = signed_in(synapse, cognito, ["partners"])
    gained, gained_client = signed_in(synapse, cognito, [])
    # A chat account that is not a Cognito account (provisioned by hand): left alone.
    local = synapse.register(unique("local"))
    with synapse.admin() as admin:
        admin.set_groups(local.user_id, ["partners"], "cli")

    cognito.set_groups(removed, [])
    cognito.idp.admin_disable_user(UserPoolId=cognito.pool_id, Username=disabled.username)
    cognito.idp.admin_delete_user(UserPoolId=cognito.pool_id, Username=deleted.username)
    cognito.set_groups(gained, ["partners"])

    env = {
        **os.environ,
        "PHENOM_ADMIN_TOKEN": synapse.admin_token,
        "PHENOM_COGNITO_USER_POOL_ID": cognito.pool_id,
    }
    argv = [
        str(Path(sys.executable).with_name("phenom-chat")),
        "reconcile",
        "--homeserver",
        synapse.base_url,
    ]
    dry = subprocess.run([*argv, "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert f"would change {removed_client.user_id}: team → (none)" in dry.stdout
    assert partners in synapse.joined_rooms_of(disabled_client.user_id)  # dry run: nothing done

    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    for client, before in (
        (removed_client, "team"),
        (disabled_client, "partners"),
        (deleted_client, "partners"),
    ):
        assert f"changed {client.user_id}: {before} → (none)" in done.stdout
        assert synapse.joined_rooms_of(client.user_id) == {community}
    assert f"changed {gained_client.user_id}: (none) → partners" in done.stdout
    assert partners in synapse.joined_rooms_of(gained_client.user_id)
    assert local.user_id not in done.stdout
    assert partners in synapse.joined_rooms_of(local.user_id)

    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to change" in again.stdout
