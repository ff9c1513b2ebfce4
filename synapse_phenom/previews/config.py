"""Configuration of the link-preview resolver (shared by the Synapse module, the Lambda and MCP)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from synapse_phenom.config import FrozenModel
from synapse_phenom.previews import urls

DEFAULT_ORIGINS = ("https://thephenom.app", "https://www.thephenom.app")


def origin_of(url: str) -> str | None:
    """``HTTPS://Host:443/x`` -> ``https://host`` as a browser parses it (WHATWG URL); None for
    non-http(s) URLs, URLs with credentials and URLs that do not parse (``https://[x``)."""
    return urls.origin_of(url)


def normalise_origin(value: str) -> str:
    """An origin as configured, normalised; ValueError for anything that is not an origin."""
    parts = urlsplit(value.strip())
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"{value!r}: must be an origin only (scheme://host[:port]), without path or query"
        )
    origin = origin_of(value)
    if origin is None:
        raise ValueError(f"{value!r}: must be http:// or https:// with a host and a valid port")
    return origin


class OriginConfig(FrozenModel):
    """A site whose links get previews.

    ``trusted`` skips the private-address check (development/staging on loopback or a
    private network only). ``fetch_from`` fetches this origin's pages from another base
    (a local or staging copy of the site); the link in the message is unchanged.
    """

    url: str
    trusted: bool = False
    fetch_from: str | None = None

    @field_validator("url", "fetch_from")
    @classmethod
    def _origin(cls, v: str | None) -> str | None:
        return None if v is None else normalise_origin(v)


def _origins_from_strings(value: Any) -> Any:
    # Plain strings are accepted for the common case: ["https://thephenom.app"].
    if isinstance(value, (list, tuple)):
        return [{"url": v} if isinstance(v, str) else v for v in value]
    return value


class ResolverConfig(FrozenModel):
    """What may be fetched, how, and how long results stay fresh."""

    origins: tuple[OriginConfig, ...] = Field(
        default_factory=lambda: tuple(OriginConfig(url=o) for o in DEFAULT_ORIGINS), min_length=1
    )
    # Further origins og:image may be fetched from (e.g. a CDN); pages are never fetched there.
    image_origins: tuple[OriginConfig, ...] = ()
    connect_timeout_s: float = Field(default=3.0, gt=0, le=30)
    total_timeout_s: float = Field(default=8.0, gt=0, le=60)
    max_body_bytes: int = Field(default=1_000_000, gt=0, le=10_000_000)
    max_image_bytes: int = Field(default=5_000_000, gt=0, le=50_000_000)
    max_redirects: int = Field(default=5, ge=0, le=10)
    user_agent: str = "PhenomLinkPreview/1.0 (+https://thephenom.app)"
    # Card lifetime: Cache-Control max-age / oEmbed cache_age, clamped to [min, max].
    default_ttl_s: int = Field(default=3600, ge=1)
    min_ttl_s: int = Field(default=60, ge=1)
    max_ttl_s: int = Field(default=86_400, ge=1)
    # A failed resolution is remembered this long so a broken page is not hammered.
    failure_ttl_s: int = Field(default=120, ge=1)

    @field_validator("origins", "image_origins", mode="before")
    @classmethod
    def _plain_origins(cls, v: Any) -> Any:
        return _origins_from_strings(v)

    @model_validator(mode="after")
    def _ttl_order(self) -> ResolverConfig:
        if not self.min_ttl_s <= self.default_ttl_s <= self.max_ttl_s:
            raise ValueError("need min_ttl_s <= default_ttl_s <= max_ttl_s")
        urls = [o.url for o in self.origins]
        if len(set(urls)) != len(urls):
            raise ValueError("origins: each origin may be listed once")
        return self


class LinkPreviewConfig(ResolverConfig):
    """Config of the Synapse module ``synapse_phenom.modules.link_preview.PhenomLinkPreviews``."""

    # Longest the send of a message may be held waiting for a card (cache lookup + resolution).
    budget_ms: int = Field(default=250, ge=0, le=5000)
    # Links previewed per message (the first N distinct Phenom links of the body).
    max_links_per_message: int = Field(default=3, ge=1, le=10)
    # Resolutions running at once in one process; links beyond it get no card (not cached),
    # so a flood of unique links cannot turn the homeserver into a crawler.
    max_concurrent_resolutions: int = Field(default=8, ge=1, le=100)
    # Cached cards kept (oldest dropped first).
    max_cache_entries: int = Field(default=10_000, ge=10)
    # Copy card images into the media repository (mxc); without it cards carry no image.
    rehost_images: bool = True
    # Localpart of the user recorded as uploader of re-hosted images.
    system_user: str = "phenom"
    # Add cached cards to the message itself inside the send. This needs Synapse's
    # check_event_allowed, which makes Synapse load the whole room state for EVERY event of
    # the server once registered (docs/benchmarks.md); off, cards arrive as follow-up events.
    inline: bool = False
    # An origin that was unreachable is tried again after this long (doubling per failure
    # in a row up to origin_retry_max_s); meanwhile its links get no card and cost nothing.
    origin_retry_s: float = Field(default=30.0, ge=1, le=3600)
    origin_retry_max_s: float = Field(default=600.0, ge=1, le=86_400)
    # Composer endpoint, per user across all processes: cache misses (fetches) allowed.
    composer_rate_per_s: float = Field(default=0.5, gt=0, le=100)
    composer_burst: int = Field(default=10, ge=1, le=1000)
