"""The PostAuthentication Lambda's pure parts and AWS calls (moto); Synapse is faked here."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import attrs
import boto3
import pytest
from moto import mock_aws

from synapse_phenom.cognito import claims as cognito_claims
from synapse_phenom.lambdas import user_provisioner as up
from synapse_phenom.ops.admin_client import ProvisionResult

SUB = "62b4ade9-34f2-4701-8778-e5c6d3839531"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    up.reset_caches()
    with mock_aws():
        yield
    up.reset_caches()


def test_admin_token_comes_from_secrets_manager_and_is_cached(aws: None) -> None:
    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = sm.create_secret(Name="phenom/admin", SecretString='{"access_token": "tok-1"}')["ARN"]
    settings = up.Settings(homeserver_url="http://hs", server_name="hs", token_secret_id=arn)
    assert up.admin_token(settings, "eu-west-1") == "tok-1"
    sm.put_secret_value(SecretId=arn, SecretString="tok-2")
    assert up.admin_token(settings, "eu-west-1") == "tok-1"  # warm invocation: cached
    up.reset_caches()
    assert up.admin_token(settings, "eu-west-1") == "tok-2"  # bare-token secrets work too


def test_dev_token_from_env_without_secret() -> None:
    settings = up.Settings.from_env(
        {
            "PHENOM_HOMESERVER_URL": "http://hs/",
            "PHENOM_SERVER_NAME": "hs",
            "PHENOM_ADMIN_TOKEN": "dev",
        }
    )
    assert settings.homeserver_url == "http://hs"
    assert up.admin_token(settings, "") == "dev"
    assert "dev" not in repr(settings)  # never logged
    with pytest.raises(ValueError, match=r"PHENOM_SERVER_NAME.*PHENOM_ADMIN_TOKEN_SECRET_ID"):
        up.Settings.from_env({"PHENOM_HOMESERVER_URL": "http://hs"})


@pytest.mark.parametrize("text", ["", "  ", "{}", '{"access_token": ""}'])
def test_empty_secret_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        up.token_from_secret(text)


def test_groups_are_listed_across_pages(aws: None) -> None:
    idp = boto3.client("cognito-idp", region_name="eu-west-1")
    pool = idp.create_user_pool(PoolName="p")["UserPool"]["Id"]
    idp.admin_create_user(UserPoolId=pool, Username="ann")
    names = [f"g{i:03d}" for i in range(75)]  # more than one page of 60
    for name in names:
        idp.create_group(UserPoolId=pool, GroupName=name)
        idp.admin_add_user_to_group(UserPoolId=pool, Username="ann", GroupName=name)
    assert sorted(up.cognito_groups(idp, pool, "ann")) == names


def test_malformed_event_gets_one_clear_log_line(caplog: pytest.LogCaptureFixture) -> None:
    event: dict[str, Any] = {"triggerSource": "PostAuthentication_Authentication", "request": {}}
    with caplog.at_level(logging.INFO, logger="synapse_phenom.user_provisioner"):
        assert up.handler(event, None) is event
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert "malformed PostAuthentication event" in record.message
    assert "userPoolId" in record.message


def test_other_triggers_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    event = {
        "triggerSource": "PreSignUp_SignUp",
        "userPoolId": "eu-west-1_X",
        "userName": "u",
        "request": {"userAttributes": {}},
    }
    with caplog.at_level(logging.INFO, logger="synapse_phenom.user_provisioner"):
        assert up.handler(event, None) is event
    assert [r.message for r in caplog.records] == [
        "user provisioner: ignoring trigger PreSignUp_SignUp"
    ]


class FakeAdmin:
    """Records what the Lambda asks of Synapse's admin API."""

    def __init__(self, linked: str | None = None, taken: set[str] | None = None) -> None:
        self.linked = linked
        self.taken = taken or set()
        self.provisioned: list[tuple[str, dict[str, Any]]] = []

    def user_by_external_id(self, auth_provider: str, external_id: str) -> str | None:
        assert (auth_provider, external_id) == ("oidc-cognito", SUB)
        return self.linked

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        return {"name": user_id} if user_id in self.taken else None

    def provision(self, user_id: str, groups: list[str], **kwargs: Any) -> ProvisionResult:
        self.provisioned.append((user_id, {"groups": groups, **kwargs}))
        return ProvisionResult(user_id=user_id, created=True, groups=groups, joined=[], removed=[])


IDENTITY = cognito_claims.CognitoIdentity(
    sub=SUB, localpart="phenom", display_name="P", email="p@example.com", groups=("team",)
)
SETTINGS = up.Settings(homeserver_url="http://hs", server_name="hs", dev_token="t")


def test_new_user_skips_reserved_and_taken_ids() -> None:
    admin = FakeAdmin(taken={"@phenom1:hs"})
    up.provision_identity(admin, IDENTITY, SETTINGS)  # type: ignore[arg-type]
    ((user_id, kwargs),) = admin.provisioned
    assert user_id == "@phenom2:hs"  # "phenom" is reserved, "phenom1" taken
    assert kwargs == {
        "groups": ["team"],
        "displayname": "P",
        "emails": ["p@example.com"],
        "external_ids": [{"auth_provider": "oidc-cognito", "external_id": SUB}],
        "source": "lambda",
    }


def test_new_user_never_gets_an_agent_id() -> None:
    admin = FakeAdmin()
    identity = attrs.evolve(IDENTITY, localpart="agent-helper")
    up.provision_identity(admin, identity, SETTINGS)  # type: ignore[arg-type]
    ((user_id, _),) = admin.provisioned
    assert user_id == "@cognito-62b4ade9:hs"


def test_linked_user_only_gets_groups() -> None:
    admin = FakeAdmin(linked="@someone:hs")
    up.provision_identity(admin, IDENTITY, SETTINGS)  # type: ignore[arg-type]
    assert admin.provisioned == [("@someone:hs", {"groups": ["team"], "source": "lambda"})]


def test_lambda_package_needs_no_synapse() -> None:
    """The Lambda zip ships pydantic, attrs, httpx2 (boto3 is in the runtime): no Synapse."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('synapse', 'twisted', 'jinja2', 're2'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import synapse_phenom.lambdas.user_provisioner\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
