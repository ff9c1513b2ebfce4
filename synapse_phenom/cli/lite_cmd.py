"""``phenom-chat lite migrate up|down|status``: Implementation B's schema, without the Hasura CLI.
``phenom-chat lite agents revoke|enable``: B's agent revocation (``lite/agents.py``).

Applies the very files of ``hasura/migrations/default`` and keeps the Hasura CLI's state
(``hdb_catalog.schema_migrations``; ``hdb_version.cli_state`` when Hasura's metadata lives in
the same database), so either tool can take over from the other.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any

import psycopg
import yaml

from synapse_phenom.cli._common import console, fail
from synapse_phenom.config import InvalidConfig, parse_model
from synapse_phenom.lite import migrate, project
from synapse_phenom.lite.settings import DSN_ENV, dsn_from


def add_parser(sub: argparse._SubParsersAction) -> None:
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
        "--hasura-metadata-dsn",
        help="Hasura's metadata database when it is not the chat one (the CLI state is kept there)",
    )
    m.add_argument(
        "--steps", type=int, help="up: at most N pending; down: the newest N (default 1)"
    )
    m.add_argument("--all", action="store_true", help="down: roll back every applied migration")
    m.set_defaults(func=run_migrate)
    a = lite_sub.add_parser(
        "serve-actions",
        help="serve the Hasura Action webhook (sendMessage, editMessage, addReaction) on "
        "POST /hasura/actions",
    )
    a.add_argument("--dsn", help=f"PostgreSQL URL (default ${DSN_ENV})")
    a.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    a.add_argument("--port", type=int, default=3002, help="port (default 3002)")
    a.add_argument(
        "--moderation-config",
        type=Path,
        help="moderation config YAML, the module's config (default: the shipped policies)",
    )
    a.add_argument(
        "--previews-config",
        type=Path,
        help="link-preview resolver config YAML (default: the Phenom origins; 'none' disables)",
    )
    a.set_defaults(func=run_actions)
    ag = lite_sub.add_parser("agents", help="AI agents on B: revoke, enable")
    ags = ag.add_subparsers(dest="agents_command", required=True, metavar="ACTION")
    for name, helptext in (
        ("revoke", "the MCP server refuses its tokens (401); its row reads and posts nothing"),
        ("enable", "undo a revoke"),
    ):
        c = ags.add_parser(name, help=helptext)
        c.add_argument("agent", help="agent localpart (agent-helper) or @agent-helper:server")
        c.add_argument("--dsn", help=f"PostgreSQL URL (default ${DSN_ENV})")
        c.set_defaults(func=run_agent_revoke, revoke=name == "revoke")


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
        meta_dsn = args.hasura_metadata_dsn
        with (
            migrate.connect(dsn) as conn,
            migrate.connect(meta_dsn) if meta_dsn else contextlib.nullcontext() as meta,
        ):
            if args.action == "status":
                return _print_status(migrate.status(conn, migrations, args.database_name, meta))
            if args.action == "up":
                done = migrate.up(conn, migrations, args.steps, args.database_name, meta)
            else:
                steps = None if args.all else (args.steps or 1)
                done = migrate.down(conn, migrations, steps, args.database_name, meta)
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
            f"{r.version:<16}{(r.name or '-'):<32}"
            f"{'Present' if r.source_present else 'Not Present':<16}"
            f"{'Present' if r.database_present else 'Not Present'}{' (dirty)' if r.dirty else ''}",
            highlight=False,
        )
    return 0


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InvalidConfig(f"{path}: {err}") from None


def run_actions(args: argparse.Namespace) -> int:
    import uvicorn

    from synapse_phenom.lite.actions import ActionSettings, create_app
    from synapse_phenom.moderation.config import ModerationConfig, default_module_config
    from synapse_phenom.previews.config import ResolverConfig

    secret = os.environ.get("PHENOM_ACTION_SECRET", "")
    if not secret:
        return fail("set PHENOM_ACTION_SECRET (the value Hasura sends in X-Phenom-Action-Secret)")
    try:
        dsn = dsn_from(args.dsn, os.environ)
        raw = _yaml(args.moderation_config) if args.moderation_config else default_module_config()
        moderation = parse_model(ModerationConfig, raw, str(args.moderation_config or "moderation"))
        previews = None
        if str(args.previews_config) != "none":
            raw_previews = _yaml(args.previews_config) if args.previews_config else {}
            previews = parse_model(
                ResolverConfig, raw_previews, str(args.previews_config or "previews")
            )
    except InvalidConfig as err:
        return fail(str(err))
    app = create_app(ActionSettings(dsn, secret, moderation, previews))
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def run_agent_revoke(args: argparse.Namespace) -> int:
    """B's ``phenom-chat admin agents revoke|enable`` (A's goes through Synapse)."""
    from synapse_phenom.lite.agents import agent_username, set_agent_revoked

    try:
        dsn = dsn_from(args.dsn, os.environ)
        with psycopg.connect(dsn, autocommit=True) as conn:
            changed = set_agent_revoked(conn, args.agent, args.revoke)
    except InvalidConfig as err:
        return fail(str(err))
    except ValueError as err:
        return fail(str(err))
    except psycopg.OperationalError as err:
        return fail(f"cannot connect to the chat database: {str(err).strip()}")
    state = "revoked" if args.revoke else "enabled"
    name = agent_username(args.agent)
    console.print(f"{name}: {state}" if changed else f"{name}: already {state}")
    return 0
