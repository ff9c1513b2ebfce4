"""Callback guard and the shared-secret MAC, without Synapse."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from synapse_phenom.modules._guard import CALLBACK_ERRORS, guarded
from synapse_phenom.ops.admin_client import shared_secret_mac


def test_guard_returns_fallback_and_counts() -> None:
    @guarded("unit", fallback="fallback")
    async def boom() -> str:
        raise RuntimeError("bad")

    before = CALLBACK_ERRORS.labels(module="unit", callback="boom")._value.get()
    assert asyncio.run(boom()) == "fallback"
    assert CALLBACK_ERRORS.labels(module="unit", callback="boom")._value.get() == before + 1


def test_guard_passes_results_and_evaluates_callable_fallback() -> None:
    calls: list[int] = []

    def late() -> str:
        calls.append(1)
        return "late"

    @guarded("unit", fallback=late)
    async def ok(x: int) -> int:
        return x * 2

    @guarded("unit", fallback=lambda: "late")
    async def bad() -> str:
        raise ValueError

    assert asyncio.run(ok(2)) == 4 and calls == []
    assert asyncio.run(bad()) == "late"


def test_shared_secret_mac_matches_synapse_spec() -> None:
    expected = hmac.new(b"s", b"n\x00u\x00p\x00admin", hashlib.sha1).hexdigest()
    assert shared_secret_mac("s", "n", "u", "p", True) == expected
