"""Session fixtures of the cognito area: a Cognito emulator and SSO into the shared Synapse.

``cognito`` (session) runs the offline emulator ``ministack`` (through
``synapse_phenom.ops.cognito_emulator``, shared with ``phenom-chat dev --sso``) on a free
port with one user pool (email usernames, like production), the app client Synapse uses, and the
groups ``team``, ``partners``, ``chat-users``. Reusable by other areas:

- ``cognito.issuer`` / ``.jwks_url`` / ``.token_url`` / ``.openid_configuration_url``
- ``cognito.create_user(...)`` / ``.set_groups(...)``
- ``cognito.create_machine_client(resource_server, scopes)`` + ``.client_credentials_token(...)``
  for client-credentials (agent) access tokens
- ``cognito.create_secret(name, value)`` (Secrets Manager of the same emulator)
- ``lambda_environment(...)``: the environment a Lambda of ours runs with, on the emulator

``cognito_synapse_config`` gives the shared Synapse two OIDC providers on that pool:
``oidc-cognito`` (anyone) and ``oidc-cognito-gated`` (members of ``chat-users``
only). ``sso_login(...)`` drives the browser-style SSO flow over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest
from harness import MatrixClient, SynapseConfigPart, SynapseStack, free_port, unique

from synapse_phenom.ops import sso_flow
from synapse_phenom.ops.cognito_emulator import (
    APP_REDIRECT,
    REGION,
    CognitoEmulator,
    CognitoUser,
)
from synapse_phenom.ops.sso_flow import SsoRefused

__all__ = ["APP_REDIRECT", "REGION", "CognitoEmulator", "CognitoUser", "SsoRefused", "sso_login"]

GATE_GROUP = "chat-users"


@attrs.frozen
class SsoLogin:
    client: MatrixClient
    login_response: dict[str, Any]
    app_redirect: str  # where Synapse sent the "browser" back (the app's URL + loginToken)


def sso_login(
    synapse: SynapseStack,
    username: str,
    password: str,
    idp_id: str = "oidc-cognito",
    redirect_url: str = APP_REDIRECT,
    token_base_url: str | None = None,
) -> SsoLogin:
    """The mobile app's SSO flow, step by step (docs/mobile-integration.md).

    Raises ``SsoRefused`` when Synapse's callback hands out no login token (e.g.
    attribute_requirements not met). ``token_base_url`` sends the final
    ``m.login.token`` to another Synapse process.
    """
    # The test Synapse's public_baseurl is http://localhost:<port>; it listens on 127.0.0.1.
    port = urlsplit(synapse.base_url).port
    result = sso_flow.sso_login(
        synapse.base_url,
        username,
        password,
        idp_id=idp_id,
        redirect_url=redirect_url,
        public_url=f"http://localhost:{port}",
        token_base_url=token_base_url,
    )
    body = result.login
    client = MatrixClient(token_base_url or synapse.base_url, body["user_id"], body["access_token"])
    return SsoLogin(client=client, login_response=body, app_redirect=result.app_redirect)


@pytest.fixture(scope="session")
def cognito(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CognitoEmulator]:
    """The Cognito emulator of this test session (one pool, Synapse's app client, groups)."""
    emulator = CognitoEmulator.start(tmp_path_factory.mktemp("ministack"), port=free_port())
    try:
        emulator.create_pool()
    except Exception:
        emulator.stop()
        raise
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def cognito_synapse_config(
    cognito: CognitoEmulator, tmp_path_factory: pytest.TempPathFactory
) -> SynapseConfigPart:
    """Two providers on the emulator's pool and the app's whitelisted redirect scheme."""
    secret_path = tmp_path_factory.mktemp("cognito") / "client_secret"
    secret_path.write_text(cognito.client_secret)
    secret_path.chmod(0o600)
    return SynapseConfigPart(
        extra_values={
            "oidc_providers": [
                cognito.oidc_provider_block(secret_path, "cognito"),
                cognito.oidc_provider_block(secret_path, "cognito-gated", GATE_GROUP),
            ],
            "sso_client_whitelist": ["phenom://"],
        }
    )


@pytest.fixture(scope="session")
def cognito_sso(synapse: SynapseStack, cognito: CognitoEmulator) -> CognitoEmulator:
    """The emulator with this Synapse's OIDC callback allowed on the app client."""
    port = urlsplit(synapse.base_url).port
    cognito.allow_callback(f"http://localhost:{port}/_synapse/client/oidc/callback")
    return cognito


def lambda_environment(
    monkeypatch: pytest.MonkeyPatch,
    synapse: SynapseStack,
    cognito: CognitoEmulator,
    **extra: str,
) -> None:
    """Set a Lambda's environment: AWS APIs on the emulator, this Synapse, the admin token
    in the emulator's Secrets Manager (not in the environment), plus ``extra``."""
    secret_arn = cognito.create_secret(
        unique("phenom/admin-token-"), json.dumps({"access_token": synapse.admin_token})
    )
    for name, value in {
        "AWS_ENDPOINT_URL": cognito.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": REGION,
        "PHENOM_HOMESERVER_URL": synapse.base_url,
        "PHENOM_SERVER_NAME": synapse.server_name,
        "PHENOM_ADMIN_TOKEN_SECRET_ID": secret_arn,
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PHENOM_ADMIN_TOKEN", raising=False)
