"""Issue 9, second adversarial pass: variants of the bypass classes that the first fixes
missed. Each test names the class; every case failed before its fix."""

# ruff: noqa: RUF001  (look-alike characters are the point of these tests)

from __future__ import annotations

from typing import Any

import pytest

from synapse_phenom.moderation.config import ModerationConfig, default_module_config
from synapse_phenom.moderation.mentions import MemberIndex, says_room
from synapse_phenom.moderation.normalize import fold
from synapse_phenom.moderation.rules import CompiledPolicy

COMMUNITY = CompiledPolicy(
    "community", ModerationConfig.model_validate(default_module_config()).policies["community"]
)
MEMBERS = MemberIndex([(f"@user{i}:x", f"Name {i}") for i in range(10)])
SIX_NAMES = "user0 user1 user2 user3 user4 user5"


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


def rule_of(content: dict[str, Any], event_type: str = "m.room.message", **kw: Any) -> str | None:
    v = COMMUNITY.check(event_type, content, **kw)
    return v.rule if v else None


# -- legacy mentions: only a TOP-LEVEL m.mentions switches Synapse's body rules off -------

NESTED_MENTIONS = [
    {"x": {"m.mentions": {}}},
    {"m.new_content": {"msgtype": "m.text", "body": "hi", "m.mentions": {}}},
    {"m.relates_to": {"m.in_reply_to": {"event_id": "$a"}, "m.mentions": {"user_ids": []}}},
    {"info": [{"m.mentions": {"room": False}}]},
]


@pytest.mark.parametrize("extra", NESTED_MENTIONS)
def test_nested_m_mentions_does_not_disable_legacy_room_mention(extra: dict[str, Any]) -> None:
    assert rule_of(text("@room look", **extra)) == "mentions:room"


@pytest.mark.parametrize("extra", NESTED_MENTIONS)
def test_nested_m_mentions_does_not_disable_legacy_highlights(extra: dict[str, Any]) -> None:
    assert rule_of(text(SIX_NAMES, **extra), members=MEMBERS) == "mentions:users"


def test_top_level_m_mentions_still_disables_legacy_rules() -> None:
    assert rule_of(text("@room look", **{"m.mentions": {}})) is None
    assert rule_of(text(SIX_NAMES, **{"m.mentions": {}}), members=MEMBERS) is None


# -- @room as Synapse (case-insensitive) and readers see it -------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "@ROOM",
        "hey @Room!",
        "@r\u200boom",
        "@\u2060room",
        "@ro\u00adom",
        "＠room",  # full-width at sign
        "﹫room",  # small at sign
        "@rооm",  # Cyrillic o
        "@ʀᴏᴏᴍ",  # small capitals
        "@ｒｏｏｍ",
        "@r\u0301oom",
    ],
)
def test_room_mention_variants(body: str) -> None:
    assert says_room(body)
    assert rule_of(text(body)) == "mentions:room"


@pytest.mark.parametrize("body", ["a @ room", "@ro om", "@ bob room"])
def test_room_mention_needs_the_word(body: str) -> None:
    assert not says_room(body)


# -- legacy highlights fold case as Synapse's case-insensitive match ----------------------


def test_legacy_highlights_fold_case_like_synapse() -> None:
    members = MemberIndex(
        [("@a:x", "Νίκος"), ("@b:x", "ǅemal"), ("@c:x", "Ünal"), ("@d:x", "Ωmega")]
        + [(f"@e{i}:x", None) for i in range(3)]
    )
    # Final and medial sigma, titlecase digraphs: one case-insensitive class each.
    assert members.named_in("νίκοσ") == {"@a:x"}
    assert members.named_in("ΝΊΚΟΣ ǆemal ÜNAL ωMEGA e0 e1") == {
        "@a:x",
        "@b:x",
        "@c:x",
        "@d:x",
        "@e0:x",
        "@e1:x",
    }
    assert rule_of(text("νίκοσ ǆemal ünal ωmega e0 e1"), members=members) == "mentions:users"


# -- Unicode: marks of any combining class, format characters, boxed letters ----------------

FOLDING_VARIANTS = [
    "bad\u20e3word",  # combining enclosing keycap (combining class 0)
    "b\u20dda\u20ddd\u20ddw\u20ddo\u20ddr\u20ddd\u20dd",  # enclosing circles
    "b\u20dea\u20ded\u20dew\u20deo\u20der\u20ded\u20de",  # enclosing squares
    "bad\u0903word",  # a spacing mark
    "bad\ufff9word",  # interlinear annotation anchor (Cf, not default-ignorable)
    "bad\U00013430word",  # Egyptian hieroglyph format control
    "🅑🅐🅓🅦🅞🅡🅓",  # negative circled
    "🅱🅰🅳🆆🅾🆁🅳",  # negative squared
    "🄱🄰🄳🅆🄾🅁🄳",  # squared
    "⒝⒜⒟⒲⒪⒭⒟",  # parenthesized (NFKD would make "(b)(a)...")
    "🇧\u200b🇦\u200b🇩\u200b🇼\u200b🇴\u200b🇷\u200b🇩",  # regional indicators, kept apart
    "ⓑⓐⓓⓦⓞⓡⓓ",
    "🅵🆁🅴🅴 🅲🆁🆈🅿🆃🅾",
    "⒡⒭⒠⒠ ⒞⒭⒴⒫⒯⒪",
]


@pytest.mark.parametrize("body", FOLDING_VARIANTS)
def test_unicode_folding_variants(body: str) -> None:
    assert rule_of(text(body)) == "keywords:blocked words"
    assert fold(fold(body)) == fold(body)


@pytest.mark.parametrize("name", ["🅑🅐🅓🅦🅞🅡🅓", "⒝⒜⒟⒲⒪⒭⒟", "bad\u20e3word"])
def test_display_names_fold_boxed_letters(name: str) -> None:
    v = COMMUNITY.check_display_name(name)
    assert v is not None and v.rule == "keywords:blocked words"


@pytest.mark.parametrize(
    "body",
    ["नमस्ते, आप कैसे हैं?", "สวัสดีครับ", "வணக்கம்", "1️⃣ 2️⃣ #️⃣", "🇫🇷 🇩🇪 🇯🇵 🇺🇸", "Ⓒ 2026 ⓘ info"],
)
def test_marks_and_boxed_letters_do_not_cause_false_positives(body: str) -> None:
    assert rule_of(text(body)) is None


# -- HTML: read as a browser AND as a sanitizing client renders it --------------------------

HTML_VARIANTS = [
    "bad<!-- x -->word",  # a comment shows as nothing
    "bad<!---->word",
    "bad<span title='x'></span>word",  # a tooltip is not in the line
    "bad<img alt='x' src='mxc://a/b'>word",
    "bad<img alt='word' src='mxc://a/b'>",  # alt text replaces a broken image
    "bad<section></section>word",  # clients strip tags outside the Matrix subset
    "bad<article>word</article>",
    "bad<dl></dl>word",
    "bad<option></option>word",
    "spam<template>coin</template>",  # a sanitizer keeps the template's text inline
    "bad<template>x</template>word",  # a browser shows no template content
    "bad<title>x</title>word",
    "bad<mx-reply>x</mx-reply>word",  # clients strip the reply fallback
    "<ruby>bad<rt>x</rt>word</ruby>",  # the annotation is above, not between
    "bad<script>x</script>word",
    "<bdo dir='rtl'>drowdab</bdo>",  # drawn right to left, as with U+202E
    "<BDO DIR=RTL>drow<b>dab</b></BDO>",
]


@pytest.mark.parametrize("markup", HTML_VARIANTS)
def test_html_every_reading(markup: str) -> None:
    content = text("hello", format="org.matrix.custom.html", formatted_body=markup)
    assert rule_of(content) == "keywords:blocked words"


@pytest.mark.parametrize(
    "markup",
    ["bad<p></p>word", "bad<br>word", "<ul><li>bad</li><li>word</li></ul>", "bad<hr>word"],
)
def test_html_spec_blocks_still_separate_words(markup: str) -> None:
    content = text("hello", format="org.matrix.custom.html", formatted_body=markup)
    assert rule_of(content) is None


# -- links: bare IPv4 addresses (Android's Linkify links them) ------------------------------


@pytest.mark.parametrize(
    "body",
    ["see 127.0.0.1", "go to 192.168.0.1:8080/login", "8.8.8.8/x", "(10.0.0.1)", "ip=1.2.3.4,"],
)
def test_bare_ipv4_is_a_link(body: str) -> None:
    assert rule_of(text(body)) == "links:domain"


@pytest.mark.parametrize(
    "body", ["version 1.2.3 is out", "v1.2.3.4", "10.0.0.256", "1.2.3.4.5", "pi is 3.14159"]
)
def test_numbers_with_dots_are_not_ipv4_links(body: str) -> None:
    assert rule_of(text(body)) is None


# -- phrases: the words joined, or joined by an invisible or punctuation separator ---------


@pytest.mark.parametrize(
    "body",
    [
        "freecrypto",
        "free\u200bcrypto",
        "free\u2060crypto",
        "free\u180ecrypto",
        "free-crypto",
        "free_crypto",
        "free.crypto",
        "#FreeCrypto",
        "ꜰʀᴇᴇ\u200bᴄʀʏᴘᴛᴏ",
    ],
)
def test_phrase_keyword_spellings(body: str) -> None:
    assert rule_of(text(body)) == "keywords:blocked words"


def test_phrase_spellings_keep_word_boundaries() -> None:
    assert rule_of(text("carefree cryptography")) is None
    assert rule_of(text("freecryptography")) is None


# -- links: hosts with emoji, symbols or marks (IDNA maps them; linkifiers link them) -------


@pytest.mark.parametrize(
    "body",
    ["see 💩.la now", "i❤.ws", "evil❤.com", "👍.com", "evil\u0338.com", "go i♥thephenom.app"],
)
def test_symbol_and_emoji_hosts_are_links(body: str) -> None:
    assert rule_of(text(body)) == "links:domain"


@pytest.mark.parametrize(
    "body",
    ["«thephenom.app»", "“thephenom.app”", "see thephenom.app👍", "👍 thephenom.app", "ça va"],
)
def test_symbols_around_an_allowed_host_stay_allowed(body: str) -> None:
    assert rule_of(text(body)) is None


# -- length: nothing past max_scan_chars goes unread ----------------------------------------


def test_text_past_max_scan_chars_is_refused_not_cut() -> None:
    policy = ModerationConfig.model_validate(default_module_config()).policies["community"]
    small = CompiledPolicy("community", policy, max_scan_chars=1024)
    tail = "x " * 600 + "badword"
    for content in (
        text(tail),
        text("hi", format="org.matrix.custom.html", formatted_body=f"<p>{tail}</p>"),
        text("hi", **{"m.new_content": {"body": "y " * 600 + "https://evil.com"}}),
    ):
        v = small.check("m.room.message", content)
        assert v is not None and v.rule == "unreadable", content
    assert small.check("m.room.message", text("x " * 500)) is None
    v = small.check_display_name("n" * 1100 + " badword")
    assert v is not None and v.rule == "unreadable"


# -- the audit row stores any user text (PostgreSQL refuses NUL) ----------------------------


def test_audit_row_text_is_always_storable() -> None:
    from synapse_phenom.moderation import store

    assert store._storable("https://evil.com/\x00x") == "https://evil.com/\ufffdx"
    assert store._storable("bad\ud800") == "bad?"
    assert store._storable(5) == 5
    v = COMMUNITY.check("m.room.message", text("see https://evil.com/\x00x"))
    assert v is not None and v.rule == "links:domain"
    assert "\x00" not in store._storable(v.detail)


# -- capitals imitate other Latin letters than their lower case (Greek capital beta is a B) --


@pytest.mark.parametrize(
    "body",
    ["ΒΑDWΟRD", "ВАDWОRD", "ΒΑⅮWΟRD", "SСАМ", "ЅСАМ now", "FREE СRYРТО", "ꓐꓮꓓꓪꓳꓣꓓ", "ΒΑDWΟRD!"],
)
def test_capital_look_alikes(body: str) -> None:
    assert rule_of(text(body)) == "keywords:blocked words"
    assert fold(fold(body)) == fold(body)


@pytest.mark.parametrize(
    "body",
    ["ПРИВЕТ, КАК ДЕЛА?", "ΚΑΛΗΜΕΡΑ ΣΑΣ, ΤΙ ΚΑΝΕΤΕ;", "ДОБРИЙ ДЕНЬ", "İSTANBUL'DA ŞEHİR", "STRAẞE"],
)
def test_capital_scripts_stay_allowed(body: str) -> None:
    assert rule_of(text(body)) is None
