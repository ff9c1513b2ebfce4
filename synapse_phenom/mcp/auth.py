"""Bearer-token validation for Cognito client-credentials access tokens.

Validated as AWS's aws-jwt-verify does: RS256 only, ``kid`` in the JWKS (cached;
an unknown kid refetches at most once per cool-down), exact ``iss``, ``exp``,
``token_use == "access"``, ``client_id`` in the allow-list of agent profiles, and
``sub == client_id`` (a client-credentials token, not a person's token for that client).
Scopes are ``<resource-server>/read|write|moderate``; each tool checks its own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import anyio
import attrs
import jwt
from mcp.server.auth.provider import AccessToken, TokenVerifier

from synapse_phenom.mcp.config import AgentProfile, AuthConfig

logger = logging.getLogger(__name__)

SCOPE_NAMES = ("read", "write", "moderate")


class TokenRejected(Exception):
    """Why a token was refused (logged, never shown with the token)."""


class KeySource(Protocol):
    async def key_for(self, kid: str) -> Any: ...


@attrs.define
class JwksUrlKeys:
    """Keys from a JWKS URL through PyJWT's client (cache + unknown-kid cool-down)."""

    url: str
    cooldown_seconds: float
    cache_seconds: float
    _client: jwt.PyJWKClient = attrs.field(init=False)
    # PyJWT starts its cool-down on successful fetches only: while the URL is down, every
    # unknown kid would cost a (5 s) fetch. Until then, only cached keys are used.
    _down_until: float = attrs.field(init=False, default=0.0)
    # Keys found before, by kid: still trusted during an outage (Cognito's keys rotate rarely).
    _known: dict[str, Any] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._client = jwt.PyJWKClient(
            self.url,
            cache_jwk_set=True,
            lifespan=self.cache_seconds,
            cooldown_duration=self.cooldown_seconds,
            timeout=5,
        )

    async def key_for(self, kid: str) -> Any:
        if time.monotonic() < self._down_until:
            if kid in self._known:
                return self._known[kid]
            raise TokenRejected(f"JWKS unreachable; key {kid!r} not seen before")
        try:
            # urllib underneath: keep it off the event loop.
            key = (await anyio.to_thread.run_sync(self._client.get_signing_key, kid)).key
            self._known[kid] = key
            return key
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as err:
            self._down_until = time.monotonic() + max(self.cooldown_seconds, 1.0)
            raise TokenRejected(f"JWKS unreachable: {err}") from None
        except jwt.PyJWKClientError as err:
            raise TokenRejected(f"unknown signing key {kid!r}: {err}") from None


@attrs.define
class StaticKeys:
    """A fixed JWKS (the dev signer's file)."""

    jwks: Mapping[str, Any]
    _set: jwt.PyJWKSet = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._set = jwt.PyJWKSet.from_dict(dict(self.jwks))

    @classmethod
    def from_file(cls, path: Path) -> StaticKeys:
        return cls(json.loads(path.read_text()))

    async def key_for(self, kid: str) -> Any:
        try:
            return self._set[kid].key
        except KeyError:
            raise TokenRejected(f"unknown signing key {kid!r}") from None


def key_source(config: AuthConfig) -> KeySource:
    if config.jwks_file is not None:
        return StaticKeys.from_file(config.jwks_file)
    return JwksUrlKeys(
        config.effective_jwks_url, config.jwks_cooldown_seconds, config.jwks_cache_seconds
    )


def scopes_of(claims: Mapping[str, Any], resource_server: str) -> frozenset[str]:
    """Short scope names (read/write/moderate) of this resource server in ``scope``."""
    raw = claims.get("scope", "")
    if not isinstance(raw, str):
        return frozenset()
    prefix = f"{resource_server}/"
    return frozenset(
        s[len(prefix) :]
        for s in raw.split()
        if s.startswith(prefix) and s[len(prefix) :] in SCOPE_NAMES
    )


def check_claims(
    claims: Mapping[str, Any], agents: Mapping[str, AgentProfile]
) -> tuple[str, AgentProfile]:
    """The non-signature checks PyJWT does not do: token_use and the client allow-list."""
    if claims.get("token_use") != "access":
        raise TokenRejected(f"token_use is {claims.get('token_use')!r}, not 'access'")
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or client_id not in agents:
        raise TokenRejected(f"client_id {client_id!r} is not a registered agent")
    # A client-credentials token is the app client itself (sub == client_id). A person's
    # access token for the same app client (a user auth flow left enabled on it) carries
    # the person's sub: never the agent.
    if claims.get("sub") != client_id:
        raise TokenRejected("sub is not the app client: a user's token, not the agent's")
    return client_id, agents[client_id]


@attrs.define
class CognitoTokenVerifier(TokenVerifier):
    config: AuthConfig
    agents: Mapping[str, AgentProfile]
    keys: KeySource
    # Agents reuse one token for up to an hour: remember accepted ones until they expire
    # (an RSA verify per call is the largest per-request cost of the auth path).
    cache_size: int = 1024
    _accepted: dict[str, AccessToken] = attrs.field(factory=dict)

    async def verify_token(self, token: str) -> AccessToken | None:
        cached = self._accepted.get(token)
        if cached is not None:
            if cached.expires_at is not None and cached.expires_at > now():
                return cached
            del self._accepted[token]
        try:
            access = await self._verify(token)
        except TokenRejected as err:
            logger.info("bearer token rejected: %s", err)
            return None
        if len(self._accepted) >= self.cache_size:
            self._accepted.pop(next(iter(self._accepted)))  # oldest first
        self._accepted[token] = access
        return access

    async def _verify(self, token: str) -> AccessToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as err:
            raise TokenRejected(f"malformed token: {err}") from None
        if header.get("alg") != "RS256":
            raise TokenRejected(f"alg {header.get('alg')!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("no kid in the token header")
        key = await self.keys.key_for(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "client_id", "token_use"], "verify_aud": False},
            )
        except jwt.InvalidTokenError as err:
            raise TokenRejected(f"{type(err).__name__}: {err}") from None
        client_id, _ = check_claims(claims, self.agents)
        scopes = scopes_of(claims, self.config.resource_server)
        return AccessToken(
            token=token,
            client_id=client_id,
            scopes=sorted(f"{self.config.resource_server}/{s}" for s in scopes),
            expires_at=int(claims["exp"]),
            subject=str(claims.get("sub", client_id)),
            claims={"iss": claims["iss"]},
        )


def short_scopes(access: AccessToken, resource_server: str) -> frozenset[str]:
    prefix = f"{resource_server}/"
    return frozenset(s[len(prefix) :] for s in access.scopes if s.startswith(prefix))


def now() -> int:
    return int(time.time())
