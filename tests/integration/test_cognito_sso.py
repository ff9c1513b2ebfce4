"""Cognito SSO into the real Synapse, through the emulator's hosted UI, like the app does."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx2
import pytest
from fixtures_cognito import CognitoEmulator, SsoRefused, sso_login
from harness import (
    SynapseConfigPart,
    SynapseStack,
    create_postgres_database,
    drop_postgres_database,
    require_postgres_dsn,
    unique,
)

pytestmark = pytest.mark.synapse


def _profile(synapse: SynapseStack, user_id: str) -> dict[str, object]:
    with synapse.admin() as admin:
        user = admin.get_user(user_id)
    assert user is not None
    return user


def test_first_sso_login_maps_identity_and_rooms_once(
    synapse: SynapseStack, cognito_sso: CognitoEmulator
) -> None:
    local = unique("ann")
    user = cognito_sso.create_user(
        groups=["team"], email=f"{local}@example.com", name="Ann Example"
    )
    reconciled = synapse.metric("phenom_sso_login_syncs_total", outcome="reconciled")
    deduplicated = synapse.metric("phenom_sso_login_syncs_total", outcome="deduplicated")

    login = sso_login(synapse, user.email, user.password)

    # Email-username pool: cognito:username is the sub, so the email's local part names the account.
    assert login.client.user_id == synapse.user_id(local)
    assert login.app_redirect.startswith("phenom://auth?loginToken=")
    profile = _profile(synapse, login.client.user_id)
    assert profile["displayname"] == "Ann Example"
    threepids = cast(list[dict[str, Any]], profile["threepids"])
    assert [t["address"] for t in threepids] == [user.email]
    assert profile["external_ids"] == [{"auth_provider": "oidc-cognito", "external_id": user.sub}]
    assert login.client.joined_rooms() == set(synapse.rooms.values())
    with synapse.admin() as admin:
        assert admin.get_groups(login.client.user_id) == ["team"]
    # One SSO login fires on_user_login twice; groups were synced once and the
    # m.login.token half was skipped.
    assert synapse.metric("phenom_sso_login_syncs_total", outcome="reconciled") == reconciled + 1
    assert (
        synapse.metric("phenom_sso_login_syncs_total", outcome="deduplicated") == deduplicated + 1
    )


def test_removed_from_team_loses_internal_at_next_login(
    synapse: SynapseStack, cognito_sso: CognitoEmulator
) -> None:
    user = cognito_sso.create_user(groups=["team"])
    first = sso_login(synapse, user.email, user.password)
    assert synapse.rooms["internal"] in first.client.joined_rooms()

    cognito_sso.set_groups(user, ["partners"])
    second = sso_login(synapse, user.email, user.password)

    assert second.client.user_id == first.client.user_id
    assert second.client.joined_rooms() == {synapse.rooms["partners"], synapse.rooms["community"]}
    with synapse.admin() as admin:
        assert admin.get_groups(second.client.user_id) == ["partners"]
    # Removed by the system user, with a reason naming the group.
    state = httpx2.get(
        f"{synapse.base_url}/_synapse/admin/v1/rooms/{synapse.rooms['internal']}/state",
        headers={"Authorization": f"Bearer {synapse.admin_token}"},
        timeout=10,
    ).json()["state"]
    member = next(
        e for e in state if e["type"] == "m.room.member" and e["state_key"] == second.client.user_id
    )
    assert member["content"]["membership"] == "leave"
    assert member["sender"] == synapse.user_id("phenom")
    assert "'team'" in member["content"]["reason"]

    cognito_sso.set_groups(user, [])  # a missing cognito:groups claim means no groups
    third = sso_login(synapse, user.email, user.password)
    assert third.client.joined_rooms() == {synapse.rooms["community"]}


def test_required_group_gates_sign_in(synapse: SynapseStack, cognito_sso: CognitoEmulator) -> None:
    outsider = cognito_sso.create_user(groups=["partners"])
    with pytest.raises(SsoRefused) as refused:
        sso_login(synapse, outsider.email, outsider.password, idp_id="oidc-cognito-gated")
    assert refused.value.status == 400
    assert "You are not allowed to log in here" in refused.value.text
    with synapse.admin() as admin:
        assert admin.user_by_external_id("oidc-cognito-gated", outsider.sub) is None

    member = cognito_sso.create_user(groups=["partners", "chat-users"])
    login = sso_login(synapse, member.email, member.password, idp_id="oidc-cognito-gated")
    assert synapse.rooms["partners"] in login.client.joined_rooms()


def test_username_rules_collisions_and_unverified_email(
    synapse: SynapseStack, cognito_sso: CognitoEmulator
) -> None:
    taken = unique("bo")
    synapse.register(taken)  # someone already has @<taken>
    user = cognito_sso.create_user(
        email_verified=False, preferred_username=taken.upper(), given_name="Bo", family_name="Diaz"
    )
    login = sso_login(synapse, user.email, user.password)
    assert login.client.user_id == synapse.user_id(f"{taken}1")
    profile = _profile(synapse, login.client.user_id)
    assert profile["displayname"] == "Bo Diaz"
    assert profile["threepids"] == []  # unverified email is not attached
    assert login.client.joined_rooms() == {synapse.rooms["community"]}


def test_invalid_redirect_is_not_whitelisted(
    synapse: SynapseStack, cognito_sso: CognitoEmulator
) -> None:
    """Only the app's scheme skips Synapse's confirmation page: others get no token in a
    redirect."""
    user = cognito_sso.create_user()
    with pytest.raises(SsoRefused) as refused:
        sso_login(synapse, user.email, user.password, redirect_url="https://evil.example/")
    # Synapse's "Continue to your account" page asks the human instead of redirecting.
    assert refused.value.status == 200
    assert "evil.example" in refused.value.text


def test_login_halves_in_two_processes_sync_once(
    cognito: CognitoEmulator,
    synapse_config: SynapseConfigPart,
    tmp_path: Path,
) -> None:
    """Callback (mapping provider + m.login.sso) in one process, m.login.token in another:
    the hand-over and the de-duplication go through the database only.

    Two processes on their own fresh database (not the shared Synapse's: two main
    processes keep separate in-memory id generators, so only one of them may issue
    access tokens — here the second, at the token login).
    """
    dsn = require_postgres_dsn("two Synapse processes can share PostgreSQL only")
    database = create_postgres_database(dsn)
    stacks: list[SynapseStack] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            if stacks:  # one server: the same signing key
                shutil.copy(stacks[0].data_dir / "signing.key", tmp_path / name / "signing.key")
            stacks.append(
                SynapseStack.start(
                    tmp_path / name,
                    database,
                    module_overrides=synapse_config.module_overrides,
                    extra_values=synapse_config.extra_values,
                    # The second shares the first's database (and its dev admin): only the
                    # first checks the rooms' creation.
                    wait_created=not stacks,
                )
            )
        first, second = stacks
        cognito.allow_callback(
            f"http://localhost:{urlsplit(first.base_url).port}/_synapse/client/oidc/callback"
        )
        user = cognito.create_user(groups=["team"])

        def counts() -> dict[tuple[int, str], float]:
            return {
                (i, outcome): stack.metric("phenom_sso_login_syncs_total", outcome=outcome)
                for i, stack in enumerate(stacks)
                for outcome in ("reconciled", "deduplicated")
            }

        before = counts()
        login = sso_login(first, user.email, user.password, token_base_url=second.base_url)
        after = counts()
        assert login.client.joined_rooms() == set(first.rooms.values())
        assert {k: after[k] - before[k] for k in after} == {
            (0, "reconciled"): 1,
            (0, "deduplicated"): 0,
            (1, "reconciled"): 0,
            (1, "deduplicated"): 1,
        }
    finally:
        for stack in stacks:
            stack.stop()
        drop_postgres_database(dsn, database.name)
