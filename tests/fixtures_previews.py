"""Session fixtures of the previews area; `previews_synapse_config` feeds the shared Synapse.

``phenom_site`` is a local Phenom-like site (tests/previews_site.py). The shared Synapse
treats it as the Phenom origin (trusted: it is loopback) and also knows it under
``localhost`` as an untrusted origin, where the address check must refuse every fetch.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import SynapseConfigPart
from previews_site import PhenomSite

from synapse_phenom.ops import hsconfig

PREVIEW_BUDGET_MS = 250


@pytest.fixture(scope="session")
def phenom_site() -> Iterator[PhenomSite]:
    site = PhenomSite().start()
    yield site
    site.stop()


def previews_module_config(site: PhenomSite) -> dict[str, object]:
    return {
        "origins": [
            {"url": site.origin, "trusted": True},
            {"url": site.untrusted_origin, "trusted": False},
        ],
        "budget_ms": PREVIEW_BUDGET_MS,
        "total_timeout_s": 4.0,
    }


@pytest.fixture(scope="session")
def previews_synapse_config(phenom_site: PhenomSite) -> SynapseConfigPart:
    """Extra template values / module config the shared test Synapse needs for previews."""
    return SynapseConfigPart(
        module_overrides={hsconfig.LINK_PREVIEW_MODULE: previews_module_config(phenom_site)}
    )
