"""Link previews through the real Synapse, against a local Phenom-like site.

Every test uses its own room and unique links (``?t=``), so cache state never leaks
between tests; ``phenom_site`` counts requests to prove SSRF attempts fetched nothing.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from fixtures_previews import PREVIEW_BUDGET_MS
from harness import MatrixClient, SynapseStack, eventually, unique
from previews_site import SLOW_SECONDS, PhenomSite

pytestmark = pytest.mark.synapse

PREVIEW_PATH = "/_synapse/client/phenom/preview"
# The send may take the budget plus Synapse's own work; anything near a fetch time is a bug.
SEND_LIMIT_S = PREVIEW_BUDGET_MS / 1000 + 0.45


def _room(synapse: SynapseStack, encrypted: bool = False) -> tuple[MatrixClient, MatrixClient, str]:
    alice, bob = synapse.register(), synapse.register()
    body: dict[str, Any] = {"preset": "private_chat", "invite": [bob.user_id]}
    if encrypted:
        body["initial_state"] = [
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ]
    room_id = alice.call("POST", "/_matrix/client/v3/createRoom", json=body)["room_id"]
    bob.join(room_id)
    return alice, bob, room_id


def _link(site: PhenomSite, page: str) -> str:
    return f"{site.origin}/p/{page}?t={unique('')}"


def _timed_send(client: MatrixClient, room_id: str, content: dict[str, Any]) -> tuple[str, float]:
    start = time.monotonic()
    resp = client.send_raw(room_id, content)
    elapsed = time.monotonic() - start
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"], elapsed


def _edit(original: str, text: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": f"* {text}",
        "m.new_content": {"msgtype": "m.text", "body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }


def _preview(client: MatrixClient, url: str) -> httpx2.Response:
    return client.request("GET", PREVIEW_PATH, params={"url": url})


def _synced_event(client: MatrixClient, room_id: str, event_id: str) -> dict[str, Any]:
    """The event as another user's /sync delivers it."""

    def find() -> dict[str, Any] | None:
        sync = client.sync()
        timeline = sync["rooms"]["join"].get(room_id, {}).get("timeline", {}).get("events", [])
        return next((e for e in timeline if e["event_id"] == event_id), None)

    return eventually(find, timeout=10)


def _follow_ups(client: MatrixClient, room_id: str, event_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in client.messages(room_id, limit=30)
        if e["type"] == "app.phenom.link_preview"
        and e["content"].get("m.relates_to", {}).get("event_id") == event_id
    ]


def test_cached_link_arrives_inline_in_another_users_sync(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    alice, bob, room_id = _room(synapse)
    link = _link(phenom_site, "full")
    # The composer endpoint resolves and caches the card (and re-hosts its image).
    resp = _preview(alice, link)
    assert resp.status_code == 200, resp.text
    card = resp.json()["card"]
    assert card["title"] == "Northern Lights over Tromsø"
    assert card["image"]["mxc"].startswith("mxc://localhost/")

    body = f"Tonight's sky ({link}) — join us!"
    event_id, elapsed = _timed_send(alice, room_id, {"msgtype": "m.text", "body": body})
    assert elapsed < SEND_LIMIT_S

    content = _synced_event(bob, room_id, event_id)["content"]
    assert content["body"] == body
    previews = content["com.beeper.linkpreviews"]
    assert previews == content["m.url_previews"]
    (entry,) = previews
    assert entry["matched_url"] == link and link in body
    assert entry["og:title"] == "Northern Lights over Tromsø"
    assert entry["og:url"] == "https://thephenom.app/p/aurora"
    assert entry["og:image"] == card["image"]["mxc"]
    assert entry["og:image:width"] == 64 and entry["og:image:type"] == "image/png"
    assert entry["app.phenom.card"]["facts"][0] == {"label": "Author", "value": "Ada Lovelace"}
    assert entry["app.phenom.card"]["theme_color"] == "#1e90ff"
    assert not _follow_ups(bob, room_id, event_id)

    # The re-hosted image is real media anyone signed in can download.
    media = bob.request("GET", f"/_matrix/client/v1/media/download/{entry['og:image'][6:]}")
    assert media.status_code == 200 and media.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_image_is_rehosted_once(synapse: SynapseStack, phenom_site: PhenomSite) -> None:
    alice = synapse.register()
    first = _preview(alice, _link(phenom_site, "full")).json()["card"]["image"]["mxc"]
    second = _preview(alice, _link(phenom_site, "full")).json()["card"]["image"]["mxc"]
    assert first == second


def test_uncached_slow_link_gets_follow_up_card_without_holding_the_send(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    alice, bob, room_id = _room(synapse)
    link = _link(phenom_site, "slow")
    event_id, elapsed = _timed_send(alice, room_id, {"msgtype": "m.text", "body": f"see {link}"})
    assert elapsed < SEND_LIMIT_S  # the page takes SLOW_SECONDS; the sender does not wait for it
    assert "com.beeper.linkpreviews" not in bob.event(room_id, event_id)["content"]

    start = time.monotonic()
    (follow_up,) = eventually(lambda: _follow_ups(bob, room_id, event_id), timeout=SLOW_SECONDS + 5)
    assert time.monotonic() - start < SLOW_SECONDS + 5
    assert follow_up["sender"] == alice.user_id
    relation = follow_up["content"]["m.relates_to"]
    assert relation == {"rel_type": "m.reference", "event_id": event_id}
    (entry,) = follow_up["content"]["com.beeper.linkpreviews"]
    assert entry["matched_url"] == link and entry["og:title"] == "Slow page"
    assert follow_up["content"]["m.url_previews"] == [entry]
    # What docs/link-previews.md tells the mobile app to use for older messages.
    related = bob.call(
        "GET",
        f"/_matrix/client/v1/rooms/{quote(room_id)}/relations/{quote(event_id)}/m.reference/app.phenom.link_preview",
    )
    assert [e["event_id"] for e in related["chunk"]] == [follow_up["event_id"]]

    # Now cached: the next message with the link carries the card inline.
    again, _ = _timed_send(alice, room_id, {"msgtype": "m.text", "body": f"again {link}"})
    assert (
        bob.event(room_id, again)["content"]["com.beeper.linkpreviews"][0]["og:title"]
        == "Slow page"
    )


def test_edit_follow_up_references_the_original(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    alice, bob, room_id = _room(synapse)
    original = alice.send(room_id, "draft")
    link = _link(phenom_site, "slow")
    edit, elapsed = _timed_send(
        alice,
        room_id,
        _edit(original, f"read {link}"),
    )
    assert elapsed < SEND_LIMIT_S
    # Clients display the original with the edit applied: the card is attached to it.
    (follow_up,) = eventually(lambda: _follow_ups(bob, room_id, original), timeout=SLOW_SECONDS + 5)
    assert follow_up["content"]["m.url_previews"][0]["matched_url"] == link
    assert not _follow_ups(bob, room_id, edit)


def test_ssrf_attempts_fetch_nothing(synapse: SynapseStack, phenom_site: PhenomSite) -> None:
    alice, bob, room_id = _room(synapse)
    links = {
        "metadata": _link(phenom_site, "redirect-metadata"),
        "loopback": _link(phenom_site, "redirect-loopback"),
        "direct": f"{phenom_site.untrusted_origin}/internal/secret?t={unique('')}",
    }
    sent = []
    for link in links.values():
        event_id, elapsed = _timed_send(alice, room_id, {"msgtype": "m.text", "body": link})
        assert elapsed < SEND_LIMIT_S
        sent.append(event_id)
    # Each attempt ends as a cached failure naming the policy that refused it.
    reasons = {}
    for name, link in links.items():
        resp = _preview(alice, link)
        assert resp.status_code == 404, resp.text
        reasons[name] = resp.json()["error"]
    assert "169.254.169.254 is not a configured Phenom origin" in reasons["metadata"]
    assert "non-public address" in reasons["loopback"]
    assert "non-public address" in reasons["direct"]
    assert "/internal/secret" not in phenom_site.hit_paths()
    for event_id in sent:
        assert not _follow_ups(bob, room_id, event_id)
        assert "com.beeper.linkpreviews" not in bob.event(room_id, event_id)["content"]


def test_sender_opt_out_edits_and_encrypted_rooms(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    alice, bob, room_id = _room(synapse)
    link = _link(phenom_site, "full")
    assert _preview(alice, link).status_code == 200  # cached

    # Explicit [] = no preview, respected as sent.
    opt_out, _ = _timed_send(
        alice, room_id, {"msgtype": "m.text", "body": link, "com.beeper.linkpreviews": []}
    )
    assert bob.event(room_id, opt_out)["content"]["com.beeper.linkpreviews"] == []
    assert "m.url_previews" not in bob.event(room_id, opt_out)["content"]

    # An edit that adds the link gets the card in m.new_content.
    original = alice.send(room_id, "typo")
    edit, _ = _timed_send(
        alice,
        room_id,
        _edit(original, f"fixed {link}"),
    )
    new_content = bob.event(room_id, edit)["content"]["m.new_content"]
    assert new_content["com.beeper.linkpreviews"][0]["matched_url"] == link
    assert new_content["m.url_previews"] == new_content["com.beeper.linkpreviews"]

    # Encrypted room: plaintext content (a misbehaving client) is left exactly as sent.
    alice2, bob2, enc_room = _room(synapse, encrypted=True)
    plain, _ = _timed_send(alice2, enc_room, {"msgtype": "m.text", "body": link})
    assert bob2.event(enc_room, plain)["content"] == {"msgtype": "m.text", "body": link}
    time.sleep(0.5)
    assert not _follow_ups(bob2, enc_room, plain)
    assert not _follow_ups(bob, room_id, opt_out)


@pytest.mark.parametrize(
    ("page", "status", "expected"),
    [
        (
            "oembed",
            200,
            {"title": "Meteor shower timelapse", "kind": "video", "site_name": "Phenom"},
        ),
        (
            "jsonld",
            200,
            {"title": "Comet visible tonight", "site_name": "Phenom News", "kind": "article"},
        ),
        ("plain-page", 200, {"title": "Plain page", "kind": "website"}),
        ("broken", 200, {"title": "Broken but readable"}),
        ("huge", 404, {"error": "exceeds the 1000000-byte limit"}),
        ("binary", 404, {"error": "content type 'application/octet-stream'"}),
        ("redirect-ok", 200, {"title": "Northern Lights over Tromsø"}),
    ],
)
def test_preview_endpoint_pages(
    synapse: SynapseStack, phenom_site: PhenomSite, page: str, status: int, expected: dict[str, str]
) -> None:
    client = synapse.register()
    start = time.monotonic()
    resp = _preview(client, _link(phenom_site, page))
    assert time.monotonic() - start < 5
    assert resp.status_code == status, resp.text
    body = resp.json()
    for key, value in expected.items():
        if key == "error":
            assert value in body["error"]
        else:
            assert body["card"][key] == value
    if status == 200:
        assert body["preview"]["og:title"] == body["card"]["title"]
        assert len(body["card"].get("description") or "") <= 200


def test_preview_endpoint_errors(synapse: SynapseStack, phenom_site: PhenomSite) -> None:
    anonymous = httpx2.get(
        f"{synapse.base_url}{PREVIEW_PATH}", params={"url": _link(phenom_site, "full")}
    )
    assert anonymous.status_code == 401
    client = synapse.register()
    missing = client.request("GET", PREVIEW_PATH)
    assert missing.status_code == 400 and missing.json()["errcode"] == "M_MISSING_PARAM"
    other = _preview(client, "https://example.com/x")
    assert other.status_code == 400 and "Only links to" in other.json()["error"]
    # URLs Python's parser refuses are bad input too (400), not a server error.
    for junk in ("https://[::1", "https://thephenom.app\uff03@example.com/"):
        resp = _preview(client, junk)
        assert resp.status_code == 400 and "Only links to" in resp.json()["error"], resp.text
