"""A room upgrade does not open the managed room: the group gate follows the upgrade chain.

Own Synapse (the upgrade moves #internal, which the shared one's other tests rely on).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from harness import (
    MatrixClient,
    SynapseStack,
    create_postgres_database,
    drop_postgres_database,
    eventually,
    postgres_dsn,
)

from synapse_phenom.ops import hsconfig

pytestmark = pytest.mark.synapse


def _own_database(engine_db: hsconfig.DevDatabase, data_dir: Path) -> hsconfig.DevDatabase:
    if engine_db.engine == "sqlite":
        return hsconfig.DevDatabase(path=str(data_dir / "own.db"))
    dsn = postgres_dsn()
    assert dsn
    return create_postgres_database(dsn)


def _as_system_user(stack: SynapseStack) -> MatrixClient:
    with stack.admin() as admin:
        resp = admin._http.post(
            f"/_synapse/admin/v1/users/{quote('@phenom:localhost')}/login",
            json={},
            headers={"Authorization": f"Bearer {stack.admin_token}"},
        )
    resp.raise_for_status()
    return MatrixClient(stack.base_url, "@phenom:localhost", resp.json()["access_token"])


def _membership(stack: SynapseStack, room_id: str, user_id: str) -> str | None:
    with stack.admin() as admin:
        resp = admin._http.get(
            f"/_synapse/admin/v1/rooms/{quote(room_id)}/state",
            headers={"Authorization": f"Bearer {stack.admin_token}"},
        )
    for event in resp.json()["state"]:
        if event["type"] == "m.room.member" and event["state_key"] == user_id:
            return str(event["content"]["membership"])
    return None


def test_moderators_cannot_open_the_room_and_upgrades_keep_the_gate(
    synapse_database: hsconfig.DevDatabase, tmp_path: Path
) -> None:
    database = _own_database(synapse_database, tmp_path)
    stack = SynapseStack.start(tmp_path / "hs", database)
    try:
        member = stack.register()
        outsider = stack.register()
        with stack.admin() as admin:
            admin.provision(member.user_id, ["team"])
        old = stack.rooms["internal"]
        assert old in member.joined_rooms()

        system = _as_system_user(stack)
        # A moderator: after an upgrade Synapse lets only power level 50+ invite in the old
        # room, so that is who could open it.
        levels = system.state(old, "m.room.power_levels").json()
        levels.setdefault("users", {})[member.user_id] = 50
        system.call(
            "PUT", f"/_matrix/client/v3/rooms/{quote(old)}/state/m.room.power_levels/", json=levels
        )
        # A moderator may not open the room: state_default (50) would let them change the
        # join rule, and a federated join never reaches the group gate.
        for event_type, content in (
            ("m.room.join_rules", {"join_rule": "public"}),
            ("m.room.guest_access", {"guest_access": "can_join"}),
            ("m.room.history_visibility", {"history_visibility": "world_readable"}),
        ):
            resp = member.send_state(old, event_type, content)
            assert resp.status_code == 403, (event_type, resp.text)
        assert member.state(old, "m.room.join_rules").json()["join_rule"] == "invite"
        version = system.state(old, "m.room.create").json().get("room_version", "10")
        new = system.call(
            "POST", f"/_matrix/client/v3/rooms/{quote(old)}/upgrade", json={"new_version": version}
        )["replacement_room"]
        # The process that saw the upgrade: the new room is gated at once (alias cache
        # or not), and so is the old one.
        for room in (new, old):
            resp = member.invite(room, outsider.user_id)
            assert resp.status_code == 403, (room, resp.text)

        # A process started after the upgrade knows #internal only as the new room: the
        # old one (all the history; the member is still in it) must stay gated.
        stack.restart()
        assert stack.rooms["internal"] == new
        resp = member.invite(old, outsider.user_id)
        assert resp.status_code == 403, resp.text
        assert "team" in resp.json()["error"]
        assert outsider.try_join(old).status_code == 403

        # Group loss removes the member from every version of the room.
        with stack.admin() as admin:
            admin.provision(member.user_id, [])
        eventually(lambda: _membership(stack, old, member.user_id) == "leave")
        assert old not in member.joined_rooms()
    finally:
        stack.stop()
        if database.engine == "postgres":
            dsn = postgres_dsn()
            assert dsn
            drop_postgres_database(dsn, database.name)


def test_a_hijacked_alias_does_not_move_the_managed_room(
    synapse_database: hsconfig.DevDatabase, tmp_path: Path
) -> None:
    # Synapse lets whoever may change a room's canonical alias (moderators: 50) delete its
    # local aliases, and anyone may then create #internal for their own room. That room
    # must not become Internal (group sync would join the team into it) and the real
    # Internal must stay gated, also in a process started afterwards.
    database = _own_database(synapse_database, tmp_path)
    stack = SynapseStack.start(tmp_path / "hs", database)
    try:
        mallory = stack.register()
        outsider = stack.register()
        with stack.admin() as admin:
            admin.provision(mallory.user_id, ["team"])
        internal = stack.rooms["internal"]
        system = _as_system_user(stack)
        levels = system.state(internal, "m.room.power_levels").json()
        levels.setdefault("users", {})[mallory.user_id] = 50
        system.call(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(internal)}/state/m.room.power_levels/",
            json=levels,
        )
        alias_path = f"/_matrix/client/v3/directory/room/{quote(stack.alias('internal'))}"
        deleted = mallory.request("DELETE", alias_path)
        assert deleted.status_code == 200, deleted.text  # Synapse allows it: the precondition
        hers = mallory.call(
            "POST", "/_matrix/client/v3/createRoom", json={"preset": "private_chat", "name": "x"}
        )["room_id"]
        taken = mallory.request("PUT", alias_path, json={"room_id": hers})
        assert taken.status_code == 200, taken.text

        stack.restart()
        assert stack.rooms["internal"] == hers  # the alias now points to her room
        resp = mallory.invite(internal, outsider.user_id)
        assert resp.status_code == 403, resp.text
        newcomer = stack.register()
        with stack.admin() as admin:
            admin.provision(newcomer.user_id, ["team"])
        joined = newcomer.joined_rooms()
        assert internal in joined and hers not in joined
    finally:
        stack.stop()
        if database.engine == "postgres":
            dsn = postgres_dsn()
            assert dsn
            drop_postgres_database(dsn, database.name)
