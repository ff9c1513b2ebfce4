"""The MCP session's per-agent room cache against the event loop's clock (pure logic: the
HTTP layer is replaced by a recorder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_phenom.endpoints import AGENT_ROOMS_PATH
from synapse_phenom.mcp import matrix_session
from synapse_phenom.mcp.config import AgentProfile, SynapseBackendConfig


class Recorded(matrix_session.AgentSession):
    def __init__(self) -> None:
        super().__init__(SynapseBackendConfig(registration_file=Path("unused.yaml")), "as-token")
        self.paths: list[str] = []

    async def _request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        json_body: Any = None,
        seconds: float | None = None,
    ) -> tuple[int, Any]:
        self.paths.append(path)
        if path == AGENT_ROOMS_PATH:
            return 200, {"rooms": {"community": "!c:localhost"}}
        return 200, {}


@pytest.mark.parametrize("boot_seconds", [0.0, 3.5, 299.0, 86_400.0])
def test_rooms_are_read_on_first_use_whatever_the_clock_reads(
    monkeypatch: pytest.MonkeyPatch, boot_seconds: float
) -> None:
    """The loop's clock is monotonic time, which starts near 0 on a freshly booted host (a
    new Fargate task): "never read" must not look like "read at 0, still fresh"."""
    now = [boot_seconds]
    monkeypatch.setattr(matrix_session.anyio, "current_time", lambda: now[0])
    session = Recorded()
    agent = AgentProfile(localpart="agent-dev")

    async def scenario() -> None:
        assert await session._ensure_agent(agent) == {"community": "!c:localhost"}
        assert session.paths.count(AGENT_ROOMS_PATH) == 1
        now[0] += matrix_session._ROOMS_TTL_S - 1  # still fresh: no second read
        assert await session._ensure_agent(agent) == {"community": "!c:localhost"}
        assert session.paths.count(AGENT_ROOMS_PATH) == 1
        now[0] += 2  # stale: read again (room upgrades reach running sidecars)
        await session._ensure_agent(agent)
        assert session.paths.count(AGENT_ROOMS_PATH) == 2
        assert session.paths.count("/_matrix/client/v3/register") == 1

    anyio.run(scenario)
