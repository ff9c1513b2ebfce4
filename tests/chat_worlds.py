"""The people's side of a chat backend, for tests that must hold on both backends.

The MCP contract tests check what agents did the way a person would see it: a message as
stored (sender, text, HTML, reply), a reaction, a deletion, who is in which room. ``SynapseWorld``
answers through the Matrix client API (Implementation A); ``LiteWorld`` through the ``chat``
tables of Implementation B. People's messages are rows inserted as the send Action inserts them
once its checks passed (the Action itself is tested in test_lite_actions.py; here a burst of
messages must not meet the flood limit).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import psycopg
from harness import MatrixClient, SynapseStack, eventually

from synapse_phenom.rooms.config import RoomsConfig


@attrs.frozen
class Stored:
    """A message as the backend keeps it."""

    sender: str
    body: str | None  # None: deleted
    formatted_body: str | None
    reply_to: str | None


class Person(Protocol):
    @property
    def user_id(self) -> str: ...

    def send(self, room_key: str, body: str) -> str: ...


class ChatWorld(Protocol):
    @property
    def rooms(self) -> Mapping[str, str]:  # room key -> room id as the tools show it
        ...

    def register(self, displayname: str) -> Person: ...

    def stored(self, room_key: str, event_id: str) -> Stored: ...

    def reaction(self, room_key: str, event_id: str) -> tuple[str, str, str]: ...

    def bodies(self, room_key: str, limit: int = 50) -> list[str]: ...

    def sees(self, person: Person, room_key: str, event_id: str) -> bool: ...

    def is_member(self, user_id: str, room_key: str) -> bool: ...


# -- Implementation A --------------------------------------------------------------------------


@attrs.frozen
class MatrixPerson:
    client: MatrixClient
    rooms: Mapping[str, str]

    @property
    def user_id(self) -> str:
        return self.client.user_id

    def send(self, room_key: str, body: str) -> str:
        return self.client.send(self.rooms[room_key], body)


@attrs.define
class SynapseWorld:
    synapse: SynapseStack
    _watcher: MatrixClient | None = None

    @property
    def rooms(self) -> Mapping[str, str]:
        return self.synapse.rooms

    def _reader(self) -> MatrixClient:
        if self._watcher is None:  # a Community member, to read what agents did there
            watcher = self.synapse.register(displayname="Watcher")
            eventually(lambda: self.rooms["community"] in watcher.joined_rooms())
            self._watcher = watcher
        return self._watcher

    def register(self, displayname: str) -> MatrixPerson:
        user = self.synapse.register(displayname=displayname)
        eventually(lambda: self.rooms["community"] in user.joined_rooms())
        return MatrixPerson(user, self.rooms)

    def stored(self, room_key: str, event_id: str) -> Stored:
        event = self._reader().event(self.rooms[room_key], event_id)
        content = event.get("content") or {}
        reply = ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get("event_id")
        return Stored(
            sender=event["sender"],
            body=content.get("body"),
            formatted_body=content.get("formatted_body")
            if content.get("format") == "org.matrix.custom.html"
            else None,
            reply_to=reply,
        )

    def reaction(self, room_key: str, event_id: str) -> tuple[str, str, str]:
        event = self._reader().event(self.rooms[room_key], event_id)
        relates = event["content"]["m.relates_to"]
        assert relates["rel_type"] == "m.annotation"
        return event["sender"], relates["event_id"], relates["key"]

    def bodies(self, room_key: str, limit: int = 50) -> list[str]:
        events = self._reader().messages(self.rooms[room_key], limit=limit)
        return [e["content"].get("body") for e in events]

    def sees(self, person: Person, room_key: str, event_id: str) -> bool:
        assert isinstance(person, MatrixPerson)
        return person.client.event(self.rooms[room_key], event_id)["event_id"] == event_id

    def is_member(self, user_id: str, room_key: str) -> bool:
        admin = self.synapse.admin()
        members = admin._http.get(
            f"/_synapse/admin/v1/rooms/{self.rooms[room_key]}/members",
            headers={"Authorization": f"Bearer {admin.token}"},
        ).json()["members"]
        return user_id in members


# -- Implementation B --------------------------------------------------------------------------


def _uuid(ref: str) -> uuid.UUID:
    return uuid.UUID(ref[1:])


@attrs.frozen
class LitePerson:
    world: LiteWorld
    id: str
    user_id: str

    def send(self, room_key: str, body: str) -> str:
        return self.world.post(self.id, room_key, body)


@attrs.define
class LiteWorld:
    dsn: str
    room_uuids: Mapping[str, str]
    server_name: str = "localhost"

    @property
    def rooms(self) -> Mapping[str, str]:
        return {key: f"!{room}" for key, room in self.room_uuids.items()}

    def _q(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def register(self, displayname: str, groups: tuple[str, ...] = ()) -> LitePerson:
        from synapse_phenom.lite.provision import LiteUser, provision_user

        sub = str(uuid.uuid4())
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            result = provision_user(
                conn, RoomsConfig(), LiteUser(sub, None, displayname, None, groups)
            )
        return LitePerson(self, sub, f"@{result.username}:{self.server_name}")

    def post(self, user: str, room_key: str, body: str) -> str:
        rows = self._q(
            "INSERT INTO chat.messages (room_id, sender_id, body)"
            " SELECT %s, %s, %s WHERE chat.user_can_post_room(%s, %s) RETURNING id",
            self.room_uuids[room_key],
            user,
            body,
            user,
            self.room_uuids[room_key],
        )
        assert rows, f"{user} may not post in {room_key}"
        return f"${rows[0][0]}"

    def stored(self, room_key: str, event_id: str) -> Stored:
        (row,) = self._q(
            "SELECT u.username, m.body, m.formatted_body, m.reply_to_id, m.deleted_at IS NOT NULL"
            " FROM chat.messages m JOIN chat.users u ON u.id = m.sender_id"
            " WHERE m.id = %s AND m.room_id = %s",
            _uuid(event_id),
            self.room_uuids[room_key],
        )
        username, body, html, reply, deleted = row
        return Stored(
            sender=f"@{username}:{self.server_name}",
            body=None if deleted else body,
            formatted_body=None if deleted else html,
            reply_to=f"${reply}" if reply else None,
        )

    def reaction(self, room_key: str, event_id: str) -> tuple[str, str, str]:
        (row,) = self._q(
            "SELECT u.username, r.message_id, r.emoji"
            " FROM chat.reactions r JOIN chat.users u ON u.id = r.user_id"
            " WHERE r.id = %s AND r.room_id = %s",
            _uuid(event_id),
            self.room_uuids[room_key],
        )
        return f"@{row[0]}:{self.server_name}", f"${row[1]}", row[2]

    def bodies(self, room_key: str, limit: int = 50) -> list[str]:
        rows = self._q(
            "SELECT body FROM chat.messages WHERE room_id = %s AND deleted_at IS NULL"
            " ORDER BY seq DESC LIMIT %s",
            self.room_uuids[room_key],
            limit,
        )
        return [r[0] for r in rows]

    def sees(self, person: Person, room_key: str, event_id: str) -> bool:
        assert isinstance(person, LitePerson)
        rows = self._q(
            "SELECT 1 FROM chat.messages m"
            " WHERE m.id = %s AND chat.user_can_read_room(%s, m.room_id)",
            _uuid(event_id),
            person.id,
        )
        return bool(rows)

    def is_member(self, user_id: str, room_key: str) -> bool:
        username = user_id[1:].rsplit(":", 1)[0]
        rows = self._q(
            "SELECT 1 FROM chat.room_readers r JOIN chat.users u ON u.id = r.user_id"
            " WHERE u.username = %s AND r.room_id = %s",
            username,
            self.room_uuids[room_key],
        )
        return bool(rows)
