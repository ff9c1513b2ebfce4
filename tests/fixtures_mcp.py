"""Session fixtures of the mcp area; `mcp_synapse_config` feeds the shared Synapse.

The shared Synapse loads the MCP application service registration; `mcp_stack` runs
the real MCP server (``phenom-chat mcp``, a separate process on a free port) in front
of it, trusting a local dev signer for tokens. `hasura_mcp_stack` runs the same server
with ``backend: hasura`` on a fresh database of the test PostgreSQL, migrated with the
Hasura project's migrations. Tests taking `chat` run on every backend: the
``db_engine`` parameters become sqlite, postgres (Synapse on either) and hasura.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx2
import pytest
from chat_worlds import ChatWorld, LiteWorld, SynapseWorld
from fixtures_previews import previews_module_config
from harness import (
    SynapseConfigPart,
    SynapseStack,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    require_postgres_dsn,
)
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from previews_site import PhenomSite

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.mcp.devkeys import DevSigner
from synapse_phenom.ops import devstack
from synapse_phenom.previews.config import ResolverConfig

FULL = "test-agent-full"  # every room, every scope it is given
COMMUNITY = "test-agent-community"  # community only
SLOW = "test-agent-slow"  # 3 calls per minute
ALL_SCOPES = ("read", "write", "moderate")

TEST_AGENTS = {
    FULL: {
        "localpart": "agent-full",
        "display_name": "Full Agent",
        "rooms": ["internal", "partners", "community"],
        "rate_limit_per_minute": 100_000,
    },
    COMMUNITY: {
        "localpart": "agent-community",
        "rooms": ["community"],
        "rate_limit_per_minute": 100_000,
    },
    SLOW: {"localpart": "agent-slow", "rooms": ["community"], "rate_limit_per_minute": 3},
}


@pytest.fixture(scope="session")
def mcp_registration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mcp_dev.write_registration_file(tmp_path_factory.mktemp("mcp-appservice"), "localhost")


@pytest.fixture(scope="session")
def mcp_synapse_config(mcp_registration: Path) -> SynapseConfigPart:
    """The shared Synapse loads the MCP application service (agents are unmanaged by
    the rooms module by default: hsconfig.default_modules)."""
    return SynapseConfigPart(extra_values={"app_service_config_files": [str(mcp_registration)]})


BACKENDS = ("sqlite", "postgres", "hasura")  # db_engine values of tests taking `chat`


@pytest.hookimpl(tryfirst=True)  # before the fixture's own params are applied
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chat" in metafunc.fixturenames:
        # As a mark, so that pytest lets it take precedence over db_engine's own params.
        metafunc.definition.add_marker(
            pytest.mark.parametrize("db_engine", BACKENDS, indirect=True, scope="session")
        )


@attrs.frozen
class McpStack:
    url: str  # .../mcp
    base_url: str
    signer: DevSigner
    process: devstack.ManagedProcess
    config_path: Path
    world: ChatWorld
    backend: str = "synapse"  # or "hasura"
    synapse_stack: SynapseStack | None = None

    @property
    def synapse(self) -> SynapseStack:
        assert self.synapse_stack is not None, "a Synapse-only check ran on the hasura backend"
        return self.synapse_stack

    @property
    def rooms(self) -> dict[str, str]:
        return dict(self.world.rooms)

    def token(
        self, client_id: str = FULL, scopes: tuple[str, ...] = ALL_SCOPES, lifetime: int = 600
    ) -> str:
        return self.signer.token(client_id, scopes, lifetime=lifetime)

    def agent_user_id(self, client_id: str = FULL) -> str:
        return f"@{TEST_AGENTS[client_id]['localpart']}:localhost"

    @asynccontextmanager
    async def client(self, token: str | None = None) -> AsyncIterator[Client]:
        """A real MCP client over streamable HTTP with this bearer token."""
        token = token if token is not None else self.token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0)) as http,
            Client(streamable_http_client(self.url, http_client=http)) as client,
        ):
            yield client


@contextmanager
def _running_mcp(files: mcp_dev.McpDevFiles, port: int, **stack: Any) -> Iterator[McpStack]:
    """The real MCP server process for ``files`` on ``port``, healthy, stopped afterwards."""
    process = mcp_dev.start_mcp(files.config, "127.0.0.1", port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        devstack.wait_http(f"{base_url}/health", [process], timeout=60)
        yield McpStack(
            url=f"{base_url}/mcp",
            base_url=base_url,
            signer=files.signer,
            process=process,
            config_path=files.config,
            **stack,
        )
    finally:
        process.stop()


@pytest.fixture(scope="session")
def mcp_stack(
    synapse: SynapseStack, mcp_registration: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpStack]:
    data_dir = tmp_path_factory.mktemp(f"mcp-{synapse.engine}")
    port = free_port()
    files = mcp_dev.prepare_mcp(
        data_dir, synapse.base_url, port=port, agents=TEST_AGENTS, registration=mcp_registration
    )
    with _running_mcp(files, port, world=SynapseWorld(synapse), synapse_stack=synapse) as stack:
        yield stack


@pytest.fixture(scope="session")
def hasura_database() -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh database on the test PostgreSQL, migrated and provisioned: (dsn, room uuids)."""
    from synapse_phenom.mcp.hasura_dev import prepare_database

    server = require_postgres_dsn("the hasura backend")
    database = create_postgres_database(server)
    dsn = urlunsplit(urlsplit(server)._replace(path=f"/{database.name}"))
    try:
        rooms = prepare_database(dsn)
        yield dsn, rooms
    finally:
        drop_postgres_database(server, database.name)


@pytest.fixture(scope="session")
def hasura_mcp_stack(
    hasura_database: tuple[str, dict[str, str]],
    phenom_site: PhenomSite,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[McpStack]:
    dsn, rooms = hasura_database
    data_dir = tmp_path_factory.mktemp("mcp-hasura")
    port = free_port()
    # The resolver's keys only (the module's budget and composer rate limit are Synapse-side).
    previews = {
        k: v
        for k, v in previews_module_config(phenom_site).items()
        if k in ResolverConfig.model_fields
    }
    files = mcp_dev.prepare_mcp_hasura(
        data_dir, dsn, port=port, agents=TEST_AGENTS, previews=previews
    )
    with _running_mcp(files, port, world=LiteWorld(dsn, rooms), backend="hasura") as stack:
        yield stack


@pytest.fixture
def chat(db_engine: str, request: pytest.FixtureRequest) -> McpStack:
    """The MCP server on the backend of this run: Synapse (SQLite or PostgreSQL) or hasura."""
    if db_engine == "hasura":
        return request.getfixturevalue("hasura_mcp_stack")
    return request.getfixturevalue("mcp_stack")
