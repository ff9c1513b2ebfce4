"""Phenom link previews in Synapse: cards on messages that link to Phenom content.

Load with::

    modules:
      - module: synapse_phenom.modules.link_preview.PhenomLinkPreviews
        config: {}   # see docs/link-previews.md

Two delivery paths (docs/link-previews.md has the event shapes):

* follow-up (default) — ``check_event_for_spam`` (which costs Synapse nothing extra) spots
  messages with Phenom links; their cards are resolved in the background and, once the
  message is stored, an ``app.phenom.link_preview`` event referencing it carries them;
* inline (``inline: true``) — ``check_event_allowed`` adds cached cards (or cards resolved
  within ``budget_ms``) to the message itself. Registering it makes Synapse load the room's
  whole state for every event of the server, which is why it is opt-in.

Cards live in ``phenom_link_previews`` (all processes share them); images are copied once
into the media repository through its internal API (no module API uploads media).
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from synapse.module_api import NOT_SPAM, ModuleApi, make_deferred_yieldable
from synapse.types import UserID
from twisted.internet import defer
from twisted.internet import reactor as _reactor

from synapse_phenom import db, endpoints
from synapse_phenom.memo import TtlMemo
from synapse_phenom.modules._compat import require_module_api
from synapse_phenom.modules._config import parse_module_config
from synapse_phenom.modules._event_checks import add_event_check
from synapse_phenom.modules._guard import guarded
from synapse_phenom.modules._health import mark_loaded
from synapse_phenom.modules._link_preview_inline import InlineCards
from synapse_phenom.modules._link_preview_signing import card_signing_key
from synapse_phenom.modules._link_preview_support import (
    DbOriginGate,
    ImageRehoster,
    PreviewResource,
    now_ms,
    wait_until_persisted,
)
from synapse_phenom.modules._preview_fetch_twisted import TwistedFetcher
from synapse_phenom.modules.preview_metrics import InstrumentedFetcher
from synapse_phenom.previews import msc4095
from synapse_phenom.previews import store as preview_store
from synapse_phenom.previews.card import Card
from synapse_phenom.previews.config import LinkPreviewConfig
from synapse_phenom.previews.policy import normalise_url, origin_of
from synapse_phenom.previews.resolver import PreviewResolver
from synapse_phenom.previews.signing import sign_entry

if TYPE_CHECKING:
    from synapse.events import EventBase

logger = logging.getLogger(__name__)
reactor: Any = _reactor

MODULE_PATH = "synapse_phenom.modules.link_preview.PhenomLinkPreviews"
PREVIEW_PATH = endpoints.PREVIEW_PATH
_PRUNE_INTERVAL_MS = 60_000
_MEMO_SIZE = 2048
_MEMO_SECONDS = 30.0


class PhenomLinkPreviews(InlineCards):
    def __init__(self, config: LinkPreviewConfig, api: ModuleApi) -> None:
        require_module_api("link_preview", api)
        self._config = config
        self._api = api
        self._gate = DbOriginGate(api, config, self._ensure_schema)
        # Parsing and card building run in Synapse's thread pool, never on the reactor.
        self._resolver = PreviewResolver(
            config,
            InstrumentedFetcher(TwistedFetcher(config, yieldable=make_deferred_yieldable)),
            run_cpu=api.defer_to_thread,
            gate=self._gate,
        )
        self._images = ImageRehoster(
            api, self._resolver, UserID(config.system_user, api.server_name)
        )
        self._inflight: dict[str, defer.Deferred[Card | None]] = {}
        # Card or error text per normalised link, in front of the table (no DB trip per send).
        self._memo: TtlMemo[Card | str] = TtlMemo(_MEMO_SIZE, _MEMO_SECONDS)
        self._schema_ready = False
        # Every card entry the server hands out is signed (previews/signing.py).
        self.sign = functools.partial(sign_entry, key=card_signing_key(api))
        # check_event_for_spam is called for every event anyway (Synapse does no extra work
        # for it; one registration for all modules); check_event_allowed makes Synapse load
        # the room state for every event.
        add_event_check(api, self.check_event_for_spam)
        if config.inline:
            api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)
        resource = PreviewResource(
            api, config, self._resolver, self.lookup, self.card_for, self._ensure_schema, self.sign
        )
        for path in endpoints.PREVIEW_PATHS:  # versioned, and the documented legacy path
            api.register_web_resource(path, resource)
        mark_loaded(api, MODULE_PATH)  # modules.ops health
        if api.should_run_background_tasks():
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
        if self._schema_ready:
            return
        try:
            await self._api.run_db_interaction(
                "phenom_link_preview_schema", db.create_schema, preview_store.SCHEMA
            )
        except Exception:
            # Two requests (or processes) creating the tables at once collide on PostgreSQL
            # (CREATE TABLE IF NOT EXISTS is not atomic there); the winner has done it.
            await self._api.sleep(0.5)
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
                "phenom_link_preview_get", preview_store.get_many, missing, now_ms()
            )
            for key, value in rows.items():
                if value is not None:
                    self._memo.put(key, value)
                found[key] = value
        return found

    async def lookup(self, key: str) -> preview_store.Cached:
        return (await self.cached([key]))[key]

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
        if result.reason == "unavailable":
            # The origin's breaker is open: remember briefly here, write nothing.
            self._memo.put(key, str(result.error), self._config.origin_retry_s)
            return None
        if card is not None and self._config.rehost_images:
            try:
                card = await self._images.rehost(card)
            except Exception:
                # The card is still worth showing (and caching) without its image.
                logger.exception("Re-hosting the image of %s failed", key)
        await self._api.run_db_interaction(
            "phenom_link_preview_put",
            preview_store.put,
            key,
            card,
            result.error,
            now_ms(),
            result.ttl_s,
        )
        self._memo.put(key, card if card is not None else str(result.error), result.ttl_s)
        return card

    async def card_for(self, key: str) -> tuple[Card | None, str | None]:
        """(card, error) for a normalised link, resolved here. For the preview endpoint."""
        card = await make_deferred_yieldable(self.resolution(key))
        if card is None:
            found = self._memo.get(key)
            if found is None:
                found = (await self.cached([key]))[key]
            return None, found if isinstance(found, str) else "no preview available"
        return card, None

    def _down(self, key: str) -> bool:
        """The link's fetch origin is known to be unreachable (no DB trip, no attempt)."""
        try:
            target = self._resolver.policy.fetch_target(key)
        except Exception:
            return False
        return self._gate.known_down(origin_of(target.url) or "")

    @guarded("link_preview", fallback=None)
    async def prune(self) -> None:
        await self._ensure_schema()
        dropped = await self._api.run_db_interaction(
            "phenom_link_preview_prune",
            preview_store.prune,
            now_ms(),
            self._config.max_cache_entries,
        )
        if dropped:
            logger.info(
                "Dropped %d cached link previews over the %d limit",
                dropped,
                self._config.max_cache_entries,
            )

    # -- Synapse callbacks ----------------------------------------------------------

    def _links_in(self, event: EventBase) -> list[str]:
        """Phenom links of a local user's m.room.message (cheap: no state, no DB)."""
        if (
            event.type != "m.room.message"
            or event.is_state()
            or not self._api.is_mine(event.sender)
        ):
            return []
        body, _ = msc4095.message_body(event.content)
        links = self._resolver.policy.phenom_links(body, self._config.max_links_per_message)
        html = msc4095.rendered_html(event.content) if links else None
        # No card for a link the rendered HTML shows going elsewhere (msc4095.shows_link):
        # moderation refuses such a card, and it would vouch for the wrong target.
        return [link for link in links if html is None or msc4095.shows_link(html, link)]

    @guarded("link_preview", fallback=NOT_SPAM)
    async def check_event_for_spam(self, event: EventBase) -> Any:
        """Never judges spam: it spots messages whose links still need a card (after any
        inline cards were added) and starts the follow-up. Runs before persistence."""
        links = self._links_in(event)
        if not links or msc4095.opted_out(event.content):
            return NOT_SPAM
        done = msc4095.previewed_urls(event.content)
        links = [link for link in links if link not in done]
        if links and not all(self._down(normalise_url(link)) for link in links):
            self._api.run_as_background_process(
                "phenom_link_preview_follow_up", self._follow_up, event, links
            )
        return NOT_SPAM

    @guarded("link_preview", fallback=None)
    async def _follow_up(self, event: EventBase, links: list[str]) -> None:
        cards = await self._cards_now(links)
        if not cards or not await wait_until_persisted(self._api, event.event_id):
            return
        # Encrypted rooms are never touched (checked only for messages with a card).
        if await self._api.get_room_state(event.room_id, [("m.room.encryption", "")]):
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
                "content": msc4095.follow_up_content(
                    target, msc4095.previews_for(cards, self.sign)
                ),
            }
        )
