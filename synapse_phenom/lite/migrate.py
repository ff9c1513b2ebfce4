"""Apply the Hasura project's migrations with psycopg 3, keeping the Hasura CLI's books.

State is written where the Hasura CLI keeps it, so ``hasura migrate status`` and
``phenom-chat lite migrate status`` agree:

- ``hdb_catalog.schema_migrations (version bigint not null primary key, dirty boolean not
  null)``: the CLI's table (config v2, and the source ``hasura scripts update-project-v3``
  copies from); always written.
- ``hdb_catalog.hdb_version.cli_state -> migrations -> <database> -> "<version>": dirty``:
  where a config v3 CLI keeps it (through Hasura's catalog-state API). Written when that
  table exists in this database, i.e. when Hasura's metadata lives here too, or in the
  metadata database given as ``meta`` (``--hasura-metadata-dsn``).

Each migration runs in its own transaction together with its bookkeeping, so a failed
migration leaves nothing behind (never a "dirty" version); concurrent runs are serialised
with an advisory lock. A version either store lists counts as applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import psycopg
from psycopg.types.json import Jsonb

from synapse_phenom.lite.project import DEFAULT_DATABASE, Migration

# pg_advisory_lock key: "phenom lite migrate" (any constant; documented for operators).
LOCK_KEY = 0x7068656E6F6D6C74
STATE_SCHEMA = "hdb_catalog"
STATE_TABLE = "hdb_catalog.schema_migrations"


class MigrationError(RuntimeError):
    """A migration cannot be applied or rolled back; the text says which and why."""


@attrs.frozen
class VersionStatus:
    version: int
    name: str | None  # None: applied in the database, no files here
    source_present: bool
    database_present: bool
    dirty: bool = False


@attrs.frozen
class AppliedState:
    versions: frozenset[int]
    dirty: frozenset[int] = frozenset()


# -- pure planning -----------------------------------------------------------------------


def plan_up(
    migrations: Sequence[Migration], state: AppliedState, steps: int | None
) -> list[Migration]:
    """Pending migrations, oldest first, at most ``steps`` of them."""
    if state.dirty:
        raise MigrationError(_dirty_message(state.dirty))
    pending = [m for m in migrations if m.version not in state.versions]
    return pending if steps is None else pending[: max(steps, 0)]


def plan_down(
    migrations: Sequence[Migration], state: AppliedState, steps: int | None
) -> list[Migration]:
    """Applied migrations to roll back, newest first (``steps`` None: all). Checked in full
    before anything runs: every one must have its files and a down.sql."""
    if state.dirty:
        raise MigrationError(_dirty_message(state.dirty))
    by_version = {m.version: m for m in migrations}
    applied = sorted(state.versions, reverse=True)
    chosen = applied if steps is None else applied[: max(steps, 0)]
    plan = []
    for version in chosen:
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"version {version} is applied in the database but has no files here; "
                "roll it back with the project that added it"
            )
        if migration.down_sql is None:
            raise MigrationError(f"{migration.path}: down.sql missing, cannot roll back")
        plan.append(migration)
    return plan


def status_rows(migrations: Iterable[Migration], state: AppliedState) -> list[VersionStatus]:
    files = {m.version: m for m in migrations}
    rows = []
    for version in sorted(set(files) | state.versions):
        m = files.get(version)
        rows.append(
            VersionStatus(
                version=version,
                name=m.name if m else None,
                source_present=m is not None,
                database_present=version in state.versions,
                dirty=version in state.dirty,
            )
        )
    return rows


def _dirty_message(dirty: Iterable[int]) -> str:
    versions = ", ".join(str(v) for v in sorted(dirty))
    return (
        f"migration state is dirty for version(s) {versions}: an earlier run (Hasura CLI) "
        "stopped midway. Repair the schema by hand, then mark the version clean "
        f"(UPDATE {STATE_TABLE} SET dirty = false WHERE version = ...)"
    )


def cli_state_with(
    state: dict[str, Any] | None, database: str, version: int, applied: bool
) -> dict[str, Any]:
    """The Hasura CLI's catalog state with ``version`` set (clean) or removed."""
    new = dict(state or {})
    migrations = {k: dict(v) for k, v in (new.get("migrations") or {}).items()}
    versions = migrations.setdefault(database, {})
    if applied:
        versions[str(version)] = False
    else:
        versions.pop(str(version), None)
    new["migrations"] = migrations
    new.setdefault("settings", {})
    return new


# -- database ----------------------------------------------------------------------------


def connect(dsn: str) -> psycopg.Connection[Any]:
    """An autocommit connection (each step opens its own transaction)."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


def _has_hdb_version(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('hdb_catalog.hdb_version') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _prepare(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
            "(version bigint not null primary key, dirty boolean not null)"
        )


def read_state(
    conn: psycopg.Connection[Any],
    database: str = DEFAULT_DATABASE,
    meta: psycopg.Connection[Any] | None = None,
) -> AppliedState:
    """Applied versions from both stores; ``meta``: Hasura's metadata database when it is not
    this one (its ``hdb_version.cli_state`` is read there)."""
    versions: set[int] = set()
    dirty: set[int] = set()
    if conn.execute(f"SELECT to_regclass('{STATE_TABLE}') IS NOT NULL").fetchone() == (True,):
        for version, is_dirty in conn.execute(f"SELECT version, dirty FROM {STATE_TABLE}"):
            versions.add(int(version))
            if is_dirty:
                dirty.add(int(version))
    catalog = meta if meta is not None else conn
    if _has_hdb_version(catalog):
        for (cli_state,) in catalog.execute("SELECT cli_state FROM hdb_catalog.hdb_version"):
            entries = ((cli_state or {}).get("migrations") or {}).get(database) or {}
            for key, is_dirty in entries.items():
                versions.add(int(key))
                if is_dirty:
                    dirty.add(int(key))
    return AppliedState(frozenset(versions), frozenset(dirty))


def _record(
    conn: psycopg.Connection[Any],
    database: str,
    version: int,
    applied: bool,
    meta: psycopg.Connection[Any] | None,
) -> None:
    if applied:
        conn.execute(
            f"INSERT INTO {STATE_TABLE} (version, dirty) VALUES (%s, false)"
            " ON CONFLICT (version) DO UPDATE SET dirty = false",
            (version,),
        )
    else:
        conn.execute(f"DELETE FROM {STATE_TABLE} WHERE version = %s", (version,))
    if meta is None:
        _record_cli_state(conn, database, version, applied)


def _record_cli_state(
    conn: psycopg.Connection[Any], database: str, version: int, applied: bool
) -> None:
    if _has_hdb_version(conn):
        rows = conn.execute(
            "SELECT hasura_uuid, cli_state FROM hdb_catalog.hdb_version FOR UPDATE"
        ).fetchall()
        for hasura_uuid, cli_state in rows:
            conn.execute(
                "UPDATE hdb_catalog.hdb_version SET cli_state = %s WHERE hasura_uuid = %s",
                (Jsonb(cli_state_with(cli_state, database, version, applied)), hasura_uuid),
            )


class _Locked:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def __enter__(self) -> psycopg.Connection[Any]:
        self.conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if not self.conn.closed and not self.conn.broken:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _run(
    conn: psycopg.Connection[Any],
    migration: Migration,
    sql: str,
    database: str,
    applied: bool,
    meta: psycopg.Connection[Any] | None = None,
) -> None:
    direction = "up" if applied else "down"
    try:
        with conn.transaction():
            conn.execute(sql.encode())  # bytes: no placeholder parsing; several statements
            _record(conn, database, migration.version, applied, meta)
    except psycopg.Error as err:
        raise MigrationError(
            f"{migration.path.name}/{direction}.sql failed, nothing of it was applied: "
            f"{type(err).__name__}: {str(err).strip()}"
        ) from None
    if meta is None:
        return
    try:  # another database: written right after the migration's own commit
        with meta.transaction():
            _record_cli_state(meta, database, migration.version, applied)
    except psycopg.Error as err:
        flag = "" if applied else " --type down"
        raise MigrationError(
            f"{migration.path.name} was {'applied' if applied else 'rolled back'}, but Hasura's "
            f"metadata database was not updated ({str(err).strip()}); run `hasura migrate apply "
            f"--skip-execution --version {migration.version}{flag} --database-name {database}`"
        ) from None


def _check_meta(meta: psycopg.Connection[Any] | None) -> None:
    if meta is not None and not _has_hdb_version(meta):
        raise MigrationError(
            "the Hasura metadata database has no hdb_catalog.hdb_version: "
            "is it the database of HASURA_GRAPHQL_METADATA_DATABASE_URL, "
            "and has Hasura started once?"
        )


def up(
    conn: psycopg.Connection[Any],
    migrations: Sequence[Migration],
    steps: int | None = None,
    database: str = DEFAULT_DATABASE,
    meta: psycopg.Connection[Any] | None = None,
) -> list[Migration]:
    """Apply pending migrations (all, or ``steps``); returns what was applied."""
    _check_meta(meta)
    with _Locked(conn):
        _prepare(conn)
        plan = plan_up(migrations, read_state(conn, database, meta), steps)
        for migration in plan:
            _run(conn, migration, migration.up_sql, database, True, meta)
    return plan


def down(
    conn: psycopg.Connection[Any],
    migrations: Sequence[Migration],
    steps: int | None = 1,
    database: str = DEFAULT_DATABASE,
    meta: psycopg.Connection[Any] | None = None,
) -> list[Migration]:
    """Roll back the newest ``steps`` applied migrations (None: all); returns them."""
    _check_meta(meta)
    with _Locked(conn):
        _prepare(conn)
        plan = plan_down(migrations, read_state(conn, database, meta), steps)
        for migration in plan:
            assert migration.down_sql is not None  # plan_down checked
            _run(conn, migration, migration.down_sql, database, False, meta)
    return plan


def status(
    conn: psycopg.Connection[Any],
    migrations: Sequence[Migration],
    database: str = DEFAULT_DATABASE,
    meta: psycopg.Connection[Any] | None = None,
) -> list[VersionStatus]:
    _check_meta(meta)
    return status_rows(migrations, read_state(conn, database, meta))
