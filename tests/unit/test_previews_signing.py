"""Server-signed preview cards (pure): signing, verification, and what moderation keeps."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from synapse_phenom.previews import msc4095
from synapse_phenom.previews.card import Card, Fact
from synapse_phenom.previews.signing import derive_key, sign_entry, split_cards, verify_entry

KEY = derive_key(b"macaroon secret")
LINK = "https://thephenom.app/p/trailer"
CARD = Card(
    url=LINK,
    canonical_url=LINK,
    title="Trailer night — Tromsø",
    description="Watch the trailer on youtube.com. Beware of scammers.",
    facts=(Fact(label="Author", value="Ada"),),
)


def signed() -> dict[str, Any]:
    (entry,) = msc4095.previews_for([(LINK, CARD)], lambda e: sign_entry(e, KEY))
    return entry


def test_signed_entries_verify_and_any_change_breaks_them() -> None:
    entry = signed()
    assert verify_entry(entry, KEY) and verify_entry(copy.deepcopy(entry), KEY)
    assert not verify_entry(entry, derive_key(b"another server"))
    for field, value in [
        ("og:title", "Free tickets"),
        ("og:description", "DM me"),
        ("matched_url", "https://thephenom.app/p/other"),
        ("og:image", "mxc://evil/x"),
    ]:
        assert not verify_entry({**entry, field: value}, KEY), field
    changed = copy.deepcopy(entry)
    changed["app.phenom.card"]["facts"][0]["value"] = "Mallory"
    assert not verify_entry(changed, KEY)
    unsigned = copy.deepcopy(entry)
    del unsigned["app.phenom.card"]["sig"]
    for junk in (unsigned, {"matched_url": LINK}, "x", None, {"app.phenom.card": {"sig": 1}}):
        assert not verify_entry(junk, KEY)


def test_split_cards_drops_server_cards_and_counts_the_rest() -> None:
    entry = signed()
    content = {"body": f"see {LINK}", "m.url_previews": [entry], "com.beeper.linkpreviews": [entry]}
    rest, unsigned = split_cards(content, KEY)
    assert rest == {"body": f"see {LINK}"} and unsigned == 0
    assert split_cards({"body": "x", "m.url_previews": []}, KEY) == ({"body": "x"}, 0)
    forged = {**entry, "og:title": "Free tickets"}
    _, unsigned = split_cards({"body": LINK, "m.url_previews": [entry, forged]}, KEY)
    assert unsigned == 1
    edit = {"m.new_content": {"body": "x", "com.beeper.linkpreviews": [forged]}}
    assert split_cards(edit, KEY)[1] == 1
    assert split_cards({"m.url_previews": "not a list"}, KEY)[1] == 1
    assert split_cards({"body": "no cards"}, KEY) == ({"body": "no cards"}, 0)


@pytest.mark.parametrize(
    "body",
    [
        "no link at all",
        "https://evil.example/p/trailer",
        # Clients match matched_url as a substring: these contain it, but the link is another.
        f"{LINK}.evil.example/x",
        "https://thephenom.app/p/trailer@evil.example/",
        f"{LINK}x",
        f"https://evil.example/?u={LINK}",
        f"see <a href='https://evil.example'>{LINK}</a>"[:9],  # cut: the link is not there
    ],
)
def test_a_signed_card_is_the_servers_only_under_its_own_link(body: str) -> None:
    # A copied signed card (composer endpoint, another message) under a different link:
    # the client would show Phenom's card for a link that goes elsewhere.
    entry = signed()
    content = {"body": body, "com.beeper.linkpreviews": [entry], "m.url_previews": [entry]}
    assert split_cards(content, KEY)[1] == 2


@pytest.mark.parametrize(
    "body", [LINK, f"see {LINK}.", f"({LINK})", f"first https://thephenom.app/ then {LINK}"]
)
def test_a_signed_card_under_its_own_link_is_kept_out_of_the_text(body: str) -> None:
    entry = signed()
    rest, unsigned = split_cards({"body": body, "m.url_previews": [entry]}, KEY)
    assert unsigned == 0 and rest == {"body": body}


def test_edits_place_cards_by_the_new_body() -> None:
    entry = signed()
    # The server's inline path puts the new body's cards at the top level and in
    # m.new_content; the fallback body may not repeat the link.
    edit = {
        "body": "* edited",
        "m.url_previews": [entry],
        "m.new_content": {"body": f"now {LINK}", "m.url_previews": [entry]},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"},
    }
    assert split_cards(edit, KEY)[1] == 0
    # The rendered new content must have the link itself.
    moved = {
        "body": f"* {LINK}",
        "m.new_content": {"body": "now nothing", "m.url_previews": [entry]},
    }
    assert split_cards(moved, KEY)[1] == 1
    # matrix:matched_url is checked too (both are signed; a client may read either).
    other = sign_entry({**entry, "matrix:matched_url": "https://thephenom.app/"}, KEY)
    assert split_cards({"body": LINK, "m.url_previews": [other]}, KEY)[1] == 1


@pytest.mark.parametrize(
    "html",
    [
        f'<a href="https://evil.example/login">{LINK}</a>',  # shows the link, goes elsewhere
        'Trailer: <a href="https://evil.example/login">watch here</a>',  # link only in body
        f'<a href="https://evil.example"><b>{LINK}</b></a> (also {LINK})',
        f'<a href="https://thephenom.app/p/other">{LINK}</a>',
        f"<a>{LINK}</a>",
    ],
)
def test_a_signed_card_is_refused_under_html_that_links_elsewhere(html: str) -> None:
    # Clients render formatted_body, not body: the card would vouch for an anchor that
    # goes to another page.
    entry = signed()
    content = {
        "body": f"Trailer: {LINK}",
        "format": "org.matrix.custom.html",
        "formatted_body": html,
        "m.url_previews": [entry],
    }
    assert split_cards(content, KEY)[1] == 1
    assert not msc4095.shows_link(html, LINK)
    edit = {
        "body": "* edited",
        "m.new_content": {"body": f"now {LINK}", "formatted_body": html, "m.url_previews": [entry]},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"},
    }
    assert split_cards(edit, KEY)[1] == 1


@pytest.mark.parametrize(
    "html",
    [
        f'<a href="{LINK}">{LINK}</a>',
        f'<a href="{LINK}">the trailer</a>',
        f"see <b>{LINK}</b>",  # plain text: clients linkify it to itself
        f'<a href="{LINK.upper().replace("/P/TRAILER", "/p/trailer")}">{LINK}</a>',
    ],
)
def test_a_signed_card_under_html_linking_to_its_page_is_kept(html: str) -> None:
    entry = signed()
    content = {"body": f"Trailer: {LINK}", "formatted_body": html, "m.url_previews": [entry]}
    assert split_cards(content, KEY)[1] == 0
    assert msc4095.shows_link(html, LINK)
    assert msc4095.rendered_html(content) == html
