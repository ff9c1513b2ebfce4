"""The mobile app's SSO sign-in over HTTP, with the Cognito emulator's hosted UI as the browser.

/login/sso/redirect → hosted UI → Synapse's OIDC callback → the app's URL with a
``loginToken`` → ``m.login.token`` (docs/mobile-integration.md). Used by the tests and by
``phenom-chat sso-login`` against ``phenom-chat dev --sso``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

import attrs
import httpx2
from bs4 import BeautifulSoup

from synapse_phenom.ops.admin_client import raise_for_matrix
from synapse_phenom.ops.cognito_emulator import APP_REDIRECT, EmulatorError


class SsoRefused(EmulatorError):
    """Synapse's callback handed out no login token (e.g. a required group is missing)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"SSO callback answered {status}: {text[:300]}")
        self.status = status
        self.text = text


def _session_cookie(resp: httpx2.Response) -> str:
    """Synapse's oidc_session cookies are Secure: over http we forward them by hand."""
    pairs = [header.split(";", 1)[0] for header in resp.headers.get_list("set-cookie")]
    return "; ".join(p for p in pairs if p.startswith("oidc_session"))


def hosted_ui_sign_in(http: httpx2.Client, authorize_url: str, username: str, password: str) -> str:
    """Sign in on the emulator's hosted UI; returns where it redirects (Synapse's callback)."""
    page = http.get(authorize_url)
    if page.status_code != 200:
        raise EmulatorError(f"authorize: {page.status_code} {page.text[:300]}")
    form = BeautifulSoup(page.text, "html.parser").find("form")
    if form is None:
        raise EmulatorError("no sign-in form on the hosted UI")
    fields: dict[str, str] = {
        str(i["name"]): str(i.get("value", "")) for i in form.find_all("input") if i.get("name")
    }
    fields.update(username=username, password=password)
    resp = http.post(urljoin(authorize_url, str(form.get("action"))), data=fields)
    if resp.status_code != 302:
        error = BeautifulSoup(resp.text, "html.parser").find(class_="error")
        raise EmulatorError(
            f"hosted UI sign-in failed: {error.get_text() if error else resp.text[:300]}"
        )
    return str(resp.headers["location"])


@attrs.frozen
class SsoResult:
    login: dict[str, Any]  # the m.login.token response: user_id, access_token, device_id
    app_redirect: str  # where Synapse sent the "browser" back (the app's URL + loginToken)


def sso_login(
    base_url: str,
    username: str,
    password: str,
    idp_id: str = "oidc-cognito",
    redirect_url: str = APP_REDIRECT,
    public_url: str | None = None,
    token_base_url: str | None = None,
    device_name: str | None = None,
) -> SsoResult:
    """/login/sso/redirect → hosted UI → Synapse's OIDC callback → app URL with a
    ``loginToken`` → ``m.login.token``.

    ``base_url`` is where this machine reaches Synapse; ``public_url`` its
    ``public_baseurl`` when that differs (Synapse bounces SSO requests to the public host
    so the session cookie lands there: the Host header is set to match).
    ``token_base_url`` sends the final ``m.login.token`` to another Synapse process.
    Raises ``SsoRefused`` when the callback hands out no login token.
    """
    base = urlsplit(base_url)
    public = urlsplit(public_url or base_url)
    host = {"Host": public.netloc}
    with httpx2.Client(timeout=30, follow_redirects=False) as http:
        start = http.get(
            f"{base_url}/_matrix/client/v3/login/sso/redirect/{idp_id}",
            params={"redirectUrl": redirect_url},
            headers=host,
        )
        if start.status_code != 302:
            raise EmulatorError(f"sso/redirect: {start.status_code} {start.text[:300]}")
        cookie = _session_cookie(start)
        if not cookie:
            raise EmulatorError(f"Synapse set no oidc_session cookie: {start.headers}")
        callback = urlsplit(hosted_ui_sign_in(http, start.headers["location"], username, password))
        callback_url = urlunsplit((base.scheme, base.netloc, callback.path, callback.query, ""))
        done = http.get(callback_url, headers={"Cookie": cookie, **host})
        if done.status_code != 302:
            text = BeautifulSoup(done.text, "html.parser").get_text(" ", strip=True)
            raise SsoRefused(done.status_code, text)
        app_redirect = str(done.headers["location"])
        if not app_redirect.startswith(redirect_url):
            raise EmulatorError(f"Synapse redirected to {app_redirect}, not to {redirect_url}")
        login_token = parse_qs(urlsplit(app_redirect).query)["loginToken"][0]
        body: dict[str, Any] = {"type": "m.login.token", "token": login_token}
        if device_name:
            body["initial_device_display_name"] = device_name
        login = raise_for_matrix(
            http.post(f"{token_base_url or base_url}/_matrix/client/v3/login", json=body)
        )
    return SsoResult(login=login, app_redirect=app_redirect)
