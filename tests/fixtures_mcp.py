"""Session fixtures of the mcp area; `mcp_synapse_config` feeds the shared Synapse."""

from __future__ import annotations

import pytest
from harness import SynapseConfigPart


@pytest.fixture(scope="session")
def mcp_synapse_config(tmp_path_factory: pytest.TempPathFactory) -> SynapseConfigPart:
    """Extra template values / module config the shared test Synapse needs for mcp."""
    return SynapseConfigPart()
