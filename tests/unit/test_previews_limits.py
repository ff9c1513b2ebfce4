"""The shared limits of previews: the composer's token bucket and the per-origin breaker
(pure arithmetic, the SQL on sqlite3, and the resolver's use of the breaker)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import pytest

from synapse_phenom import db
from synapse_phenom.db import Txn
from synapse_phenom.previews import store as preview_store
from synapse_phenom.previews.config import ResolverConfig
from synapse_phenom.previews.limits import Bucket, OriginHealth, after_failure, take
from synapse_phenom.previews.policy import PUBLIC_REASONS, FetchFailed
from synapse_phenom.previews.resolver import FetchResponse, PreviewResolver


@pytest.fixture
def txn() -> Iterator[Txn]:
    conn = sqlite3.connect(":memory:")
    cur = cast(Txn, conn.cursor())
    db.create_schema(cur, preview_store.SCHEMA)
    yield cur
    conn.close()


def test_token_bucket_burst_then_refill() -> None:
    bucket: Bucket | None = None
    allowed = []
    for _ in range(12):
        taken = take(bucket, 0, rate_per_s=0.5, burst=10)
        bucket = taken.bucket
        allowed.append(taken.allowed)
    assert allowed == [True] * 10 + [False] * 2
    refused = take(bucket, 0, 0.5, 10)
    assert not refused.allowed and refused.retry_after_ms == 2000
    assert take(bucket, 2000, 0.5, 10).allowed  # one token back after 2 s
    assert take(Bucket(0.0, 0), 10**9, 0.5, 10).bucket.tokens == 9  # capped at the burst


def test_breaker_backs_off_and_caps() -> None:
    health = after_failure(None, 1000, 30_000, 100_000)
    assert health == OriginHealth(failures=1, retry_ms=31_000)
    health = after_failure(health, 31_000, 30_000, 100_000)
    assert health.retry_ms == 31_000 + 60_000
    health = after_failure(health, 0, 30_000, 100_000)
    assert health.retry_ms == 100_000


def test_rate_limit_rows_are_shared(txn: Txn) -> None:
    results = [preview_store.take_token(txn, "@a:hs", 0, 1.0, 3).allowed for _ in range(4)]
    assert results == [True, True, True, False]
    assert preview_store.take_token(txn, "@b:hs", 0, 1.0, 3).allowed
    assert preview_store.take_token(txn, "@a:hs", 1000, 1.0, 3).allowed


def test_one_probe_per_interval_across_processes(txn: Txn) -> None:
    origin = "https://down.example"
    assert preview_store.claim_origin(txn, origin, 0, 30_000) == (True, 0)  # healthy
    assert preview_store.record_origin(txn, origin, False, 0, 30_000, 600_000) == 30_000
    # Closed until the retry time, for everyone.
    assert preview_store.claim_origin(txn, origin, 29_999, 30_000) == (False, 30_000)
    # Then exactly one caller gets the probe; the next sees it taken.
    assert preview_store.claim_origin(txn, origin, 30_000, 30_000) == (True, 60_000)
    assert preview_store.claim_origin(txn, origin, 30_001, 30_000)[0] is False
    # The probe fails again: the interval doubles. A success clears the row.
    assert preview_store.record_origin(txn, origin, False, 31_000, 30_000, 600_000) == 91_000
    preview_store.record_origin(txn, origin, True, 95_000, 30_000, 600_000)
    assert preview_store.origin_health(txn, origin) is None


class FakeGate:
    """The breaker's contract, in memory."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.retry: dict[str, int] = {}

    async def allow(self, origin: str) -> bool:
        return self.retry.get(origin, 0) <= self.clock()

    async def record(self, origin: str, reachable: bool) -> None:
        if reachable:
            self.retry.pop(origin, None)
        else:
            self.retry[origin] = self.clock() + 30_000


class DownFetcher:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def fetch(
        self, url: str, *, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse:
        self.calls.append(url)
        if "10.0.3.7" in url:
            raise FetchFailed("connect", f"{url}: ConnectionRefusedError: [Errno 111] refused")
        return FetchResponse(200, {"content-type": "text/html"}, b"<title>ok</title>")


def test_resolver_tries_a_down_origin_once_per_interval_and_hides_internals() -> None:
    now = [0]
    config = ResolverConfig.model_validate(
        {
            "origins": [
                {"url": "https://thephenom.app", "fetch_from": "http://10.0.3.7:3000"},
                "https://www.thephenom.app",
            ]
        }
    )
    fetcher = DownFetcher()
    cpu: list[Any] = []

    async def run_cpu(fn: Callable[..., Any], /, *args: Any) -> Any:
        cpu.append(fn.__name__)
        return fn(*args)

    resolver = PreviewResolver(config, fetcher, run_cpu=run_cpu, gate=FakeGate(lambda: now[0]))

    async def go() -> None:
        first = await resolver.resolve("https://thephenom.app/p/1")
        assert first.card is None and first.reason == "connect"
        assert first.error == PUBLIC_REASONS["connect"]
        assert "10.0.3.7" not in (first.error or "") and "Errno" not in (first.error or "")
        for i in range(20):
            later = await resolver.resolve(f"https://thephenom.app/p/x{i}")
            assert later.reason == "unavailable" and "10.0.3.7" not in (later.error or "")
        assert len(fetcher.calls) == 1
        # Other origins are not affected; parsing went through the CPU runner.
        ok = await resolver.resolve("https://www.thephenom.app/p/2")
        assert ok.card is not None and ok.card.title == "ok"
        assert cpu == ["parse_html", "build_card"]
        now[0] = 30_000  # the interval is over: one new attempt
        await resolver.resolve("https://thephenom.app/p/3")
        assert len([c for c in fetcher.calls if "10.0.3.7" in c]) == 2

    asyncio.run(go())
