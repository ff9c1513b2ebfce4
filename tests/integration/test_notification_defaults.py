"""A room's default notification level (rooms config ``notifications: mentions_only``),
through a real Synapse: the Community room's members get a room-level ``dont_notify``
push rule at join; mentions still notify, plain messages do not."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from harness import MatrixClient, SynapseStack, eventually, free_port

from synapse_phenom.ops import hsconfig
from synapse_phenom.rooms.config import RoomsConfig

pytestmark = pytest.mark.synapse


def room_rule(client: MatrixClient, room_id: str) -> dict[str, Any] | None:
    resp = client.request("GET", f"/_matrix/client/v3/pushrules/global/room/{quote(room_id)}")
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return dict(resp.json())


def notifications(client: MatrixClient) -> list[dict[str, Any]]:
    return list(client.call("GET", "/_matrix/client/v3/notifications")["notifications"])


def test_community_member_gets_mentions_only_rule_at_auto_join(synapse: SynapseStack) -> None:
    client = synapse.register()
    community = synapse.rooms["community"]
    eventually(lambda: community in client.joined_rooms())
    rule = eventually(lambda: room_rule(client, community))
    assert rule["actions"] == ["dont_notify"]
    assert rule["enabled"] is True
    assert rule["rule_id"] == community


def test_mention_notifies_plain_message_does_not(synapse: SynapseStack) -> None:
    reader, sender = synapse.register(), synapse.register()
    community = synapse.rooms["community"]
    for member in (reader, sender):
        eventually(partial(room_rule, member, community))
    plain = sender.send(community, "plain message for everyone")
    mention = sender.send(
        community,
        f"hello {reader.localpart}",
        **{"m.mentions": {"user_ids": [reader.user_id]}},
    )
    notified = eventually(
        lambda: [n for n in notifications(reader) if n["event"]["event_id"] == mention]
    )
    assert any(a == "notify" for a in notified[0]["actions"])
    assert all(n["event"]["event_id"] != plain for n in notifications(reader))
    # The counts a mobile app shows: the mention counts (and highlights); the plain one not.
    sync = reader.sync()
    counts = sync["rooms"]["join"][community]["unread_notifications"]
    assert counts == {"notification_count": 1, "highlight_count": 1}


def test_member_choice_is_kept_and_other_rooms_untouched(synapse: SynapseStack) -> None:
    client = synapse.register()
    community = synapse.rooms["community"]
    eventually(lambda: room_rule(client, community))
    # The member switches Community back to "all messages": never re-applied.
    resp = client.request("DELETE", f"/_matrix/client/v3/pushrules/global/room/{quote(community)}")
    resp.raise_for_status()
    with synapse.admin() as admin:
        admin.provision(client.user_id, ["team"])  # reconciles: joins internal + partners
    synapse.login(client.localpart, client.password)  # reconcile at login
    assert room_rule(client, community) is None
    for key in ("internal", "partners"):  # notifications: default
        assert synapse.rooms[key] in client.joined_rooms()
        assert room_rule(client, synapse.rooms[key]) is None


def test_members_from_before_the_setting_get_it_at_startup(tmp_path: Path) -> None:
    """Community members who joined while its ``notifications`` was ``default`` (or before an
    upgrade) get the rule from the push-rules writer's sweep after a restart; a member who
    set their own rule in the meantime keeps it."""
    rooms = {
        "rooms": {
            key: {**spec.model_dump(), "notifications": "default"}
            for key, spec in RoomsConfig().rooms.items()
        }
    }
    database, port = hsconfig.DevDatabase(), free_port()  # same port: the clients stay valid
    first = SynapseStack.start(
        tmp_path / "hs", database, module_overrides={hsconfig.ROOMS_MODULE: rooms}, port=port
    )
    try:
        old, chooser = first.register(), first.register()
        community = first.rooms["community"]
        assert room_rule(old, community) is None
        chooser.call(
            "PUT",
            f"/_matrix/client/v3/pushrules/global/room/{quote(community)}",
            json={"actions": []},
        )
    finally:
        first.stop()
    second = SynapseStack.start(tmp_path / "hs", database, port=port)
    try:
        rule = eventually(lambda: room_rule(old, community), timeout=60)
        assert rule["actions"] == ["dont_notify"]
        own = room_rule(chooser, community)
        assert own is not None and own["actions"] == []  # their own, kept
    finally:
        second.stop()
