"""The three Phenom rooms and group-based membership, through a real Synapse."""

from __future__ import annotations

from urllib.parse import quote

import httpx2
import pytest
from harness import SynapseStack, eventually, unique

from synapse_phenom.ops.admin_client import MatrixError

pytestmark = pytest.mark.synapse


def test_rooms_exist_with_configured_settings(synapse: SynapseStack) -> None:
    client = synapse.register()
    community = synapse.rooms["community"]
    assert client.state(community, "m.room.name").json() == {"name": "Community"}
    assert client.state(community, "m.room.join_rules").json()["join_rule"] == "public"
    # Unencrypted by default: moderation, previews and agents read content.
    assert client.state(community, "m.room.encryption").status_code == 404
    creator = client.state(community, "m.room.create").json()
    assert creator.get("creator", "@phenom:localhost") == "@phenom:localhost"


def test_published_rooms_are_in_the_room_directory(synapse: SynapseStack) -> None:
    # docs/rooms.md: `published: true` lists the room in the directory. Synapse's default
    # room_list_publication_rules deny publishing at creation; the module lists it itself.
    client = synapse.register()

    def listed() -> set[str]:
        return {r["room_id"] for r in client.call("GET", "/_matrix/client/v3/publicRooms")["chunk"]}

    eventually(lambda: synapse.rooms["community"] in listed())
    assert synapse.rooms["internal"] not in listed()
    assert synapse.rooms["partners"] not in listed()
    visibility = client.call(
        "GET", f"/_matrix/client/v3/directory/list/room/{synapse.rooms['community']}"
    )
    assert visibility == {"visibility": "public"}


def test_registered_user_is_in_community_only(synapse: SynapseStack) -> None:
    client = synapse.register()
    rooms = eventually(client.joined_rooms)
    assert rooms == {synapse.rooms["community"]}


def test_provision_team_then_remove(synapse: SynapseStack) -> None:
    client = synapse.register()
    with synapse.admin() as admin:
        result = admin.provision(client.user_id, ["team"])
        assert set(result.joined) == {synapse.alias("internal"), synapse.alias("partners")}
        assert client.joined_rooms() == set(synapse.rooms.values())

        result = admin.provision(client.user_id, ["partners"])
        assert result.removed == [synapse.alias("internal")]
        assert client.joined_rooms() == {synapse.rooms["partners"], synapse.rooms["community"]}
        # The removal is a kick by the system user with a reason naming the group.
        kick = client.state(synapse.rooms["internal"], "m.room.member", client.user_id)
        if kick.status_code == 403:  # history hidden after leaving: ask as the admin
            kick = admin._http.get(
                f"/_synapse/admin/v1/rooms/{synapse.rooms['internal']}/state",
                headers={"Authorization": f"Bearer {synapse.admin_token}"},
            )
            events = [
                e
                for e in kick.json()["state"]
                if e["type"] == "m.room.member" and e["state_key"] == client.user_id
            ]
            content, sender = events[0]["content"], events[0]["sender"]
        else:
            content, sender = kick.json(), None
        assert content["membership"] == "leave"
        assert content["reason"] == "You are no longer in the group 'team'."
        if sender is not None:
            assert sender == "@phenom:localhost"

        result = admin.provision(client.user_id, [])
        assert result.removed == [synapse.alias("partners")]
        assert client.joined_rooms() == {synapse.rooms["community"]}


def test_provision_is_idempotent(synapse: SynapseStack) -> None:
    user_id = synapse.user_id(unique())
    with synapse.admin() as admin:
        first = admin.provision(user_id, ["team"], displayname="Tess")
        second = admin.provision(user_id, ["team"], displayname="Tess")
    assert first.created and not second.created
    assert second.joined == [] and second.removed == []


def test_non_member_cannot_join_restricted_rooms_by_alias_or_id(synapse: SynapseStack) -> None:
    client = synapse.register()
    for target in (synapse.alias("internal"), synapse.rooms["internal"]):
        resp = client.try_join(target)
        assert resp.status_code == 403
        body = resp.json()
        assert body["errcode"] == "M_FORBIDDEN"
        assert "only for members of the group 'team'" in body["error"]
    resp = client.try_join(synapse.alias("partners"))
    assert resp.status_code == 403
    assert "'partners' or 'team'" in resp.json()["error"]
    # A partner may join Partners but still not Internal.
    with synapse.admin() as admin:
        admin.set_groups(client.user_id, ["partners"], "test")
    assert synapse.rooms["partners"] in client.joined_rooms()
    assert client.try_join(synapse.alias("internal")).status_code == 403


def test_team_member_cannot_invite_outsider(synapse: SynapseStack) -> None:
    member = synapse.register()
    outsider = synapse.register()
    with synapse.admin() as admin:
        admin.provision(member.user_id, ["team"])
    resp = member.invite(synapse.rooms["internal"], outsider.user_id)
    assert resp.status_code == 403
    body = resp.json()
    assert body["errcode"] == "M_FORBIDDEN"
    assert "team" in body["error"] and outsider.user_id in body["error"]


def test_server_admin_may_join_restricted_room_when_invited(synapse: SynapseStack) -> None:
    admin_user = synapse.register(admin=True)
    member = synapse.register()
    with synapse.admin() as admin:
        admin.provision(member.user_id, ["team"])
    assert member.invite(synapse.rooms["internal"], admin_user.user_id).status_code == 200
    admin_user.join(synapse.rooms["internal"])


def test_groups_endpoint_rejects_bad_input_and_non_admins(synapse: SynapseStack) -> None:
    client = synapse.register()
    resp = client.request(
        "POST",
        "/_synapse/client/phenom/v1/groups",
        json={"user_id": client.user_id, "groups": ["team"]},
    )
    assert resp.status_code == 403
    with synapse.admin() as admin:
        with pytest.raises(MatrixError) as err:
            admin.set_groups(client.user_id, ["not a group"], "test")
        assert err.value.errcode == "M_INVALID_PARAM"
        with pytest.raises(MatrixError) as err:
            admin.set_groups(synapse.user_id(unique("ghost")), ["team"], "test")
        assert err.value.status == 404
        # A bad group name is refused before the user is created: nothing half-done.
        ghost = synapse.user_id(unique("ghost"))
        with pytest.raises(ValueError):
            admin.provision(ghost, ["bad group"])
        assert admin.get_user(ghost) is None
        assert admin.get_groups(client.user_id) == []


def test_reconcile_at_login(synapse: SynapseStack) -> None:
    """Groups changed behind the user's back take effect at their next login."""
    client = synapse.register()
    with synapse.admin() as admin:
        admin.provision(client.user_id, ["team"])
    # Remove the user from #internal by hand (as if a moderator kicked them by mistake).
    client.leave(synapse.rooms["internal"])
    assert synapse.rooms["internal"] not in client.joined_rooms()
    synapse.login(client.localpart, client.password)
    assert eventually(lambda: synapse.rooms["internal"] in client.joined_rooms())


def test_callback_errors_metric_is_exported(synapse: SynapseStack) -> None:
    # The counter exists (0 when nothing failed) so operators can alert on it.
    text = synapse.admin()._http.get("/_synapse/metrics").text
    assert "phenom_module_callback_errors_total" in text or "phenom_module_callback_errors" in text


def test_no_federation_by_default(synapse: SynapseStack) -> None:
    """App users only: no federation API is served (the template's default), and the managed
    rooms are created local-only (m.federate: false), should federation be turned on later."""
    for path in ("/_matrix/federation/v1/version", "/_matrix/key/v2/server"):
        assert httpx2.get(synapse.base_url + path, timeout=10).status_code == 404, path
    admin = synapse.register(admin=True)
    for key in ("internal", "partners", "community"):
        room = synapse.rooms[key]
        create = admin.call("GET", f"/_synapse/admin/v1/rooms/{room}/state")["state"]
        content = next(e["content"] for e in create if e["type"] == "m.room.create")
        assert content.get("m.federate") is False, (key, content)


def test_the_system_user_is_never_rate_limited(synapse: SynapseStack) -> None:
    """It invites and kicks in bursts for group sync. The exemption is Synapse's own per-user
    override (what the admin API ``override_ratelimit`` reads and writes; 0 = no limit),
    which every limiter consults from a cache, not a module rate-limit callback that every
    user's every limiter check would dispatch to."""
    admin = synapse.register(admin=True)
    room = synapse.rooms["community"]
    state = admin.call("GET", f"/_synapse/admin/v1/rooms/{room}/state")["state"]
    system = next(e["sender"] for e in state if e["type"] == "m.room.create")
    path = f"/_synapse/admin/v1/users/{quote(system)}/override_ratelimit"
    assert admin.call("GET", path) == {"messages_per_second": 0, "burst_count": 0}


def test_synapse_dispatches_one_phenom_event_check_per_event(synapse: SynapseStack) -> None:
    """Synapse wraps each registered check_event_for_spam in a Measure block per event; the
    modules share one registration (docs/benchmarks.md), so Synapse's block metrics show
    exactly one Phenom block for it, and no rate-limit callback block at all."""
    user = synapse.register()
    user.send(synapse.rooms["community"], "hello")
    text = synapse.admin()._http.get("/_synapse/metrics").text
    blocks = {
        line.split('block_name="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("synapse_util_metrics_block_count") and "synapse_phenom" in line
    }
    spam_checks = {b for b in blocks if b.endswith("check_event_for_spam")}
    assert spam_checks == {"synapse_phenom.modules._event_checks.EventChecks.check_event_for_spam"}
    assert not any("ratelimit" in b for b in blocks), blocks
