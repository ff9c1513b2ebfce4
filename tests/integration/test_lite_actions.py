"""The sendMessage Action webhook, run as `phenom-chat lite serve-actions` and called with
exactly the payload Hasura POSTs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx2
import psycopg
import pytest
import yaml
from harness import eventually, free_port, unique
from previews_site import PhenomSite

from synapse_phenom.lite import provision
from synapse_phenom.moderation.config import ModerationConfig, default_module_config
from synapse_phenom.moderation.rules import CompiledPolicy
from synapse_phenom.rooms.config import RoomsConfig

SECRET = "test-action-secret"
CONFIG = RoomsConfig()


@attrs.frozen
class Webhook:
    url: str
    rooms: dict[str, str]

    def call(
        self,
        user_id: str,
        input: dict[str, Any],
        role: str = "user",
        secret: str | None = SECRET,
        action: str = "sendMessage",
    ) -> httpx2.Response:
        payload = {
            "action": {"name": action},
            "input": input,
            "session_variables": {"x-hasura-role": role, "x-hasura-user-id": user_id},
            "request_query": "mutation ($room: uuid!, $body: String!) "
            "{ sendMessage(room_id: $room, body: $body) { message_id } }",
        }
        headers = {"X-Phenom-Action-Secret": secret} if secret is not None else {}
        return httpx2.post(self.url, json=payload, headers=headers, timeout=30)

    def send(self, user_id: str, room: str, body: str, **extra: Any) -> httpx2.Response:
        return self.call(user_id, {"room_id": self.rooms[room], "body": body, **extra})


@pytest.fixture(scope="module")
def webhook(
    lite_dsn: str, phenom_site: PhenomSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    previews = tmp_path_factory.mktemp("actions") / "previews.yaml"
    previews.write_text(yaml.safe_dump({"origins": [{"url": phenom_site.origin, "trusted": True}]}))
    port = free_port()
    env = {**os.environ, "PHENOM_ACTION_SECRET": SECRET}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "phenom-chat"),
            "lite",
            "serve-actions",
            "--dsn",
            lite_dsn,
            "--port",
            str(port),
            "--previews-config",
            str(previews),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            return httpx2.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx2.HTTPError:
            return False

    eventually(up, timeout=60, interval=0.2)
    with psycopg.connect(lite_dsn, autocommit=True) as conn:
        rooms = provision.ensure_rooms(conn, CONFIG)
    yield Webhook(f"{base}/hasura/actions", rooms)
    proc.terminate()
    proc.wait(timeout=20)


def person(conn: psycopg.Connection[Any], name: str, groups: tuple[str, ...] = ()) -> str:
    user_id = unique(f"{name}-")
    provision.provision_user(conn, CONFIG, provision.LiteUser(user_id, name, groups=groups))
    return user_id


def count(conn: psycopg.Connection[Any], sender: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM chat.messages WHERE sender_id = %s", (sender,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def a_text(room_key: str, body: str) -> str:
    """What Implementation A answers for this message: the moderation core's own text."""
    config = ModerationConfig.model_validate(default_module_config())
    violation = CompiledPolicy(room_key, config.policies[room_key]).check(
        "m.room.message", {"msgtype": "m.text", "body": body}
    )
    assert violation is not None
    return violation.message


def test_refuses_calls_without_hasura_secret(
    webhook: Webhook, lite_conn: psycopg.Connection[Any]
) -> None:
    cid = person(lite_conn, "cid")
    for secret in (None, "wrong", ""):
        resp = webhook.call(
            cid, {"room_id": webhook.rooms["community"], "body": "hi"}, secret=secret
        )
        assert resp.status_code == 401 and resp.json()["extensions"]["code"] == "unauthorized"
    assert count(lite_conn, cid) == 0


def test_sends_and_wakes_listeners(
    webhook: Webhook, lite_dsn: str, lite_conn: psycopg.Connection[Any]
) -> None:
    cid = person(lite_conn, "cid")
    with psycopg.connect(lite_dsn, autocommit=True) as listener:
        listener.execute("LISTEN chat_message")
        resp = webhook.send(cid, "community", "hello from B")
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert set(out) == {"message_id", "room_id", "seq", "created_at", "duplicate"}
        assert out["room_id"] == webhook.rooms["community"] and out["duplicate"] is False
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert notes and f'"seq" : {out["seq"]}' in notes[0].payload
    row = lite_conn.execute(
        "SELECT body, sender_id, room_id::text FROM chat.messages WHERE id = %s",
        (out["message_id"],),
    ).fetchone()
    assert row == ("hello from B", cid, webhook.rooms["community"])


def test_user_without_team_cannot_post_in_internal(
    webhook: Webhook, lite_conn: psycopg.Connection[Any]
) -> None:
    cid = person(lite_conn, "cid")
    resp = webhook.send(cid, "internal", "let me in")
    assert resp.status_code == 403
    assert resp.json()["message"] == "You cannot post in this room: you are not a member of it."
    unknown = webhook.call(cid, {"room_id": "00000000-0000-4000-8000-000000000000", "body": "x"})
    assert unknown.status_code == 403 and unknown.json()["message"] == resp.json()["message"]
    as_agent = webhook.call(
        cid, {"room_id": webhook.rooms["community"], "body": "hi"}, role="agent"
    )
    assert as_agent.status_code == 403 and "agent" in as_agent.json()["message"]
    assert count(lite_conn, cid) == 0


def test_disallowed_link_refused_with_as_text(
    webhook: Webhook, lite_conn: psycopg.Connection[Any]
) -> None:
    cid, ann = person(lite_conn, "cid"), person(lite_conn, "ann", ("team",))
    body = "great deal at https://evil.example/offer"
    resp = webhook.send(cid, "community", body)
    assert resp.status_code == 403
    assert resp.json()["message"] == a_text("community", body)
    assert resp.json()["message"].startswith("Your message was not sent:")
    assert resp.json()["extensions"]["code"] == "moderation"
    assert count(lite_conn, cid) == 0
    audit = lite_conn.execute(
        "SELECT policy, action, room_id::text FROM chat.moderation_audit WHERE user_id = %s", (cid,)
    ).fetchall()
    assert audit == [("community", "block", webhook.rooms["community"])]
    # Staff (group team) are exempt, as in A.
    assert webhook.send(ann, "community", body).status_code == 200


def test_idempotency_key_sends_once(webhook: Webhook, lite_conn: psycopg.Connection[Any]) -> None:
    cid = person(lite_conn, "cid")
    first = webhook.send(cid, "community", "once", idempotency_key="k-1")
    second = webhook.send(cid, "community", "once", idempotency_key="k-1")
    assert first.status_code == second.status_code == 200
    assert (
        second.json()["message_id"] == first.json()["message_id"]
        and second.json()["duplicate"] is True
    )
    assert count(lite_conn, cid) == 1


def test_bad_input_is_a_400_naming_the_field(
    webhook: Webhook, lite_conn: psycopg.Connection[Any]
) -> None:
    cid = person(lite_conn, "cid")
    blank = webhook.send(cid, "community", "   ")
    assert blank.status_code == 400 and "sendMessage.body" in blank.json()["message"]
    not_uuid = webhook.call(cid, {"room_id": "internal", "body": "x"})
    assert not_uuid.status_code == 400 and "sendMessage.room_id" in not_uuid.json()["message"]
    other_room = webhook.send(person(lite_conn, "ann", ("team",)), "internal", "x").json()[
        "message_id"
    ]
    reply = webhook.send(cid, "community", "re", reply_to_id=other_room)
    assert reply.status_code == 400 and "reply_to_id" in reply.json()["message"]
    unknown = webhook.call(cid, {}, action="dropTables")
    assert unknown.status_code == 400 and unknown.json()["extensions"]["code"] == "unknown_action"
    garbage = httpx2.post(
        webhook.url, content=b"{", headers={"X-Phenom-Action-Secret": SECRET}, timeout=10
    )
    assert garbage.status_code == 400
    assert count(lite_conn, cid) == 0


def test_flood_counted_in_postgresql(webhook: Webhook, lite_conn: psycopg.Connection[Any]) -> None:
    cid = person(lite_conn, "cid")
    codes = [webhook.send(cid, "community", f"message {i}").status_code for i in range(12)]
    assert codes[:10] == [200] * 10 and 429 in codes[10:]
    refused = webhook.send(cid, "community", "one more")
    assert refused.status_code == 429
    body = refused.json()
    assert "you are sending messages too fast (at most 10 per 10 s here)" in body["message"]
    assert body["extensions"]["retry_after_ms"] > 0
    flood = lite_conn.execute(
        "SELECT sum(count) FROM chat.moderation_flood WHERE user_id = %s", (cid,)
    ).fetchone()
    assert flood == (10,)  # refused messages are not counted


def test_repeated_violations_mute(webhook: Webhook, lite_conn: psycopg.Connection[Any]) -> None:
    cid = person(lite_conn, "cid")
    for _ in range(5):
        assert webhook.send(cid, "community", "this is a badword").status_code == 403
    muted = webhook.send(cid, "community", "a perfectly nice message")
    assert muted.status_code == 403
    assert muted.json()["message"].startswith("You are muted in this room for another")
    assert lite_conn.execute(
        "SELECT count(*) FROM chat.moderation_mutes WHERE user_id = %s", (cid,)
    ).fetchone() == (1,)


def test_preview_cards_filled_in_then_inline_from_cache(
    webhook: Webhook, lite_conn: psycopg.Connection[Any], phenom_site: PhenomSite
) -> None:
    ann = person(lite_conn, "ann", ("team",))
    link = f"{phenom_site.origin}/p/full?t={unique()}"
    first = webhook.send(ann, "internal", f"look {link}")
    assert first.status_code == 200, first.text

    def filled() -> Any:
        row = lite_conn.execute(
            "SELECT previews, previews_pending FROM chat.messages WHERE id = %s",
            (first.json()["message_id"],),
        ).fetchone()
        return row if row and not row[1] else None

    previews, _ = eventually(filled, timeout=20)
    assert previews == [
        {
            "url": link,
            "title": "Northern Lights over Tromsø",
            "description": previews[0]["description"],
            "image": f"{phenom_site.origin}/img/aurora.png",
            "site_name": "Phenom",
        }
    ]
    started = time.monotonic()
    second = webhook.send(ann, "internal", f"again {link}")
    row = lite_conn.execute(
        "SELECT previews->0->>'title', previews_pending FROM chat.messages WHERE id = %s",
        (second.json()["message_id"],),
    ).fetchone()
    assert row == ("Northern Lights over Tromsø", False)  # inline: the card was cached
    assert time.monotonic() - started < 10


def test_edit_is_moderated_and_keeps_history(
    webhook: Webhook, lite_conn: psycopg.Connection[Any]
) -> None:
    cid, other = person(lite_conn, "cid"), person(lite_conn, "pat", ("partners",))
    sent = webhook.send(cid, "community", "first version").json()["message_id"]
    ok = webhook.call(cid, {"message_id": sent, "body": "second version"}, action="editMessage")
    assert ok.status_code == 200, ok.text
    assert set(ok.json()) == {"message_id", "edited_at"}
    row = lite_conn.execute(
        "SELECT m.body, array_agg(e.body ORDER BY e.id) FROM chat.messages m"
        " JOIN chat.message_edits e ON e.message_id = m.id WHERE m.id = %s GROUP BY m.body",
        (sent,),
    ).fetchone()
    assert row == ("second version", ["first version"])
    body = "now with a badword"
    refused = webhook.call(cid, {"message_id": sent, "body": body}, action="editMessage")
    assert refused.status_code == 403 and refused.json()["message"] == a_text("community", body)
    not_mine = webhook.call(other, {"message_id": sent, "body": "hijack"}, action="editMessage")
    assert (
        not_mine.status_code == 403
        and not_mine.json()["message"] == "You can only edit your own messages."
    )
    body_now = lite_conn.execute("SELECT body FROM chat.messages WHERE id = %s", (sent,)).fetchone()
    assert body_now == ("second version",)


def test_add_reaction_is_moderated_and_idempotent(
    webhook: Webhook, lite_conn: psycopg.Connection[Any]
) -> None:
    dee, outsider = person(lite_conn, "dee"), person(lite_conn, "out")
    internal_msg = webhook.send(person(lite_conn, "tia", ("team",)), "internal", "team only")
    assert internal_msg.status_code == 200, internal_msg.text
    target = webhook.send(dee, "community", "react to me").json()["message_id"]

    def react(user: str, message_id: str, emoji: str) -> httpx2.Response:
        return webhook.call(user, {"message_id": message_id, "emoji": emoji}, action="addReaction")

    first = react(outsider, target, "👍")
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False and first.json()["emoji"] == "👍"
    again = react(outsider, target, "👍")
    assert again.json() == {**first.json(), "duplicate": True}
    # The key is read like message text: A's rule and text.
    refused = react(outsider, target, "badword")
    assert refused.status_code == 403, refused.text
    assert refused.json()["message"] == a_text("community", "badword")
    # One answer for a missing message and one the caller cannot read.
    hidden = react(outsider, internal_msg.json()["message_id"], "👍")
    missing = react(outsider, "00000000-0000-0000-0000-000000000000", "👍")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert react(outsider, target, " ").status_code == 400
    rows = lite_conn.execute(
        "SELECT emoji FROM chat.reactions WHERE user_id = %s", (outsider,)
    ).fetchall()
    assert rows == [("👍",)]
    # Reactions count towards the flood limit, as A counts m.reaction events.
    statuses = [react(dee, target, f"r{i}").status_code for i in range(12)]
    assert 429 in statuses, statuses
