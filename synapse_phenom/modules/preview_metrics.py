"""Prometheus metrics of the link-preview module's outbound fetches.

``InstrumentedFetcher`` wraps the module's ``Fetcher``: every GET (page, oEmbed, image,
each redirect hop) is counted by result and timed. ``result`` is ``ok`` (any HTTP
answer) or the ``PreviewError`` reason (``timeout``, ``address``, ``too_large``, ...),
a short fixed vocabulary, never a URL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs
from prometheus_client import Counter, Histogram

from synapse_phenom.previews.policy import PreviewError
from synapse_phenom.previews.resolver import Fetcher, FetchResponse

FETCHES = Counter(
    "phenom_preview_fetches_total",
    "Outbound link-preview fetches by result: ok (an HTTP answer) or the failure reason",
    ["result"],
)
FETCH_SECONDS = Histogram(
    "phenom_preview_fetch_seconds",
    "Duration of one outbound link-preview fetch (any result)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)


@attrs.frozen
class InstrumentedFetcher:
    inner: Fetcher

    async def fetch(
        self, url: str, *, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse:
        started = time.perf_counter()
        result = "error"
        try:
            resp = await self.inner.fetch(url, trusted=trusted, accept=accept, max_bytes=max_bytes)
            result = "ok"
            return resp
        except PreviewError as err:
            result = err.reason
            raise
        finally:
            FETCHES.labels(result=result).inc()
            FETCH_SECONDS.observe(time.perf_counter() - started)
