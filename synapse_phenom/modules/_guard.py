"""Keep module callbacks from ever raising into Synapse.

An exception escaping a callback becomes an HTTP 500 for the user (and, in
``on_user_registration``, a half-registered account). Every callback is wrapped: the
error is logged with its traceback, counted, and a fallback value is returned.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Counter

P = ParamSpec("P")
R = TypeVar("R")

CALLBACK_ERRORS = Counter(
    "phenom_module_callback_errors_total",
    "Exceptions caught inside Phenom module callbacks (the callback then fell back to its default)",
    ["module", "callback"],
)


def guarded(
    module: str, fallback: Any, logger: logging.Logger | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Wrap an async callback: on any exception log, count and return ``fallback``.

    ``fallback`` may be a zero-argument callable, evaluated at failure time (so a
    module can choose fail-open or fail-closed from its config).
    """
    log = logger or logging.getLogger(f"synapse_phenom.modules.{module}")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        name = fn.__name__

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await fn(*args, **kwargs)
            except Exception:
                CALLBACK_ERRORS.labels(module=module, callback=name).inc()
                log.exception("%s callback %s failed; falling back", module, name)
                return fallback() if callable(fallback) else fallback

        return wrapper

    return decorate
