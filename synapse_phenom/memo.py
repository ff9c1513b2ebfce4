"""The one per-process TTL memo of the project (pure, no synapse).

Hot data (a Phenom post shared many times, a room's moderation policy, a user's groups)
must not cost a database round trip inside every send. Entries live briefly (seconds),
so processes converge on the shared tables. Used by the link-preview and moderation
modules.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlMemo(Generic[V]):
    """LRU of at most ``size`` entries, each valid for ``ttl_s`` seconds (or less, if asked).

    Keys are any hashable (strings, tuples); ``get`` returns None for a missing or expired
    entry, so do not store None.
    """

    def __init__(
        self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._ttl = ttl_s
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, value: V, ttl_s: float | None = None) -> None:
        ttl = self._ttl if ttl_s is None else min(ttl_s, self._ttl)
        self._items[key] = (self._clock() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        """Forget ``key`` (no error when it is not there)."""
        self._items.pop(key, None)
