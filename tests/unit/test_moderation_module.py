"""The moderation module's failure handling (fail-open / fail-closed) with a stub API."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any
from unittest.mock import create_autospec

import pytest
from synapse.api.errors import Codes
from synapse.module_api import NOT_SPAM, ModuleApi

from synapse_phenom.modules._guard import CALLBACK_ERRORS
from synapse_phenom.modules.moderation import PhenomModeration


async def synapse_dispatch(event: Any, context: Any) -> tuple[bool, None]:
    """Synapse's third-party-rules dispatcher with no callback registered."""
    return True, None


def broken_api() -> Any:
    """A ``ModuleApi`` double (spec'd) that registers nothing; every room-state read fails."""
    api = create_autospec(ModuleApi, instance=True)
    api.server_name = "x"
    api._hs = SimpleNamespace(
        config=SimpleNamespace(
            key=SimpleNamespace(macaroon_secret_key=b"k"),
            server=SimpleNamespace(
                allow_per_room_profiles=False, include_profile_data_on_invite=False
            ),
        ),
        rules=SimpleNamespace(check_event_allowed=synapse_dispatch),
    )
    api._hs.get_module_api_callbacks = lambda: SimpleNamespace(
        third_party_event_rules=api._hs.rules
    )
    api._store = SimpleNamespace()  # private attributes autospec cannot see
    api.should_run_background_tasks.return_value = False
    api.get_room_state.side_effect = RuntimeError("database down")
    api.get_profile_for_user.side_effect = RuntimeError("database down")
    api.is_mine.return_value = True
    return api


def event(event_type: str = "m.room.message", **content: Any) -> Any:
    member = event_type == "m.room.member"
    return SimpleNamespace(
        type=event_type,
        sender="@a:x",
        state_key="@a:x" if member else None,
        room_id="!r:x",
        content=content,
        is_state=lambda: member,
    )


@pytest.mark.parametrize("fail_closed", [False, True])
def test_failure_is_logged_counted_and_falls_back(fail_closed: bool) -> None:
    module = PhenomModeration(
        PhenomModeration.parse_config({"fail_closed": fail_closed}), broken_api()
    )
    counter = CALLBACK_ERRORS.labels(module="moderation", callback="_check_event_for_spam")
    before = counter._value.get()
    result = asyncio.run(module.check_event_for_spam(event(body="hi")))
    assert counter._value.get() == before + 1
    # display_names: profile checks a join's name; an unreadable profile falls back too.
    join = asyncio.run(module.user_may_join_room("@u:x", "!r:x", False))
    rewriting = PhenomModeration(
        PhenomModeration.parse_config({"fail_closed": fail_closed, "display_names": "rewrite"}),
        broken_api(),
    )
    allowed = asyncio.run(
        rewriting.check_event_allowed(
            event("m.room.member", membership="join", displayname="n"), {}
        )
    )
    # display_names: profile checks member events (only) through Synapse's dispatcher.
    api = broken_api()
    PhenomModeration(PhenomModeration.parse_config({"fail_closed": fail_closed}), api)
    dispatch = api._hs.rules.check_event_allowed
    member = asyncio.run(
        dispatch(event("m.room.member", membership="join", displayname="n", reason="r"), None)
    )
    assert asyncio.run(dispatch(event(body="hi"), None)) == (True, None)  # not a member event
    if fail_closed:
        assert result[0] == Codes.FORBIDDEN and "not sent" in result[1]["error"]
        assert join[0] == Codes.FORBIDDEN
        assert allowed == (False, None) and member == (False, None)
    else:
        assert result is NOT_SPAM and join is NOT_SPAM and allowed == (True, None)
        assert member == (True, None)
    # Never a bool, whatever happens.
    assert not isinstance(result, bool) and not isinstance(join, bool)


def test_moderation_log_since_parsing() -> None:
    from synapse_phenom.cli.moderation_cmd import parse_since

    now = 1_700_000_000.0
    assert parse_since("30m", now) == int((now - 1800) * 1000)
    assert parse_since("2d", now) == int((now - 172_800) * 1000)
    assert parse_since("1700000000000") == 1_700_000_000_000
    assert parse_since("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC unless stated
    assert parse_since("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    with pytest.raises(ValueError, match="30m"):
        parse_since("yesterday")


def test_member_event_changes_go_on_top_of_another_modules_replacement() -> None:
    """display_names: profile and another module's check_event_allowed both replacing a
    member event: the other module's content, with this module's name and reason changes."""
    from synapse_phenom.modules._moderation_names import _merged

    original = event("m.room.member", membership="join", displayname="bad", reason="bad")
    ours = {"content": {"membership": "join", "displayname": "u"}}
    theirs = {"type": "m.room.member", "content": {**original.content, "x": 1}}
    merged = _merged(original, ours, theirs)
    assert merged == {
        "type": "m.room.member",
        "content": {"membership": "join", "displayname": "u", "x": 1},
    }
    kept = _merged(original, {"content": dict(original.content)}, theirs)
    assert kept["content"] == theirs["content"]  # nothing of ours changed: theirs as is
