"""display_names: profile (the default), attacked where the name is *shown*: the member
event. Synapse copies the global profile into a join or knock before any module hook runs
(and runs no hook at all for a knock), so a check of the profile alone leaves gaps; every
local member event's content is checked as it is built."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import pytest
from harness import MatrixClient, SynapseStack

from synapse_phenom.moderation.config import POLICY_EVENT_TYPE

pytestmark = pytest.mark.synapse

BAD = "forbiddenword"
KEYWORDS = {"keywords": [{"name": "test words", "keywords": [BAD]}]}


def set_display_name(user: MatrixClient, name: str) -> None:
    path = f"/_matrix/client/v3/profile/{quote(user.user_id)}/displayname"
    user.call("PUT", path, json={"displayname": name})


def policed_room(owner: MatrixClient, join_rule: str = "public") -> str:
    body: dict[str, Any] = {
        "preset": "public_chat",
        "initial_state": [
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": join_rule}}
        ],
    }
    room = str(owner.call("POST", "/_matrix/client/v3/createRoom", json=body)["room_id"])
    assert owner.send_state(room, POLICY_EVENT_TYPE, KEYWORDS).status_code == 200
    return room


def member_events(viewer: MatrixClient, room: str, user_id: str) -> list[dict[str, Any]]:
    """Every member event of ``user_id`` in the room's timeline (what clients render)."""
    return [
        e["content"]
        for e in viewer.messages(room, limit=100)
        if e["type"] == "m.room.member" and e.get("state_key") == user_id
    ]


def test_a_knock_shows_no_unchecked_name(synapse: SynapseStack) -> None:
    """Synapse runs no spam-checker hook for a knock, and the knock carries the global
    name (a name the rooms the user is in allow)."""
    owner = synapse.register()
    room = policed_room(owner, join_rule="knock")
    user = synapse.register()
    set_display_name(user, f"{BAD} fan")  # Community's rules allow it
    user.call("POST", f"/_matrix/client/v3/knock/{quote(room)}", json={"reason": "hi"})
    knock = owner.state(room, "m.room.member", user.user_id).json()
    assert knock["membership"] == "knock", knock
    assert BAD not in str(knock), knock


def test_a_membership_reason_breaking_the_rules_is_removed(synapse: SynapseStack) -> None:
    """Clients show a join's or leave's reason in the timeline."""
    owner = synapse.register()
    room = policed_room(owner)
    user = synapse.register()
    join = f"/_matrix/client/v3/rooms/{quote(room)}/join"
    user.call("POST", join, json={"reason": f"{BAD} here"})
    user.call("POST", f"/_matrix/client/v3/rooms/{quote(room)}/leave", json={"reason": BAD})
    user.call("POST", join, json={"reason": "back again"})  # a clean reason stays
    events = member_events(owner, room, user.user_id)
    assert not [e for e in events if BAD in str(e)], events
    assert [e for e in events if e.get("reason") == "back again"], events


def race_join_and_rename(
    user: MatrixClient, second: MatrixClient, room: str, new_name: str
) -> None:
    """The join and the rename sent at once (two sessions of one user)."""
    go = threading.Barrier(2)

    def join() -> None:
        go.wait()
        user.request("POST", f"/_matrix/client/v3/rooms/{quote(room)}/join", json={})

    def rename() -> None:
        go.wait()
        set_display_name(second, new_name)

    threads = [threading.Thread(target=join), threading.Thread(target=rename)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_a_rename_racing_a_join_never_shows_the_old_name(synapse: SynapseStack) -> None:
    """Synapse reads the profile into the join event *before* user_may_join_room reads it
    again: a rename landing in between let the join carry a name no check saw (before the
    fix, within the first two or three attempts on this machine)."""
    owner = synapse.register()
    room = policed_room(owner)
    for attempt in range(12):
        user = synapse.register()
        set_display_name(user, f"{BAD} {attempt}")  # in no room whose rules it breaks
        second = synapse.login(user.localpart, user.password)
        race_join_and_rename(user, second, room, "Nice Name")
        events = member_events(owner, room, user.user_id)
        assert not [e for e in events if BAD in str(e)], (attempt, events)
