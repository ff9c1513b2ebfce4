"""`phenom-chat lite migrate` on real PostgreSQL: idempotent up, clean down, Hasura CLI state."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fixtures_lite import fresh_database

from synapse_phenom.lite import migrate, project

VERSION = 1796050000000  # the first migration: the chat schema
MIGRATIONS = project.load_migrations(project.hasura_dir())
VERSIONS = [m.version for m in MIGRATIONS]
CLI = [str(Path(sys.executable).parent / "phenom-chat")]


@pytest.fixture
def empty_dsn() -> Iterator[str]:
    with fresh_database("phenom_lite_mig_") as dsn:
        yield dsn


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "lite", "migrate", *args], capture_output=True, text=True, timeout=120, env=env
    )


def one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def schema_objects(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT c.relkind::text, c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'chat' ORDER BY 2"
    ).fetchall()


def test_up_twice_is_a_no_op_down_removes_everything_up_again(empty_dsn: str) -> None:
    first = cli("up", "--dsn", empty_dsn)
    assert first.returncode == 0, first.stderr
    assert f"applied {VERSION}_chat_schema" in first.stdout
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        objects = schema_objects(conn)
        assert ("r", "messages") in objects and ("v", "room_readers") in objects
        rows = conn.execute("SELECT version, dirty FROM hdb_catalog.schema_migrations ORDER BY 1")
        assert rows.fetchall() == [(v, False) for v in VERSIONS]

    second = cli("up", "--dsn", empty_dsn)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    status = cli("status", "--dsn", empty_dsn)
    assert status.returncode == 0
    assert f"{VERSION}" in status.stdout and "Present         Present" in status.stdout
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert schema_objects(conn) == objects  # nothing re-created or duplicated

    down = cli("down", "--all", "--dsn", empty_dsn)
    assert down.returncode == 0, down.stderr
    assert f"rolled back {VERSION}_chat_schema" in down.stdout
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert one(conn, "SELECT to_regnamespace('chat') IS NULL") is True
        assert one(conn, "SELECT count(*) FROM hdb_catalog.schema_migrations") == 0
        # nothing of ours is left outside the bookkeeping table
        assert one(conn, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'user_can_%'") == 0

    again = cli("up", "--dsn", empty_dsn)
    assert again.returncode == 0, again.stderr
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert schema_objects(conn) == objects


def test_down_with_nothing_applied_and_bad_arguments(empty_dsn: str) -> None:
    result = cli("down", "--dsn", empty_dsn)
    assert result.returncode == 0 and "nothing to do" in result.stdout
    bad = cli("up", "--all", "--dsn", empty_dsn)
    assert bad.returncode == 2 and "--all only applies to down" in bad.stderr
    unreachable = cli("status", "--dsn", "postgresql://postgres@127.0.0.1:1/nothing")
    assert unreachable.returncode == 2 and "cannot connect" in unreachable.stderr


HDB_VERSION = """
CREATE TABLE hdb_catalog.hdb_version (
    hasura_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    version text NOT NULL,
    upgraded_on timestamptz NOT NULL,
    cli_state jsonb NOT NULL DEFAULT '{}'::jsonb,
    console_state jsonb NOT NULL DEFAULT '{}'::jsonb
);
INSERT INTO hdb_catalog.hdb_version (version, upgraded_on, cli_state)
VALUES ('48', now(), '{"settings": {"migration_mode": "true"}, "isStateCopyCompleted": true}');
"""


def test_hasura_v3_cli_state_is_kept_in_step(empty_dsn: str) -> None:
    """With Hasura's metadata catalog in the same database (hdb_catalog.hdb_version, where a
    config v3 CLI keeps its state), both stores are written and either one counts."""
    migrations = project.load_migrations(project.hasura_dir())
    with migrate.connect(empty_dsn) as conn:
        conn.execute("CREATE SCHEMA hdb_catalog")
        conn.execute(HDB_VERSION.encode())
        assert [m.version for m in migrate.up(conn, migrations)] == VERSIONS
        state = one(conn, "SELECT cli_state FROM hdb_catalog.hdb_version")
        assert state["migrations"] == {"default": {str(v): False for v in VERSIONS}}
        assert state["settings"] == {"migration_mode": "true"}  # the CLI's own keys survive
        migrate.down(conn, migrations, None)
        assert one(conn, "SELECT cli_state FROM hdb_catalog.hdb_version")["migrations"] == {
            "default": {}
        }

        # Applied by the Hasura CLI (only its state says so): our `up` must not run it again.
        for m in migrations:
            conn.execute(m.up_sql.encode())
        applied = {str(v): False for v in VERSIONS}
        conn.execute(
            "UPDATE hdb_catalog.hdb_version SET cli_state = %s::jsonb",
            (json.dumps({"migrations": {"default": applied}, "settings": {}}),),
        )
        assert migrate.up(conn, migrations) == []
        rows = migrate.status(conn, migrations)
        assert [(r.version, r.database_present) for r in rows] == [(v, True) for v in VERSIONS]

        # A dirty version (a CLI run that stopped midway) blocks both directions.
        conn.execute(
            "UPDATE hdb_catalog.hdb_version SET cli_state = %s::jsonb",
            (json.dumps({"migrations": {"default": {str(VERSION): True}}}),),
        )
        with pytest.raises(migrate.MigrationError, match="dirty"):
            migrate.up(conn, migrations)
        with pytest.raises(migrate.MigrationError, match="dirty"):
            migrate.down(conn, migrations)


def test_a_failing_migration_leaves_nothing_behind(empty_dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "hasura"
    shutil.copytree(project.hasura_dir(), root)
    broken = root / "migrations" / "default" / "1900000000000_broken"
    broken.mkdir()
    (broken / "up.sql").write_text("CREATE TABLE chat.half (id int);\nSELECT no_such_function();\n")
    (broken / "down.sql").write_text("DROP TABLE chat.half;\n")
    result = cli("up", "--dsn", empty_dsn, "--project-dir", str(root))
    assert result.returncode == 2
    assert "1900000000000_broken/up.sql failed, nothing of it was applied" in result.stderr
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        # the good migrations before it stay applied; the broken one left no table, no state
        rows = conn.execute("SELECT version FROM hdb_catalog.schema_migrations ORDER BY 1")
        assert rows.fetchall() == [(v,) for v in VERSIONS]
        assert one(conn, "SELECT to_regclass('chat.half') IS NULL") is True


def test_project_errors_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "hasura"
    (root / "migrations" / "default" / "not-a-version").mkdir(parents=True)
    (root / "config.yaml").write_text("version: 3\n")
    with pytest.raises(project.ProjectError, match="not-a-version: not a migration directory"):
        project.load_migrations(root)
    with pytest.raises(project.ProjectError, match=r"config\.yaml missing"):
        project.hasura_dir({"PHENOM_HASURA_DIR": str(tmp_path / "nowhere")})


def test_concurrent_runs_apply_once(empty_dsn: str) -> None:
    """Two deployments starting at once: the advisory lock serialises them."""
    procs = [
        subprocess.Popen(
            [*CLI, "lite", "migrate", "up", "--dsn", empty_dsn], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted("applied" in o and "nothing to do" not in o for o in outputs) == [False, True]


def test_separate_hasura_metadata_database(empty_dsn: str) -> None:
    """Hasura's metadata in another database (HASURA_GRAPHQL_METADATA_DATABASE_URL): the CLI's
    v3 state is kept there, the schema and schema_migrations here."""
    with fresh_database("phenom_lite_meta_") as meta_dsn:
        refused = cli("up", "--dsn", empty_dsn, "--hasura-metadata-dsn", meta_dsn)
        assert refused.returncode == 2 and "no hdb_catalog.hdb_version" in refused.stderr
        with psycopg.connect(meta_dsn, autocommit=True) as meta:
            meta.execute("CREATE SCHEMA hdb_catalog")
            meta.execute(HDB_VERSION.encode())
        up = cli("up", "--dsn", empty_dsn, "--hasura-metadata-dsn", meta_dsn)
        assert up.returncode == 0, up.stderr
        with psycopg.connect(meta_dsn, autocommit=True) as meta:
            state = one(meta, "SELECT cli_state FROM hdb_catalog.hdb_version")
            assert state["migrations"] == {"default": {str(v): False for v in VERSIONS}}
            assert one(meta, "SELECT to_regnamespace('chat') IS NULL") is True
        with psycopg.connect(empty_dsn, autocommit=True) as conn:
            assert one(conn, "SELECT count(*) FROM hdb_catalog.schema_migrations") == len(VERSIONS)
            assert one(conn, "SELECT to_regclass('hdb_catalog.hdb_version') IS NULL") is True
        down = cli("down", "--all", "--dsn", empty_dsn, "--hasura-metadata-dsn", meta_dsn)
        assert down.returncode == 0, down.stderr
        with psycopg.connect(meta_dsn, autocommit=True) as meta:
            assert one(meta, "SELECT cli_state FROM hdb_catalog.hdb_version")["migrations"] == {
                "default": {}
            }
