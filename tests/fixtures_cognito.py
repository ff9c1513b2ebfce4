"""Session fixtures of the cognito area: a Cognito emulator and SSO into the shared Synapse.

``cognito`` (session) runs the offline emulator ``ministack`` on a free port with one
user pool (email usernames, like production), the app client Synapse uses, and the
groups ``team``, ``partners``, ``chat-users``. Reusable by other areas:

- ``cognito.issuer`` / ``.jwks_url`` / ``.token_url`` / ``.openid_configuration_url``
- ``cognito.create_user(...)`` / ``.set_groups(...)``
- ``cognito.create_machine_client(resource_server, scopes)`` + ``.client_credentials_token(...)``
  for client-credentials (agent) access tokens
- ``cognito.create_secret(name, value)`` (Secrets Manager of the same emulator)

``cognito_synapse_config`` gives the shared Synapse two OIDC providers on that pool:
``oidc-cognito`` (anyone) and ``oidc-cognito-gated`` (members of ``chat-users``
only). ``sso_login(...)`` drives the browser-style SSO flow over HTTP.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

import attrs
import boto3
import httpx2
import pytest
from bs4 import BeautifulSoup
from harness import MatrixClient, SynapseConfigPart, SynapseStack, free_port, unique

from synapse_phenom.cognito.config import CognitoOidcSettings, oidc_provider
from synapse_phenom.ops import devstack
from synapse_phenom.ops.admin_client import raise_for_matrix

REGION = "eu-west-1"
APP_REDIRECT = "phenom://auth"  # the mobile app's redirect; whitelisted in the test Synapse
GATE_GROUP = "chat-users"
GROUPS = ("team", "partners", GATE_GROUP)


@attrs.frozen
class CognitoUser:
    username: str  # the Cognito username (the sub, in this email-username pool)
    sub: str
    email: str
    password: str


@attrs.define
class CognitoEmulator:
    """A running ministack with one user pool and the app client Synapse signs in with."""

    endpoint: str
    process: devstack.ManagedProcess
    pool_id: str = ""
    client_id: str = ""
    client_secret: str = ""
    _callback_urls: list[str] = attrs.field(factory=list)

    @classmethod
    def start(cls, state_dir: Path) -> CognitoEmulator:
        port = free_port()
        env = {
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "MINISTACK_HOST": "127.0.0.1",
            "MINISTACK_REGION": REGION,
            "STATE_DIR": str(state_dir),
            "SERVICES": "cognito-idp,secretsmanager",
            # Both would bind fixed ports: off.
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
            "LOG_LEVEL": "WARNING",
        }
        ministack = Path(sys.executable).with_name("ministack")
        proc = devstack.spawn("ministack", [str(ministack)], state_dir / "ministack.log", env=env)
        emulator = cls(endpoint=f"http://127.0.0.1:{port}", process=proc)
        try:
            devstack.wait_http(f"{emulator.endpoint}/_ministack/health", [proc], timeout=60)
            emulator._create_pool()
        except Exception:
            proc.stop()
            raise
        return emulator

    def stop(self) -> None:
        self.process.stop()

    def client(self, service: str) -> Any:
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
        return f"{self.endpoint}/oauth2/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.endpoint}/oauth2/token"

    # -- setup --------------------------------------------------------------------

    def _create_pool(self) -> None:
        idp = self.idp
        pool = idp.create_user_pool(
            PoolName="phenom",
            UsernameAttributes=["email"],
            AutoVerifiedAttributes=["email"],
        )["UserPool"]
        self.pool_id = pool["Id"]
        app = idp.create_user_pool_client(
            UserPoolId=self.pool_id, ClientName="synapse", **self._client_settings()
        )
        self.client_id = app["UserPoolClient"]["ClientId"]
        self.client_secret = app["UserPoolClient"]["ClientSecret"]
        for group in GROUPS:
            idp.create_group(UserPoolId=self.pool_id, GroupName=group)

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
        """Add a callback URL to Synapse's app client (each test Synapse has its own port)."""
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
        groups: tuple[str, ...] | list[str] = (),
        email: str | None = None,
        email_verified: bool = True,
        **attributes: str,
    ) -> CognitoUser:
        """A confirmed user with a permanent password, in ``groups``."""
        email = email or f"{unique('user')}@example.com"
        password = f"Pw-{secrets.token_urlsafe(12)}1a"
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

    def set_groups(self, user: CognitoUser, groups: tuple[str, ...] | list[str]) -> None:
        idp = self.idp
        current = {
            g["GroupName"]
            for g in idp.admin_list_groups_for_user(
                UserPoolId=self.pool_id, Username=user.username
            )["Groups"]
        }
        for group in set(groups) - current:
            idp.admin_add_user_to_group(
                UserPoolId=self.pool_id, Username=user.username, GroupName=group
            )
        for group in current - set(groups):
            idp.admin_remove_user_from_group(
                UserPoolId=self.pool_id, Username=user.username, GroupName=group
            )

    def user_attributes(self, user: CognitoUser) -> dict[str, str]:
        got = self.idp.admin_get_user(UserPoolId=self.pool_id, Username=user.username)
        return {a["Name"]: a["Value"] for a in got["UserAttributes"]}

    # -- machine clients (client_credentials), for the MCP sidecar's tests ----------

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
            ClientName=unique("agent"),
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


class SsoRefused(AssertionError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"SSO callback answered {status}: {text[:300]}")
        self.status = status
        self.text = text


@attrs.frozen
class SsoLogin:
    client: MatrixClient
    login_response: dict[str, Any]
    app_redirect: str  # where Synapse sent the "browser" back (the app's URL + loginToken)


def _cookies(resp: httpx2.Response) -> str:
    """Synapse's oidc_session cookies are Secure: over http we forward them by hand."""
    pairs = [header.split(";", 1)[0] for header in resp.headers.get_list("set-cookie")]
    return "; ".join(p for p in pairs if p.startswith("oidc_session"))


def ministack_hosted_ui(
    http: httpx2.Client, authorize_url: str, username: str, password: str
) -> str:
    """Sign in on the emulator's hosted UI; returns where it redirects (Synapse's callback)."""
    page = http.get(authorize_url)
    assert page.status_code == 200, f"authorize: {page.status_code} {page.text[:300]}"
    form = BeautifulSoup(page.text, "html.parser").find("form")
    assert form is not None, "no sign-in form on the hosted UI"
    fields = {
        str(i["name"]): str(i.get("value", "")) for i in form.find_all("input") if i.get("name")
    }
    fields.update(username=username, password=password)
    resp = http.post(urljoin(authorize_url, str(form.get("action"))), data=fields)
    if resp.status_code != 302:
        error = BeautifulSoup(resp.text, "html.parser").find(class_="error")
        raise AssertionError(
            f"hosted UI sign-in failed: {error.get_text() if error else resp.text[:300]}"
        )
    return str(resp.headers["location"])


def sso_login(
    synapse: SynapseStack,
    username: str,
    password: str,
    idp_id: str = "oidc-cognito",
    redirect_url: str = APP_REDIRECT,
    token_base_url: str | None = None,
) -> SsoLogin:
    """The mobile app's SSO flow, step by step (docs/mobile-integration.md).

    /login/sso/redirect → IdP sign-in → Synapse's OIDC callback → app URL with
    ``loginToken`` → ``m.login.token``. Raises ``SsoRefused`` when Synapse's callback
    does not hand out a login token (e.g. attribute_requirements not met).
    ``token_base_url`` sends the final ``m.login.token`` to another Synapse process.
    """
    base = urlsplit(synapse.base_url)
    # Synapse bounces SSO requests to its public_baseurl host (localhost:<port>) so the
    # session cookie lands there; it listens on 127.0.0.1, so present that Host instead.
    public_host = {"Host": f"localhost:{base.port}"}
    with httpx2.Client(timeout=30, follow_redirects=False) as http:
        start = http.get(
            f"{synapse.base_url}/_matrix/client/v3/login/sso/redirect/{idp_id}",
            params={"redirectUrl": redirect_url},
            headers=public_host,
        )
        assert start.status_code == 302, f"sso/redirect: {start.status_code} {start.text[:300]}"
        cookie = _cookies(start)
        assert cookie, f"Synapse set no oidc_session cookie: {start.headers}"
        callback = urlsplit(
            ministack_hosted_ui(http, start.headers["location"], username, password)
        )
        callback_url = urlunsplit((base.scheme, base.netloc, callback.path, callback.query, ""))
        done = http.get(callback_url, headers={"Cookie": cookie, **public_host})
        if done.status_code != 302:
            raise SsoRefused(
                done.status_code, BeautifulSoup(done.text, "html.parser").get_text(" ", strip=True)
            )
        app_redirect = str(done.headers["location"])
        assert app_redirect.startswith(redirect_url), app_redirect
        login_token = parse_qs(urlsplit(app_redirect).query)["loginToken"][0]
        token_base = token_base_url or synapse.base_url
        body = raise_for_matrix(
            http.post(
                f"{token_base}/_matrix/client/v3/login",
                json={"type": "m.login.token", "token": login_token},
            )
        )
    client = MatrixClient(token_base, body["user_id"], body["access_token"])
    return SsoLogin(client=client, login_response=body, app_redirect=app_redirect)


@pytest.fixture(scope="session")
def cognito(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CognitoEmulator]:
    """The Cognito emulator of this test session (one pool, Synapse's app client, groups)."""
    emulator = CognitoEmulator.start(tmp_path_factory.mktemp("ministack"))
    yield emulator
    emulator.stop()


def cognito_provider(
    cognito: CognitoEmulator, secret_path: Path, idp_id: str, required_group: str = ""
) -> dict[str, Any]:
    """The production provider block, pointed at the emulator (discovery off: http)."""
    settings = CognitoOidcSettings(
        user_pool_id=cognito.pool_id,
        client_id=cognito.client_id,
        client_secret_path=str(secret_path),
        idp_id=idp_id,
        required_group=required_group,
    )
    return oidc_provider(
        settings,
        discover=False,
        authorization_endpoint=cognito.authorize_url,
        token_endpoint=cognito.token_url,
        jwks_uri=cognito.jwks_url,
        userinfo_endpoint=f"{cognito.endpoint}/oauth2/userInfo",
        skip_verification=True,  # authlib insists on https metadata otherwise
    )


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
                cognito_provider(cognito, secret_path, "cognito"),
                cognito_provider(cognito, secret_path, "cognito-gated", required_group=GATE_GROUP),
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
