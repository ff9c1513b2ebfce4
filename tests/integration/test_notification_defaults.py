"""A room's default notification level (rooms config ``notifications: mentions_only``),
through a real Synapse: the Community room's members get a room-level ``dont_notify``
push rule at join; mentions still notify, plain messages do not."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

import pytest
from harness import MatrixClient, SynapseStack, eventually

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
