"""The rooms module's view of which rooms are managed (fake ModuleApi: alias lookups only)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from synapse.api.errors import SynapseError

from synapse_phenom.membership import RoomsConfig
from synapse_phenom.modules import rooms as rooms_module
from synapse_phenom.modules.rooms import PhenomRooms


class FakeApi:
    server_name = "hs"
    worker_name = None

    def __init__(self) -> None:
        self.aliases = {"#internal:hs": "!old-internal:hs", "#partners:hs": "!p:hs", "#community:hs": "!c:hs"}
        self.lookups = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("register_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def should_run_background_tasks(self) -> bool:
        return False

    async def lookup_room_alias(self, alias: str) -> tuple[str, list[str]]:
        self.lookups += 1
        if alias not in self.aliases:
            raise SynapseError(404, "no such alias")
        return self.aliases[alias], ["hs"]


def test_upgraded_room_becomes_managed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A room upgrade moves the alias to a new room: within the cache lifetime the new
    # room must be recognised (joins/invites checked, group sync, moderation policy),
    # and the old one stays managed too.
    now = [1000.0]
    monkeypatch.setattr(rooms_module.time, "monotonic", lambda: now[0])
    api = FakeApi()
    rooms = PhenomRooms(RoomsConfig(), api)  # type: ignore[arg-type]

    async def run() -> None:
        assert await rooms.room_key("!old-internal:hs") == "internal"
        lookups = api.lookups
        assert await rooms.room_key("!dm:hs") is None
        assert api.lookups == lookups  # fresh: unknown rooms cost no alias lookup
        api.aliases["#internal:hs"] = "!new-internal:hs"
        now[0] += 3600
        assert await rooms.room_key("!new-internal:hs") == "internal"
        assert await rooms.room_id("internal") == "!new-internal:hs"
        assert await rooms.room_key("!old-internal:hs") == "internal"
        # An alias that disappears keeps the last known room managed.
        del api.aliases["#partners:hs"]
        now[0] += 3600
        assert await rooms.room_id("partners") == "!p:hs"

    asyncio.run(run())
