"""How long a card stays fresh: Cache-Control and oEmbed ``cache_age``, clamped by config."""

from __future__ import annotations

import re

from synapse_phenom.previews.config import ResolverConfig

_DIRECTIVE = re.compile(r"([a-zA-Z-]+)\s*(?:=\s*\"?(\d+)\"?)?")


def cache_control_seconds(header: str | None) -> int | None:
    """max-age (s-maxage wins) in seconds; 0 for no-store/no-cache/private; None if absent."""
    if not header:
        return None
    directives = {m.group(1).lower(): m.group(2) for m in _DIRECTIVE.finditer(header)}
    if {"no-store", "no-cache"} & directives.keys():
        return 0
    for key in ("s-maxage", "max-age"):
        value = directives.get(key)
        if value is not None:
            return int(value)
    return None


def card_ttl(
    config: ResolverConfig, cache_control: str | None, oembed_cache_age: int | None
) -> int:
    """Seconds to keep a card. oEmbed's cache_age is the site's explicit word; then HTTP."""
    wanted = (
        oembed_cache_age if oembed_cache_age is not None else cache_control_seconds(cache_control)
    )
    if wanted is None:
        wanted = config.default_ttl_s
    return max(config.min_ttl_s, min(config.max_ttl_s, wanted))
