"""Link previews through the real Synapse, against a local Phenom-like site.

Every test uses its own room and unique links (``?t=``), so cache state never leaks
between tests; ``phenom_site`` counts requests to prove SSRF attempts fetched nothing.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from fixtures_previews import COMPOSER_BURST, PREVIEW_BUDGET_MS, previews_module_config
from harness import MatrixClient, SynapseStack, eventually, unique
from previews_site import SLOW_SECONDS, PhenomSite, Tarpit

from synapse_phenom.ops import hsconfig

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


@pytest.fixture(scope="module")
def inline_synapse(
    phenom_site: PhenomSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SynapseStack]:
    """A second Synapse (SQLite) with ``inline: true``: cached cards go into the message."""
    config = {**previews_module_config(phenom_site), "inline": True}
    stack = SynapseStack.start(
        Path(tmp_path_factory.mktemp("synapse-inline")),
        hsconfig.DevDatabase(),
        module_overrides={hsconfig.LINK_PREVIEW_MODULE: config},
    )
    yield stack
    stack.stop()


def _assert_full_entry(entry: dict[str, Any], link: str, card: dict[str, Any]) -> None:
    assert entry["matched_url"] == link
    assert entry["og:title"] == "Northern Lights over Tromsø"
    # The page says og:url https://thephenom.app/p/aurora, which is not a configured origin
    # here (the test site is): a signed card names only checked links, so the page's own.
    assert entry["og:url"] == link
    assert entry["og:image"] == card["image"]["mxc"]
    assert entry["og:image:width"] == 64 and entry["og:image:type"] == "image/png"
    assert entry["app.phenom.card"]["facts"][0] == {"label": "Author", "value": "Ada Lovelace"}
    assert entry["app.phenom.card"]["theme_color"] == "#1e90ff"


def test_cached_link_gets_its_follow_up_at_once(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    """Default mode: the message is stored as sent; the card follows as its own event."""
    alice, bob, room_id = _room(synapse)
    link = _link(phenom_site, "full")
    # The composer endpoint resolves and caches the card (and re-hosts its image).
    resp = _preview(alice, link)
    assert resp.status_code == 200, resp.text
    card = resp.json()["card"]
    assert card["title"] == "Northern Lights over Tromsø"
    assert card["image"]["mxc"].startswith("mxc://localhost/")
    fetches = phenom_site.hit_paths().count("/p/full")

    body = f"Tonight's sky ({link}) — join us!"
    event_id, elapsed = _timed_send(alice, room_id, {"msgtype": "m.text", "body": body})
    assert elapsed < SEND_LIMIT_S
    assert _synced_event(bob, room_id, event_id)["content"] == {"msgtype": "m.text", "body": body}
    start = time.monotonic()
    (follow_up,) = eventually(lambda: _follow_ups(bob, room_id, event_id), timeout=5)
    assert time.monotonic() - start < 3  # cached: nothing to fetch
    (entry,) = follow_up["content"]["com.beeper.linkpreviews"]
    _assert_full_entry(entry, link, card)
    assert phenom_site.hit_paths().count("/p/full") == fetches  # served from the cache

    # The re-hosted image is real media anyone signed in can download.
    media = bob.request("GET", f"/_matrix/client/v1/media/download/{entry['og:image'][6:]}")
    assert media.status_code == 200 and media.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_inline_mode_puts_cached_cards_into_the_message(
    inline_synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    alice, bob, room_id = _room(inline_synapse)
    link = _link(phenom_site, "full")
    resp = _preview(alice, link)
    assert resp.status_code == 200, resp.text
    card = resp.json()["card"]

    body = f"Tonight's sky ({link}) — join us!"
    event_id, elapsed = _timed_send(alice, room_id, {"msgtype": "m.text", "body": body})
    assert elapsed < SEND_LIMIT_S
    content = _synced_event(bob, room_id, event_id)["content"]
    assert content["body"] == body
    previews = content["com.beeper.linkpreviews"]
    assert previews == content["m.url_previews"]
    (entry,) = previews
    _assert_full_entry(entry, link, card)

    # An edit that adds the link gets the card in m.new_content.
    original = alice.send(room_id, "typo")
    edit, _ = _timed_send(alice, room_id, _edit(original, f"fixed {link}"))
    new_content = bob.event(room_id, edit)["content"]["m.new_content"]
    assert new_content["com.beeper.linkpreviews"][0]["matched_url"] == link
    assert new_content["m.url_previews"] == new_content["com.beeper.linkpreviews"]

    # An uncached link still gets a follow-up; then it is cached and goes inline.
    slow = _link(phenom_site, "slow")
    first, _ = _timed_send(alice, room_id, {"msgtype": "m.text", "body": f"see {slow}"})
    eventually(lambda: _follow_ups(bob, room_id, first), timeout=SLOW_SECONDS + 5)
    again, _ = _timed_send(alice, room_id, {"msgtype": "m.text", "body": f"again {slow}"})
    assert bob.event(room_id, again)["content"]["com.beeper.linkpreviews"][0]["og:title"] == (
        "Slow page"
    )
    time.sleep(0.5)
    assert not _follow_ups(bob, room_id, event_id)
    assert not _follow_ups(bob, room_id, again)


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
    # In words for users: never the addresses the fetcher saw, nor exception text.
    assert "redirects" in reasons["metadata"]
    assert reasons["loopback"] == reasons["direct"]
    assert "address is not allowed" in reasons["direct"]
    for text in reasons.values():
        for internal in ("169.254", "127.0.0.1", "localhost", str(phenom_site.port), "Error"):
            assert internal not in text
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

    # Encrypted room: plaintext content (a misbehaving client) is left exactly as sent.
    alice2, bob2, enc_room = _room(synapse, encrypted=True)
    plain, _ = _timed_send(alice2, enc_room, {"msgtype": "m.text", "body": link})
    assert bob2.event(enc_room, plain)["content"] == {"msgtype": "m.text", "body": link}
    time.sleep(1.5)  # a cached card's follow-up would be there by now
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
        ("huge", 404, {"error": "the page is too large"}),
        ("binary", 404, {"error": "the link is not a web page"}),
        ("utf8-undeclared", 200, {"title": "€5 for Ünïcödé"}),
        ("nested", 200, {"title": "Deep page"}),
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


def test_iri_links_get_cards(synapse: SynapseStack, phenom_site: PhenomSite) -> None:
    """A link written with non-ASCII characters is fetched as a browser would (UTF-8
    percent-encoded); matched_url stays exactly as written."""
    alice, bob, room_id = _room(synapse)
    link = f"{phenom_site.origin}/p/tromsø-night?t={unique('')}"
    resp = _preview(alice, link)
    assert resp.status_code == 200, resp.text
    assert resp.json()["card"]["title"] == "Tromsø by night"
    body = f"look {link} !"
    event_id, _ = _timed_send(alice, room_id, {"msgtype": "m.text", "body": body})
    (follow_up,) = eventually(lambda: _follow_ups(bob, room_id, event_id), timeout=5)
    (entry,) = follow_up["content"]["m.url_previews"]
    assert entry["matched_url"] == link and link in body
    assert entry["og:title"] == "Tromsø by night"


def test_composer_endpoint_is_rate_limited_per_user(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    alice, bob = synapse.register(), synapse.register()
    cached = _link(phenom_site, "full")
    assert _preview(alice, cached).status_code == 200
    before = phenom_site.hit_paths().count("/p/plain-page")
    statuses = []
    limited = None
    for _ in range(COMPOSER_BURST + 10):
        resp = _preview(alice, _link(phenom_site, "plain-page"))
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            limited = resp
    # The first lookup (the cached link above) took one token too.
    assert statuses.count(200) == COMPOSER_BURST - 1, statuses
    assert set(statuses[COMPOSER_BURST:]) == {429}
    assert limited is not None
    assert limited.json()["errcode"] == "M_LIMIT_EXCEEDED"
    assert limited.json()["retry_after_ms"] > 0
    assert phenom_site.hit_paths().count("/p/plain-page") - before == COMPOSER_BURST - 1
    # Cached answers cost nothing; other users have their own bucket.
    assert _preview(alice, cached).status_code == 200
    assert _preview(bob, _link(phenom_site, "plain-page")).status_code == 200


def test_unreachable_origin_is_tried_once_per_interval(
    synapse: SynapseStack, tarpit: Tarpit
) -> None:
    """An origin that does not answer costs one attempt per retry interval, not one per
    message; users are told it is unreachable, never where it was fetched from."""
    alice, bob, room_id = _room(synapse)
    base = "https://down.thephenom.test/p"
    before = tarpit.connections
    first, elapsed = _timed_send(
        alice, room_id, {"msgtype": "m.text", "body": f"{base}/a?t={unique('')}"}
    )
    assert elapsed < SEND_LIMIT_S
    eventually(lambda: tarpit.connections > before or None, timeout=5)
    time.sleep(4.0 + 1.5)  # the attempt times out (total_timeout_s) and opens the breaker
    attempts = tarpit.connections
    for _ in range(10):
        _, elapsed = _timed_send(
            alice, room_id, {"msgtype": "m.text", "body": f"{base}/b?t={unique('')}"}
        )
        assert elapsed < SEND_LIMIT_S
    start = time.monotonic()
    resp = _preview(alice, f"{base}/c?t={unique('')}")
    assert time.monotonic() - start < 1.0
    assert resp.status_code == 404, resp.text
    error = resp.json()["error"]
    assert "not reachable" in error
    assert "127.0.0.1" not in error and str(tarpit.port) not in error
    time.sleep(1.0)
    assert tarpit.connections == attempts  # nothing new within the interval
    assert not _follow_ups(bob, room_id, first)


def test_a_burst_of_new_links_to_an_origin_that_never_answers_costs_one_attempt(
    synapse: SynapseStack, burst_tarpit: Tarpit
) -> None:
    """Links to an origin nobody has fetched from lately, sent while its first fetch is in
    flight, wait for that fetch's outcome instead of each trying the origin themselves."""
    alice, _, room_id = _room(synapse)
    base = "https://burst.thephenom.test/p"
    before = burst_tarpit.connections  # (the doctor's origin check may have connected)
    for i in range(8):
        _, elapsed = _timed_send(
            alice, room_id, {"msgtype": "m.text", "body": f"{base}/{i}?t={unique('')}"}
        )
        assert elapsed < SEND_LIMIT_S
    eventually(lambda: burst_tarpit.connections > before or None, timeout=10)
    time.sleep(4.0 + 1.5)  # the one attempt times out (total_timeout_s); the breaker opens
    assert burst_tarpit.connections - before == 1


# The poller runs in its own process: in this one the Phenom site's threads (serving 800 KB
# pages) would compete with it for the GIL and inflate what it measures.
_POLLER = """
import sys, time, httpx2
url, seconds = sys.argv[1], float(sys.argv[2])
out = []
with httpx2.Client(timeout=10) as client:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        client.get(url)
        out.append(time.perf_counter() - start)
        time.sleep(0.01)
print(" ".join(f"{v:.6f}" for v in out))
"""


def _latencies(base_url: str, during: Any = None, seconds: float = 3.0) -> list[float]:
    """/versions latencies polled every ~10 ms for ``seconds``, while ``during()`` runs."""
    poller = subprocess.Popen(
        [sys.executable, "-c", _POLLER, f"{base_url}/_matrix/client/versions", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.3)  # the poller's interpreter start-up
        if during is not None:
            during()
        out, _ = poller.communicate(timeout=seconds + 60)
    finally:
        if poller.poll() is None:
            poller.kill()
    return [float(v) for v in out.split()]


def _title(client: MatrixClient, url: str) -> str:
    resp = _preview(client, url)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["card"]["title"])


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def test_reactor_stays_responsive_during_worst_case_parse(
    synapse: SynapseStack, phenom_site: PhenomSite
) -> None:
    """750 KB of nested <div>s plus absurdly nested JSON-LD: /versions keeps answering."""
    users = [synapse.register() for _ in range(8)]
    baseline = _latencies(synapse.base_url)
    cards: list[str] = []

    def heavy_previews() -> None:
        # Fresh links (each one fetched and parsed), two at a time, for at least 3 s.
        start = time.monotonic()
        for round_ in range(40):  # each user has a burst of COMPOSER_BURST: round-robin
            if time.monotonic() - start > 3.2 and len(cards) >= 4:
                break
            client = users[round_ % len(users)]
            pair = [_link(phenom_site, "nested") for _ in range(2)]
            workers = [
                threading.Thread(target=lambda u=u, c=client: cards.append(_title(c, u)))
                for u in pair
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join()

    during = _latencies(synapse.base_url, heavy_previews, seconds=4.0)
    assert set(cards) == {"Deep page"} and len(cards) >= 4 and len(cards) % 2 == 0
    assert len(during) >= 20
    base_p95, p95, worst = _p95(baseline), _p95(during), max(during)
    print(
        f"/versions baseline p95 {base_p95 * 1000:.1f} ms; "
        f"during parse p95 {p95 * 1000:.1f} ms, max {worst * 1000:.1f} ms"
    )
    # The bar is 50 ms; the machine is shared, so the bound is relative to a
    # baseline measured here too. Blocking the reactor (the old parse) took > 1 s.
    assert p95 < max(0.050, base_p95 * 2 + 0.010)
    assert worst < max(0.250, max(baseline) * 2)
