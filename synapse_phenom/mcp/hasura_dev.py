"""Implementation B's database for ``phenom-chat dev --backend hasura`` and the tests.

``prepare_database`` applies the Hasura project's migrations (the very files a Hasura CLI
applies, through ``synapse_phenom.lite.migrate``) and provisions the managed rooms from the
rooms core, plus the system user as each room's admin (on Synapse it is the rooms' creator).
``embedded_postgres`` starts a private PostgreSQL from the ``pgserver`` wheel when no
database URL is given: nothing to install on the machine but the pip extra ``dev``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import psycopg

from synapse_phenom.rooms.config import RoomsConfig

logger = logging.getLogger(__name__)

SYSTEM_USER_ID = "phenom-system"  # not a Cognito sub: no one can sign in as it


def prepare_database(dsn: str, rooms: RoomsConfig | None = None) -> dict[str, str]:
    """Migrate ``dsn`` to the newest schema and provision the rooms; room key -> room uuid.

    Idempotent: a second run applies nothing and changes nothing."""
    from synapse_phenom.lite import migrate, project
    from synapse_phenom.lite.provision import ensure_rooms

    rooms = rooms or RoomsConfig()
    with migrate.connect(dsn) as conn:
        applied = migrate.up(conn, project.load_migrations(project.hasura_dir()))
        if applied:
            logger.info("applied migrations %s", [m.version for m in applied])
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        ids = ensure_rooms(conn, rooms)
        _ensure_system_user(conn, rooms, ids)
    return ids


def _ensure_system_user(
    conn: psycopg.Connection[Any], rooms: RoomsConfig, ids: dict[str, str]
) -> None:
    conn.execute(
        """
        INSERT INTO chat.users (id, username, display_name, groups_source)
        VALUES (%s, %s, %s, 'system')
        ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name
        """,
        (SYSTEM_USER_ID, rooms.system_user, rooms.system_display_name),
    )
    for room_id in ids.values():
        conn.execute(
            """
            INSERT INTO chat.memberships (room_id, user_id, membership, role)
            VALUES (%s, %s, 'join', 'admin')
            ON CONFLICT (room_id, user_id) DO UPDATE SET membership = 'join', role = 'admin'
            """,
            (room_id, SYSTEM_USER_ID),
        )


@attrs.define
class EmbeddedPostgres:
    """A private PostgreSQL server (``pgserver``) in ``data_dir``; stopped by ``stop``."""

    data_dir: Path
    _server: Any = None

    @property
    def dsn(self) -> str:
        assert self._server is not None
        return str(self._server.get_uri())

    def start(self) -> EmbeddedPostgres:
        try:
            import pgserver
        except ImportError:
            raise RuntimeError(
                "no --database-url given and the embedded PostgreSQL is not installed: "
                "pip install 'synapse-phenom[dev]' (pgserver), or pass --database-url postgresql://..."
            ) from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop": stop the server when we are done, keep the data for the next run.
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
