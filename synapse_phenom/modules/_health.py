"""Which Phenom modules this Synapse process has loaded (for the ops module's health endpoint).

Each module calls ``mark_loaded`` in its ``__init__``; Synapse builds every module of
``modules:`` in every process before it serves requests.
"""

from __future__ import annotations

LOADED: set[str] = set()


def mark_loaded(module: str) -> None:
    LOADED.add(module)
