"""``phenom-chat dev --sso``: Cognito sign-in on the dev stack, offline.

Starts the Cognito emulator (``ops.cognito_emulator``) next to Synapse, with a user pool
like production's, Synapse's app client, the groups and three test users, and gives
Synapse the production OIDC provider block pointed at it. The emulator keeps its state
in ``DIR/cognito`` (``DIR/cognito-dev.json`` names the pool), so the test users keep
their ``sub`` — and so their Matrix accounts — across runs.

Also here: the dev stack's public URL (what Synapse advertises and redirects to), which
follows ``--host`` or ``--public-url``: a phone on the LAN must not be sent to localhost.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import attrs

from synapse_phenom.ops.cognito_emulator import (
    APP_REDIRECT,
    CALLBACK_PATH,
    CognitoEmulator,
    CognitoUser,
)
from synapse_phenom.ops.files import write_private

STATE_FILE = "cognito-dev.json"
SECRET_FILE = "cognito_client_secret"
IDP_ID = "cognito"  # -> oidc-cognito, as in production
APP_WHITELIST = "phenom://"
# Offline emulator, dev only: one documented password for every test user.
DEV_PASSWORD = "Phenom-dev-1"
DEV_USERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("alice@example.com", ("team",), "Alice Team"),
    ("bob@example.com", ("partners",), "Bob Partner"),
    ("carol@example.com", (), "Carol Community"),
)


def lan_address() -> str:
    """This machine's address on the network its default route uses (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing decision only
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def public_base_url(host: str, port: int, public_url: str | None = None) -> str:
    """``public_baseurl`` for the dev stack (ends with ``/``).

    ``--public-url`` wins; ``--host 0.0.0.0``/``::`` advertises this machine's LAN address;
    ``127.0.0.1`` keeps ``localhost``; any other host is used as given.
    """
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{public_url!r} is not an http(s) URL such as http://192.168.1.20:8008"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"{public_url!r}: no query or fragment, please")
        return public_url.rstrip("/") + "/"
    if host in ("0.0.0.0", "::"):
        return f"http://{_url_host(lan_address())}:{port}/"
    if host == "127.0.0.1":
        return f"http://localhost:{port}/"
    return f"http://{_url_host(host)}:{port}/"


@attrs.frozen
class DevSso:
    emulator: CognitoEmulator
    users: list[tuple[CognitoUser, tuple[str, ...]]]
    synapse_values: dict[str, Any]  # homeserver template values: oidc_providers, sso whitelist
    sso_url: str  # what the app opens (redirect back to phenom://auth)
    created: bool  # a new pool (first run, or the emulator's state was lost)


def sso_redirect_url(public_base: str, redirect: str = APP_REDIRECT) -> str:
    return (
        f"{public_base}_matrix/client/v3/login/sso/redirect/oidc-{IDP_ID}"
        f"?redirectUrl={quote(redirect, safe='')}"
    )


def start(data_dir: Path, public_base: str, bind_host: str, cognito_port: int) -> DevSso:
    """Start the emulator (reusing the pool of an earlier run) and prepare Synapse's config."""
    public_host = urlsplit(public_base).hostname or "127.0.0.1"
    emulator = CognitoEmulator.start(
        data_dir / "cognito",
        port=cognito_port,
        bind_host=bind_host,
        public_host=_url_host(public_host),
        persist=True,
    )
    try:
        state_path = data_dir / STATE_FILE
        saved = json.loads(state_path.read_text()) if state_path.exists() else {}
        created = not (
            saved
            and emulator.use_pool(saved["pool_id"], saved["client_id"], saved["client_secret"])
        )
        if created:
            emulator.create_pool("phenom-dev")
            users = [
                (emulator.create_user(groups, email, password=DEV_PASSWORD, name=name), groups)
                for email, groups, name in DEV_USERS
            ]
        else:
            users = [(CognitoUser(**u["user"]), tuple(u["groups"])) for u in saved.get("users", [])]
        emulator.allow_callback(public_base.rstrip("/") + CALLBACK_PATH)
        state = {
            **emulator.state(),
            "users": [{"user": attrs.asdict(u), "groups": list(g)} for u, g in users],
        }
        write_private(state_path, json.dumps(state, indent=2))
        secret_path = data_dir / SECRET_FILE
        write_private(secret_path, emulator.client_secret)
    except Exception:
        emulator.stop()
        raise
    values = {
        "oidc_providers": [emulator.oidc_provider_block(secret_path, IDP_ID)],
        "sso_client_whitelist": [APP_WHITELIST],
    }
    return DevSso(
        emulator=emulator,
        users=users,
        synapse_values=values,
        sso_url=sso_redirect_url(public_base),
        created=created,
    )
