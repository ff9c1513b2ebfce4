"""Inline cards (``inline: true``): ``check_event_allowed`` adds cached cards, or cards
resolved within ``budget_ms``, to the message itself. Mixed into ``PhenomLinkPreviews``
(which provides the cache, the resolution and the link spotting)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from synapse.module_api import make_deferred_yieldable
from twisted.internet import defer
from twisted.internet import reactor as _reactor

from synapse_phenom.memo import TtlMemo
from synapse_phenom.modules._guard import guarded
from synapse_phenom.previews import msc4095
from synapse_phenom.previews.card import Card
from synapse_phenom.previews.policy import normalise_url

if TYPE_CHECKING:
    from synapse.events import EventBase
    from synapse.module_api import ModuleApi

    from synapse_phenom.previews import store as preview_store
    from synapse_phenom.previews.config import LinkPreviewConfig

reactor: Any = _reactor


class InlineCards:
    if TYPE_CHECKING:
        _api: ModuleApi
        _config: LinkPreviewConfig
        _memo: TtlMemo[Card | str]

        sign: Callable[[dict[str, Any]], dict[str, Any]]

        async def cached(self, keys: list[str]) -> dict[str, preview_store.Cached]: ...
        def resolution(self, key: str) -> defer.Deferred[Card | None]: ...
        def _down(self, key: str) -> bool: ...
        def _links_in(self, event: EventBase) -> list[str]: ...

    # Fail open: a preview problem must never block or alter a message.
    @guarded("link_preview", fallback=(True, None))
    async def check_event_allowed(
        self, event: EventBase, state: Mapping[Any, Any]
    ) -> tuple[bool, dict | None]:
        if ("m.room.encryption", "") in state or not msc4095.wants_previews(event.content):
            return True, None
        links = self._links_in(event)
        if not links:
            return True, None
        cards = self._memoised(links)
        if cards is None:
            cards = await self._within_budget(links)
        if not cards:
            return True, None
        replacement = event.get_dict()
        replacement["content"] = msc4095.with_previews(
            replacement["content"], msc4095.previews_for(cards, self.sign)
        )
        return True, replacement

    async def _cards_now(self, links: list[str]) -> list[tuple[str, Card]]:
        """Cards for ``links`` (as written) from the cache, misses resolved here.
        The caller bounds how long it waits for this."""
        keys = {link: normalise_url(link) for link in links}
        cached = await self.cached(list(dict.fromkeys(keys.values())))
        cards: dict[str, Card] = {k: v for k, v in cached.items() if isinstance(v, Card)}
        misses = [k for k, v in cached.items() if v is None and not self._down(k)]
        if misses:
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
