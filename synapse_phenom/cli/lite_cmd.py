"""``phenom-chat lite migrate up|down|status``: Implementation B's schema, without the Hasura CLI.

Applies the very files of ``hasura/migrations/default`` and keeps the Hasura CLI's state
(``hdb_catalog.schema_migrations``; ``hdb_version.cli_state`` when Hasura's metadata lives in
the same database), so either tool can take over from the other.
"""

from __future__ import annotations

import argparse
import os

import psycopg

from synapse_phenom.cli._common import console, fail
from synapse_phenom.config import InvalidConfig
from synapse_phenom.lite import migrate, project
from synapse_phenom.lite.settings import DSN_ENV, dsn_from


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lite", help="Implementation B (Hasura Lite): chat schema in PostgreSQL")
    lite_sub = p.add_subparsers(dest="lite_command", required=True, metavar="SUBCOMMAND")
    m = lite_sub.add_parser("migrate", help="apply or roll back the chat schema migrations")
    m.add_argument("action", choices=["up", "down", "status"])
    m.add_argument("--dsn", help=f"PostgreSQL URL (default ${DSN_ENV})")
    m.add_argument(
        "--database-name",
        default=project.DEFAULT_DATABASE,
        help="Hasura source name (default: default)",
    )
    m.add_argument(
        "--project-dir",
        help=f"Hasura project directory (default: packaged; ${project.HASURA_DIR_ENV})",
    )
    m.add_argument(
        "--steps", type=int, help="up: at most N pending; down: the newest N (default 1)"
    )
    m.add_argument("--all", action="store_true", help="down: roll back every applied migration")
    m.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps < 1:
        return fail("--steps must be 1 or more")
    if args.all and args.action != "down":
        return fail("--all only applies to down")
    if args.all and args.steps is not None:
        return fail("--all and --steps exclude each other")
    env = dict(os.environ)
    if args.project_dir:
        env[project.HASURA_DIR_ENV] = args.project_dir
    try:
        dsn = dsn_from(args.dsn, env)
        migrations = project.load_migrations(project.hasura_dir(env), args.database_name)
    except (InvalidConfig, project.ProjectError) as err:
        return fail(str(err))
    try:
        with migrate.connect(dsn) as conn:
            if args.action == "status":
                return _print_status(migrate.status(conn, migrations, args.database_name))
            if args.action == "up":
                done = migrate.up(conn, migrations, args.steps, args.database_name)
            else:
                steps = None if args.all else (args.steps or 1)
                done = migrate.down(conn, migrations, steps, args.database_name)
    except migrate.MigrationError as err:
        return fail(str(err))
    except psycopg.OperationalError as err:
        return fail(f"cannot connect to the chat database: {str(err).strip()}")
    verb = "applied" if args.action == "up" else "rolled back"
    if not done:
        console.print(f"nothing to do: no migration {verb}")
    for m in done:
        console.print(f"{verb} {m.version}_{m.name}")
    return 0


def _print_status(rows: list[migrate.VersionStatus]) -> int:
    console.print(f"{'VERSION':<16}{'NAME':<32}{'SOURCE STATUS':<16}DATABASE STATUS")
    for r in rows:
        console.print(
            f"{r.version:<16}{(r.name or '-'):<32}{'Present' if r.source_present else 'Not Present':<16}"
            f"{'Present' if r.database_present else 'Not Present'}{' (dirty)' if r.dirty else ''}",
            highlight=False,
        )
    return 0
