"""The Hasura project directory (``hasura/``): where it is and what migrations it holds.

One function finds it, from a checkout (``synapse_phenom/lite/hasura`` is a symlink to the
repository's ``hasura/``) and from an installed wheel (the files are package data there).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import attrs

HASURA_DIR_ENV = "PHENOM_HASURA_DIR"
DEFAULT_DATABASE = "default"
# Hasura CLI layout: migrations/<database>/<version>_<name>/{up,down}.sql; the CLI's versions
# are millisecond timestamps (13 digits), any bigint works.
_MIGRATION_DIR = re.compile(r"^(?P<version>[0-9]{1,18})_(?P<name>[A-Za-z0-9_.-]+)$")


class ProjectError(ValueError):
    """The Hasura project directory is missing or malformed; the text names the file."""


@attrs.frozen
class Migration:
    version: int
    name: str
    path: Path
    up_sql: str = attrs.field(repr=False)
    down_sql: str | None = attrs.field(repr=False)  # None: no down.sql (cannot be rolled back)


def hasura_dir(env: dict[str, str] | None = None) -> Path:
    """The Hasura project directory: ``$PHENOM_HASURA_DIR`` if set, else the packaged one."""
    env = dict(os.environ) if env is None else env
    root = (
        Path(env[HASURA_DIR_ENV]) if env.get(HASURA_DIR_ENV) else Path(__file__).parent / "hasura"
    )
    if not (root / "config.yaml").is_file():
        where = f"${HASURA_DIR_ENV}={root}" if env.get(HASURA_DIR_ENV) else str(root)
        raise ProjectError(f"no Hasura project at {where} (config.yaml missing)")
    return root


def migrations_dir(root: Path, database: str = DEFAULT_DATABASE) -> Path:
    return root / "migrations" / database


def load_migrations(root: Path, database: str = DEFAULT_DATABASE) -> list[Migration]:
    """Every migration of ``database``, oldest first. Unknown entries are errors, not skipped:
    a typo in a directory name must not silently leave a migration out."""
    base = migrations_dir(root, database)
    if not base.is_dir():
        raise ProjectError(f"{base}: no migrations directory for database {database!r}")
    found: dict[int, Migration] = {}
    for entry in sorted(base.iterdir()):
        if entry.name.startswith("."):
            continue
        m = _MIGRATION_DIR.match(entry.name)
        if not entry.is_dir() or m is None:
            raise ProjectError(f"{entry}: not a migration directory (expected <version>_<name>/)")
        version = int(m["version"])
        if version in found:
            raise ProjectError(f"{entry}: version {version} also used by {found[version].path}")
        up = entry / "up.sql"
        down = entry / "down.sql"
        if not up.is_file():
            raise ProjectError(f"{entry}: up.sql missing")
        found[version] = Migration(
            version=version,
            name=m["name"],
            path=entry,
            up_sql=up.read_text(encoding="utf-8"),
            down_sql=down.read_text(encoding="utf-8") if down.is_file() else None,
        )
    return [found[v] for v in sorted(found)]
