"""Server-owned preview cards and refusals an app can act on, through the real Synapse.

Issue 16 items 1 and 5: a card the server made (follow-up, or the composer endpoint's
signed entry sent back by the app) is never the user's text: its non-allowed domain and
blocked keyword neither refuse the message nor count towards a mute. A card a client made
up is refused on every path. Flood refusals carry ``retry_after_ms`` and never lead to a
mute; mute refusals carry their expiry.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from harness import MatrixClient, SynapseStack, eventually, unique
from previews_site import PhenomSite

from synapse_phenom.endpoints import AUDIT_PATH
from synapse_phenom.moderation.config import DEMO_ALLOW, DEMO_KEYWORDS, POLICY_EVENT_TYPE

pytestmark = pytest.mark.synapse

PREVIEW_PATH = "/_synapse/client/phenom/v1/preview"


def _community_like(site: PhenomSite, **extra: Any) -> dict[str, Any]:
    """The shipped Community policy, with the test site's host allowed (it is the Phenom
    origin here) and a low escalation threshold, so one wrong count would mute."""
    host = site.origin.split("://", 1)[1].split(":", 1)[0]
    return {
        "keywords": [{"name": "blocked words", "keywords": DEMO_KEYWORDS, "allow": DEMO_ALLOW}],
        "links": {"mode": "allow", "domains": ["thephenom.app", host], "block_room_links": True},
        "mentions": {"max_user_mentions": 5, "allow_room_mention": False},
        "escalation": {"violations": 2, "window_seconds": 600, "mute_seconds": 300},
        **extra,
    }


def _room(synapse: SynapseStack, policy: dict[str, Any]) -> tuple[MatrixClient, str]:
    owner = synapse.register()
    room = owner.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "public_chat"})[
        "room_id"
    ]
    assert owner.send_state(room, POLICY_EVENT_TYPE, policy).status_code == 200
    return owner, room


def _audit(synapse: SynapseStack, user_id: str) -> list[dict[str, Any]]:
    with httpx2.Client(
        base_url=synapse.base_url, headers={"Authorization": f"Bearer {synapse.admin_token}"}
    ) as http:
        resp = http.get(AUDIT_PATH, params={"user_id": user_id})
        assert resp.status_code == 200, resp.text
        return list(resp.json()["entries"])


def _follow_ups(client: MatrixClient, room: str, event_id: str) -> list[dict[str, Any]]:
    return list(
        client.call(
            "GET",
            f"/_matrix/client/v1/rooms/{quote(room)}/relations/{quote(event_id)}"
            "/m.reference/app.phenom.link_preview",
        )["chunk"]
    )


def _refused(resp: httpx2.Response, rule: str) -> dict[str, Any]:
    assert resp.status_code == 403, resp.text
    body = dict(resp.json())
    assert body["app.phenom.moderation.rule"] == rule, body
    return body


def test_server_cards_are_not_user_text_and_invented_cards_are_refused(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    owner, room = _room(synapse, _community_like(phenom_site))
    alice, mallory = synapse.register(unique("alice")), synapse.register(unique("mallory"))
    alice.join(room)
    mallory.join(room)
    # The card's own text breaks both rules: had it been typed, it would be refused.
    typed = alice.send_raw(room, {"msgtype": "m.text", "body": "Watch it on youtube.com"})
    _refused(typed, "links:domain")
    alice_before = len(_audit(synapse, alice.user_id))

    # 1. Follow-up path: the plain message is accepted and the server's card arrives.
    link = f"{phenom_site.origin}/p/trailer?t={unique('')}"
    message = alice.send(room, f"Trailer tonight: {link}")
    (card,) = eventually(lambda: _follow_ups(owner, room, message), timeout=20)
    assert card["sender"] == alice.user_id  # sent for her, by the server
    (entry,) = card["content"]["m.url_previews"]
    assert "youtube.com" in entry["og:description"] and "scammers" in entry["og:description"]
    assert entry["app.phenom.card"]["sig"]

    # 2. Composer path: the endpoint's signed entry, sent back unmodified, is accepted.
    link2 = f"{phenom_site.origin}/p/trailer?t={unique('')}"
    answer = alice.call("GET", PREVIEW_PATH, params={"url": link2})
    preview = answer["preview"]
    assert preview["app.phenom.card"]["sig"]
    composed = alice.send_raw(
        room,
        {
            "msgtype": "m.text",
            "body": f"Look {link2}",
            "m.url_previews": [preview],
            "com.beeper.linkpreviews": [preview],
        },
    )
    assert composed.status_code == 200, composed.text
    composed_id = composed.json()["event_id"]
    assert owner.event(room, composed_id)["content"]["m.url_previews"] == [preview]

    # No block, no mute for alice: the cards were never judged as her text.
    entries = _audit(synapse, alice.user_id)
    assert len(entries) == alice_before, entries
    assert all(e["action"] != "mute" for e in entries)
    assert alice.send(room, "still allowed to talk")

    # 3. Invented cards are refused on every path.
    forged_title = dict(preview, **{"og:title": "Free tickets: DM me"})
    unsigned = {"matched_url": link2, "og:url": link2, "og:title": "Free tickets: DM me"}
    moved = copy.deepcopy(preview)
    moved["matched_url"] = moved["matrix:matched_url"] = f"{phenom_site.origin}/p/full"
    other_site = {"matched_url": "https://example.org/", "og:title": "Your bank: log in"}
    for entries_ in ([forged_title], [unsigned], [moved], [preview, unsigned]):
        for key in ("m.url_previews", "com.beeper.linkpreviews"):
            resp = mallory.send_raw(
                room, {"msgtype": "m.text", "body": f"see {link2}", key: entries_}
            )
            body = _refused(resp, "preview_card")
            assert "composer" in body["error"]
    # A made-up card for any link, in a room with no rules at all (clients render them all).
    dm_owner = synapse.register()
    dm = dm_owner.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "private_chat"})[
        "room_id"
    ]
    _refused(
        dm_owner.send_raw(
            dm,
            {"msgtype": "m.text", "body": "https://example.org/", "m.url_previews": [other_site]},
        ),
        "preview_card",
    )
    # In an edit's new content.
    edit = {
        "msgtype": "m.text",
        "body": f"* see {link2}",
        "m.new_content": {
            "msgtype": "m.text",
            "body": f"see {link2}",
            "m.url_previews": [forged_title],
        },
        "m.relates_to": {"rel_type": "m.replace", "event_id": message},
    }
    _refused(alice.send_raw(room, edit), "preview_card")
    # As a follow-up-typed event under her own message, or any event referencing another
    # user's message, even carrying the server's genuine signed entry.
    own = mallory.send(room, f"mine {link2}")
    for sender, target, event_type, card_entries in [
        (mallory, own, "app.phenom.link_preview", [forged_title]),
        (mallory, message, "app.phenom.link_preview", [preview]),
        (mallory, message, "org.example.card", [forged_title]),
    ]:
        content = {
            "m.relates_to": {"rel_type": "m.reference", "event_id": target},
            "m.url_previews": card_entries,
        }
        _refused(sender.send_raw(room, content, event_type=event_type), "preview_card")
    # Refused, audited, but never a mute: a client's doing, refused whatever the user wrote.
    forger_log = _audit(synapse, mallory.user_id)
    assert sum(e["rule"] == "preview_card" for e in forger_log) >= 10
    assert all(e["action"] != "mute" for e in forger_log)
    assert mallory.send(room, "I can still talk")
    # A genuine card never appears twice: the composed message got no follow-up.
    assert _follow_ups(owner, room, composed_id) == []


def test_flood_refusals_never_mute_and_mutes_say_until_when(synapse: SynapseStack) -> None:
    policy = {
        "keywords": [{"name": "test words", "keywords": ["forbiddenword"]}],
        "flood": {"messages": 3, "per_seconds": 60},
        "escalation": {"violations": 2, "window_seconds": 600, "mute_seconds": 120},
    }
    _owner, room = _room(synapse, policy)
    app_user = synapse.register(unique("queue"))
    app_user.join(room)
    # An offline queue flushed at once on reconnect: refused with a retry hint, never muted.
    results = [
        app_user.send_raw(room, {"msgtype": "m.text", "body": f"queued {i}"}) for i in range(12)
    ]
    assert [r.status_code for r in results[:3]] == [200, 200, 200]
    for resp in results[3:]:
        body = resp.json()
        assert resp.status_code in (403, 429), resp.text
        assert body["errcode"] == "M_LIMIT_EXCEEDED", body
        assert body["app.phenom.moderation.rule"] == "flood", body
        assert 0 < body["retry_after_ms"] <= 130_000, body
        assert "app.phenom.moderation.muted_until_ms" not in body
    log = _audit(synapse, app_user.user_id)
    assert len([e for e in log if e["rule"] == "flood"]) == 9
    assert all(e["action"] != "mute" for e in log)
    # One real violation after the burst is one, not the tenth: still no mute.
    _refused(
        app_user.send_raw(room, {"msgtype": "m.text", "body": "forbiddenword"}),
        "keywords:test words",
    )
    assert all(e["action"] != "mute" for e in _audit(synapse, app_user.user_id))

    # A second violation mutes; the refusal says until when.
    _refused(
        app_user.send_raw(room, {"msgtype": "m.text", "body": "forbiddenword"}),
        "keywords:test words",
    )
    muted = _refused(app_user.send_raw(room, {"msgtype": "m.text", "body": "hello"}), "mute")
    assert muted["errcode"] == "M_FORBIDDEN"
    assert 0 < muted["retry_after_ms"] <= 120_000, muted
    until = muted["app.phenom.moderation.muted_until_ms"]
    mute_row = next(e for e in _audit(synapse, app_user.user_id) if e["action"] == "mute")
    assert str(until) in mute_row["detail"]


def test_a_copied_signed_card_is_refused_under_another_link(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    # A genuine signed card (anyone can get one from the composer endpoint, or copy one
    # from a message) under a message whose link is not the card's: clients match
    # matched_url as a substring, so they would show Phenom's card for another link.
    _owner, room = _room(synapse, _community_like(phenom_site))
    mallory = synapse.register(unique("mallory"))
    mallory.join(room)
    link = f"{phenom_site.origin}/p/trailer?t={unique('')}"
    preview = mallory.call("GET", PREVIEW_PATH, params={"url": link})["preview"]
    host = phenom_site.origin.split("://", 1)[1]
    for body in (
        "Free tickets, DM me",
        f"{link}&next=https://evil.example/",
        f"{phenom_site.origin.replace(host, host + '@evil.example')}/p/trailer",
    ):
        for key in ("m.url_previews", "com.beeper.linkpreviews"):
            resp = mallory.send_raw(room, {"msgtype": "m.text", "body": body, key: [preview]})
            _refused(resp, "preview_card")
    # No card at all for a link URL parsers read differently (browser: the site; an
    # RFC 3986 reader such as Android's Uri: user info, then evil.example).
    for ambiguous in (f"{phenom_site.origin}\\@evil.example/", f"{phenom_site.origin}\\x"):
        resp = mallory.request("GET", PREVIEW_PATH, params={"url": ambiguous})
        assert resp.status_code == 400 and resp.json()["errcode"] == "M_INVALID_PARAM", resp.text
    # Clients render formatted_body: the card must not sit under an anchor going elsewhere,
    # neither the client's copy nor the server's follow-up.
    # (A room with no link rules: Community's would refuse the evil.example link itself.)
    room = mallory.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "public_chat"})[
        "room_id"
    ]
    _owner = mallory
    html = f'<a href="https://evil.example/login">{link}</a>'
    resp = mallory.send_raw(
        room,
        {
            "msgtype": "m.text",
            "body": link,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
            "m.url_previews": [preview],
        },
    )
    _refused(resp, "preview_card")
    fresh = f"{phenom_site.origin}/p/trailer?t={unique('')}"
    misdirected = mallory.send_raw(
        room,
        {
            "msgtype": "m.text",
            "body": fresh,
            "format": "org.matrix.custom.html",
            "formatted_body": f'<a href="https://evil.example/login">{fresh}</a>',
        },
    )
    assert misdirected.status_code == 200, misdirected.text
    control = mallory.send(room, f"control {fresh}")
    eventually(lambda: _follow_ups(_owner, room, control), timeout=20)
    assert _follow_ups(_owner, room, misdirected.json()["event_id"]) == []
    # Under its own link it is accepted.
    ok = mallory.send_raw(
        room, {"msgtype": "m.text", "body": f"see {link}", "m.url_previews": [preview]}
    )
    assert ok.status_code == 200, ok.text
