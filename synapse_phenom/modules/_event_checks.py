"""Every Phenom module's ``check_event_for_spam``, behind one Synapse registration.

Synapse wraps each registered callback in a ``Measure`` block and ``delay_cancellation``
for every event (≈ 40 µs of CPU each, more than the Phenom checks themselves cost;
docs/benchmarks.md); one registration per process pays that once whatever the number of
modules. Keyed by ``ModuleApi`` like ``_registry`` (Synapse builds every ``modules:`` entry
of a process with the same one), weakly, so nothing outlives its homeserver.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from synapse.module_api import NOT_SPAM

if TYPE_CHECKING:
    from synapse.events import EventBase
    from synapse.module_api import ModuleApi

EventCheck = Callable[["EventBase"], Awaitable[Any]]


class EventChecks:
    """The checks run in the order the modules were loaded; the first verdict that is not
    "not spam" is Synapse's answer, as when each was registered on its own. Each check is
    guarded by its module (``_guard.guarded``): none raises."""

    def __init__(self) -> None:
        self.checks: list[EventCheck] = []

    async def check_event_for_spam(self, event: EventBase) -> Any:
        for check in self.checks:
            verdict = await check(event)
            if verdict is not False and verdict != NOT_SPAM:
                return verdict
        return NOT_SPAM


# Weak values too: the checks hold their modules, which hold the ModuleApi (the key).
# Synapse keeps the chain alive through the callback it registered.
_CHAINS: weakref.WeakKeyDictionary[ModuleApi, weakref.ref[EventChecks]] = (
    weakref.WeakKeyDictionary()
)


def add_event_check(api: ModuleApi, check: EventCheck) -> None:
    """Register ``check`` as a ``check_event_for_spam`` callback of ``api``'s process."""
    ref = _CHAINS.get(api)
    chain = None if ref is None else ref()
    if chain is None:
        chain = EventChecks()
        _CHAINS[api] = weakref.ref(chain)
        api.register_spam_checker_callbacks(check_event_for_spam=chain.check_event_for_spam)
    chain.checks.append(check)
