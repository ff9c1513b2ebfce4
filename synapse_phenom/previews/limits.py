"""Pure arithmetic of the two shared limits: a per-user token bucket (composer endpoint) and a
per-origin circuit breaker (an unreachable origin is tried at most once per interval).

The state of both lives in the database (``previews/store.py``) so every Synapse process
sees the same numbers; these functions only compute the next state.
"""

from __future__ import annotations

import math

import attrs


@attrs.frozen
class Bucket:
    tokens: float
    updated_ms: int


@attrs.frozen
class Taken:
    allowed: bool
    bucket: Bucket
    retry_after_ms: int  # 0 when allowed


def take(
    bucket: Bucket | None, now_ms: int, rate_per_s: float, burst: int, cost: float = 1.0
) -> Taken:
    """Take ``cost`` tokens from a bucket refilled at ``rate_per_s`` up to ``burst``."""
    if bucket is None:
        tokens = float(burst)
    else:
        elapsed_s = max(0, now_ms - bucket.updated_ms) / 1000
        tokens = min(float(burst), bucket.tokens + elapsed_s * rate_per_s)
    if tokens >= cost:
        return Taken(True, Bucket(tokens - cost, now_ms), 0)
    wait_ms = math.ceil((cost - tokens) / rate_per_s * 1000)
    return Taken(False, Bucket(tokens, now_ms), max(wait_ms, 1))


@attrs.frozen
class OriginHealth:
    """An origin that failed: ``failures`` in a row, not to be tried before ``retry_ms``."""

    failures: int
    retry_ms: int


def after_failure(
    health: OriginHealth | None, now_ms: int, interval_ms: int, max_interval_ms: int
) -> OriginHealth:
    """Back off: the interval doubles with each failure in a row, up to ``max_interval_ms``."""
    failures = (health.failures if health else 0) + 1
    wait = min(max_interval_ms, interval_ms * 2 ** min(failures - 1, 16))
    return OriginHealth(failures=failures, retry_ms=now_ms + wait)
