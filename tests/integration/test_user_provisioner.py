"""The PostAuthentication Lambda against the Cognito emulator and the real Synapse."""

from __future__ import annotations

import copy
import logging
import socket
import time
from typing import Any

import pytest
from fixtures_cognito import REGION, CognitoEmulator, CognitoUser, lambda_environment, sso_login
from harness import SynapseStack, free_port, unique

from synapse_phenom.lambdas import user_provisioner

pytestmark = pytest.mark.synapse


class FakeContext:
    """What Lambda passes as ``context``: the time left before the 5 s trigger limit."""

    def __init__(self, limit_ms: int = 5000) -> None:
        self._deadline = time.monotonic() + limit_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def post_auth_event(cognito: CognitoEmulator, user: CognitoUser) -> dict[str, Any]:
    return {
        "version": "1",
        "triggerSource": "PostAuthentication_Authentication",
        "region": REGION,
        "userPoolId": cognito.pool_id,
        "userName": user.username,
        "callerContext": {
            "awsSdkVersion": "aws-sdk-unknown-unknown",
            "clientId": cognito.client_id,
        },
        "request": {"userAttributes": cognito.user_attributes(user), "newDeviceUsed": False},
        "response": {},
    }


@pytest.fixture
def lambda_env(
    monkeypatch: pytest.MonkeyPatch, synapse: SynapseStack, cognito_sso: CognitoEmulator
) -> CognitoEmulator:
    """Lambda environment: AWS APIs on the emulator, the admin token in Secrets Manager."""
    lambda_environment(monkeypatch, synapse, cognito_sso)
    user_provisioner.reset_caches()
    return cognito_sso


def test_lambda_provisions_then_sso_lands_on_same_account(
    synapse: SynapseStack, lambda_env: CognitoEmulator
) -> None:
    local = unique("dee")
    user = lambda_env.create_user(groups=["team"], email=f"{local}@example.com", name="Dee Lambda")
    event = post_auth_event(lambda_env, user)
    original = copy.deepcopy(event)

    started = time.monotonic()
    assert user_provisioner.handler(event, FakeContext()) is event
    assert time.monotonic() - started < 5
    assert event == original  # returned unchanged

    user_id = synapse.user_id(local)
    with synapse.admin() as admin:
        assert admin.user_by_external_id("oidc-cognito", user.sub) == user_id
        profile = admin.get_user(user_id)
        assert profile is not None and profile["displayname"] == "Dee Lambda"
        assert admin.get_groups(user_id) == ["team"]
    assert synapse.joined_rooms_of(user_id) == set(synapse.rooms.values())

    # Cognito retries: the same event again changes nothing.
    user_provisioner.handler(copy.deepcopy(original), FakeContext())
    with synapse.admin() as admin:
        assert admin.user_by_external_id("oidc-cognito", user.sub) == user_id

    login = sso_login(synapse, user.email, user.password)
    assert login.client.user_id == user_id

    # Group change in Cognito, next provisioner run: rooms follow.
    lambda_env.set_groups(user, [])
    user_provisioner.handler(copy.deepcopy(original), FakeContext())
    assert synapse.joined_rooms_of(user_id) == {synapse.rooms["community"]}


def test_lambda_name_collision_takes_next_free_id(
    synapse: SynapseStack, lambda_env: CognitoEmulator
) -> None:
    local = unique("eve")
    synapse.register(local)  # a different, non-Cognito account owns @<local>
    user = lambda_env.create_user(email=f"{local}@example.com")
    user_provisioner.handler(post_auth_event(lambda_env, user), FakeContext())
    with synapse.admin() as admin:
        assert admin.user_by_external_id("oidc-cognito", user.sub) == synapse.user_id(f"{local}1")
    assert sso_login(synapse, user.email, user.password).client.user_id == synapse.user_id(
        f"{local}1"
    )


def test_lambda_never_blocks_sign_in_when_chat_is_down(
    monkeypatch: pytest.MonkeyPatch, lambda_env: CognitoEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    user = lambda_env.create_user(groups=["team"])
    event = post_auth_event(lambda_env, user)

    # Nothing listening: connection refused.
    monkeypatch.setenv("PHENOM_HOMESERVER_URL", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="synapse_phenom.user_provisioner"):
        assert user_provisioner.handler(event, FakeContext()) is event
    assert time.monotonic() - started < 2
    assert [r.message for r in caplog.records if "chat unreachable" in r.message]

    # Accepts connections, never answers: the time budget still holds.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        monkeypatch.setenv("PHENOM_HOMESERVER_URL", f"http://127.0.0.1:{hung.getsockname()[1]}")
        monkeypatch.setenv("PHENOM_PROVISION_BUDGET_SECONDS", "1.5")
        started = time.monotonic()
        assert user_provisioner.handler(event, FakeContext()) is event
        assert time.monotonic() - started < 3
