"""Implementation B's pure parts: migration planning, Hasura CLI state, backend selection,
exemptions, Action input."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from synapse_phenom.lambdas import chat_db
from synapse_phenom.lite import migrate
from synapse_phenom.lite.actions import preview_entry
from synapse_phenom.lite.moderation import LiteModeration, Sender, message_content
from synapse_phenom.lite.project import Migration
from synapse_phenom.lite.send import SendMessageInput
from synapse_phenom.moderation.config import ModerationConfig, default_module_config


def mig(version: int, down: str | None = "DROP") -> Migration:
    return Migration(version, f"m{version}", Path(f"/x/{version}_m{version}"), "CREATE", down)


MIGS = [mig(1), mig(2), mig(3, down=None), mig(4)]


def state(*versions: int, dirty: tuple[int, ...] = ()) -> migrate.AppliedState:
    return migrate.AppliedState(frozenset(versions), frozenset(dirty))


def test_plan_up_pending_in_order_and_steps() -> None:
    assert [m.version for m in migrate.plan_up(MIGS, state(2), None)] == [1, 3, 4]
    assert [m.version for m in migrate.plan_up(MIGS, state(2), 1)] == [1]
    assert migrate.plan_up(MIGS, state(1, 2, 3, 4), None) == []


def test_plan_down_newest_first_checked_before_running() -> None:
    assert [m.version for m in migrate.plan_down(MIGS, state(1, 2), None)] == [2, 1]
    assert [m.version for m in migrate.plan_down(MIGS, state(1, 2, 4), 1)] == [4]
    with pytest.raises(migrate.MigrationError, match=r"down\.sql missing"):
        migrate.plan_down(MIGS, state(1, 2, 3, 4), 2)  # 4 is fine, 3 cannot: nothing runs
    with pytest.raises(migrate.MigrationError, match="no files here"):
        migrate.plan_down(MIGS, state(1, 9), 1)


def test_dirty_state_blocks_both_directions() -> None:
    for plan in (migrate.plan_up, migrate.plan_down):
        with pytest.raises(migrate.MigrationError, match="dirty for version"):
            plan(MIGS, state(1, dirty=(1,)), None)


def test_status_rows_cover_files_and_database() -> None:
    rows = migrate.status_rows(MIGS[:2], state(2, 7))
    assert [(r.version, r.source_present, r.database_present) for r in rows] == [
        (1, True, False),
        (2, True, True),
        (7, False, True),
    ]


def test_cli_state_keeps_other_keys() -> None:
    before = {"settings": {"migration_mode": "true"}, "isStateCopyCompleted": True}
    after = migrate.cli_state_with(before, "default", 5, True)
    assert after == {
        "settings": {"migration_mode": "true"},
        "isStateCopyCompleted": True,
        "migrations": {"default": {"5": False}},
    }
    assert before == {"settings": {"migration_mode": "true"}, "isStateCopyCompleted": True}
    assert migrate.cli_state_with(after, "default", 5, False)["migrations"] == {"default": {}}
    assert migrate.cli_state_with(None, "other", 1, True)["migrations"] == {"other": {"1": False}}


def test_backends_env() -> None:
    assert chat_db.backends({}) == ("synapse",)
    assert chat_db.backends({"PHENOM_BACKENDS": " hasura, synapse ,hasura"}) == (
        "hasura",
        "synapse",
    )
    with pytest.raises(ValueError, match="PHENOM_BACKENDS"):
        chat_db.backends({"PHENOM_BACKENDS": "synapse,mongo"})


def test_exemptions_map_roles_and_groups_like_a() -> None:
    mod = LiteModeration(ModerationConfig.model_validate(default_module_config()))
    community = mod.policy("community")
    person = Sender("u", False, frozenset({"team"}), "member", 0.0)
    agent_in_team = Sender("a", True, frozenset({"team"}), "member", 0.0)
    moderator = Sender("m", False, frozenset(), "moderator", 0.0)
    member = Sender("x", False, frozenset({"partners"}), "member", 0.0)
    assert mod.is_exempt(community, person)
    assert not mod.is_exempt(community, agent_in_team)  # agents never inherit group exemptions
    assert mod.is_exempt(community, moderator)  # role moderator = power level 50
    assert not mod.is_exempt(community, member)
    assert mod.policy("no-such-room").name == "default"


def test_message_content_is_what_a_checks() -> None:
    assert message_content("hi", None) == {"msgtype": "m.text", "body": "hi"}
    assert message_content("hi", "<b>hi</b>")["format"] == "org.matrix.custom.html"


def test_send_input_validation() -> None:
    ok = SendMessageInput.model_validate(
        {"room_id": "7b280753-0095-4329-b918-04bbb5126fd6", "body": "hello", "idempotency_key": "k"}
    )
    assert ok.body == "hello"
    for bad in (
        {"room_id": "internal", "body": "x"},
        {"room_id": "7b280753-0095-4329-b918-04bbb5126fd6", "body": " \n"},
        {"room_id": "7b280753-0095-4329-b918-04bbb5126fd6", "body": "x", "idempotency_key": ""},
        {"room_id": "7b280753-0095-4329-b918-04bbb5126fd6", "body": "x", "sender": "someone"},
    ):
        with pytest.raises(ValidationError):
            SendMessageInput.model_validate(bad)


def test_preview_entry_fields() -> None:
    card = {
        "title": "T",
        "description": "D",
        "image_url": "https://i/x.png",
        "site_name": "S",
        "kind": "article",
    }
    assert preview_entry("https://thephenom.app/p/1", card) == {
        "url": "https://thephenom.app/p/1",
        "title": "T",
        "description": "D",
        "image": "https://i/x.png",
        "site_name": "S",
    }


def test_chat_database_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws
    from psycopg.conninfo import conninfo_to_dict

    rds = (
        '{"username": "chat", "password": "p@ss word", "host": "db.internal", "port": 5433,'
        ' "dbname": "phenom", "engine": "postgres"}'
    )
    assert conninfo_to_dict(chat_db.dsn_from_secret(rds)) == {
        "host": "db.internal",
        "port": "5433",
        "dbname": "phenom",
        "user": "chat",
        "password": "p@ss word",
    }
    assert chat_db.dsn_from_secret(" postgresql://a@b/c ") == "postgresql://a@b/c"
    with pytest.raises(ValueError, match="lacks password"):
        chat_db.dsn_from_secret('{"username": "x", "host": "h"}')
    with pytest.raises(ValueError, match="CHAT_DATABASE_URL or CHAT_DATABASE_SECRET_ID"):
        chat_db.chat_dsn({})
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    chat_db.reset()
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = sm.create_secret(Name="phenom/chat-db", SecretString=rds)["ARN"]
        env = {"CHAT_DATABASE_SECRET_ID": arn, "AWS_REGION": "eu-west-1"}
        assert chat_db.configured(env) and "db.internal" in chat_db.chat_dsn(env)
        sm.put_secret_value(SecretId=arn, SecretString="postgresql://rotated@h/d")
        assert "db.internal" in chat_db.chat_dsn(env)  # cached for the warm container
        chat_db.reset()
        assert chat_db.chat_dsn(env) == "postgresql://rotated@h/d"
        assert (
            chat_db.chat_dsn({**env, "CHAT_DATABASE_URL": "postgresql://direct@h/d"})
            == "postgresql://direct@h/d"
        )
    chat_db.reset()
