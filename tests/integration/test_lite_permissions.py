"""Who may read which room in Implementation B, with real rows, for every role.

The SQL rule (chat.room_readers / user_can_*_room) is checked directly, and the Hasura
metadata's own permission filters are compiled and run against the same rows.
"""

from __future__ import annotations

from typing import Any

import attrs
import hasura_metadata as hm
import psycopg
import pytest
from harness import unique
from psycopg import sql

from synapse_phenom.lite import provision
from synapse_phenom.rooms.config import RoomsConfig

CONFIG = RoomsConfig()
MESSAGES = ("chat", "messages")
ROOMS = ("chat", "rooms")
KEYS = ("internal", "partners", "community")


@attrs.frozen
class World:
    rooms: dict[str, str]  # key -> room id
    users: dict[str, str]  # name -> user id
    messages: dict[str, str]  # room key -> id of a message there
    word: str  # a word every message contains (for search)


def person(conn: psycopg.Connection[Any], name: str, groups: tuple[str, ...]) -> str:
    user_id = unique(f"{name}-")
    provision.provision_user(conn, CONFIG, provision.LiteUser(user_id, name, groups=groups))
    return user_id


def post(conn: psycopg.Connection[Any], room_id: str, sender: str, body: str) -> str:
    row = conn.execute(
        "INSERT INTO chat.messages (room_id, sender_id, body) VALUES (%s, %s, %s)"
        " RETURNING id::text",
        (room_id, sender, body),
    ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture(scope="module")
def world(lite_dsn: str) -> World:
    with psycopg.connect(lite_dsn, autocommit=True) as conn:
        rooms = provision.ensure_rooms(conn, CONFIG)
        users = {
            "team": person(conn, "ann", ("team",)),
            "partner": person(conn, "pat", ("partners",)),
            "nogroup": person(conn, "cid", ()),
            "disabled": person(conn, "dan", ("team",)),
            "moderator": person(conn, "mo", ("team",)),
        }
        conn.execute("UPDATE chat.users SET disabled = true WHERE id = %s", (users["disabled"],))
        conn.execute(
            "UPDATE chat.memberships SET role = 'moderator' WHERE user_id = %s AND room_id = %s",
            (users["moderator"], rooms["community"]),
        )
        users["agent"] = unique("client-")
        provision.provision_agent(conn, CONFIG, users["agent"], unique("agent-c"), ["community"])
        users["agent_internal"] = unique("client-")
        provision.provision_agent(
            conn, CONFIG, users["agent_internal"], unique("agent-i"), ["internal"]
        )
        word = unique("zebra")
        messages = {key: post(conn, rooms[key], users["team"], f"{word} in {key}") for key in KEYS}
        messages["community_by_nogroup"] = post(
            conn, rooms["community"], users["nogroup"], f"{word} hello"
        )
        conn.execute(
            "INSERT INTO chat.reactions (room_id, message_id, user_id, emoji)"
            " VALUES (%s, %s, %s, '👍')",
            (rooms["internal"], messages["internal"], users["team"]),
        )
        conn.execute(
            "UPDATE chat.messages SET body = %s WHERE id = %s",
            (f"{word} edited", messages["internal"]),
        )
        return World(rooms, users, messages, word)


def readable(conn: psycopg.Connection[Any], world: World, user: str) -> set[str]:
    return {
        key
        for key in KEYS
        if conn.execute(
            "SELECT chat.user_can_read_room(%s, %s)", (world.users[user], world.rooms[key])
        ).fetchone()
        == (True,)
    }


EXPECTED_READ = {
    "team": {"internal", "partners", "community"},
    "partner": {"partners", "community"},
    "nogroup": {"community"},
    "disabled": set(),
    "moderator": {"internal", "partners", "community"},
    "agent": {"community"},
    "agent_internal": {"internal"},
}


def test_sql_rule_reads_and_posts(lite_conn: psycopg.Connection[Any], world: World) -> None:
    for user, expected in EXPECTED_READ.items():
        assert readable(lite_conn, world, user) == expected, user
        for key in KEYS:
            args = (world.users[user], world.rooms[key])
            can_post = lite_conn.execute("SELECT chat.user_can_post_room(%s, %s)", args).fetchone()
            assert can_post == ((key in expected),), (user, key)
    moderates = {
        (user, key)
        for user in EXPECTED_READ
        for key in KEYS
        if lite_conn.execute(
            "SELECT chat.user_can_moderate_room(%s, %s)", (world.users[user], world.rooms[key])
        ).fetchone()
        == (True,)
    }
    assert moderates == {("moderator", "community")}


def room_keys_of_messages(world: World, ids: set[Any]) -> set[str]:
    by_id = {v: k for k, v in world.messages.items()}
    return {by_id[str(i)].removesuffix("_by_nogroup") for i in ids if str(i) in by_id}


@pytest.mark.parametrize("user", sorted(EXPECTED_READ))
def test_hasura_user_role_sees_exactly_the_readable_rooms(
    lite_conn: psycopg.Connection[Any], world: World, user: str
) -> None:
    uid = world.users[user]
    expected = EXPECTED_READ[user]  # agents are rows too: as role "user" they read their rooms
    rooms = hm.visible(lite_conn, ROOMS, "user", uid, "key")
    assert rooms & set(KEYS) == expected
    assert room_keys_of_messages(world, hm.visible(lite_conn, MESSAGES, "user", uid)) == expected
    search = sql.SQL("chat.search_messages({})").format(sql.Literal(world.word))
    found = hm.visible(lite_conn, MESSAGES, "user", uid, source=search)
    assert room_keys_of_messages(world, found) == expected
    # Only this world's rows: other tests share the database and edit or react elsewhere.
    edits = hm.visible(lite_conn, ("chat", "message_edits"), "user", uid, "message_id")
    assert bool(room_keys_of_messages(world, edits)) == ("internal" in expected)
    reactions = hm.visible(lite_conn, ("chat", "reactions"), "user", uid, "message_id")
    assert bool(room_keys_of_messages(world, reactions)) == ("internal" in expected)
    member_rooms = hm.visible(lite_conn, ("chat", "memberships"), "user", uid, "room_id")
    assert {k for k in KEYS if world.rooms[k] in {str(r) for r in member_rooms}} == expected


def test_user_without_team_cannot_read_internal_by_any_path(
    lite_conn: psycopg.Connection[Any], world: World
) -> None:
    uid = world.users["nogroup"]
    internal = world.messages["internal"]
    for role in ("user", "moderator", "agent"):
        assert internal not in {str(i) for i in hm.visible(lite_conn, MESSAGES, role, uid)}, role
        assert "internal" not in hm.visible(lite_conn, ROOMS, role, uid, "key"), role


def test_moderator_role_is_limited_to_moderated_rooms(
    lite_conn: psycopg.Connection[Any], world: World
) -> None:
    mod, team = world.users["moderator"], world.users["team"]
    assert room_keys_of_messages(world, hm.visible(lite_conn, MESSAGES, "moderator", mod)) == {
        "community"
    }
    # Claiming the moderator role grants nothing to someone who moderates no room.
    assert hm.visible(lite_conn, MESSAGES, "moderator", team) == set()
    # Soft delete: moderators anyone's message in their rooms; users only their own.
    deletable_by_mod = {
        str(i) for i in hm.visible(lite_conn, MESSAGES, "moderator", mod, kind="update")
    }
    assert world.messages["community_by_nogroup"] in deletable_by_mod
    assert world.messages["internal"] not in deletable_by_mod
    own = {
        str(i)
        for i in hm.visible(lite_conn, MESSAGES, "user", world.users["nogroup"], kind="update")
    }
    assert own == {world.messages["community_by_nogroup"]}
    assert world.messages["community"] not in own
    lite_conn.execute(
        "INSERT INTO chat.moderation_audit"
        " (ts, room_id, user_id, policy, rule, action, event_type, detail)"
        " VALUES (1, %s, 'x', 'p', 'r', 'block', 'm.room.message', ''),"
        " (2, %s, 'x', 'p', 'r', 'block', 'm.room.message', '')",
        (world.rooms["community"], world.rooms["internal"]),
    )
    audit_rooms = hm.visible(lite_conn, ("chat", "moderation_audit"), "moderator", mod, "room_id")
    assert {str(r) for r in audit_rooms} == {world.rooms["community"]}


def test_agent_role_needs_an_agent_row(lite_conn: psycopg.Connection[Any], world: World) -> None:
    assert room_keys_of_messages(
        world, hm.visible(lite_conn, MESSAGES, "agent", world.users["agent"])
    ) == {"community"}
    assert room_keys_of_messages(
        world, hm.visible(lite_conn, MESSAGES, "agent", world.users["agent_internal"])
    ) == {"internal"}
    assert hm.visible(lite_conn, MESSAGES, "agent", world.users["team"]) == set()


def test_losing_a_group_or_a_ban_closes_the_room(
    lite_conn: psycopg.Connection[Any], world: World
) -> None:
    uid = person(lite_conn, "eve", ("partners",))
    assert "partners" in hm.visible(lite_conn, ROOMS, "user", uid, "key")
    result = provision.provision_user(lite_conn, CONFIG, provision.LiteUser(uid, "eve", groups=()))
    assert result.removed == ("partners",)
    assert set(hm.visible(lite_conn, ROOMS, "user", uid, "key")) & set(KEYS) == {"community"}
    lite_conn.execute(
        "UPDATE chat.memberships SET membership = 'ban' WHERE user_id = %s AND room_id = %s",
        (uid, world.rooms["community"]),
    )
    again = provision.provision_user(
        lite_conn, CONFIG, provision.LiteUser(uid, "eve", groups=("team",))
    )
    assert "community" not in again.joined  # a ban outranks groups, as in A
    assert set(hm.visible(lite_conn, ROOMS, "user", uid, "key")) & set(KEYS) == {
        "internal",
        "partners",
    }
