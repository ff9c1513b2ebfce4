"""Phenom link previews in Synapse: cards on messages that link to Phenom content.

Load with::

    modules:
      - module: synapse_phenom.modules.link_preview.PhenomLinkPreviews
        config: {}   # see docs/link-previews.md

Two delivery paths (docs/link-previews.md has the event shapes):

* inline — ``check_event_allowed`` adds MSC4095 bundled previews to the message when the
  card is cached (or resolves within ``budget_ms`` on the background-task process);
* follow-up — otherwise the background-task process resolves the link after the message
  is persisted and sends an ``app.phenom.link_preview`` event referencing it.

Cards live in ``phenom_link_previews`` (all processes share them); images are copied once
into the media repository through its internal API (no module API uploads media).
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.module_api import (
    DirectServeJsonResource,
    ModuleApi,
    make_deferred_yieldable,
)
from synapse.types import UserID
from twisted.internet import defer
from twisted.internet import reactor as _reactor

from synapse_phenom import db, endpoints
from synapse_phenom.memo import TtlMemo
from synapse_phenom.modules._config import parse_module_config
from synapse_phenom.modules._guard import guarded
from synapse_phenom.modules._health import mark_loaded
from synapse_phenom.modules._preview_fetch_twisted import TwistedFetcher
from synapse_phenom.modules.preview_metrics import InstrumentedFetcher
from synapse_phenom.previews import msc4095
from synapse_phenom.previews import store as preview_store
from synapse_phenom.previews.card import Card, CardImage
from synapse_phenom.previews.config import LinkPreviewConfig
from synapse_phenom.previews.policy import Refused, normalise_url
from synapse_phenom.previews.resolver import PreviewResolver

if TYPE_CHECKING:
    from synapse.events import EventBase
    from synapse.http.site import SynapseRequest as Request

logger = logging.getLogger(__name__)
reactor: Any = _reactor

MODULE_PATH = "synapse_phenom.modules.link_preview.PhenomLinkPreviews"
PREVIEW_PATH = endpoints.PREVIEW_PATH
_PRUNE_INTERVAL_MS = 60_000
_MEMO_SIZE = 2048
_MEMO_SECONDS = 30.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class PhenomLinkPreviews:
    def __init__(self, config: LinkPreviewConfig, api: ModuleApi) -> None:
        self._config = config
        self._api = api
        self._resolver = PreviewResolver(
            config, InstrumentedFetcher(TwistedFetcher(config, yieldable=make_deferred_yieldable))
        )
        self._system_user = UserID(config.system_user, api.server_name)
        # Only this process resolves for messages (the follow-up path); others read the cache.
        self._resolves_messages = api.should_run_background_tasks()
        self._inflight: dict[str, defer.Deferred[Card | None]] = {}
        # Card or error text per normalised link, in front of the table (no DB trip per send).
        self._memo: TtlMemo[Card | str] = TtlMemo(_MEMO_SIZE, _MEMO_SECONDS)
        self._schema_ready = False
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed,
            on_new_event=self.on_new_event if self._resolves_messages else None,
        )
        for path in endpoints.PREVIEW_PATHS:  # versioned, and the documented legacy path
            api.register_web_resource(path, PreviewResource(self, api))
        mark_loaded(api, MODULE_PATH)  # modules.ops health
        if self._resolves_messages:
            api.looping_background_call(
                self.prune, _PRUNE_INTERVAL_MS, desc="phenom_link_preview_prune"
            )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> LinkPreviewConfig:
        return parse_module_config(LinkPreviewConfig, config, MODULE_PATH)

    @property
    def resolver(self) -> PreviewResolver:
        return self._resolver

    # -- cache and resolution -----------------------------------------------------

    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            await self._api.run_db_interaction(
                "phenom_link_preview_schema", db.create_schema, preview_store.SCHEMA
            )
            self._schema_ready = True

    async def cached(self, keys: list[str]) -> dict[str, preview_store.Cached]:
        """Fresh card / error text / None per key: from the memo, else from the table."""
        found: dict[str, preview_store.Cached] = {k: self._memo.get(k) for k in keys}
        missing = [k for k, v in found.items() if v is None]
        if missing:
            await self._ensure_schema()
            rows = await self._api.run_db_interaction(
                "phenom_link_preview_get", preview_store.get_many, missing, _now_ms()
            )
            for key, value in rows.items():
                if value is not None:
                    self._memo.put(key, value)
                found[key] = value
        return found

    def resolution(self, key: str) -> defer.Deferred[Card | None]:
        """The card for a normalised Phenom link, resolved once per process at a time.

        Runs as a background process (its own log context), so a caller that stops
        waiting (the send budget) does not stop it. Fires with None on failure.
        """
        pending = self._inflight.get(key)
        if pending is None and len(self._inflight) >= self._config.max_concurrent_resolutions:
            logger.info(
                "Not previewing %s: %d resolutions already running", key, len(self._inflight)
            )
            return defer.succeed(None)
        if pending is None:
            pending = self._api.run_as_background_process(
                "phenom_link_preview_resolve", self._resolve_and_store, key
            )
            self._inflight[key] = pending

            def forget(result: Any) -> Any:
                self._inflight.pop(key, None)
                return result

            pending.addBoth(forget)
        # A fresh Deferred per waiter: waiters never alter the shared one's result. It
        # fires on a fresh reactor turn, in the sentinel log context, as Synapse expects.
        waiter: defer.Deferred[Card | None] = defer.Deferred()

        def notify(result: Any) -> Any:
            reactor.callLater(0, waiter.callback, result if isinstance(result, Card) else None)
            return result

        pending.addBoth(notify)
        return waiter

    async def _resolve_and_store(self, key: str) -> Card | None:
        await self._ensure_schema()
        result = await self._resolver.resolve(key)
        card = result.card
        if card is not None and self._config.rehost_images:
            try:
                card = await self._rehost_image(card)
            except Exception:
                # The card is still worth showing (and caching) without its image.
                logger.exception("Re-hosting the image of %s failed", key)
        await self._api.run_db_interaction(
            "phenom_link_preview_put",
            preview_store.put,
            key,
            card,
            result.error,
            _now_ms(),
            result.ttl_s,
        )
        self._memo.put(key, card if card is not None else str(result.error), result.ttl_s)
        return card

    async def card_for(self, url: str) -> tuple[Card | None, str | None]:
        """(card, error) from the cache, else resolved here. For the preview endpoint."""
        key = normalise_url(url)
        found = (await self.cached([key]))[key]
        if isinstance(found, Card):
            return found, None
        if isinstance(found, str):
            return None, found
        card = await make_deferred_yieldable(self.resolution(key))
        if card is None:
            found = (await self.cached([key]))[key]
            return None, found if isinstance(found, str) else "no preview available"
        return card, None

    async def _cards_now(self, links: list[str]) -> list[tuple[str, Card]]:
        """Cards for ``links`` (as written) from the cache; misses resolved here if this
        process resolves. The caller bounds how long it waits for this."""
        keys = {link: normalise_url(link) for link in links}
        cached = await self.cached(list(dict.fromkeys(keys.values())))
        cards: dict[str, Card] = {k: v for k, v in cached.items() if isinstance(v, Card)}
        misses = [k for k, v in cached.items() if v is None]
        if misses and self._resolves_messages:
            results = await make_deferred_yieldable(
                defer.gatherResults([self.resolution(k) for k in misses], consumeErrors=True)
            )
            cards.update({k: c for k, c in zip(misses, results, strict=True) if c is not None})
        return [(link, cards[key]) for link, key in keys.items() if key in cards]

    def _memoised(self, links: list[str]) -> list[tuple[str, Card]] | None:
        """Cards for all ``links`` if this process knows every one of them, else None."""
        out: list[tuple[str, Card]] = []
        for link in links:
            known = self._memo.get(normalise_url(link))
            if known is None:
                return None
            if isinstance(known, Card):
                out.append((link, known))
        return out

    async def _within_budget(self, links: list[str]) -> list[tuple[str, Card]]:
        """``_cards_now``, but never longer than ``budget_ms``; the work goes on regardless."""
        # Its own log context: it may outlive the send request that started it.
        work = self._api.run_as_background_process(
            "phenom_link_preview_inline", self._cards_now, links
        )
        gate: defer.Deferred[list[tuple[str, Card]]] = defer.Deferred()

        def finish(result: Any) -> None:
            if not gate.called:
                gate.callback(result if isinstance(result, list) else [])

        work.addBoth(lambda result: reactor.callLater(0, finish, result))
        timer = reactor.callLater(self._config.budget_ms / 1000, finish, [])
        try:
            return await make_deferred_yieldable(gate)
        finally:
            if timer.active():
                timer.cancel()

    async def _rehost_image(self, card: Card) -> Card:
        """Copy the card image into the media repository once (by source URL, then content hash)."""
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
            "phenom_preview_media_put", preview_store.put_media, source, sha, image, _now_ms()
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

    @guarded("link_preview", fallback=None)
    async def prune(self) -> None:
        await self._ensure_schema()
        dropped = await self._api.run_db_interaction(
            "phenom_link_preview_prune",
            preview_store.prune,
            _now_ms(),
            self._config.max_cache_entries,
        )
        if dropped:
            logger.info(
                "Dropped %d cached link previews over the %d limit",
                dropped,
                self._config.max_cache_entries,
            )

    # -- Synapse callbacks ----------------------------------------------------------

    def _is_candidate(self, event: EventBase, state: Mapping[Any, Any]) -> bool:
        """A local user's message in an unencrypted room (encrypted rooms are never touched)."""
        return (
            event.type == "m.room.message"
            and not event.is_state()
            and self._api.is_mine(event.sender)
            and ("m.room.encryption", "") not in state
        )

    def _links_in(self, content: Mapping[str, Any]) -> list[str]:
        body, _ = msc4095.message_body(content)
        return self._resolver.policy.phenom_links(body, self._config.max_links_per_message)

    # Fail open: a preview problem must never block or alter a message.
    @guarded("link_preview", fallback=(True, None))
    async def check_event_allowed(
        self, event: EventBase, state: Mapping[Any, Any]
    ) -> tuple[bool, dict | None]:
        if not self._is_candidate(event, state) or not msc4095.wants_previews(event.content):
            return True, None
        links = self._links_in(event.content)
        if not links:
            return True, None
        cards = self._memoised(links)
        if cards is None:
            cards = await self._within_budget(links)
        if not cards:
            return True, None
        replacement = event.get_dict()
        replacement["content"] = msc4095.with_previews(
            replacement["content"], msc4095.previews_for(cards)
        )
        return True, replacement

    @guarded("link_preview", fallback=None)
    async def on_new_event(self, event: EventBase, state: Mapping[Any, Any]) -> None:
        if not self._is_candidate(event, state) or msc4095.opted_out(event.content):
            return
        done = msc4095.previewed_urls(event.content)
        links = [link for link in self._links_in(event.content) if link not in done]
        if links:
            # Synapse calls this in the sender's request context; the follow-up may take
            # seconds, so it runs in its own background context.
            self._api.run_as_background_process(
                "phenom_link_preview_follow_up", self._follow_up, event, links
            )

    @guarded("link_preview", fallback=None)
    async def _follow_up(self, event: EventBase, links: list[str]) -> None:
        cards = await self._cards_now(links)
        if not cards:
            return
        content = event.content
        _, is_edit = msc4095.message_body(content)
        target = event.event_id
        relates = content.get("m.relates_to") or {}
        if is_edit and isinstance(relates.get("event_id"), str):
            target = relates["event_id"]  # clients show the original; the card belongs to it
        await self._api.create_and_send_event_into_room(
            {
                "type": msc4095.FOLLOW_UP_TYPE,
                "room_id": event.room_id,
                "sender": event.sender,
                "content": msc4095.follow_up_content(target, msc4095.previews_for(cards)),
            }
        )


class PreviewResource(DirectServeJsonResource):
    """``GET /_synapse/client/phenom/preview?url=<Phenom link>`` (any signed-in user).

    200 ``{"url", "card", "preview"}`` — ``preview`` is the MSC4095 entry the composer can
    put into ``com.beeper.linkpreviews``; 400 for a link that is not a Phenom link; 404
    when the page yields no card (the reason is in ``error``).
    """

    def __init__(self, module: PhenomLinkPreviews, api: ModuleApi) -> None:
        super().__init__()
        self._module = module
        self._api = api

    async def _async_render_GET(self, request: Request) -> tuple[int, dict[str, Any]]:
        await self._api.get_user_by_req(request)
        raw = (request.args or {}).get(b"url", [b""])[0]
        url = raw.decode("utf-8", "replace").strip()
        if not url:
            raise SynapseError(
                400,
                "Missing 'url' query parameter, e.g. ?url=https://thephenom.app/...",
                Codes.MISSING_PARAM,
            )
        policy = self._module.resolver.policy
        if not policy.is_phenom_link(url):
            origins = ", ".join(o.url for o in policy.origins)
            raise SynapseError(400, f"Only links to {origins} get previews", Codes.INVALID_PARAM)
        try:
            card, error = await self._module.card_for(url)
        except Refused as err:
            raise SynapseError(400, str(err), Codes.INVALID_PARAM) from None
        if card is None:
            raise SynapseError(404, f"No preview for {url}: {error}", Codes.NOT_FOUND)
        return 200, {
            "url": url,
            "card": card.model_dump(mode="json"),
            "preview": msc4095.preview_entry(url, card),
        }
