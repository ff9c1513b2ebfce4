"""Which Phenom modules a Synapse process has loaded (for the ops module's health endpoint).

Each module calls ``mark_loaded(api, name)`` in its ``__init__``; Synapse builds every
module of ``modules:`` in every process, with the same ``ModuleApi``, before it serves
requests. Keyed weakly by that ``ModuleApi``: two homeservers in one Python process (tests)
never see each other's modules.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synapse.module_api import ModuleApi

_LOADED: weakref.WeakKeyDictionary[ModuleApi, set[str]] = weakref.WeakKeyDictionary()


def mark_loaded(api: ModuleApi, module: str) -> None:
    _LOADED.setdefault(api, set()).add(module)


def loaded_modules(api: ModuleApi) -> list[str]:
    return sorted(_LOADED.get(api, ()))
