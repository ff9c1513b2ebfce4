"""The rooms module's view of which rooms are managed (fake ModuleApi: alias lookups only)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any
from unittest.mock import create_autospec

import pytest
from synapse.api.errors import SynapseError
from synapse.module_api import ModuleApi

from synapse_phenom.modules import _registry
from synapse_phenom.modules import rooms as rooms_module
from synapse_phenom.modules.rooms import PhenomRooms
from synapse_phenom.rooms.config import RoomsConfig


def fake_api(aliases: dict[str, str]) -> Any:
    """A ``ModuleApi`` double (spec'd: a renamed method fails) that only resolves aliases."""
    api = create_autospec(ModuleApi, instance=True)
    api.server_name = "hs"
    api.worker_name = None
    # Private attributes autospec cannot see (push-rule defaults, _rooms_push_defaults.py).
    api._store = object()
    api._push_rules_handler = object()
    api.should_run_background_tasks.return_value = False

    async def lookup_room_alias(alias: str) -> tuple[str, list[str]]:
        if alias not in aliases:
            raise SynapseError(404, "no such alias")
        return aliases[alias], ["hs"]

    api.lookup_room_alias.side_effect = lookup_room_alias
    return api


def test_upgraded_room_becomes_managed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A room upgrade moves the alias to a new room: within the cache lifetime the new
    # room must be recognised (joins/invites checked, group sync, moderation policy),
    # and the old one stays managed too.
    now = [1000.0]
    monkeypatch.setattr(rooms_module.time, "monotonic", lambda: now[0])
    aliases = {
        "#internal:hs": "!old-internal:hs",
        "#partners:hs": "!p:hs",
        "#community:hs": "!c:hs",
    }
    api = fake_api(aliases)
    rooms = PhenomRooms(RoomsConfig(), api)

    async def run() -> None:
        assert await rooms.room_key("!old-internal:hs") == "internal"
        lookups = api.lookup_room_alias.await_count
        assert await rooms.room_key("!dm:hs") is None
        assert (
            api.lookup_room_alias.await_count == lookups
        )  # fresh: unknown rooms cost no alias lookup
        aliases["#internal:hs"] = "!new-internal:hs"
        now[0] += 3600
        assert await rooms.room_key("!new-internal:hs") == "internal"
        assert await rooms.room_id("internal") == "!new-internal:hs"
        assert await rooms.room_key("!old-internal:hs") == "internal"
        # An alias that disappears keeps the last known room managed.
        del aliases["#partners:hs"]
        now[0] += 3600
        assert await rooms.room_id("partners") == "!p:hs"

    asyncio.run(run())


def test_modules_are_found_per_module_api_and_never_leak() -> None:
    # Two homeservers in one process (as in tests): each sees its own rooms module only,
    # and a finished homeserver's module is gone with its ModuleApi.
    first, second = fake_api({}), fake_api({})
    rooms_first = PhenomRooms(RoomsConfig(), first)
    assert rooms_module.get_rooms_module(first) is rooms_first
    assert rooms_module.get_rooms_module(second) is None
    rooms_second = PhenomRooms(RoomsConfig(system_user="other"), second)
    assert rooms_module.get_rooms_module(second) is rooms_second
    assert rooms_module.get_rooms_module(first) is rooms_first
    gone = weakref.ref(first)
    del rooms_first, first
    gc.collect()
    assert gone() is None
    assert list(_registry._ROOMS.keys()) == [second]
