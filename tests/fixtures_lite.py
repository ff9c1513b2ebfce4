"""Session fixtures of Implementation B ("Hasura Lite"): fresh PostgreSQL databases.

The DSN comes from PHENOM_TEST_POSTGRES_DSN (default postgresql://postgres@127.0.0.1:5432/
postgres, the CI and dev server). Each session gets its own database, dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from synapse_phenom.lite import migrate, project, provision
from synapse_phenom.rooms.config import RoomsConfig

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_dsn() -> str:
    return os.environ.get("PHENOM_TEST_POSTGRES_DSN") or DEFAULT_DSN


@contextmanager
def fresh_database(prefix: str = "phenom_lite_") -> Iterator[str]:
    """A new, empty database on the test server; dropped afterwards. Yields its DSN."""
    admin = server_dsn()
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def migrate_up(dsn: str) -> list[project.Migration]:
    with migrate.connect(dsn) as conn:
        return migrate.up(conn, project.load_migrations(project.hasura_dir()))


@pytest.fixture(scope="session")
def lite_dsn() -> Iterator[str]:
    """A migrated database with the three rooms (default rooms config); shared by the session:
    tests isolate themselves with fresh user ids."""
    with fresh_database() as dsn:
        migrate_up(dsn)
        with migrate.connect(dsn) as conn:
            provision.ensure_rooms(conn, RoomsConfig())
        yield dsn


@pytest.fixture
def lite_conn(lite_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(lite_dsn, autocommit=True) as conn:
        yield conn
