"""Session fixtures of the moderation area; `moderation_synapse_config` feeds the shared Synapse.

The shipped dev config (hsconfig.default_modules) is used as-is; the tests add one
policy room for the ban-list rule. Every other rule is tested in rooms the tests create,
with policies set live through ``app.phenom.moderation.policy`` (the ``default`` policy
of such rooms is empty, so other areas' messages are never blocked).
"""

from __future__ import annotations

import pytest
from harness import SynapseConfigPart

from synapse_phenom.ops.hsconfig import MODERATION_MODULE

# Created by the ban-list test; until then the module skips it.
BAN_LIST_ALIAS_LOCALPART = "moderation-test-bans"


@pytest.fixture(scope="session")
def moderation_synapse_config(tmp_path_factory: pytest.TempPathFactory) -> SynapseConfigPart:
    """Extra template values / module config the shared test Synapse needs for moderation."""
    return SynapseConfigPart(
        module_overrides={
            MODERATION_MODULE: {"ban_lists": [f"#{BAN_LIST_ALIAS_LOCALPART}:localhost"]}
        }
    )
