"""Session fixtures of the mcp area; `mcp_synapse_config` feeds the shared Synapse.

The shared Synapse loads the MCP application service registration; `mcp_stack` runs
the real MCP server (``phenom-chat mcp``, a separate process on a free port) in front
of it, trusting a local dev signer for tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import httpx2
import pytest
from harness import SynapseConfigPart, SynapseStack, free_port
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.mcp.devkeys import DevSigner
from synapse_phenom.ops import devstack

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


@attrs.frozen
class McpStack:
    url: str  # .../mcp
    base_url: str
    signer: DevSigner
    synapse: SynapseStack
    process: devstack.ManagedProcess
    config_path: Path

    def token(
        self, client_id: str = FULL, scopes: tuple[str, ...] = ALL_SCOPES, lifetime: int = 600
    ) -> str:
        return self.signer.token(client_id, scopes, lifetime=lifetime)

    def agent_user_id(self, client_id: str = FULL) -> str:
        return self.synapse.user_id(str(TEST_AGENTS[client_id]["localpart"]))

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


@pytest.fixture(scope="session")
def mcp_stack(
    synapse: SynapseStack, mcp_registration: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[McpStack]:
    data_dir = tmp_path_factory.mktemp(f"mcp-{synapse.engine}")
    port = free_port()
    files = mcp_dev.prepare_mcp(
        data_dir, synapse.base_url, port=port, agents=TEST_AGENTS, registration=mcp_registration
    )
    process = mcp_dev.start_mcp(files.config, "127.0.0.1", port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        devstack.wait_http(f"{base_url}/health", [process], timeout=60)
    except Exception:
        process.stop()
        raise
    yield McpStack(
        url=f"{base_url}/mcp",
        base_url=base_url,
        signer=files.signer,
        synapse=synapse,
        process=process,
        config_path=files.config,
    )
    process.stop()
