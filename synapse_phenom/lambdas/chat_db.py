"""Implementation B's database from a Lambda: one cached psycopg connection per container.

``CHAT_DATABASE_URL`` names the database (``postgresql://user:pass@host:5432/db``), or
``CHAT_DATABASE_SECRET_ID`` names a Secrets Manager secret holding it: an RDS-managed secret
(JSON ``username``, ``password``, ``host``, ``port``, ``dbname``) or the URL itself. Warm
invocations reuse the connection; one that died while the container was frozen is replaced
once, transparently.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg.conninfo import make_conninfo

from synapse_phenom.cognito import claims as cognito_claims
from synapse_phenom.lite import provision as lite_provision
from synapse_phenom.lite import settings as lite_settings
from synapse_phenom.lite.settings import DSN_ENV

T = TypeVar("T")
BACKENDS_ENV = "PHENOM_BACKENDS"
SECRET_ENV = "CHAT_DATABASE_SECRET_ID"
KNOWN_BACKENDS = ("synapse", "hasura")

_conn: psycopg.Connection[Any] | None = None
_secret_dsn: dict[str, str] = {}


def configured(env: Mapping[str, str]) -> bool:
    return bool(env.get(DSN_ENV) or env.get(SECRET_ENV))


def dsn_from_secret(text: str) -> str:
    """The connection string in a secret: a URL, or an RDS-managed secret's JSON."""
    text = text.strip()
    if text.startswith(("postgresql://", "postgres://")):
        return text
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(
            f"{SECRET_ENV}: the secret is neither a postgresql:// URL nor JSON"
        ) from None
    missing = [k for k in ("username", "password", "host") if not data.get(k)]
    if missing:
        raise ValueError(f"{SECRET_ENV}: the secret's JSON lacks {', '.join(missing)}")
    return make_conninfo(
        host=data["host"],
        port=str(data.get("port") or 5432),
        dbname=data.get("dbname") or "postgres",
        user=data["username"],
        password=data["password"],
    )


def chat_dsn(env: Mapping[str, str]) -> str:
    """``CHAT_DATABASE_URL``, else the secret named by ``CHAT_DATABASE_SECRET_ID`` (fetched
    once per container; ``reset()`` forgets it, e.g. after a rotation broke the login)."""
    if env.get(DSN_ENV):
        return env[DSN_ENV]
    secret_id = env.get(SECRET_ENV, "")
    if not secret_id:
        raise ValueError(f"no chat database: set {DSN_ENV} or {SECRET_ENV}")
    if secret_id not in _secret_dsn:
        import boto3  # the lambda extra

        client = boto3.client("secretsmanager", region_name=env.get("AWS_REGION") or None)
        text = client.get_secret_value(SecretId=secret_id).get("SecretString") or ""
        _secret_dsn[secret_id] = dsn_from_secret(text)
    return _secret_dsn[secret_id]


def backends(env: Mapping[str, str], default: str = "synapse") -> tuple[str, ...]:
    """``PHENOM_BACKENDS`` (comma-separated: synapse, hasura) in order, de-duplicated."""
    raw = env.get(BACKENDS_ENV) or default
    names = tuple(dict.fromkeys(b.strip().lower() for b in raw.split(",") if b.strip()))
    unknown = [b for b in names if b not in KNOWN_BACKENDS]
    if unknown or not names:
        raise ValueError(
            f"{BACKENDS_ENV}={raw!r}: use synapse, hasura or synapse,hasura (unknown: {unknown})"
        )
    return names


def enabled(env: Mapping[str, str], name: str, default: str = "synapse") -> bool:
    return name in backends(env, default)


def reset() -> None:
    global _conn
    if _conn is not None:
        _conn.close()
    _conn = None
    _secret_dsn.clear()


def _connect(env: Mapping[str, str], timeout_s: float) -> psycopg.Connection[Any]:
    global _conn
    if _conn is None or _conn.closed or _conn.broken:
        _conn = psycopg.connect(
            chat_dsn(env),
            autocommit=True,
            connect_timeout=max(1, int(timeout_s)),
            options=f"-c statement_timeout={max(100, int(timeout_s * 1000))}",
        )
    return _conn


def run(env: Mapping[str, str], timeout_s: float, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
    """``fn(connection)``; a connection that turns out dead is replaced and ``fn`` retried once
    (each ``fn`` here is one transaction, so a retry never doubles a write)."""
    conn = _connect(env, timeout_s)
    try:
        return fn(conn)
    except psycopg.OperationalError:
        if not conn.broken and not conn.closed:
            raise
        reset()
        return fn(_connect(env, timeout_s))


def provision_identity(
    user_name: str,
    identity: cognito_claims.CognitoIdentity,
    timeout_s: float,
    started: float,
    logger: logging.Logger,
) -> None:
    """Implementation B: the chat.users row and memberships, same rooms core. Never raises."""
    try:
        config = lite_settings.rooms_config(None, os.environ)
        user = lite_provision.user_from_identity(identity)
        result = run(
            os.environ,
            timeout_s,
            lambda conn: lite_provision.provision_user(conn, config, user, source="lambda"),
        )
    except psycopg.OperationalError as err:
        logger.warning(
            "user provisioner: chat database unreachable for %s: %s: %s (sign-in continues)",
            user_name,
            type(err).__name__,
            str(err).strip(),
        )
        return
    except (BotoCoreError, ClientError) as err:
        logger.warning(
            "user provisioner: chat database secret unavailable for %s: %s (sign-in continues)",
            user_name,
            err,
        )
        return
    except (psycopg.Error, ValueError) as err:
        logger.error(
            "user provisioner: cannot provision %s in the chat database: %s (sign-in continues)",
            user_name,
            str(err).strip(),
        )
        return
    except Exception:
        logger.exception(
            "user provisioner: unexpected error for %s in the chat database (sign-in continues)",
            user_name,
        )
        return
    logger.info(
        "user provisioner: chat database user %s (%s) %s in %.0f ms; "
        "groups %s; joined %s; removed %s",
        result.username,
        result.user_id,
        "created" if result.created else "updated",
        (time.monotonic() - started) * 1000,
        ",".join(result.groups) or "-",
        ",".join(result.joined) or "-",
        ",".join(result.removed) or "-",
    )
