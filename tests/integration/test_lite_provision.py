"""Provisioning into Implementation B: `provision-user --backend hasura`, the user-provisioner
Lambda with PHENOM_BACKENDS=hasura, and the link-preview Lambda writing B's cards cache."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fixtures_cognito import REGION, CognitoEmulator
from harness import free_port, unique
from previews_site import PhenomSite

from synapse_phenom.lambdas import chat_db, user_provisioner
from synapse_phenom.lambdas import link_preview as preview_lambda
from synapse_phenom.lite import provision
from synapse_phenom.rooms.config import RoomsConfig

CLI = str(Path(sys.executable).parent / "phenom-chat")
CONFIG = RoomsConfig()


def rooms_of(conn: psycopg.Connection[Any], user_id: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT r.key, m.membership FROM chat.memberships m JOIN chat.rooms r ON r.id = m.room_id"
        " WHERE m.user_id = %s",
        (user_id,),
    ).fetchall()
    return dict(rows)


def provision_cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "provision-user", "--backend", "hasura", "--dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_provisions_and_regroups(lite_dsn: str, lite_conn: psycopg.Connection[Any]) -> None:
    sub, name = unique("sub-"), unique("ann")
    first = provision_cli(
        lite_dsn, "--username", name, "--sub", sub, "--groups", "team", "--display-name", "Ann"
    )
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout and "joined: internal, partners, community" in first.stdout
    assert rooms_of(lite_conn, sub) == {"internal": "join", "partners": "join", "community": "join"}
    # Later runs find the user by username; groups change, the profile stays.
    second = provision_cli(lite_dsn, "--username", name, "--groups", "partners")
    assert second.returncode == 0, second.stderr
    assert "updated" in second.stdout and "removed from: internal" in second.stdout
    assert rooms_of(lite_conn, sub)["internal"] == "leave"
    row = lite_conn.execute(
        "SELECT username, display_name, groups, groups_source FROM chat.users WHERE id = %s", (sub,)
    ).fetchone()
    assert row == (name, "Ann", ["partners"], "cli")
    reason = lite_conn.execute(
        "SELECT m.reason FROM chat.memberships m JOIN chat.rooms r ON r.id = m.room_id"
        " WHERE m.user_id = %s AND r.key = 'internal'",
        (sub,),
    ).fetchone()
    assert reason == ("You are no longer in the group 'team'.",)  # A's removal text


def test_cli_refuses_bad_input_without_writing(
    lite_dsn: str, lite_conn: psycopg.Connection[Any]
) -> None:
    name = unique("bob")
    unknown = provision_cli(lite_dsn, "--username", name)
    assert unknown.returncode == 2 and "pass --sub" in unknown.stderr
    sub = unique("sub-")
    bad = provision_cli(lite_dsn, "--username", name, "--sub", sub, "--groups", "team,bad group!")
    assert bad.returncode == 2 and "invalid group name" in bad.stderr
    assert lite_conn.execute(
        "SELECT count(*) FROM chat.users WHERE id = %s", (sub,)
    ).fetchone() == (0,)


def test_usernames_follow_a_rules(lite_conn: psycopg.Connection[Any]) -> None:
    """Same localpart rules as A: collisions take the next free name, reserved names and the
    agents' prefix are never given to a person."""
    base = unique("zed")
    first = provision.provision_user(lite_conn, CONFIG, provision.LiteUser(unique("s-"), base))
    second = provision.provision_user(lite_conn, CONFIG, provision.LiteUser(unique("s-"), base))
    assert (first.username, second.username) == (base, f"{base}1")
    admin = provision.provision_user(lite_conn, CONFIG, provision.LiteUser(unique("s-"), "admin"))
    assert admin.username != "admin"
    sub = "0a1b2c3d-0000-4000-8000-000000000000"
    squatter = provision.provision_user(lite_conn, CONFIG, provision.LiteUser(sub, "agent-smith"))
    assert squatter.username.startswith("cognito-0a1b2c3d")


def test_agents_are_rows_in_their_profile_rooms(lite_conn: psycopg.Connection[Any]) -> None:
    client_id = unique("client-")
    result = provision.provision_agent(
        lite_conn,
        CONFIG,
        client_id,
        "agent-helper-" + unique(""),
        ["internal", "community"],
        "Helper",
    )
    assert result.created and set(result.joined) == {"internal", "community"}
    assert rooms_of(lite_conn, client_id) == {"internal": "join", "community": "join"}
    again = provision.provision_agent(lite_conn, CONFIG, client_id, result.username, ["community"])
    assert again.removed == ("internal",) and not again.created
    assert lite_conn.execute(
        "SELECT is_agent FROM chat.users WHERE id = %s", (client_id,)
    ).fetchone() == (True,)
    with pytest.raises(ValueError, match="already belongs to an agent"):
        provision.provision_user(lite_conn, CONFIG, provision.LiteUser(client_id, "someone"))


def _event(cognito: CognitoEmulator, username: str, attributes: dict[str, str]) -> dict[str, Any]:
    return {
        "version": "1",
        "triggerSource": "PostAuthentication_Authentication",
        "region": REGION,
        "userPoolId": cognito.pool_id,
        "userName": username,
        "callerContext": {"clientId": cognito.client_id},
        "request": {"userAttributes": attributes, "newDeviceUsed": False},
        "response": {},
    }


@pytest.fixture
def lambda_b_env(
    monkeypatch: pytest.MonkeyPatch, cognito: CognitoEmulator, lite_dsn: str
) -> Iterator[CognitoEmulator]:
    for name, value in {
        "AWS_ENDPOINT_URL": cognito.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": REGION,
        "PHENOM_BACKENDS": "hasura",
        "CHAT_DATABASE_URL": lite_dsn,
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "PHENOM_HOMESERVER_URL",
        "PHENOM_SERVER_NAME",
        "PHENOM_ADMIN_TOKEN",
        "PHENOM_ADMIN_TOKEN_SECRET_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    user_provisioner.reset_caches()
    yield cognito
    user_provisioner.reset_caches()


def test_lambda_provisions_into_b_only(
    lambda_b_env: CognitoEmulator, lite_conn: psycopg.Connection[Any]
) -> None:
    user = lambda_b_env.create_user(groups=["partners"])
    attributes = lambda_b_env.user_attributes(user)
    event = _event(lambda_b_env, user.username, attributes)
    assert user_provisioner.handler(event, None) is event
    sub = attributes["sub"]
    assert rooms_of(lite_conn, sub) == {"partners": "join", "community": "join"}
    row = lite_conn.execute(
        "SELECT groups, groups_source, is_agent FROM chat.users WHERE id = %s", (sub,)
    ).fetchone()
    assert row == (["partners"], "lambda", False)
    # Groups changed in Cognito: the next sign-in moves the user (warm container, same connection).
    lambda_b_env.set_groups(user, ["team"])
    assert user_provisioner.handler(event, None) is event
    assert rooms_of(lite_conn, sub)["internal"] == "join"


def test_lambda_survives_an_unreachable_b(
    lambda_b_env: CognitoEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    user = lambda_b_env.create_user(groups=["team"])
    event = _event(lambda_b_env, user.username, lambda_b_env.user_attributes(user))
    monkeypatch.setenv("CHAT_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    with caplog.at_level(logging.WARNING, logger="synapse_phenom.user_provisioner"):
        assert user_provisioner.handler(event, None) is event
    assert [r for r in caplog.records if "chat database unreachable" in r.message]
    monkeypatch.setenv("PHENOM_BACKENDS", "synapse,matrix-ish")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="synapse_phenom.user_provisioner"):
        assert user_provisioner.handler(event, None) is event
    assert [r for r in caplog.records if "PHENOM_BACKENDS" in r.message]


def test_link_preview_lambda_writes_and_reads_b_cache(
    phenom_site: PhenomSite,
    monkeypatch: pytest.MonkeyPatch,
    lite_dsn: str,
    lite_conn: psycopg.Connection[Any],
) -> None:
    monkeypatch.setenv(
        "PHENOM_PREVIEW_CONFIG",
        json.dumps({"origins": [{"url": phenom_site.origin, "trusted": True}]}),
    )
    monkeypatch.setenv("CHAT_DATABASE_URL", lite_dsn)
    chat_db.reset()
    url = f"{phenom_site.origin}/p/full?t={unique()}"
    first = preview_lambda.handler({"url": url}, None)
    assert first["card"]["title"] == "Northern Lights over Tromsø"
    row = lite_conn.execute(
        "SELECT card->>'title', preview->>'matched_url', expires_at > now()"
        " FROM chat.link_previews WHERE url = %s",
        (url,),
    ).fetchone()
    assert row == ("Northern Lights over Tromsø", url, True)
    hits = len(phenom_site.hits)
    second = preview_lambda.handler({"url": url}, None)
    assert (
        second["card"] == first["card"] and len(phenom_site.hits) == hits
    )  # served from B's cache
    refused = preview_lambda.handler({"url": "https://example.com/"}, None)
    assert refused["reason"] == "origin"
    assert lite_conn.execute(
        "SELECT count(*) FROM chat.link_previews WHERE url = 'https://example.com/'"
    ).fetchone() == (0,)
    chat_db.reset()
