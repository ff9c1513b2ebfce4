"""Cognito PostAuthentication trigger: provision the user's Matrix account and rooms.

``handler(event, context)`` runs at every Cognito sign-in, before the app gets its
code. It looks up the user's groups (the event carries none), then creates or
updates the Matrix account linked to the Cognito ``sub`` (so the SSO login that
follows lands on it) and stores groups + reconciles rooms through
``SynapseAdmin.provision`` — the code path of ``phenom-chat provision-user``.

It never blocks a sign-in: every failure is logged on one line and the event is
returned unchanged. Environment (see docs/cognito.md):

- ``PHENOM_HOMESERVER_URL``  base URL of Synapse (its admin API must be reachable)
- ``PHENOM_SERVER_NAME``     Matrix server name, e.g. chat.thephenom.app
- ``PHENOM_ADMIN_TOKEN_SECRET_ID``  Secrets Manager id/ARN of an admin access token
  (the secret string is the token, or JSON ``{"access_token": ...}``)
- ``PHENOM_ADMIN_TOKEN``     the token itself, for local development only
- ``PHENOM_OIDC_IDP_ID``     Synapse's idp_id for Cognito (default ``cognito``)
- ``PHENOM_PROVISION_BUDGET_SECONDS``  time allowed per invocation (default 3.5)
- ``PHENOM_BACKENDS``        where to provision: ``synapse`` (default), ``hasura`` or
  ``synapse,hasura`` (Implementation B: ``chat.users`` + memberships, same rooms core)
- ``CHAT_DATABASE_SECRET_ID`` / ``CHAT_DATABASE_URL``  B's database (with ``hasura``): a Secrets
  Manager secret (RDS JSON or URL), or the URL itself
- ``PHENOM_ROOMS_CONFIG``    B: the rooms config as JSON (default: the built-in rooms)

The Synapse settings are required only when ``synapse`` is selected. Each backend fails
on its own: an unreachable B never stops A's provisioning, and the other way round.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import attrs
import boto3
import httpx2
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from synapse_phenom.cognito import claims as cognito_claims
from synapse_phenom.cognito.config import CognitoMappingConfig
from synapse_phenom.lambdas import chat_db
from synapse_phenom.ops.admin_client import MatrixError, ProvisionResult, SynapseAdmin

logger = logging.getLogger("synapse_phenom.user_provisioner")
logger.setLevel(logging.INFO)

TRIGGER = "PostAuthentication_Authentication"
TOKEN_CACHE_SECONDS = 900  # picks up a rotated token within 15 minutes
MAX_LOCALPART_TRIES = 20
# No retries and short timeouts: the whole invocation must end inside Cognito's 5 s, and a
# skipped run costs little (the SSO login that follows syncs groups from the ID token).
_BOTO_CONFIG = BotoConfig(
    connect_timeout=0.5, read_timeout=1.5, retries={"max_attempts": 1, "mode": "standard"}
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")
    userAttributes: dict[str, Any]


class PostAuthenticationEvent(BaseModel):
    """The fields of Cognito's PostAuthentication event this Lambda relies on."""

    model_config = ConfigDict(extra="allow")
    triggerSource: str
    userPoolId: str
    userName: str
    region: str = ""
    request: _Request


@attrs.frozen
class Settings:
    homeserver_url: str
    server_name: str
    idp_id: str = "cognito"
    token_secret_id: str = ""
    dev_token: str = attrs.field(default="", repr=False)
    budget_seconds: float = 3.5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        missing = [n for n in ("PHENOM_HOMESERVER_URL", "PHENOM_SERVER_NAME") if not env.get(n)]
        if not env.get("PHENOM_ADMIN_TOKEN_SECRET_ID") and not env.get("PHENOM_ADMIN_TOKEN"):
            missing.append("PHENOM_ADMIN_TOKEN_SECRET_ID (or PHENOM_ADMIN_TOKEN in development)")
        if missing:
            raise ValueError("missing environment variables: " + ", ".join(missing))
        return cls(
            homeserver_url=env["PHENOM_HOMESERVER_URL"].rstrip("/"),
            server_name=env["PHENOM_SERVER_NAME"],
            idp_id=env.get("PHENOM_OIDC_IDP_ID") or "cognito",
            token_secret_id=env.get("PHENOM_ADMIN_TOKEN_SECRET_ID", ""),
            dev_token=env.get("PHENOM_ADMIN_TOKEN", ""),
            budget_seconds=float(env.get("PHENOM_PROVISION_BUDGET_SECONDS") or 3.5),
        )


# Warm invocations reuse clients and the admin token.
_clients: dict[tuple[str, str], Any] = {}
_token_cache: dict[str, tuple[str, float]] = {}


def _client(service: str, region: str) -> Any:
    key = (service, region)
    if key not in _clients:
        _clients[key] = boto3.client(service, region_name=region or None, config=_BOTO_CONFIG)
    return _clients[key]


def reset_caches() -> None:
    """Forget cached clients and tokens (tests; a rotated secret)."""
    _clients.clear()
    _token_cache.clear()
    chat_db.reset()


def admin_token(settings: Settings, region: str) -> str:
    if not settings.token_secret_id:
        return settings.dev_token
    cached = _token_cache.get(settings.token_secret_id)
    if cached and time.monotonic() - cached[1] < TOKEN_CACHE_SECONDS:
        return cached[0]
    secret = _client("secretsmanager", region).get_secret_value(SecretId=settings.token_secret_id)
    token = token_from_secret(secret.get("SecretString") or "")
    _token_cache[settings.token_secret_id] = (token, time.monotonic())
    return token


def token_from_secret(text: str) -> str:
    """The secret is the bare token or JSON with ``access_token``."""
    text = text.strip()
    token = json.loads(text).get("access_token", "") if text.startswith("{") else text
    if not isinstance(token, str) or not token:
        raise ValueError(
            'the admin token secret is empty (expected a token or {"access_token": ...})'
        )
    return token


def cognito_groups(cognito: Any, user_pool_id: str, user_name: str) -> list[str]:
    paginator = cognito.get_paginator("admin_list_groups_for_user")
    groups: list[str] = []
    pages = paginator.paginate(
        UserPoolId=user_pool_id, Username=user_name, PaginationConfig={"PageSize": 60}
    )
    for page in pages:
        groups.extend(g["GroupName"] for g in page.get("Groups", []))
    return groups


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("time budget used up")
        return left


def provision_identity(
    admin: SynapseAdmin,
    identity: cognito_claims.CognitoIdentity,
    settings: Settings,
    deadline: _Deadline | None = None,
    reserved: tuple[str, ...] = tuple(CognitoMappingConfig().reserved_localparts),
    reserved_prefixes: tuple[str, ...] = tuple(CognitoMappingConfig().reserved_prefixes),
) -> ProvisionResult:
    """Create or update the account linked to ``identity.sub``; store groups; reconcile.

    A linked account keeps its name, email and profile (only groups change); a new
    one gets the same localpart rules as an SSO registration, with collisions skipped.
    """
    link = cognito_claims.external_id(settings.idp_id, identity.sub)
    user_id = admin.user_by_external_id(link["auth_provider"], identity.sub)
    if user_id is not None:
        return admin.provision(user_id, list(identity.groups), source="lambda")
    for failures in range(MAX_LOCALPART_TRIES):
        if deadline is not None:
            deadline.remaining()
        local = cognito_claims.candidate_localpart(
            identity.localpart, identity.sub, failures, reserved, reserved_prefixes
        )
        candidate = f"@{local}:{settings.server_name}"
        if admin.get_user(candidate) is None:
            return admin.provision(
                candidate,
                list(identity.groups),
                displayname=identity.display_name,
                emails=[identity.email] if identity.email else None,
                external_ids=[link],
                source="lambda",
            )
    raise RuntimeError(
        f"no free Matrix ID for {identity.localpart!r} after {MAX_LOCALPART_TRIES} tries"
    )


def _remaining_seconds(context: Any) -> float | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000 if callable(getter) else None


def handler(event: Any, context: Any) -> Any:
    """Cognito PostAuthentication trigger. Always returns ``event`` unchanged."""
    started = time.monotonic()
    try:
        parsed = PostAuthenticationEvent.model_validate(event)
    except ValidationError as err:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:3]
        )
        logger.error(
            "user provisioner: malformed PostAuthentication event, nothing provisioned (%s)", where
        )
        return event
    if parsed.triggerSource != TRIGGER:
        logger.info("user provisioner: ignoring trigger %s", parsed.triggerSource)
        return event
    try:
        selected = chat_db.backends(os.environ)
        settings = Settings.from_env(os.environ) if "synapse" in selected else None
        left = _remaining_seconds(context)
        own_budget = (
            settings.budget_seconds
            if settings is not None
            else float(os.environ.get("PHENOM_PROVISION_BUDGET_SECONDS") or 3.5)
        )
        budget = own_budget if left is None else min(own_budget, left - 0.5)
        deadline = _Deadline(max(budget, 0.1))
        region = parsed.region or os.environ.get("AWS_REGION", "")
        groups = cognito_groups(_client("cognito-idp", region), parsed.userPoolId, parsed.userName)
        claims = cognito_claims.claims_from_user_attributes(
            parsed.request.userAttributes, parsed.userName, groups
        )
        identity = cognito_claims.identity_from_claims(claims)
    except (BotoCoreError, ClientError) as err:
        logger.warning(
            "user provisioner: AWS call failed for %s: %s (sign-in continues)", parsed.userName, err
        )
        return event
    except ValueError as err:  # configuration or data problem: one line, no traceback
        logger.error(
            "user provisioner: cannot provision %s: %s (sign-in continues)", parsed.userName, err
        )
        return event
    except Exception:
        logger.exception(
            "user provisioner: unexpected error for %s (sign-in continues)", parsed.userName
        )
        return event
    if settings is not None:
        _provision_synapse(parsed, identity, settings, region, deadline, started)
    if "hasura" in selected:
        try:
            remaining = deadline.remaining()
        except TimeoutError:
            remaining = 0.1  # A used the budget up: B still gets a short try
        chat_db.provision_identity(parsed.userName, identity, remaining, started, logger)
    return event


def _provision_synapse(
    parsed: PostAuthenticationEvent,
    identity: cognito_claims.CognitoIdentity,
    settings: Settings,
    region: str,
    deadline: _Deadline,
    started: float,
) -> None:
    """Implementation A: the Matrix account and its rooms. Logs, never raises."""
    try:
        token = admin_token(settings, region)
        timeout = httpx2.Timeout(deadline.remaining(), connect=min(1.0, deadline.remaining()))
        with SynapseAdmin(settings.homeserver_url, token, timeout=timeout) as admin:
            result = provision_identity(admin, identity, settings, deadline)
    except MatrixError as err:
        if err.status == 401:
            _token_cache.clear()  # maybe rotated: fetch again next time
        logger.warning(
            "user provisioner: Synapse refused for %s: %s (sign-in continues)", parsed.userName, err
        )
        return
    except (httpx2.HTTPError, TimeoutError, OSError) as err:
        logger.warning(
            "user provisioner: chat unreachable for %s: %s: %s (sign-in continues)",
            parsed.userName,
            type(err).__name__,
            err,
        )
        return
    except (BotoCoreError, ClientError) as err:
        logger.warning(
            "user provisioner: AWS call failed for %s: %s (sign-in continues)", parsed.userName, err
        )
        return
    except ValueError as err:
        logger.error(
            "user provisioner: cannot provision %s: %s (sign-in continues)", parsed.userName, err
        )
        return
    except Exception:
        logger.exception(
            "user provisioner: unexpected error for %s (sign-in continues)", parsed.userName
        )
        return
    logger.info(
        "user provisioner: %s %s in %.0f ms; groups %s; joined %s; removed %s",
        result.user_id,
        "created" if result.created else "updated",
        (time.monotonic() - started) * 1000,
        ",".join(result.groups) or "-",
        ",".join(result.joined) or "-",
        ",".join(result.removed) or "-",
    )
