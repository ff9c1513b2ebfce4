"""Phenom link previews: one resolver core for the Synapse module, the Lambda and the MCP tool.

For asyncio callers (MCP ``get_link_preview``, Lambda)::

    from synapse_phenom.previews import ResolverConfig, resolve_link

    result = await resolve_link("https://thephenom.app/p/42", ResolverConfig())
    result.card      # Card | None
    result.error     # why there is no card

Long-lived callers keep one ``HttpxFetcher`` and ``PreviewResolver`` instead.
"""

from __future__ import annotations

from synapse_phenom.previews.card import Card, CardImage, Fact
from synapse_phenom.previews.config import LinkPreviewConfig, OriginConfig, ResolverConfig
from synapse_phenom.previews.policy import FetchFailed, PreviewError, Refused
from synapse_phenom.previews.resolver import Fetcher, FetchResponse, PreviewResolver, Resolution

__all__ = [
    "Card",
    "CardImage",
    "Fact",
    "FetchFailed",
    "FetchResponse",
    "Fetcher",
    "LinkPreviewConfig",
    "OriginConfig",
    "PreviewError",
    "PreviewResolver",
    "Refused",
    "Resolution",
    "ResolverConfig",
    "resolve_link",
]


async def resolve_link(url: str, config: ResolverConfig | None = None) -> Resolution:
    """Resolve one link with a short-lived httpx2 fetcher. Raises ``Refused`` for non-Phenom
    links."""
    import asyncio

    from synapse_phenom.previews.fetch_httpx import HttpxFetcher

    config = config or ResolverConfig()
    async with HttpxFetcher(config) as fetcher:
        return await PreviewResolver(config, fetcher, run_cpu=asyncio.to_thread).resolve(url)
