"""Session fixtures of the previews area; `previews_synapse_config` feeds the shared Synapse.

``phenom_site`` is a local Phenom-like site (tests/previews_site.py). The shared Synapse
treats it as the Phenom origin (trusted: it is loopback) and also knows it under
``localhost`` as an untrusted origin, where the address check must refuse every fetch.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import SynapseConfigPart
from previews_site import PhenomSite, Tarpit

from synapse_phenom.ops import hsconfig

PREVIEW_BUDGET_MS = 250


@pytest.fixture(scope="session")
def phenom_site() -> Iterator[PhenomSite]:
    site = PhenomSite().start()
    yield site
    site.stop()


# The composer endpoint's per-user bucket in the shared test Synapse.
COMPOSER_BURST = 10
UNREACHABLE_TIMEOUT_S = 2.0


@pytest.fixture(scope="session")
def tarpit() -> Iterator[Tarpit]:
    """An origin that accepts connections and never answers."""
    pit = Tarpit().start()
    yield pit
    pit.stop()


@pytest.fixture(scope="session")
def burst_tarpit() -> Iterator[Tarpit]:
    """A second never-answering origin, first tried by a burst of links (its own breaker)."""
    pit = Tarpit().start()
    yield pit
    pit.stop()


def previews_module_config(
    site: PhenomSite, tarpit: Tarpit | None = None, burst: Tarpit | None = None
) -> dict[str, object]:
    origins: list[dict[str, object]] = [
        {"url": site.origin, "trusted": True},
        {"url": site.untrusted_origin, "trusted": False},
    ]
    if tarpit is not None:
        # A public name served from the tarpit: fetch_from hides the internal address.
        origins.append(
            {"url": "https://down.thephenom.test", "fetch_from": tarpit.origin, "trusted": True}
        )
    if burst is not None:
        origins.append(
            {"url": "https://burst.thephenom.test", "fetch_from": burst.origin, "trusted": True}
        )
    return {
        "origins": origins,
        "budget_ms": PREVIEW_BUDGET_MS,
        "total_timeout_s": 4.0,
        "connect_timeout_s": UNREACHABLE_TIMEOUT_S,
        "composer_burst": COMPOSER_BURST,
        "composer_rate_per_s": 0.2,
    }


@pytest.fixture(scope="session")
def previews_synapse_config(
    phenom_site: PhenomSite, tarpit: Tarpit, burst_tarpit: Tarpit
) -> SynapseConfigPart:
    """Extra template values / module config the shared test Synapse needs for previews."""
    config = previews_module_config(phenom_site, tarpit, burst_tarpit)
    return SynapseConfigPart(module_overrides={hsconfig.LINK_PREVIEW_MODULE: config})
