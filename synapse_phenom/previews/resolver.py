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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs

from synapse_phenom.previews import parse
from synapse_phenom.previews.caching import card_ttl
from synapse_phenom.previews.card import Card
from synapse_phenom.previews.config import ResolverConfig
from synapse_phenom.previews.policy import (
    IMAGE_TYPES,
    ORIGIN_FAILURES,
    PAGE_TYPES,
    FetchFailed,
    OriginPolicy,
    PreviewError,
    Refused,
    content_type_of,
    normalise_url,
    origin_of,
    redirect_target,
)

logger = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)
T = TypeVar("T")


class CpuRunner(Protocol):
    """Runs CPU-bound work (parsing, card building) off the event loop: Synapse passes
    ``ModuleApi.defer_to_thread``, asyncio callers ``asyncio.to_thread``."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


async def run_inline(fn: Callable[..., T], /, *args: Any) -> T:
    """For tests and callers with nothing else to serve."""
    return fn(*args)


class OriginGate(Protocol):
    """A circuit breaker per fetched origin (shared across processes in Synapse).

    ``allow`` says whether a request to ``origin`` may be attempted now; ``record`` reports
    whether the origin answered (any HTTP response) or was unreachable."""

    async def allow(self, origin: str) -> bool: ...

    async def record(self, origin: str, reachable: bool) -> None: ...


class OpenGate:
    """No breaker: every request is attempted."""

    async def allow(self, origin: str) -> bool:
        return True

    async def record(self, origin: str, reachable: bool) -> None:
        return None


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
    error: str | None = None  # for users: never internal addresses or exception text
    reason: str | None = None
    detail: str | None = None  # for logs and operators only


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
    def __init__(
        self,
        config: ResolverConfig,
        fetcher: Fetcher,
        run_cpu: CpuRunner = run_inline,
        gate: OriginGate | None = None,
    ) -> None:
        self.config = config
        self.policy = OriginPolicy.from_config(config)
        self._fetcher = fetcher
        self._run_cpu = run_cpu
        self.gate: OriginGate = gate or OpenGate()

    def is_phenom_link(self, url: str) -> bool:
        return self.policy.is_phenom_link(url)

    async def fetch(
        self, url: str, accept: Sequence[str], max_bytes: int, images: bool = False
    ) -> tuple[str, FetchResponse]:
        """GET following redirects, each hop re-checked against the configured origins."""
        current = url
        for hop in range(self.config.max_redirects + 1):
            try:
                target = self.policy.fetch_target(current, images=images)
            except Refused as err:
                if hop == 0:
                    raise
                raise Refused("redirect", f"redirect to a refused URL: {err.detail}") from None
            resp = await self._gated_fetch(target.url, target.trusted, accept, max_bytes)
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

    async def _gated_fetch(
        self, url: str, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse:
        """One fetch through the origin's circuit breaker: an origin that was unreachable is
        not tried again before its cool-down ends (one probe per interval)."""
        origin = origin_of(url) or url
        if not await self.gate.allow(origin):
            raise FetchFailed("unavailable", f"{origin} failed recently; not retried yet")
        try:
            resp = await self._fetcher.fetch(
                url, trusted=trusted, accept=accept, max_bytes=max_bytes
            )
        except PreviewError as err:
            if err.reason in ORIGIN_FAILURES:
                await self.gate.record(origin, reachable=False)
            raise
        await self.gate.record(origin, reachable=True)
        return resp

    async def resolve(self, url: str) -> Resolution:
        """The card for a Phenom link. Raises ``Refused('origin')`` for any other link;
        every other failure is a Resolution with ``error`` (to be cached briefly)."""
        if not self.is_phenom_link(url):
            raise Refused("origin", f"{url[:200]} is not a link to a configured Phenom origin")
        key = normalise_url(url)
        try:
            return await self._resolve(key)
        except PreviewError as err:
            logger.info("No preview for %s: %s", key, err)  # the detail: logs only
            return Resolution(
                url=key,
                card=None,
                ttl_s=self.config.failure_ttl_s,
                error=err.public,
                reason=err.reason,
                detail=str(err),
            )

    async def _resolve(self, key: str) -> Resolution:
        final, resp = await self.fetch(key, PAGE_TYPES, self.config.max_body_bytes)
        public_final = self.policy.public_url(final)
        header = resp.headers.get("content-type")
        page = None
        oembed = None
        # Parsing and card building are CPU work with bounded cost: off the event loop.
        if "json" in content_type_of(header):
            oembed = await self._run_cpu(parse.parse_oembed, resp.body)
            if oembed is None:
                raise FetchFailed("no_metadata", f"{final} returned JSON that is not oEmbed 1.0")
        else:
            page = await self._run_cpu(parse.parse_html, resp.body, header)
            endpoint = parse.urls.join(final, page.oembed_url) if page.oembed_url else None
            if endpoint:
                oembed = await self._oembed(endpoint)
        card = await self._run_cpu(parse.build_card, key, public_final, page, oembed)
        if not self.is_phenom_link(card.canonical_url):
            # og:url / rel=canonical come from the page: a signed card must not name (and a
            # client must not open) a link the server never checked was Phenom's.
            card = card.model_copy(update={"canonical_url": public_final})
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
        return await self._run_cpu(parse.parse_oembed, resp.body)

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
        width, height = await self._run_cpu(image_size, resp.body)
        if width is None:
            logger.info("Image of %s is not a readable image", card.url)
            return None
        return FetchedImage(
            data=resp.body,
            mimetype=content_type_of(resp.headers.get("content-type")),
            width=width,
            height=height,
        )
