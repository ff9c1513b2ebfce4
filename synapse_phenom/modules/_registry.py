"""Which Phenom module instances share one Synapse process, keyed by its ``ModuleApi``.

Synapse builds every ``modules:`` entry of a process with the same ``ModuleApi`` object;
modules find each other here instead of through a process-global variable, so two
homeservers in one Python process (tests) never see each other's modules, and nothing
outlives its homeserver (weak keys).

Only the rooms module registers today: the agents and moderation modules ask it about
managed rooms and users.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synapse.module_api import ModuleApi

    from synapse_phenom.modules.rooms import PhenomRooms

# Weak both ways: the module holds its ModuleApi, so a strong value would keep the key
# alive forever. Synapse keeps the module alive through the callbacks it registered.
_ROOMS: weakref.WeakKeyDictionary[ModuleApi, weakref.ref[PhenomRooms]] = weakref.WeakKeyDictionary()


def register_rooms(api: ModuleApi, rooms: PhenomRooms) -> None:
    _ROOMS[api] = weakref.ref(rooms)


def rooms_module(api: ModuleApi) -> PhenomRooms | None:
    """The rooms module loaded with ``api``, or None when it is not configured."""
    ref = _ROOMS.get(api)
    return None if ref is None else ref()
