"""Server-signed preview cards (pure): signing, verification, and what moderation keeps."""

from __future__ import annotations

import copy
from typing import Any

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
    _, unsigned = split_cards({"m.url_previews": [entry, forged]}, KEY)
    assert unsigned == 1
    edit = {"m.new_content": {"body": "x", "com.beeper.linkpreviews": [forged]}}
    assert split_cards(edit, KEY)[1] == 1
    assert split_cards({"m.url_previews": "not a list"}, KEY)[1] == 1
    assert split_cards({"body": "no cards"}, KEY) == ({"body": "no cards"}, 0)
