"""Session fixtures: one real Synapse per database engine.

Every test that takes ``synapse`` runs on SQLite and, when PHENOM_TEST_POSTGRES_DSN is
set, again on PostgreSQL. On CI (CI=true) a missing DSN is an error, not a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    SynapseConfigPart,
    SynapseStack,
    create_postgres_database,
    drop_postgres_database,
    merge_parts,
    postgres_dsn,
    require_postgres_dsn,
)

from synapse_phenom.ops import hsconfig

# Each area keeps its session fixtures in its own file; each provides
# `<area>_synapse_config`, merged into the shared Synapse's config below.
pytest_plugins = [
    "fixtures_cognito",
    "fixtures_moderation",
    "fixtures_previews",
    "fixtures_mcp",
    "fixtures_lite",
]


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def db_engine(request: pytest.FixtureRequest) -> str:
    engine = str(request.param)
    if engine in ("postgres", "hasura"):  # hasura: Implementation B (tests taking `chat`)
        require_postgres_dsn(f"the {engine} run")
    return engine


@pytest.fixture(scope="session")
def synapse_database(db_engine: str) -> Iterator[hsconfig.DevDatabase]:
    if db_engine == "sqlite":
        yield hsconfig.DevDatabase()
        return
    dsn = postgres_dsn()
    assert dsn
    database = create_postgres_database(dsn)
    yield database
    drop_postgres_database(dsn, database.name)


@pytest.fixture(scope="session")
def synapse_config(
    cognito_synapse_config: SynapseConfigPart,
    moderation_synapse_config: SynapseConfigPart,
    previews_synapse_config: SynapseConfigPart,
    mcp_synapse_config: SynapseConfigPart,
) -> SynapseConfigPart:
    return merge_parts(
        [
            cognito_synapse_config,
            moderation_synapse_config,
            previews_synapse_config,
            mcp_synapse_config,
        ]
    )


@pytest.fixture(scope="session")
def synapse(
    synapse_database: hsconfig.DevDatabase,
    synapse_config: SynapseConfigPart,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SynapseStack]:
    """The shared Synapse of this engine, with every Phenom module loaded."""
    data_dir: Path = tmp_path_factory.mktemp(f"synapse-{synapse_database.engine}")
    stack = SynapseStack.start(
        data_dir,
        synapse_database,
        module_overrides=synapse_config.module_overrides,
        extra_values=synapse_config.extra_values,
    )
    yield stack
    stack.stop()
