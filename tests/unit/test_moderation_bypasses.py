"""Issue 9: classes of moderation bypasses, each with several variants, plus a fuzz of the
pure check and a multilingual corpus that must stay allowed (0 false positives)."""

# ruff: noqa: RUF001  (look-alike characters are the point of these tests)

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from moderation_fuzz import _PIECES, CORPUS, bodies, oracle_sees_violation

from synapse_phenom.moderation.config import ModerationConfig, default_module_config
from synapse_phenom.moderation.extract import extract, html_text_and_links
from synapse_phenom.moderation.links import classify, find_urls
from synapse_phenom.moderation.mentions import MemberIndex, MemberNames
from synapse_phenom.moderation.normalize import fold
from synapse_phenom.moderation.rules import UNREADABLE, CompiledPolicy, is_preview_card

COMMUNITY = CompiledPolicy(
    "community", ModerationConfig.model_validate(default_module_config()).policies["community"]
)


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


def html(markup: str, body: str = "hello") -> dict[str, Any]:
    return text(body, format="org.matrix.custom.html", formatted_body=markup)


def rule_of(content: dict[str, Any], event_type: str = "m.room.message", **kw: Any) -> str | None:
    v = COMMUNITY.check(event_type, content, **kw)
    return v.rule if v else None


# -- 1. total parsing: malformed input never skips the rules ----------------------------

MALFORMED_TAILS = [
    "<![ x",
    "<![CDATA[",
    "<!",
    "<!--",
    "<!-- unclosed",
    "</",
    "</>",
    '<a href="',
    "<a href='x",
    "<svg><![CDATA[ y",
    "<math><mglyph><style><img",
    "<table><tr><td>",
    "<select><option>",
    "&#x110000;",
    "&#0;",
    "&",
    "\x00",
    "<\x00>",
    "<b" * 500,
    "<div>" * 3000,
    "<template>" * 50,
    "<?xml x?>",
    "<!DOCTYPE",
    "\ud800",
]


@pytest.mark.parametrize("tail", MALFORMED_TAILS)
def test_malformed_html_is_checked(tail: str) -> None:
    assert rule_of(html("badword " + tail)) == "keywords:blocked words"
    if not tail.startswith(("<!--", "<a href")):  # there, the rest is a comment / attribute
        assert rule_of(html(tail + " <b>free crypto</b>")) == "keywords:blocked words"
    assert (
        rule_of(html("<p>ok</p>" + tail)) is None or rule_of(html("<p>ok</p>" + tail)) != UNREADABLE
    )


@pytest.mark.parametrize(
    "content",
    [
        {"msgtype": "m.text", "body": 5, "formatted_body": ["badword"]},
        {"msgtype": {"x": 1}, "body": "badword"},
        {"body": None, "m.new_content": {"body": "badword"}},
        {"m.new_content": [{"formatted_body": "<i>bad</i>word"}]},
        {"m.new_content": {"m.new_content": {"m.new_content": {"body": "badword"}}}},
        {"a": [[[[[[[[[[[[[[[[[[[[[[[[{"body": "badword"}]]]]]]]]]]]]]]]]]]]]]]]]},
        {"m.text": [{"mimetype": "text/html", "body": "<b>bad</b>word"}]},
        {"m.text": [{"mimetype": "TEXT/HTML; charset=utf-8", "body": "<b>bad</b>word"}]},
        {"org.matrix.msc1767.text": [{"body": "badword"}]},
        {"org.matrix.msc1767.html": "<i>bad</i>word"},
        {"m.poll": {"question": {"m.text": [{"body": "badword?"}]}, "answers": []}},
        {"org.matrix.msc3381.poll.start": {"answers": [{"org.matrix.msc1767.text": "badword"}]}},
        {"msgtype": "m.image", "body": "badword.png", "url": "mxc://x/y", "info": {"size": True}},
        {"msgtype": "m.file", "filename": "free crypto.pdf", "url": "mxc://x/y"},
        {"msgtype": "m.text", "body": "mxc://x/badword"},
        {"msgtype": "m.text", "info": {"mimetype": 3, "size": "big"}, "body": "badword"},
    ],
)
def test_any_json_shape_is_read(content: dict[str, Any]) -> None:
    assert rule_of(content) == "keywords:blocked words"


@pytest.mark.parametrize(
    "markup",
    [
        "<template>badword</template>",
        "<template><template>badword</template></template>",
        "<ruby>x<rt>badword</rt></ruby>",
        "<ruby>x<rp>badword</rp></ruby>",
        "<noscript>badword</noscript>",
        "<title>badword</title>",
        "<textarea>badword</textarea>",
        "<select><option>badword</option></select>",
        "<img alt='badword' src='mxc://a/b'>",
        "<span title='badword'>x</span>",
        "<span data-mx-spoiler='badword'>x</span>",
        "<span data-mx-maths='badword'>x</span>",
        "<!-- badword -->",
        "<svg><desc>badword</desc></svg>",
        "<math><mi>bad</mi><mi>word</mi></math>",
        "bad<i></i>word",
        "b&#97;dword",
        "bad&shy;word",
        "bad<wbr>word",
    ],
)
def test_text_of_every_element_a_client_may_show(markup: str) -> None:
    assert rule_of(html(markup)) == "keywords:blocked words"


def test_block_elements_separate_words_and_phrases_span_lines() -> None:
    assert rule_of(html("<p>bad</p><p>word</p>")) is None  # two words, shown on two lines
    assert rule_of(html("<p>free</p><p>crypto</p>")) == "keywords:blocked words"


# -- 2. URLs read as the client reads them (WHATWG) --------------------------------------

BLOCKED_LINKS_HTML = [
    '<a href="https://evil.com\\@thephenom.app/">x</a>',
    '<a href="https://evil.com/" href="https://thephenom.app/">x</a>',
    '<a href="https://thephenom.app/" href="https://evil.com/">x</a>',  # any renderer's pick
    '<a href="//evil.com/x">x</a>',
    '<a href="HTTPS://EVIL.COM">x</a>',
    '<a href="https://evil.\tcom">x</a>',
    '<a href="\n https://evil.com">x</a>',
    '<a href="https://evil%2ecom/">x</a>',
    '<a href="https://thephenom.app.evil.com/">x</a>',
    '<a href="https://user:pw@evil.com/">x</a>',
    '<a href="https://thephenom.app@evil.com/">x</a>',
    '<a href="https://evil。com/">x</a>',
    '<a href="https://thephenоm.app/">x</a>',  # Cyrillic o
    '<a href="http://0x7f.1/">x</a>',
    '<a href="http://2130706433/">x</a>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="data:text/html,hi">x</a>',
    "<a href=https://evil.com>x</a>",
    "<A HREF='https://evil.com'>x</A>",
    '<a href="https:\\\\evil.com">x</a>',
]


@pytest.mark.parametrize("markup", BLOCKED_LINKS_HTML)
def test_link_targets_follow_whatwg(markup: str) -> None:
    assert rule_of(html(markup)) == "links:domain"


BLOCKED_LINKS_TEXT = [
    "see https://evil.com\\@thephenom.app/",
    "see https:\\\\evil.com",
    "see HTTPS://EVIL.COM/x",
    "see https://thephenom.app@evil.com/",
    "see https://evil。com/",
    "see evil。com",
    "see evil．com",
    "see https://evil.com./",
    "see www.evil.com",
    "see evil.com",
    "see https://ｅｖｉｌ.com",
    "see http://0x7f.1/",
    "see evil\u200b.com",
    "see https://thephenom.app.evil.com",
]


@pytest.mark.parametrize("body", BLOCKED_LINKS_TEXT)
def test_plain_text_urls_follow_whatwg(body: str) -> None:
    assert rule_of(text(body)) == "links:domain"


@pytest.mark.parametrize(
    "body",
    [
        "see https://thephenom.app/x",
        "see https://www.thephenom.app/",
        "see HTTPS://THEPHENOM.APP",
        "see thephenom.app.",
        "mail me at bob@evil.com",
        "ping @alice:matrix.org",
    ],
)
def test_allowed_links_stay_allowed(body: str) -> None:
    assert rule_of(text(body)) is None


def test_classify_whatwg_hosts() -> None:
    assert classify("https://evil.com\\@thephenom.app/").host == "evil.com"
    assert classify("//evil.com", href=True).host == "evil.com"
    assert classify("/relative", href=True).host == ""
    assert classify("HTTPS://EVIL%2ECOM").host == "evil.com"
    assert classify("http://[x").kind == "web"  # never raises
    assert classify("matrix:u/alice:x?action=chat").target == "@alice:x"


# -- 3. Unicode folding from Unicode data ------------------------------------------------

KEYWORD_VARIANTS = [
    "bad\ufe0fword",
    "bad\ufe00word",
    "bad\U000e0100word",  # variation selector supplement
    "bad\U000e0041word",  # tag block
    "bad\u200bword",
    "bad\u2060word",
    "bad\u180eword",
    "bad\u034fword",
    "bad\u00adword",
    "\u202edrowdab",  # right-to-left override: shown as "badword"
    "\u202edrowdab\u202c ok",
    "bad\u202eword",
    "ʙᴀᴅᴡᴏʀᴅ",  # small capitals
    "ＢＡＤＷＯＲＤ",
    "𝐛𝐚𝐝𝐰𝐨𝐫𝐝",
    "ⓑⓐⓓⓦⓞⓡⓓ",
    "bаdwоrd",  # Cyrillic a, o
    "b4dw0rd",
    "free\u2800crypto",
    "free\u3164crypto",
    "free\u115fcrypto",
    "free\uffa0crypto",
    "free\u3000crypto",
    "free\u00a0crypto",
    "ꜰʀᴇᴇ ᴄʀʏᴘᴛᴏ",
    "free ᴄʀʏᴘᴛᴏ",
    "scａm",
    "ѕсаm",
]


@pytest.mark.parametrize("body", KEYWORD_VARIANTS)
def test_unicode_tricks_fold_to_the_keyword(body: str) -> None:
    assert rule_of(text(body)) == "keywords:blocked words"


@pytest.mark.parametrize("name", ["bad\ufe0fword", "ʙᴀᴅᴡᴏʀᴅ", "\u202edrowdab", "free\u2800crypto"])
def test_display_names_fold_the_same(name: str) -> None:
    v = COMMUNITY.check_display_name(name)
    assert v is not None and v.rule == "keywords:blocked words"


def test_fold_is_idempotent_and_derived() -> None:
    for s in KEYWORD_VARIANTS:
        assert fold(fold(s)) == fold(s)
    assert fold("ᴄʀʏᴘᴛᴏ") == "crypto"


@pytest.mark.parametrize("body", CORPUS)
def test_multilingual_corpus_stays_allowed(body: str) -> None:
    assert rule_of(text(body)) is None
    assert rule_of(html(f"<p>{body}</p>", body)) is None
    assert COMMUNITY.check_display_name(body[:40]) is None


# -- 4. mentions on every event type -----------------------------------------------------


@pytest.mark.parametrize(
    "event_type",
    ["m.call.notify", "m.room.encrypted", "org.example.custom", "m.reaction", "m.sticker"],
)
def test_mention_cap_on_any_event_type(event_type: str) -> None:
    ids = [f"@u{i}:x" for i in range(6)]
    content: dict[str, Any] = {"m.mentions": {"user_ids": ids}}
    if event_type == "m.room.encrypted":
        content.update(algorithm="m.megolm.v1.aes-sha2", ciphertext="AAAA", session_id="s")
    assert rule_of(content, event_type) == "mentions:users"
    assert rule_of({"m.mentions": {"room": True}}, event_type) == "mentions:room"


def test_legacy_body_highlights_count() -> None:
    members = MemberIndex([(f"@user{i}:x", f"Name {i}") for i in range(10)] + [("@zed:x", None)])
    body = "hey user1 user2, Name 3 and name 4! zed, user5"
    assert rule_of(text(body), members=members) == "mentions:users"
    assert rule_of(text("hey user1 user2 zed"), members=members) is None
    # With m.mentions, Synapse does not apply the legacy rules.
    assert rule_of(text(body, **{"m.mentions": {}}), members=members) is None
    assert members.named_in("user10 user1x xuser1") == set()


def test_member_names_follow_joins_renames_and_leaves() -> None:
    """The cap counts exactly the room's current members, not the list the index was
    built from: a member who just joined or renamed counts, one who left does not."""
    base = MemberNames({"@ann:x": "Ann", "@bob:x": "Bob", "@cy:x": None})
    assert base.named_in("ann bob cy") == {"@ann:x", "@bob:x", "@cy:x"}
    now = base.moved_to({"@ann:x": "Annie", "@cy:x": None, "@dee:x": "Dee D"})
    assert now.drift == 3  # one rename, one join, one leave
    assert now.named_in("ann annie bob cy dee d") == {"@ann:x", "@cy:x", "@dee:x"}
    assert now.named_in("Ann bob") == {"@ann:x"}  # the localpart still highlights
    assert now.named_in("bob") == set()  # left
    assert now.named_in("dee d") == {"@dee:x"}
    # Renaming back to the built name drops out of the delta and still counts once.
    again = now.moved_to({"@ann:x": "Ann", "@bob:x": "Bob", "@cy:x": None})
    assert again.drift == 0
    assert again.named_in("ann bob cy") == {"@ann:x", "@bob:x", "@cy:x"}


# -- 6. preview cards --------------------------------------------------------------------


def test_preview_card_recognised() -> None:
    ref = {"m.relates_to": {"rel_type": "m.reference", "event_id": "$a"}}
    assert is_preview_card("app.phenom.link_preview", {})
    assert is_preview_card("org.example.card", {**ref, "com.beeper.linkpreviews": []})
    assert is_preview_card("org.example.card", {**ref, "m.url_previews": []})
    assert not is_preview_card("m.room.message", {**ref, "com.beeper.linkpreviews": []})
    assert not is_preview_card("org.example.card", ref)


# -- 7. fuzz: 1,000 mutated bodies, never raising, never unchecked -----------------------


def test_fuzz_pure_check_is_total_and_never_unchecked() -> None:
    missed = []
    for content in bodies(9, 1000):
        v = COMMUNITY.check("m.room.message", content)
        assert v is None or v.rule != UNREADABLE, content
        if v is None and oracle_sees_violation(content):
            missed.append(content)
        json.dumps(content)  # a real event body
    assert not missed, missed[:5]


def test_extract_is_total_on_random_json() -> None:
    rng = random.Random(10)

    def junk(depth: int = 0) -> Any:
        r = rng.random()
        if depth > 6 or r < 0.3:
            return rng.choice([None, True, 1, 1.5, "", "badword", "<![ x", "\ud800", -(2**60)])
        if r < 0.6:
            return [junk(depth + 1) for _ in range(rng.randint(0, 4))]
        keys = [
            "body",
            "formatted_body",
            "m.new_content",
            "msgtype",
            "info",
            "url",
            "m.mentions",
            "user_ids",
            "mimetype",
            "m.text",
            "answers",
            "size",
        ]
        return {rng.choice(keys): junk(depth + 1) for _ in range(rng.randint(0, 5))}

    for _ in range(500):
        content = junk()
        if isinstance(content, dict):
            extract("m.room.message", content)
            v = COMMUNITY.check("m.room.message", content)
            assert v is None or v.rule != UNREADABLE


def test_html_parse_never_raises() -> None:
    rng = random.Random(11)
    for _ in range(300):
        s = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 40)))
        html_text_and_links(s)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("cheap stuff at evil.lol today", "evil.lol"),
        ("see evil.zip", "evil.zip"),
        ("пример.рф", "пример.рф"),
        ("evil.xn--p1ai/free", "evil.xn--p1ai"),
        ("Mega.Museum", "mega.museum"),
    ],
)
def test_bare_domains_with_any_tld_a_client_links(text: str, host: str) -> None:
    """Every TLD of the Public Suffix List counts, as in the clients' linkifiers."""
    found = find_urls(text)
    assert found, text
    assert host in found[0].lower()


@pytest.mark.parametrize("text", ["file.txt is ready", "version 1.2 works", "e.g. this", "a@b.lol"])
def test_words_with_dots_that_are_not_domains(text: str) -> None:
    assert find_urls(text) == []
