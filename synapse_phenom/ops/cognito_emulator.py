"""The offline Cognito emulator (PyPI ``ministack``) for ``phenom-chat dev --sso`` and tests.

``CognitoEmulator.start`` runs ministack (Cognito user pools + Secrets Manager only) and
creates one user pool like production's (email usernames), the confidential app client
Synapse signs in with, and the groups. ``oidc_provider_block`` points Synapse at it the
way production points at Cognito (docs/cognito.md), except that discovery is off (the
emulator serves plain http). ``synapse_phenom.ops.sso_flow`` signs users in through it.

ministack is a dev/test dependency (extra ``test``); it is started as a separate process.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import httpx2

from synapse_phenom.cognito.config import CognitoOidcSettings, oidc_provider
from synapse_phenom.ops import devstack

REGION = "eu-west-1"
GROUPS = ("team", "partners", "chat-users")
APP_REDIRECT = "phenom://auth"  # the mobile app's redirect; whitelisted by dev --sso and tests
CALLBACK_PATH = "/_synapse/client/oidc/callback"


class EmulatorError(RuntimeError):
    pass


def ministack_path() -> str:
    """The ministack executable of this environment (next to this Python), else on PATH."""
    beside = Path(sys.executable).with_name("ministack")
    found = str(beside) if beside.exists() else shutil.which("ministack")
    if not found:
        raise EmulatorError(
            "the Cognito emulator `ministack` is not installed: "
            "pip install 'synapse-phenom[test]' (or: pip install ministack cryptography)"
        )
    return found


@attrs.frozen
class CognitoUser:
    username: str  # the Cognito username (the sub, in this email-username pool)
    sub: str
    email: str
    password: str


@attrs.define
class CognitoEmulator:
    """A running ministack with one user pool and the app client Synapse signs in with."""

    endpoint: str  # where this machine reaches it (Synapse's token/JWKS calls, boto3)
    process: devstack.ManagedProcess
    public_endpoint: str = ""  # where browsers reach it (hosted UI); default: endpoint
    pool_id: str = ""
    client_id: str = ""
    client_secret: str = ""
    _callback_urls: list[str] = attrs.field(factory=list)

    @classmethod
    def start(
        cls,
        state_dir: Path,
        port: int,
        bind_host: str = "127.0.0.1",
        public_host: str = "127.0.0.1",
        persist: bool = False,
    ) -> CognitoEmulator:
        """Start ministack on ``bind_host:port``; with ``persist`` its state survives restarts."""
        state_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "BIND_HOST": bind_host,
            "GATEWAY_PORT": str(port),
            "MINISTACK_HOST": public_host,
            "MINISTACK_REGION": REGION,
            "STATE_DIR": str(state_dir),
            "PERSIST_STATE": "1" if persist else "0",
            "SERVICES": "cognito-idp,secretsmanager",
            # Both would bind fixed ports: off.
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
            "LOG_LEVEL": "WARNING",
        }
        proc = devstack.spawn("ministack", [ministack_path()], state_dir / "ministack.log", env=env)
        emulator = cls(
            endpoint=f"http://127.0.0.1:{port}",
            process=proc,
            public_endpoint=f"http://{public_host}:{port}",
        )
        try:
            devstack.wait_http(f"{emulator.endpoint}/_ministack/health", [proc], timeout=60)
        except Exception:
            proc.stop()
            raise
        return emulator

    def stop(self) -> None:
        self.process.stop()

    def client(self, service: str) -> Any:
        import boto3  # the `lambda`/`test` extra; only needed once an emulator runs

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    @property
    def idp(self) -> Any:
        return self.client("cognito-idp")

    # -- well-known URLs ----------------------------------------------------------

    @property
    def issuer(self) -> str:
        """Real Cognito issuer format; the emulator's tokens carry exactly this ``iss``."""
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint}/{self.pool_id}/.well-known/jwks.json"

    @property
    def openid_configuration_url(self) -> str:
        return f"{self.endpoint}/{self.pool_id}/.well-known/openid-configuration"

    @property
    def authorize_url(self) -> str:
        return f"{self.public_endpoint or self.endpoint}/oauth2/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.endpoint}/oauth2/token"

    # -- setup --------------------------------------------------------------------

    def create_pool(self, name: str = "phenom", groups: Iterable[str] = GROUPS) -> None:
        idp = self.idp
        pool = idp.create_user_pool(
            PoolName=name, UsernameAttributes=["email"], AutoVerifiedAttributes=["email"]
        )["UserPool"]
        self.pool_id = pool["Id"]
        app = idp.create_user_pool_client(
            UserPoolId=self.pool_id, ClientName="synapse", **self._client_settings()
        )
        self.client_id = app["UserPoolClient"]["ClientId"]
        self.client_secret = app["UserPoolClient"]["ClientSecret"]
        for group in groups:
            idp.create_group(UserPoolId=self.pool_id, GroupName=group)

    def use_pool(self, pool_id: str, client_id: str, client_secret: str) -> bool:
        """Adopt a pool created by an earlier run (persisted state); False if it is gone."""
        try:
            got = self.idp.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)
        except self.idp.exceptions.ClientError:
            return False
        self.pool_id, self.client_id, self.client_secret = pool_id, client_id, client_secret
        self._callback_urls = list(got["UserPoolClient"].get("CallbackURLs") or [])
        return True

    def _client_settings(self) -> dict[str, Any]:
        return {
            "GenerateSecret": True,
            "AllowedOAuthFlows": ["code"],
            "AllowedOAuthScopes": ["openid", "email", "profile"],
            "AllowedOAuthFlowsUserPoolClient": True,
            "SupportedIdentityProviders": ["COGNITO"],
            "CallbackURLs": self._callback_urls or ["http://localhost/placeholder"],
        }

    def allow_callback(self, url: str) -> None:
        """Add a callback URL (``public_baseurl`` + the OIDC callback path) to the app client."""
        if url in self._callback_urls:
            return
        self._callback_urls.append(url)
        settings = self._client_settings()
        settings.pop("GenerateSecret")
        self.idp.update_user_pool_client(
            UserPoolId=self.pool_id, ClientId=self.client_id, ClientName="synapse", **settings
        )

    def create_user(
        self,
        groups: Iterable[str] = (),
        email: str | None = None,
        email_verified: bool = True,
        password: str | None = None,
        **attributes: str,
    ) -> CognitoUser:
        """A confirmed user with a permanent password, in ``groups``."""
        email = email or f"user{uuid.uuid4().hex[:10]}@example.com"
        password = password or f"Pw-{secrets.token_urlsafe(12)}1a"
        attrs_list = [
            {"Name": "email", "Value": email},
            {"Name": "email_verified", "Value": "true" if email_verified else "false"},
            *({"Name": k, "Value": v} for k, v in attributes.items()),
        ]
        idp = self.idp
        created = idp.admin_create_user(
            UserPoolId=self.pool_id,
            Username=email,
            UserAttributes=attrs_list,
            MessageAction="SUPPRESS",
        )["User"]
        idp.admin_set_user_password(
            UserPoolId=self.pool_id, Username=email, Password=password, Permanent=True
        )
        sub = next(a["Value"] for a in created["Attributes"] if a["Name"] == "sub")
        user = CognitoUser(username=created["Username"], sub=sub, email=email, password=password)
        self.set_groups(user, groups)
        return user

    def set_groups(self, user: CognitoUser, groups: Iterable[str]) -> None:
        idp, wanted = self.idp, set(groups)
        current = {
            g["GroupName"]
            for g in idp.admin_list_groups_for_user(
                UserPoolId=self.pool_id, Username=user.username
            )["Groups"]
        }
        for group in wanted - current:
            idp.admin_add_user_to_group(
                UserPoolId=self.pool_id, Username=user.username, GroupName=group
            )
        for group in current - wanted:
            idp.admin_remove_user_from_group(
                UserPoolId=self.pool_id, Username=user.username, GroupName=group
            )

    def user_attributes(self, user: CognitoUser) -> dict[str, str]:
        got = self.idp.admin_get_user(UserPoolId=self.pool_id, Username=user.username)
        return {a["Name"]: a["Value"] for a in got["UserAttributes"]}

    # -- machine clients (client_credentials), for the MCP sidecar ------------------

    def create_machine_client(
        self, resource_server: str = "phenom-chat", scopes: tuple[str, ...] = ("read", "write")
    ) -> tuple[str, str]:
        """An app client allowed client_credentials on ``<resource_server>/<scope>``."""
        idp = self.idp
        try:
            idp.create_resource_server(
                UserPoolId=self.pool_id,
                Identifier=resource_server,
                Name=resource_server,
                Scopes=[{"ScopeName": s, "ScopeDescription": s} for s in scopes],
            )
        except idp.exceptions.ClientError as err:  # created by an earlier call
            if "exists" not in str(err).lower():
                raise
        app = idp.create_user_pool_client(
            UserPoolId=self.pool_id,
            ClientName=f"agent{uuid.uuid4().hex[:10]}",
            GenerateSecret=True,
            AllowedOAuthFlows=["client_credentials"],
            AllowedOAuthScopes=[f"{resource_server}/{s}" for s in scopes],
            AllowedOAuthFlowsUserPoolClient=True,
        )["UserPoolClient"]
        return app["ClientId"], app["ClientSecret"]

    def client_credentials_token(
        self, client_id: str, client_secret: str, scope: str | None = None
    ) -> str:
        data = {"grant_type": "client_credentials"}
        if scope:
            data["scope"] = scope
        resp = httpx2.post(self.token_url, data=data, auth=(client_id, client_secret), timeout=10)
        resp.raise_for_status()
        return str(resp.json()["access_token"])

    def create_secret(self, name: str, value: str) -> str:
        return str(
            self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        )

    # -- Synapse side ---------------------------------------------------------------

    def oidc_provider_block(
        self, client_secret_path: Path, idp_id: str = "cognito", required_group: str = ""
    ) -> dict[str, Any]:
        """The production provider block, pointed at the emulator (discovery off: http)."""
        settings = CognitoOidcSettings(
            user_pool_id=self.pool_id,
            client_id=self.client_id,
            client_secret_path=str(client_secret_path),
            idp_id=idp_id,
            required_group=required_group,
        )
        return oidc_provider(
            settings,
            discover=False,
            authorization_endpoint=self.authorize_url,
            token_endpoint=self.token_url,
            jwks_uri=self.jwks_url,
            userinfo_endpoint=f"{self.endpoint}/oauth2/userInfo",
            skip_verification=True,  # authlib insists on https metadata otherwise
        )

    def state(self) -> dict[str, str]:
        return {
            "pool_id": self.pool_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
