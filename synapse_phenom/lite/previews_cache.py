"""The link-preview cards cache of Implementation B (``chat.link_previews``).

Rows hold the link-preview Lambda's result object (``card``, MSC4095 ``preview``, or the
``error``/``reason`` of a page without a card) until ``expires_at``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from synapse_phenom.previews import msc4095
from synapse_phenom.previews.config import ResolverConfig
from synapse_phenom.previews.fetch_httpx import HttpxFetcher
from synapse_phenom.previews.policy import Refused
from synapse_phenom.previews.resolver import PreviewResolver

# Results worth caching: a card (200) or "this page has no card" (404). Refusals (400:
# origin or address not allowed) depend on config, not the page, and are not cached.
CACHEABLE_STATUSES = frozenset({200, 404})
MIN_TTL_SECONDS = 60


def store(conn: psycopg.Connection[Any], status: int, result: Mapping[str, Any]) -> bool:
    """Upsert one Lambda result; False when it is not a cacheable result."""
    if status not in CACHEABLE_STATUSES or not result.get("url"):
        return False
    ttl = max(int(result.get("ttl_seconds") or 0), MIN_TTL_SECONDS)
    conn.execute(
        """
        INSERT INTO chat.link_previews (url, card, preview, error, reason, fetched_at, expires_at)
        VALUES (%s, %s, %s, %s, %s, now(), now() + make_interval(secs => %s))
        ON CONFLICT (url) DO UPDATE SET
            card = excluded.card, preview = excluded.preview, error = excluded.error,
            reason = excluded.reason, fetched_at = excluded.fetched_at,
            expires_at = excluded.expires_at
        """,
        (
            result["url"],
            Jsonb(result["card"]) if result.get("card") is not None else None,
            Jsonb(result["preview"]) if result.get("preview") is not None else None,
            result.get("error"),
            result.get("reason"),
            ttl,
        ),
    )
    return True


def lookup(conn: psycopg.Connection[Any], url: str) -> tuple[int, dict[str, Any]] | None:
    """(status, result object) of a fresh cached result, or None."""
    row = conn.execute(
        """
        SELECT card, preview, error, reason,
               GREATEST(0, floor(extract(epoch FROM expires_at - now())))::int
        FROM chat.link_previews WHERE url = %s AND expires_at > now()
        """,
        (url,),
    ).fetchone()
    if row is None:
        return None
    card, preview, error, reason, ttl = row
    result = {
        "url": url,
        "card": card,
        "preview": preview,
        "error": error,
        "reason": reason,
        "ttl_seconds": ttl,
    }
    return (200 if card is not None else 404), result


def result_object(url: str, **fields: Any) -> dict[str, Any]:
    """A result object as the cache stores it (and the link-preview Lambda answers)."""
    out: dict[str, Any] = {
        "url": url,
        "card": None,
        "preview": None,
        "error": None,
        "reason": None,
        "ttl_seconds": 0,
    }
    out.update(fields)
    return out


async def resolve(url: str, config: ResolverConfig) -> tuple[int, dict[str, Any]]:
    """(HTTP-like status, result object) for one link, from the previews core: 200 a card,
    404 no card for this page, 400 refused (not a Phenom link, or an address not allowed)."""
    async with HttpxFetcher(config) as fetcher:
        try:
            resolution = await PreviewResolver(config, fetcher, run_cpu=asyncio.to_thread).resolve(
                url
            )
        except Refused as err:
            return 400, result_object(url, error=err.public, reason=err.reason)
    if resolution.card is None:
        return 404, result_object(
            url, error=resolution.error, reason=resolution.reason, ttl_seconds=resolution.ttl_s
        )
    return 200, result_object(
        url,
        card=resolution.card.model_dump(mode="json"),
        preview=msc4095.preview_entry(url, resolution.card),
        ttl_seconds=resolution.ttl_s,
    )
