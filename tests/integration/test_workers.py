"""The Phenom modules with Synapse workers: main, an event persister and a generic worker.

PostgreSQL and Redis only (workers need both). Every client call of interest goes to the
WORKER's client port, so the rooms, moderation and link-preview callbacks run there; the
event persister (``stream_writers: {events: [persister1]}``) writes every event, whichever
process created it, and main runs the background tasks (room creation, follow-up previews).
Synapse's Redis channel is the server name: a unique one keeps concurrent runs apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import attrs
import httpx2
import psycopg2
import pytest
from fixtures_previews import previews_module_config
from harness import (
    MatrixClient,
    SynapseStack,
    create_postgres_database,
    drop_postgres_database,
    eventually,
    free_port,
    require_postgres_dsn,
    require_redis,
    unique,
)
from previews_site import SLOW_SECONDS, PhenomSite

from synapse_phenom.endpoints import PREVIEW_PATH
from synapse_phenom.moderation.config import POLICY_EVENT_TYPE
from synapse_phenom.ops import devstack, hsconfig, topology
from synapse_phenom.ops.admin_client import SynapseAdmin
from synapse_phenom.rooms import membership
from synapse_phenom.rooms.config import RoomsConfig

pytestmark = pytest.mark.synapse

WORKER = "worker1"
PERSISTER = "persister1"


@attrs.define
class Cluster:
    main: SynapseStack
    worker: devstack.ManagedProcess
    worker_url: str
    dsn: str
    persister: devstack.ManagedProcess

    def on_worker(self, client: MatrixClient) -> MatrixClient:
        """The same user (same access token) talking to the worker."""
        return MatrixClient(self.worker_url, client.user_id, client.access_token, client.password)

    def login_on_worker(self, localpart: str, password: str) -> MatrixClient:
        return self.main.login(localpart, password, base_url=self.worker_url)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        db = self.main.database
        conn = psycopg2.connect(
            host=db.host, port=db.port, dbname=db.name, user=db.user, password=db.password or None
        )
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def cluster(phenom_site: PhenomSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    dsn = require_postgres_dsn("Synapse workers need PostgreSQL")
    require_redis("Synapse workers replicate through Redis")
    database = create_postgres_database(dsn)
    data_dir = tmp_path_factory.mktemp("synapse-workers")
    procs: list[devstack.ManagedProcess] = []
    try:
        workers = topology.parse(topology.local_spec({PERSISTER: "events"}, free_port), 0)
        port, server_name = free_port(), f"{unique('w')}.localhost"
        config_path = devstack.prepare_synapse(
            data_dir,
            port=port,
            database=database,
            server_name=server_name,
            # The shared Synapse's previews config (the local Phenom site) with inline cards
            # (check_event_allowed on the worker; misses still get follow-ups); no ban list:
            # its alias is on another server name.
            module_overrides={
                hsconfig.LINK_PREVIEW_MODULE: {
                    **previews_module_config(phenom_site),
                    "inline": True,
                }
            },
            extra_values={
                "replication": topology.replication_values(workers, "127.0.0.1", free_port())
            },
        )
        procs.append(devstack.start_synapse(config_path))
        main = SynapseStack(
            data_dir=data_dir,
            base_url=f"http://127.0.0.1:{port}",
            server_name=server_name,
            engine=database.engine,
            config_path=config_path,
            process=procs[0],
            database=database,
        )
        # Main prepares the database schema before it listens: only then may workers start.
        # Main's first room creation waits for the persister (Synapse retries replication
        # requests while the target is not up yet).
        devstack.wait_http(f"{main.base_url}/_matrix/client/versions", procs, timeout=120)
        ((persister_path, _),) = topology.prepare_local(data_dir, workers, free_port).values()
        procs.append(devstack.start_worker(config_path, persister_path))
        worker_port = free_port()
        procs.append(
            devstack.start_worker(
                config_path, devstack.prepare_worker(data_dir, WORKER, worker_port)
            )
        )
        worker_url = f"http://127.0.0.1:{worker_port}"
        devstack.wait_http(f"{worker_url}/_matrix/client/versions", procs, timeout=60)
        main.wait_ready()
        yield Cluster(main, procs[2], worker_url, dsn, procs[1])
    finally:
        for proc in reversed(procs):
            proc.stop()
        drop_postgres_database(dsn, database.name)


def text(body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body}


def test_worker_does_not_run_background_tasks_and_rooms_exist_once(cluster: Cluster) -> None:
    system_user = cluster.main.user_id(RoomsConfig().system_user)
    created = cluster.sql("SELECT room_id FROM rooms WHERE creator = %s", system_user)
    assert sorted(r[0] for r in created) == sorted(cluster.main.rooms.values())
    claims = cluster.sql("SELECT alias, owner FROM phenom_room_claims")
    assert len(claims) == 3 and all(owner.startswith("main:") for _, owner in claims)
    # The worker answers for the rooms by alias (it reads what main created).
    alias = cluster.main.alias("internal")
    resp = httpx2.get(
        f"{cluster.worker_url}/_matrix/client/v3/directory/room/{alias.replace('#', '%23')}"
    )
    assert resp.status_code == 200 and resp.json()["room_id"] == cluster.main.rooms["internal"]


def test_provisioned_user_is_in_the_right_rooms_through_the_worker(cluster: Cluster) -> None:
    main, rooms = cluster.main, cluster.main.rooms
    localpart, password = unique("team"), unique("pw")
    with main.admin() as admin:  # admin API on main
        admin.provision(main.user_id(localpart), ["team"], password=password)
    client = cluster.login_on_worker(localpart, password)  # on_user_login runs on the worker
    assert client.joined_rooms() == set(rooms.values())
    joined = client.sync()["rooms"]["join"]
    assert set(rooms.values()) <= set(joined)

    # Groups written through the worker's groups endpoint: reconciled on the worker.
    with SynapseAdmin(cluster.worker_url, main.admin_token) as admin:
        result = admin.set_groups(client.user_id, ["partners"], "test")
    assert result["removed"] == [main.alias("internal")]
    eventually(lambda: client.joined_rooms() == {rooms["partners"], rooms["community"]}, timeout=5)


def test_non_team_join_of_internal_is_refused_on_the_worker(cluster: Cluster) -> None:
    main = cluster.main
    client = cluster.on_worker(main.register())
    for target in (main.alias("internal"), main.rooms["internal"]):
        resp = client.try_join(target)
        assert resp.status_code == 403, resp.text
        body = resp.json()
        assert body["errcode"] == "M_FORBIDDEN"
        assert body["error"] == membership.denial_message(
            RoomsConfig(), "internal", main.server_name
        )
    assert main.rooms["internal"] not in client.joined_rooms()
    client.join(main.alias("community"))  # open to everyone: allowed


def test_live_policy_and_flood_counts_are_shared_between_processes(cluster: Cluster) -> None:
    main = cluster.main
    owner = cluster.on_worker(main.register())
    room = owner.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "public_chat"})[
        "room_id"
    ]
    policy = {
        "keywords": [{"name": "test words", "keywords": ["forbiddenword"]}],
        "flood": {"messages": 4, "per_seconds": 120},
    }
    assert owner.send_state(room, POLICY_EVENT_TYPE, policy).status_code == 200
    member_main = main.register()
    member = cluster.on_worker(member_main)
    member.join(room)

    def refused(client: MatrixClient, body: str, rule: str, errcode: str = "M_FORBIDDEN") -> bool:
        resp = client.send_raw(room, text(body))
        if resp.status_code == 200:
            return False
        assert resp.status_code in (403, 429), resp.text
        assert resp.json()["errcode"] == errcode, resp.text
        assert resp.json()["app.phenom.moderation.rule"].startswith(rule), resp.text
        return True

    # The live policy applies on the worker, and on main within cache_seconds (2 s).
    eventually(lambda: refused(member, "a forbiddenword here", "keywords"), timeout=5, interval=0.5)
    eventually(
        lambda: refused(member_main, "a forbiddenword there", "keywords"), timeout=5, interval=0.5
    )

    # Flood control: one counter, whichever process the messages go through.
    flooder_main = main.register()
    flooder = cluster.on_worker(flooder_main)
    flooder.join(room)
    via = [flooder, flooder_main]
    for i in range(4):
        resp = via[i % 2].send_raw(room, text(f"message {i}"))
        assert resp.status_code == 200, (i, resp.text)
    assert refused(flooder, "one too many (worker)", "flood", "M_LIMIT_EXCEEDED")
    assert refused(flooder_main, "one too many (main)", "flood", "M_LIMIT_EXCEEDED")
    # The refusals were audited once, in the shared table.
    rows = cluster.sql(
        "SELECT count(*) FROM phenom_moderation_audit WHERE user_id = %s AND rule = 'flood'",
        flooder.user_id,
    )
    assert rows[0][0] == 2


def test_mute_from_violations_on_the_worker_holds_on_main(cluster: Cluster) -> None:
    main = cluster.main
    owner = cluster.on_worker(main.register())
    room = owner.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "public_chat"})[
        "room_id"
    ]
    policy = {
        "keywords": [{"name": "test words", "keywords": ["forbiddenword"]}],
        "escalation": {"violations": 2, "window_seconds": 60, "mute_seconds": 60},
    }
    assert owner.send_state(room, POLICY_EVENT_TYPE, policy).status_code == 200
    user_main = main.register()
    user = cluster.on_worker(user_main)
    user.join(room)
    assert (
        user_main.send_raw(room, text("hello from main")).status_code == 200
    )  # main caches the room now
    for _ in range(2):
        resp = user.send_raw(room, text("forbiddenword"))
        assert resp.status_code == 403 and resp.json()["app.phenom.moderation.rule"].startswith(
            "keywords"
        ), resp.text

    def muted_on_main() -> bool:
        resp = user_main.send_raw(room, text("a clean message"))
        if resp.status_code == 200:
            return False
        assert resp.json()["app.phenom.moderation.rule"] == "mute", resp.text
        return True

    # Main may have seen the user unmuted moments ago: within cache_seconds (2 s) it knows.
    eventually(muted_on_main, timeout=5, interval=0.5)


def test_cached_link_card_is_added_inline_on_the_worker(
    cluster: Cluster, phenom_site: PhenomSite
) -> None:
    main = cluster.main
    alice_main = main.register()
    alice, bob = cluster.on_worker(alice_main), cluster.on_worker(main.register())
    room = alice.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        json={"preset": "private_chat", "invite": [bob.user_id]},
    )["room_id"]
    bob.join(room)
    link = f"{phenom_site.origin}/p/full?t={unique('')}"
    # Cached by main (the composer's preview endpoint); the worker reads the shared table.
    resp = alice_main.request("GET", PREVIEW_PATH, params={"url": link})
    assert resp.status_code == 200, resp.text
    event_id = alice.send(room, f"look at {link}")

    def synced() -> dict[str, Any] | None:
        timeline = bob.sync()["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
        return next((e for e in timeline if e["event_id"] == event_id), None)

    event = eventually(synced, timeout=10)
    (entry,) = event["content"]["com.beeper.linkpreviews"]
    assert entry["matched_url"] == link
    assert entry["og:title"] == "Northern Lights over Tromsø"
    assert entry["og:image"] == resp.json()["card"]["image"]["mxc"]
    assert event["content"]["m.url_previews"] == [entry]


def test_composer_card_signed_on_main_is_verified_on_the_worker(
    cluster: Cluster, phenom_site: PhenomSite
) -> None:
    """Every process derives the same card-signing key (from macaroon_secret_key)."""
    main = cluster.main
    alice_main = main.register()
    alice = cluster.on_worker(alice_main)
    room = alice.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "private_chat"})[
        "room_id"
    ]
    link = f"{phenom_site.origin}/p/full?t={unique('')}"
    preview = alice_main.call("GET", PREVIEW_PATH, params={"url": link})["preview"]
    content = {"msgtype": "m.text", "body": f"look {link}", "m.url_previews": [preview]}
    resp = alice.send_raw(room, content)
    assert resp.status_code == 200, resp.text
    content["m.url_previews"] = [{**preview, "og:title": "Made up"}]
    resp = alice.send_raw(room, content)
    assert resp.status_code == 403, resp.text
    assert resp.json()["app.phenom.moderation.rule"] == "preview_card"


def test_inline_card_text_is_not_the_senders_in_a_community_like_room(
    cluster: Cluster, phenom_site: PhenomSite
) -> None:
    """Inline path: the page's description names youtube.com and a blocked word; the card
    the server put into the message is not judged as the user's text, nor audited."""
    main = cluster.main
    owner = cluster.on_worker(main.register())
    room = owner.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "public_chat"})[
        "room_id"
    ]
    policy = {
        "keywords": [{"name": "blocked words", "keywords": ["scam*", "free crypto"]}],
        "links": {"mode": "allow", "domains": ["thephenom.app", "127.0.0.1"]},
        "escalation": {"violations": 1, "window_seconds": 600, "mute_seconds": 300},
    }
    assert owner.send_state(room, POLICY_EVENT_TYPE, policy).status_code == 200
    alice_main = main.register()
    alice = cluster.on_worker(alice_main)
    alice.join(room)
    link = f"{phenom_site.origin}/p/trailer?t={unique('')}"
    alice_main.call("GET", PREVIEW_PATH, params={"url": link})  # cached: the card goes inline
    event_id = alice.send(room, f"Trailer: {link}")
    (entry,) = owner.event(room, event_id)["content"]["m.url_previews"]
    assert "youtube.com" in entry["og:description"] and "free crypto" in entry["og:description"]
    assert alice.send(room, "still not muted")
    rows = cluster.sql(
        "SELECT count(*) FROM phenom_moderation_audit WHERE user_id = %s", alice.user_id
    )
    assert rows[0][0] == 0


def test_preview_endpoint_on_the_worker_rehosts_into_the_shared_media_store(
    cluster: Cluster, phenom_site: PhenomSite
) -> None:
    main = cluster.main
    alice = main.register()
    link = f"{phenom_site.origin}/p/full?t={unique('')}"
    resp = cluster.on_worker(alice).request("GET", PREVIEW_PATH, params={"url": link})
    assert resp.status_code == 200, resp.text
    mxc = resp.json()["card"]["image"]["mxc"]
    assert mxc.startswith(f"mxc://{main.server_name}/")
    media = alice.request("GET", f"/_matrix/client/v1/media/download/{mxc[6:]}")  # served by main
    assert media.status_code == 200 and media.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_uncached_link_gets_exactly_one_follow_up_from_main(
    cluster: Cluster, phenom_site: PhenomSite
) -> None:
    """The process that handled the send resolves its links and sends the card exactly once."""
    main = cluster.main
    alice = cluster.on_worker(main.register())
    room = alice.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "private_chat"})[
        "room_id"
    ]
    link = f"{phenom_site.origin}/p/slow?t={unique('')}"
    event_id = alice.send(room, f"see {link}")
    assert "com.beeper.linkpreviews" not in alice.event(room, event_id)["content"]

    def follow_ups() -> list[dict[str, Any]]:
        return [
            e
            for e in alice.messages(room, limit=30)
            if e["type"] == "app.phenom.link_preview"
            and e["content"].get("m.relates_to", {}).get("event_id") == event_id
        ]

    eventually(follow_ups, timeout=SLOW_SECONDS + 5)
    time.sleep(0.5)  # a second (wrong) resolver would have sent by now as well
    (follow_up,) = follow_ups()
    assert follow_up["sender"] == alice.user_id
    assert follow_up["content"]["m.url_previews"][0]["og:title"] == "Slow page"


def test_every_event_is_persisted_by_the_event_persister(cluster: Cluster) -> None:
    """Main persists nothing; a moderation refusal and the group gate hold as before."""
    main = cluster.main
    owner_main = main.register()
    owner = cluster.on_worker(owner_main)
    room = owner.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "public_chat"})[
        "room_id"
    ]
    via_worker, via_main = owner.send(room, "via the worker"), owner_main.send(room, "via main")
    rows = cluster.sql(
        "SELECT event_id, instance_name FROM events WHERE event_id IN (%s, %s)",
        via_worker,
        via_main,
    )
    assert dict(rows) == {via_worker: PERSISTER, via_main: PERSISTER}
    # Including the rooms main's rooms module created at startup, and every membership.
    assert cluster.sql("SELECT DISTINCT instance_name FROM events") == [(PERSISTER,)]

    # Moderation: refused on both processes, nothing persisted for the refused message
    # (the owner, power level 100, is exempt: a plain member sends).
    policy = {"keywords": [{"name": "test words", "keywords": ["forbiddenword"]}]}
    assert owner.send_state(room, POLICY_EVENT_TYPE, policy).status_code == 200
    member_main = main.register()
    member = cluster.on_worker(member_main)
    member.join(room)

    def refused(client: MatrixClient, body: str) -> bool:
        resp = client.send_raw(room, text(body))
        if resp.status_code == 200:
            return False
        assert resp.status_code == 403, resp.text
        assert resp.json()["app.phenom.moderation.rule"].startswith("keywords"), resp.text
        return True

    # Each process sees the live policy within cache_seconds (2 s) ...
    eventually(lambda: refused(member, "a forbiddenword"), timeout=5, interval=0.5)
    eventually(lambda: refused(member_main, "a forbiddenword"), timeout=5, interval=0.5)
    # ... then refuses at once, and the room has no trace of the refused text (the
    # moderators' notice in #internal quotes it: that is another room).
    body = f"a forbiddenword {unique('')}"
    assert refused(member, body) and refused(member_main, body)
    found = cluster.sql(
        "SELECT count(*) FROM event_json WHERE room_id = %s AND json LIKE %s", room, f"%{body}%"
    )
    assert found == [(0,)]

    # Group gate: #internal refuses a user without `team` on both processes ...
    outsider = main.register()
    for client in (outsider, cluster.on_worker(outsider)):
        resp = client.try_join(main.alias("internal"))
        assert resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN", resp.text
    # ... and group sync joins a `team` user, the join written by the persister.
    localpart, password = unique("team"), unique("pw")
    with main.admin() as admin:
        admin.provision(main.user_id(localpart), ["team"], password=password)
    teammate = cluster.login_on_worker(localpart, password)
    assert main.rooms["internal"] in teammate.joined_rooms()
    joins = cluster.sql(
        "SELECT e.instance_name FROM events e JOIN room_memberships m USING (event_id) "
        "WHERE e.room_id = %s AND m.user_id = %s AND m.membership = 'join'",
        main.rooms["internal"],
        teammate.user_id,
    )
    assert joins == [(PERSISTER,)]
