"""Synapse-side helpers of the link-preview module: the shared origin breaker, the composer
endpoint (with its per-user rate limit), image re-hosting and the persistence wait.

Everything here talks to Synapse (ModuleApi, the database, the media repository); the rules
themselves are pure and live in ``synapse_phenom.previews`` (``limits``, ``store``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, LimitExceededError, SynapseError
from synapse.module_api import DirectServeJsonResource, ModuleApi
from synapse.types import UserID

from synapse_phenom.modules import _http
from synapse_phenom.previews import msc4095
from synapse_phenom.previews import store as preview_store
from synapse_phenom.previews.card import Card, CardImage
from synapse_phenom.previews.config import LinkPreviewConfig
from synapse_phenom.previews.policy import Refused, normalise_url
from synapse_phenom.previews.resolver import PreviewResolver

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest as Request

logger = logging.getLogger("synapse_phenom.modules.link_preview")

# A "healthy" answer from the table is trusted this long in-process (no DB read per fetch).
_HEALTHY_MEMO_MS = 2_000


def now_ms() -> int:
    return int(time.time() * 1000)


class DbOriginGate:
    """Per-origin circuit breaker shared by every Synapse process through the database.

    After an origin is unreachable (DNS, connect, timeout) nobody fetches from it until its
    retry time; then exactly one process gets the probe (``store.claim_origin``). Each
    process also remembers the retry time, so links to a down origin cost no DB trip.
    An origin this process has not seen answer lately gets one fetch at a time here (the
    others wait for its outcome): a burst of new links to an origin that just went down
    costs one attempt, not one per concurrent link.
    """

    def __init__(
        self,
        api: ModuleApi,
        config: LinkPreviewConfig,
        ensure_schema: Callable[[], Awaitable[None]],
    ) -> None:
        self._api = api
        self._interval_ms = int(config.origin_retry_s * 1000)
        self._max_ms = int(max(config.origin_retry_max_s, config.origin_retry_s) * 1000)
        self._ensure_schema = ensure_schema
        self._closed_until: dict[str, int] = {}  # origin -> retry time (known down)
        self._healthy_until: dict[str, int] = {}  # origin -> memo expiry (known up)
        self._probing: set[str] = set()
        self._seen_up_until: dict[str, int] = {}  # origin -> answered lately (no single-flight)
        self._trial: dict[str, int] = {}  # origin -> when this process's unproven fetch ends
        # Only a safety net (record() ends a trial): long enough for a fetch that times out
        # and its write on a loaded server, so waiters never start a second attempt.
        self._trial_ms = int(config.total_timeout_s * 2000) + 5_000

    def known_down(self, origin: str) -> bool:
        return self._closed_until.get(origin, 0) > now_ms()

    async def allow(self, origin: str) -> bool:
        while True:
            now = now_ms()
            if self._closed_until.get(origin, 0) > now:
                return False
            if self._healthy_until.get(origin, 0) > now:
                return True
            if self._trial.get(origin, 0) <= now:
                break
            await self._api.sleep(0.05)  # another fetch is finding out whether it answers
        unproven = self._seen_up_until.get(origin, 0) <= now
        if unproven:
            self._trial[origin] = now + self._trial_ms
        try:
            return await self._claim(origin, now, unproven)
        except BaseException:
            self._trial.pop(origin, None)
            raise

    async def _claim(self, origin: str, now: int, unproven: bool) -> bool:
        await self._ensure_schema()
        allowed, until = await self._api.run_db_interaction(
            "phenom_preview_origin_claim",
            preview_store.claim_origin,
            origin,
            now,
            self._interval_ms,
        )
        if not allowed:
            self._trial.pop(origin, None)
            self._closed_until[origin] = until
        elif until:
            self._probing.add(origin)  # a failed origin, probed by this process
        elif not unproven:  # (an unproven origin is healthy only once it has answered)
            self._healthy_until[origin] = now + _HEALTHY_MEMO_MS
        return bool(allowed)

    async def record(self, origin: str, reachable: bool) -> None:
        try:
            await self._record(origin, reachable)
        finally:
            self._trial.pop(origin, None)  # waiters re-read the outcome

    async def _record(self, origin: str, reachable: bool) -> None:
        if reachable:
            self._seen_up_until[origin] = now_ms() + self._interval_ms
            self._healthy_until[origin] = now_ms() + _HEALTHY_MEMO_MS
        if reachable and origin not in self._probing and origin not in self._closed_until:
            return  # healthy and nobody marked it down that we know of: no write
        self._probing.discard(origin)
        await self._ensure_schema()
        until = await self._api.run_db_interaction(
            "phenom_preview_origin_record",
            preview_store.record_origin,
            origin,
            reachable,
            now_ms(),
            self._interval_ms,
            self._max_ms,
        )
        self._healthy_until.pop(origin, None)
        if until:
            self._closed_until[origin] = until
            logger.warning(
                "Link previews: %s is unreachable; next try in %d ms", origin, until - now_ms()
            )
        else:
            self._closed_until.pop(origin, None)


async def wait_until_persisted(api: ModuleApi, event_id: str, timeout_s: float = 15.0) -> bool:
    """Whether the event was stored (a spam check runs before persistence, and a send can
    still fail after it). Looks in Synapse's ``events`` table after a first pause of about a
    send's length, then with a doubling pause: usually one query."""
    pause, waited = 0.1, 0.0

    def exists(txn: Any) -> bool:
        txn.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,))
        return txn.fetchone() is not None

    while waited < timeout_s:
        await api.sleep(pause)
        waited += pause
        if await api.run_db_interaction("phenom_link_preview_persisted", exists):
            return True
        pause = min(pause * 2, 2.0)
    return False


class ImageRehoster:
    """Copies a card image into the media repository once (by source URL, then content hash)."""

    def __init__(self, api: ModuleApi, resolver: PreviewResolver, system_user: UserID) -> None:
        self._api = api
        self._resolver = resolver
        self._system_user = system_user

    async def rehost(self, card: Card) -> Card:
        source = card.image_url
        if not source:
            return card
        known = await self._api.run_db_interaction(
            "phenom_preview_media_get", preview_store.get_media, source
        )
        if known is not None:
            return card.model_copy(update={"image": known})
        fetched = await self._resolver.fetch_image(card)
        if fetched is None:
            return card
        sha = hashlib.sha256(fetched.data).hexdigest()
        image = await self._api.run_db_interaction(
            "phenom_preview_media_get", preview_store.get_media, source, sha
        )
        if image is None:
            mxc = await self._upload(fetched.data, fetched.mimetype)
            if mxc is None:
                return card
            image = CardImage(
                mxc=mxc,
                mimetype=fetched.mimetype,
                size=len(fetched.data),
                width=fetched.width,
                height=fetched.height,
            )
        await self._api.run_db_interaction(
            "phenom_preview_media_put", preview_store.put_media, source, sha, image, now_ms()
        )
        return card.model_copy(update={"image": image})

    async def _upload(self, data: bytes, mimetype: str) -> str | None:
        # No module API uploads media. The media repository's own create_or_update_content
        # stores a regular local upload (no URL-preview expiry) owned by the system user.
        try:
            repo = self._api._hs.get_media_repository()
        except Exception:
            logger.warning("No media repository in this process; preview images are not re-hosted")
            return None
        uri = await repo.create_or_update_content(
            mimetype, "link-preview", io.BytesIO(data), len(data), self._system_user
        )
        return str(uri)


CardLookup = Callable[[str], Awaitable[Card | str | None]]
CardResolve = Callable[[str], Awaitable[tuple[Card | None, str | None]]]


class PreviewResource(DirectServeJsonResource):
    """``GET /_synapse/client/phenom/preview?url=<Phenom link>`` (any signed-in user).

    200 ``{"url", "card", "preview"}`` — ``preview`` is the MSC4095 entry the composer can
    put into ``com.beeper.linkpreviews``; 400 for a link that is not a Phenom link; 404
    when the page yields no card (``error`` says why, in words fit for users); 429
    ``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` when the user caused too many fetches.
    Cached answers are free; each cache miss takes a token from the user's bucket.
    """

    def __init__(
        self,
        api: ModuleApi,
        config: LinkPreviewConfig,
        resolver: PreviewResolver,
        lookup: CardLookup,
        resolve: CardResolve,
        ensure_schema: Callable[[], Awaitable[None]],
        sign: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        super().__init__()
        self._sign = sign
        self._api = api
        self._config = config
        self._resolver = resolver
        self._lookup = lookup
        self._resolve = resolve
        self._ensure_schema = ensure_schema

    async def _take_token(self, user_id: str) -> None:
        await self._ensure_schema()
        taken = await self._api.run_db_interaction(
            "phenom_preview_ratelimit",
            preview_store.take_token,
            user_id,
            now_ms(),
            self._config.composer_rate_per_s,
            self._config.composer_burst,
        )
        if not taken.allowed:
            raise LimitExceededError("phenom_preview", retry_after_ms=taken.retry_after_ms)

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        requester = await _http.requester(self._api.get_user_by_req, request)
        url = _http.query_str(request, "url", max_chars=4096)
        if not url:
            raise SynapseError(
                400,
                "Missing 'url' query parameter, e.g. ?url=https://thephenom.app/...",
                Codes.MISSING_PARAM,
            )
        policy = self._resolver.policy
        if len(url) > 4096 or "\x00" in url or not policy.is_phenom_link(url):
            origins = ", ".join(o.url for o in policy.origins)
            raise SynapseError(400, f"Only links to {origins} get previews", Codes.INVALID_PARAM)
        key = normalise_url(url)
        found = await self._lookup(key)
        if found is None:
            await self._take_token(requester.user.to_string())
            try:
                card, error = await self._resolve(key)
            except Refused as err:
                raise SynapseError(400, err.public, Codes.INVALID_PARAM) from None
        else:
            card, error = (found, None) if isinstance(found, Card) else (None, found)
        if card is None:
            raise SynapseError(404, f"No preview for this link: {error}", Codes.NOT_FOUND)
        return 200, {
            "url": url,
            "card": card.model_dump(mode="json"),
            # Signed: the app may send it unmodified in its message (docs/link-previews.md).
            "preview": self._sign(msc4095.preview_entry(url, card)),
        }
