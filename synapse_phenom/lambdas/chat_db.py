"""Implementation B's database from a Lambda: one cached psycopg connection per container.

``CHAT_DATABASE_URL`` names the database (``postgresql://user:pass@host:5432/db``). Warm
invocations reuse the connection; one that died while the container was frozen is replaced
once, transparently.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg

from synapse_phenom import cognito_claims
from synapse_phenom.lite import provision as lite_provision
from synapse_phenom.lite import settings as lite_settings
from synapse_phenom.lite.settings import dsn_from

T = TypeVar("T")
BACKENDS_ENV = "PHENOM_BACKENDS"
KNOWN_BACKENDS = ("synapse", "hasura")

_conn: psycopg.Connection[Any] | None = None


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


def _connect(env: Mapping[str, str], timeout_s: float) -> psycopg.Connection[Any]:
    global _conn
    if _conn is None or _conn.closed or _conn.broken:
        _conn = psycopg.connect(
            dsn_from(None, env),
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
        "user provisioner: chat database user %s (%s) %s in %.0f ms; groups %s; joined %s; removed %s",
        result.username,
        result.user_id,
        "created" if result.created else "updated",
        (time.monotonic() - started) * 1000,
        ",".join(result.groups) or "-",
        ",".join(result.joined) or "-",
        ",".join(result.removed) or "-",
    )
