"""The resolver: link -> card, with every fetch going through the origin policy.

It is I/O-agnostic: a ``Fetcher`` does one pinned, bounded HTTP GET (httpx2 outside
Synapse, Twisted inside). Redirects, origin checks, oEmbed discovery, parsing and TTLs
live here, once, for every caller.

Outside Synapse (Lambda, MCP)::

    async with HttpxFetcher(config) as fetcher:
        result = await PreviewResolver(config, fetcher).resolve("https://thephenom.app/x")
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import urljoin

import attrs

from synapse_phenom.previews import parse
from synapse_phenom.previews.caching import card_ttl
from synapse_phenom.previews.card import Card
from synapse_phenom.previews.config import ResolverConfig
from synapse_phenom.previews.policy import (
    IMAGE_TYPES,
    PAGE_TYPES,
    FetchFailed,
    OriginPolicy,
    PreviewError,
    Refused,
    charset_of,
    content_type_of,
    normalise_url,
    redirect_target,
)

logger = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)


@attrs.frozen
class FetchResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


class Fetcher(Protocol):
    """One GET, no redirects followed.

    Must: resolve the host, pass the addresses to ``policy.check_addresses(host, addrs,
    trusted)`` and connect only to the address it returns; refuse bodies over
    ``max_bytes`` and (for 2xx) content types outside ``accept`` before reading them;
    enforce the connect and total timeouts. Raises ``PreviewError`` subclasses.
    """

    async def fetch(
        self, url: str, *, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse: ...


@attrs.frozen
class Resolution:
    """A card, or why there is none; ``ttl_s`` says how long to remember either."""

    url: str
    card: Card | None
    ttl_s: int
    error: str | None = None
    reason: str | None = None


@attrs.frozen
class FetchedImage:
    data: bytes
    mimetype: str
    width: int | None
    height: int | None


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width/height from the image header (Pillow reads the header only here)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.width), int(img.height)
    except (UnidentifiedImageError, OSError, ValueError):
        return None, None


class PreviewResolver:
    def __init__(self, config: ResolverConfig, fetcher: Fetcher) -> None:
        self.config = config
        self.policy = OriginPolicy.from_config(config)
        self._fetcher = fetcher

    def is_phenom_link(self, url: str) -> bool:
        return self.policy.is_phenom_link(url)

    async def fetch(
        self, url: str, accept: Sequence[str], max_bytes: int, images: bool = False
    ) -> tuple[str, FetchResponse]:
        """GET following redirects, each hop re-checked against the configured origins."""
        current = url
        for _ in range(self.config.max_redirects + 1):
            target = self.policy.fetch_target(current, images=images)
            resp = await self._fetcher.fetch(
                target.url, trusted=target.trusted, accept=accept, max_bytes=max_bytes
            )
            if resp.status in REDIRECTS:
                location = resp.headers.get("location")
                if not location:
                    raise FetchFailed(
                        "redirect", f"HTTP {resp.status} without Location from {target.url}"
                    )
                current = redirect_target(target.url, location)
                continue
            if not 200 <= resp.status < 300:
                raise FetchFailed("status", f"HTTP {resp.status} from {target.url}")
            return target.url, resp
        raise FetchFailed("redirect", f"more than {self.config.max_redirects} redirects")

    async def resolve(self, url: str) -> Resolution:
        """The card for a Phenom link. Raises ``Refused('origin')`` for any other link;
        every other failure is a Resolution with ``error`` (to be cached briefly)."""
        if not self.is_phenom_link(url):
            raise Refused("origin", f"{url[:200]} is not a link to a configured Phenom origin")
        key = normalise_url(url)
        try:
            return await self._resolve(key)
        except PreviewError as err:
            logger.info("No preview for %s: %s", key, err)
            return Resolution(
                url=key,
                card=None,
                ttl_s=self.config.failure_ttl_s,
                error=str(err),
                reason=err.reason,
            )

    async def _resolve(self, key: str) -> Resolution:
        final, resp = await self.fetch(key, PAGE_TYPES, self.config.max_body_bytes)
        public_final = self.policy.public_url(final)
        ctype = content_type_of(resp.headers.get("content-type"))
        page = None
        oembed = None
        if "json" in ctype:
            oembed = parse.parse_oembed(resp.body)
            if oembed is None:
                raise FetchFailed("no_metadata", f"{final} returned JSON that is not oEmbed")
        else:
            page = parse.parse_html(resp.body, charset_of(resp.headers.get("content-type")))
            if page.oembed_url:
                oembed = await self._oembed(urljoin(final, page.oembed_url))
        card = parse.build_card(key, public_final, page, oembed)
        ttl = card_ttl(
            self.config, resp.headers.get("cache-control"), parse.oembed_cache_age(oembed)
        )
        return Resolution(url=key, card=card, ttl_s=ttl)

    async def _oembed(self, url: str) -> Mapping[str, object] | None:
        """The page's oEmbed data; an endpoint off the Phenom origins or broken is skipped."""
        try:
            _, resp = await self.fetch(url, PAGE_TYPES, self.config.max_body_bytes)
        except PreviewError as err:
            logger.info("Skipping oEmbed %s: %s", url, err)
            return None
        return parse.parse_oembed(resp.body)

    async def fetch_image(self, card: Card) -> FetchedImage | None:
        """The card's image bytes, from the Phenom (or image) origins only; None if unavailable."""
        if not card.image_url:
            return None
        try:
            _, resp = await self.fetch(
                card.image_url, IMAGE_TYPES, self.config.max_image_bytes, images=True
            )
        except PreviewError as err:
            logger.info("No image for %s: %s", card.url, err)
            return None
        width, height = image_size(resp.body)
        if width is None:
            logger.info("Image of %s is not a readable image", card.url)
            return None
        return FetchedImage(
            data=resp.body,
            mimetype=content_type_of(resp.headers.get("content-type")),
            width=width,
            height=height,
        )
