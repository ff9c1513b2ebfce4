"""The rooms module's view of which rooms are managed (fake ModuleApi: alias lookups and the
upgrade links of rooms' create/tombstone state)."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
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

    async def no_state(room_id: str, event_filter: Any = None) -> dict[Any, Any]:
        return {}  # no upgrade links (lineage_api serves them)

    api.get_room_state.side_effect = no_state
    # The module's own tables (room claims...) on SQLite, as run_db_interaction would.
    conn = sqlite3.connect(":memory:")

    async def run_db_interaction(desc: str, fn: Any, *args: Any) -> Any:
        return fn(conn.cursor(), *args)

    api.run_db_interaction.side_effect = run_db_interaction
    api._test_db = conn
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
    # The upgrade's two halves: the new room names the old one, the old one's tombstone
    # names the new one (an alias moved without them is not trusted: see below).
    state: dict[tuple[str, str], dict[str, Any]] = {
        ("!new-internal:hs", "m.room.create"): {"predecessor": {"room_id": "!old-internal:hs"}},
        ("!old-internal:hs", "m.room.tombstone"): {"replacement_room": "!new-internal:hs"},
    }
    api = lineage_api(aliases, state)
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


class _Event:
    def __init__(self, content: dict[str, Any]) -> None:
        self._content = content

    def get_dict(self) -> dict[str, Any]:
        return {"content": dict(self._content)}


def lineage_api(aliases: dict[str, str], state: dict[tuple[str, str], dict[str, Any]]) -> Any:
    """``fake_api`` that also serves ``m.room.create`` / ``m.room.tombstone`` contents."""
    api = fake_api(aliases)

    async def get_room_state(room_id: str, event_filter: Any = None) -> dict[Any, Any]:
        out = {}
        for event_type, state_key in event_filter or []:
            content = state.get((room_id, event_type))
            if content is not None:
                out[(event_type, state_key)] = _Event(content)
        return out

    api.get_room_state.side_effect = get_room_state
    return api


def _upgraded_world() -> tuple[dict[str, str], dict[tuple[str, str], dict[str, Any]]]:
    # !v1 -> !v2 -> !v3 (current). Each upgrade: predecessor in the new room's create
    # content, tombstone in the old room.
    aliases = {"#internal:hs": "!v3:hs", "#partners:hs": "!p:hs", "#community:hs": "!c:hs"}
    state: dict[tuple[str, str], dict[str, Any]] = {
        ("!v1:hs", "m.room.create"): {},
        ("!v1:hs", "m.room.tombstone"): {"replacement_room": "!v2:hs"},
        ("!v2:hs", "m.room.create"): {"predecessor": {"room_id": "!v1:hs"}},
        ("!v2:hs", "m.room.tombstone"): {"replacement_room": "!v3:hs"},
        ("!v3:hs", "m.room.create"): {"predecessor": {"room_id": "!v2:hs", "event_id": "$x"}},
    }
    return aliases, state


def test_rooms_upgraded_away_stay_managed_in_a_fresh_process() -> None:
    # A process started after the upgrades knows only the alias target: the old rooms
    # (full history, members who can invite) must still be gated as Internal.
    aliases, state = _upgraded_world()
    rooms = PhenomRooms(RoomsConfig(), lineage_api(aliases, state))

    async def run() -> None:
        assert await rooms.room_key("!v1:hs") == "internal"
        assert await rooms.room_key("!v2:hs") == "internal"
        assert await rooms.room_key("!v3:hs") == "internal"
        assert await rooms.room_key("!dm:hs") is None
        assert sorted(rooms._earlier_rooms("internal")) == ["!v1:hs", "!v2:hs"]

    asyncio.run(run())


def test_new_room_of_an_upgrade_is_managed_before_the_alias_cache_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(rooms_module.time, "monotonic", lambda: now[0])
    aliases, state = _upgraded_world()
    api = lineage_api(aliases, state)
    rooms = PhenomRooms(RoomsConfig(), api)

    async def run() -> None:
        assert await rooms.room_id("internal") == "!v3:hs"
        # Upgrade to !v4 one second later: the alias cache (60 s) still says !v3.
        state[("!v3:hs", "m.room.tombstone")] = {"replacement_room": "!v4:hs"}
        state[("!v4:hs", "m.room.create")] = {"predecessor": {"room_id": "!v3:hs"}}
        aliases["#internal:hs"] = "!v4:hs"
        now[0] += 1
        assert await rooms.room_key("!v4:hs") == "internal"
        # ... and the alias is resolved again at once, not after the TTL.
        assert await rooms.room_id("internal") == "!v4:hs"

    asyncio.run(run())


@pytest.mark.parametrize(
    "forged",
    [
        # A room anyone can create, claiming to continue Internal (no tombstone agrees).
        {("!evil:hs", "m.room.create"): {"predecessor": {"room_id": "!v3:hs"}}},
        # The attacker's own room, tombstoned towards Internal: not Internal's predecessor.
        {
            ("!evil:hs", "m.room.create"): {},
            ("!evil:hs", "m.room.tombstone"): {"replacement_room": "!v3:hs"},
        },
        # Both halves, but the tombstone is in a room that is not managed.
        {
            ("!evil:hs", "m.room.create"): {"predecessor": {"room_id": "!mine:hs"}},
            ("!mine:hs", "m.room.tombstone"): {"replacement_room": "!evil:hs"},
        },
        # Malformed contents.
        {("!evil:hs", "m.room.create"): {"predecessor": "!v3:hs"}},
        {("!evil:hs", "m.room.create"): {"predecessor": {"room_id": 3}}},
    ],
)
def test_forged_upgrade_links_do_not_make_a_room_managed(
    forged: dict[tuple[str, str], dict[str, Any]],
) -> None:
    # "Managed" decides the moderation policy too: a user must not make their own room
    # pass as Internal (or Internal's history pass as theirs).
    aliases, state = _upgraded_world()
    state.update(forged)
    rooms = PhenomRooms(RoomsConfig(), lineage_api(aliases, state))

    async def run() -> None:
        assert await rooms.room_key("!evil:hs") is None
        assert await rooms.room_key("!mine:hs") is None

    asyncio.run(run())


def test_an_upgrade_of_an_unseen_upgrade_is_managed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # This process resolved #internal to !v3; two upgrades later (!v4, then !v5) and within
    # the alias cache's minute, a join to !v5 must still be checked as Internal.
    now = [1000.0]
    monkeypatch.setattr(rooms_module.time, "monotonic", lambda: now[0])
    aliases, state = _upgraded_world()
    rooms = PhenomRooms(RoomsConfig(), lineage_api(aliases, state))

    async def run() -> None:
        assert await rooms.room_id("internal") == "!v3:hs"
        state[("!v3:hs", "m.room.tombstone")] = {"replacement_room": "!v4:hs"}
        state[("!v4:hs", "m.room.create")] = {"predecessor": {"room_id": "!v3:hs"}}
        state[("!v4:hs", "m.room.tombstone")] = {"replacement_room": "!v5:hs"}
        state[("!v5:hs", "m.room.create")] = {"predecessor": {"room_id": "!v4:hs"}}
        aliases["#internal:hs"] = "!v5:hs"
        now[0] += 1
        assert await rooms.room_key("!v5:hs") == "internal"
        assert await rooms.room_key("!v4:hs") == "internal"
        # A forged room claiming to follow !v5 (no tombstone there) is not.
        state[("!evil:hs", "m.room.create")] = {"predecessor": {"room_id": "!v5:hs"}}
        assert await rooms.room_key("!evil:hs") is None

    asyncio.run(run())


def test_a_failed_removal_is_retried_not_left_until_the_next_login() -> None:
    # Group loss: the kick failed (a transient error). The user must not keep the room
    # until they happen to sign in again.
    aliases = {"#internal:hs": "!i:hs", "#partners:hs": "!p:hs", "#community:hs": "!c:hs"}
    api = fake_api(aliases)
    api.is_mine.return_value = True
    rooms = PhenomRooms(RoomsConfig(), api)
    calls: list[str] = []

    async def get_groups(user_id: str) -> list[str]:
        return []

    async def membership_of(room_id: str, user_id: str) -> str:
        return "join"

    async def update_room_membership(
        sender: str, target: str, room_id: str, *a: Any, **k: Any
    ) -> None:
        calls.append(room_id)
        raise RuntimeError("database went away")

    rooms.get_groups = get_groups  # type: ignore[method-assign]
    rooms.membership_of = membership_of  # type: ignore[method-assign]
    api.update_room_membership.side_effect = update_room_membership

    async def run() -> None:
        plan = await rooms.reconcile("@bob:hs")
        assert plan.remove == ()  # nothing was done...
        assert sorted(calls) == ["!i:hs", "!p:hs"]

    asyncio.run(run())
    # ... and a retry is on its way.
    assert api.run_as_background_process.call_count == 1
    assert rooms._retry_pending == {"@bob:hs"}


def test_third_party_invites_only_into_rooms_open_to_everyone() -> None:
    # An email invite is claimed by whoever binds the address, possibly on another server
    # (whose join skips user_may_join_room): never into Internal or Partners.
    from synapse.module_api import NOT_SPAM

    aliases = {"#internal:hs": "!i:hs", "#partners:hs": "!p:hs", "#community:hs": "!c:hs"}
    rooms = PhenomRooms(RoomsConfig(), fake_api(aliases))

    async def run() -> list[Any]:
        return [
            await rooms.user_may_send_3pid_invite("@m:hs", "email", "x@example.org", room)
            for room in ("!i:hs", "!p:hs", "!c:hs", "!dm:hs")
        ]

    internal, partners, community, dm = asyncio.run(run())
    assert internal[0] == "M_FORBIDDEN" and "team" in internal[1]["error"]
    assert partners[0] == "M_FORBIDDEN"
    assert community is NOT_SPAM and dm is NOT_SPAM


class _StateEvent:
    def __init__(self, event_type: str, room_id: str, sender: str, state: bool = True) -> None:
        self.type, self.room_id, self.sender, self._state = event_type, room_id, sender, state

    def is_state(self) -> bool:
        return self._state


def test_only_phenom_sets_who_may_join_or_read_a_managed_room() -> None:
    from synapse.module_api import NOT_SPAM

    aliases = {"#internal:hs": "!i:hs", "#partners:hs": "!p:hs", "#community:hs": "!c:hs"}
    api = fake_api(aliases)
    api.is_mine.return_value = True

    async def is_user_admin(user_id: str) -> bool:
        return user_id == "@admin:hs"

    api.is_user_admin.side_effect = is_user_admin
    rooms = PhenomRooms(RoomsConfig(), api)

    async def verdict(event_type: str, room: str, sender: str, state: bool = True) -> Any:
        return await rooms.check_event_for_spam(_StateEvent(event_type, room, sender, state))  # type: ignore[arg-type]

    async def run() -> None:
        for event_type in ("m.room.join_rules", "m.room.history_visibility", "m.room.guest_access"):
            for room in ("!i:hs", "!p:hs", "!c:hs"):
                refused = await verdict(event_type, room, "@moderator:hs")
                assert refused[0] == "M_FORBIDDEN", (event_type, room)
            assert await verdict(event_type, "!i:hs", "@phenom:hs") is NOT_SPAM
            assert await verdict(event_type, "!i:hs", "@admin:hs") is NOT_SPAM
            assert await verdict(event_type, "!dm:hs", "@moderator:hs") is NOT_SPAM
        assert await verdict("m.room.name", "!i:hs", "@moderator:hs") is NOT_SPAM
        assert await verdict("m.room.join_rules", "!i:hs", "@x:hs", state=False) is NOT_SPAM

    asyncio.run(run())


@pytest.mark.parametrize("restart", [False, True])
def test_an_alias_pointed_elsewhere_does_not_move_the_managed_room(
    monkeypatch: pytest.MonkeyPatch, restart: bool
) -> None:
    # A room moderator may delete #internal (Synapse lets whoever may change the canonical
    # alias) and anyone may then point it at their own room: that room must not become
    # "internal" (group sync would join the team into it), nor Internal stop being gated.
    now = [1000.0]
    monkeypatch.setattr(rooms_module.time, "monotonic", lambda: now[0])
    aliases, state = _upgraded_world()
    api = lineage_api(aliases, state)
    rooms = PhenomRooms(RoomsConfig(), api)

    async def run() -> None:
        nonlocal rooms
        assert await rooms.room_id("internal") == "!v3:hs"  # first use: adopted as the claim
        del aliases["#internal:hs"]
        now[0] += 3600
        assert await rooms.room_id("internal") == "!v3:hs"
        aliases["#internal:hs"] = "!mallory:hs"  # her room, claiming to follow Internal
        state[("!mallory:hs", "m.room.create")] = {"predecessor": {"room_id": "!v3:hs"}}
        now[0] += 3600
        if restart:  # a process started now: nothing in memory, the claim is in the database
            fresh_api = lineage_api(aliases, state)
            fresh_api.run_db_interaction.side_effect = api.run_db_interaction.side_effect
            rooms = PhenomRooms(RoomsConfig(), fresh_api)
        assert await rooms.room_id("internal") == "!v3:hs"
        assert await rooms.room_key("!v3:hs") == "internal"
        assert await rooms.room_key("!v1:hs") == "internal"
        assert await rooms.room_key("!mallory:hs") is None

    asyncio.run(run())


def test_no_alias_and_no_claim_means_not_created_yet() -> None:
    rooms = PhenomRooms(RoomsConfig(), fake_api({}))

    async def run() -> None:
        assert await rooms.room_id("internal") is None
        assert await rooms.room_key("!anything:hs") is None

    asyncio.run(run())
