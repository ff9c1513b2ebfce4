"""Moderation core without Synapse: normalisation, matching, extraction, every rule."""

# ruff: noqa: RUF001  (look-alike characters are the point of these tests)

# mypy: disable-error-code="union-attr"
# (attribute access on an Optional result: None fails the test with AttributeError)
from __future__ import annotations

import sqlite3
import time
from typing import Any

import attrs
import pytest
from synapse.module_api.errors import ConfigError

from synapse_phenom.config import InvalidConfig
from synapse_phenom.moderation import store
from synapse_phenom.moderation.config import (
    ModerationConfig,
    RoomPolicy,
    default_module_config,
    merge_live_policy,
)
from synapse_phenom.moderation.extract import extract
from synapse_phenom.moderation.keywords import KeywordMatcher, Mode, parse
from synapse_phenom.moderation.links import classify, domain_matches, find_urls
from synapse_phenom.moderation.normalize import fold
from synapse_phenom.moderation.rules import (
    BanList,
    BanRule,
    CompiledPolicy,
    flood_decision,
    mute_violation,
)
from synapse_phenom.modules.moderation import PhenomModeration


def policy(**raw: Any) -> CompiledPolicy:
    return CompiledPolicy("test", RoomPolicy.model_validate(raw))


def msg(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


def test_fold_defeats_unicode_and_spelling_tricks() -> None:
    assert fold("ＳＰＡＭ") == "spam"  # full-width
    assert fold("s\u200bp\u200da\u2060m\u00ad") == "spam"  # zero-width / format chars
    assert fold("ѕраm") == "spam"  # Cyrillic homoglyphs
    assert fold("𝐬𝐩𝐚𝐦") == "spam"  # maths letters
    assert fold("5P4M") == "spam"  # leetspeak + case
    assert fold("spàm") == "spam"  # accents
    assert fold("Straße") == "strasse"  # case folding
    assert fold("a \t\n  b") == "a b"
    assert fold("wow!") == "wow!"  # punctuation kept: it ends words
    assert fold(fold("Ѕ𝐩4m")) == fold("Ѕ𝐩4m")


def test_keyword_modes_phrases_and_allow_list() -> None:
    assert parse("word") == ("word", Mode.WORD)
    assert parse("word*") == ("word", Mode.PREFIX)
    assert parse("*word") == ("word", Mode.SUFFIX)
    assert parse("*word*") == ("word", Mode.ANYWHERE)
    m = KeywordMatcher(
        [(["spam", "scam*", "*coin", "*ass*", "buy now"], ["class*", "pass"]), (["other"], [])]
    )

    def hit(text: str) -> str | None:
        found = m.find(fold(text))
        return found.keyword if found else None

    assert hit("this is spam!") == "spam"
    assert hit("spammy") is None and hit("antispam") is None  # whole word only
    assert hit("SCAMMER") == "scam*" and hit("notascam") is None
    assert hit("bitcoin") == "*coin" and hit("coins") is None
    assert hit("bass") == "*ass*"
    assert hit("classic") is None and hit("pass it") is None  # allow list, same rule
    assert hit("BUY   NOW") == "buy now" and hit("buy nowhere") is None
    assert hit("s\u200bp4m") == "spam" and hit("ѕраm") == "spam"
    assert hit("other") == "other"
    assert KeywordMatcher([]).find("anything") is None


def test_regexes_run_in_linear_time() -> None:
    p = policy(
        regexes=[{"name": "evil", "pattern": "(a+)+$"}, {"name": "digits", "pattern": r"\d{16}"}]
    )
    text = "a" * 60_000 + "!"
    started = time.perf_counter()
    assert p.check("m.room.message", msg(text)) is None
    assert time.perf_counter() - started < 0.05  # stdlib re would take longer than the universe
    v = p.check("m.room.message", msg("card 1234567812345678"))
    assert v is not None and v.rule == "regex:digits" and "1234" not in v.message
    with pytest.raises(ValueError, match="RE2 cannot compile"):
        RoomPolicy.model_validate({"regexes": [{"name": "x", "pattern": "(?<=a)b"}]})


def test_links_classified_and_domains_matched() -> None:
    assert classify("https://matrix.to/#/#room:server").kind == "room"
    assert classify("https://matrix.to/#/!id:server/$event").kind == "room"
    assert classify("https://matrix.to/#/@alice:server").kind == "user"
    assert (
        classify("matrix:r/room:server").kind == "room"
        and classify("matrix:u/alice:server").kind == "user"
    )
    assert classify("www.Example.COM/path").host == "www.example.com"
    # URLs Python cannot parse are still links, judged by their host text (never an exception).
    assert classify("http://[").host == "" and classify("http://[").kind == "web"
    assert classify("http://u@[Blocked.example:80/x").host == "blocked.example"
    assert classify("https://[::1").host == "::1"
    assert domain_matches("cdn.thephenom.app", ["thephenom.app"])
    assert not domain_matches("thephenom.app.evil.com", ["thephenom.app"])
    assert not domain_matches("notthephenom.app", ["thephenom.app"])
    assert domain_matches("thephenоm.app", ["thephenom.app"], lookalikes=True)  # block lists
    assert not domain_matches("thephenоm.app", ["thephenom.app"])  # allow lists: someone else's
    found = find_urls("see evil.com, https://x.io/a, WWW.A.B/c and matrix:r/a:b")
    assert sorted(found) == sorted(["evil.com", "https://x.io/a,", "WWW.A.B/c", "matrix:r/a:b"])
    assert find_urls("ask @alice:matrix.org or bob@mail.com") == []  # user IDs, e-mail
    assert find_urls("http://127.0.0.1:8080/x sub.thephenom.app:8443/y") == [
        "http://127.0.0.1:8080/x",
        "sub.thephenom.app:8443/y",
    ]
    assert find_urls("no links here") == [] and find_urls("version 1.2.3 e.g. this") == []


def test_link_policy() -> None:
    allow = policy(links={"mode": "allow", "domains": ["thephenom.app"], "block_room_links": True})
    assert (
        allow.check("m.room.message", msg("https://thephenom.app/x and www.thephenom.app")) is None
    )
    assert allow.check("m.room.message", msg("http://127.0.0.1:8080/page")).rule == "links:domain"
    assert allow.check("m.room.message", msg("https://thephenоm.app/x")).rule == "links:domain"
    assert allow.check("m.room.message", msg("join https://matrix.to/#/#x:y")).rule == "links:room"
    pill = '<a href="https://matrix.to/#/@a:b">A</a>'
    assert (
        allow.check(
            "m.room.message", msg("A", format="org.matrix.custom.html", formatted_body=pill)
        )
        is None
    )
    block = policy(links={"mode": "block", "domains": ["evil.example"]})
    assert block.check("m.room.message", msg("https://good.example")) is None
    assert block.check("m.room.message", msg("visit evil.example today")).rule == "links:domain"
    assert (
        block.check("m.room.message", msg("visit еvil.example")).rule == "links:domain"
    )  # homoglyph
    assert policy().check("m.room.message", msg("http://127.0.0.1:9/x https://any.example")) is None


def test_mentions() -> None:
    p = policy(mentions={"max_user_mentions": 2, "allow_room_mention": False})
    assert (
        p.check("m.room.message", msg("hi", **{"m.mentions": {"user_ids": ["@a:x", "@b:x"]}}))
        is None
    )
    three = msg("hi @c:x", **{"m.mentions": {"user_ids": ["@a:x", "@b:x"]}})
    assert p.check("m.room.message", three).rule == "mentions:users"
    pills = "".join(f'<a href="https://matrix.to/#/@{n}:x">{n}</a>' for n in "abc")
    assert p.check("m.room.message", msg("a b c", formatted_body=pills)).rule == "mentions:users"
    assert p.check("m.room.message", msg("@room hi")).rule == "mentions:room"
    assert (
        p.check("m.room.message", msg("hi", **{"m.mentions": {"room": True}})).rule
        == "mentions:room"
    )
    # With m.mentions present, "@room" typed in the body does not notify anyone.
    assert p.check("m.room.message", msg("about @room", **{"m.mentions": {}})) is None


def test_media_and_new_accounts() -> None:
    p = policy(
        media={
            "allowed_msgtypes": ["m.text", "m.image"],
            "allowed_mimetypes": ["image/*"],
            "max_size_bytes": 100,
            "allow_stickers": False,
        },
        new_accounts={"min_age_seconds": 60},
    )
    img = {
        "msgtype": "m.image",
        "body": "x",
        "url": "mxc://a/b",
        "info": {"mimetype": "image/png", "size": 10},
    }
    assert p.check("m.room.message", img) is None
    assert (
        p.check("m.room.message", {**img, "info": {"mimetype": "video/mp4"}}).rule
        == "media:mimetype"
    )
    assert (
        p.check("m.room.message", {**img, "info": {"mimetype": "image/png", "size": 101}}).rule
        == "media:size"
    )
    assert p.check("m.room.message", {"msgtype": "m.video", "body": "v"}).rule == "media:msgtype"
    assert p.check("m.sticker", {"body": "s", "url": "mxc://a/s"}).rule == "media:sticker"
    edit = msg("* x", **{"m.new_content": {**img, "info": {"mimetype": "text/html"}}})
    assert p.check("m.room.message", edit).rule == "media:mimetype"
    soon = time.time() + 30
    assert p.check("m.room.message", img, new_account_until_s=soon).rule == "new_accounts:media"
    assert (
        p.check("m.room.message", msg("x.com"), new_account_until_s=soon).rule
        == "new_accounts:links"
    )
    assert p.check("m.room.message", msg("hello"), new_account_until_s=soon) is None


def test_extraction_covers_every_field() -> None:
    content = {
        "msgtype": "m.text",
        "body": "b",
        "format": "org.matrix.custom.html",
        "formatted_body": '<p>h<i>t</i>ml</p><a href="https://l.example/">x</a>',
        "m.new_content": {"msgtype": "m.notice", "body": "edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e", "key": "reaction"},
        "m.text": [{"mimetype": "text/html", "body": "<b>ext</b>"}, {"body": "plain"}],
        "url": "mxc://server/media",
        "m.mentions": {"user_ids": ["@u:x"]},
    }
    e = extract("m.room.message", content)
    assert {"b", "edited", "reaction", "plain"} <= set(e.texts)
    assert any("html" in t for t in e.texts) and any("ext" in t for t in e.texts)
    assert e.hrefs == ["https://l.example/"] and e.user_mentions == {"@u:x"}
    assert "$e" not in e.texts and not any(t.startswith("mxc:") for t in e.texts)
    assert e.msgtypes == ["m.text", "m.notice"]
    name = policy(keywords=[{"keywords": ["bad"]}])
    assert name.check("m.room.name", {"name": "so bad"}, is_state=True) is not None
    assert name.check("m.room.power_levels", {"users": {"@bad:x": 1}}, is_state=True) is None
    assert name.check_display_name("BAD guy").rule == "keywords:blocked words"
    # Element shows a redaction's reason: it is text like any other.
    assert name.check("m.room.redaction", {"reason": "bad"}) is not None
    # Junk where a msgtype is expected must not make the check raise.
    for junk in ({"a": 1}, ["m.image"]):
        assert (
            name.check(
                "m.room.message", {"msgtype": "m.text", "body": "bad", "x": {"msgtype": junk}}
            )
            is not None
        )


def test_flood_decision_sliding_window() -> None:
    w = 10_000
    assert flood_decision(0, 10, 5_000, w, 10).allowed
    refused = flood_decision(0, 11, 5_000, w, 10)
    assert not refused.allowed and 0 < refused.retry_after_ms <= 2 * w
    # Previous bucket full, half of it still in the window: 5 + 5 fits, 5 + 6 does not.
    assert flood_decision(10, 5, 15_000, w, 10).allowed
    late = flood_decision(10, 6, 15_000, w, 10)
    assert not late.allowed and 0 < late.retry_after_ms <= w


def test_ban_list_globs() -> None:
    rules = BanList.from_state(
        "#bans:x",
        [
            (
                "m.policy.rule.user",
                {"entity": "@spam*:evil.org", "recommendation": "m.ban", "reason": "spam"},
            ),
            ("m.policy.rule.user", {"entity": "@one:x", "recommendation": "m.ban"}),
            ("m.policy.rule.user", {"entity": "@*:*", "recommendation": "org.example.other"}),
            ("m.policy.rule.room", {"entity": "!r:x", "recommendation": "m.ban"}),
        ],
    )
    bans = BanList(rules)
    assert bans.match("@spammer:evil.org") == BanRule("@spam*:evil.org", "spam", "#bans:x")
    assert bans.match("@one:x") is not None
    assert bans.match("@one:xx") is None and bans.match("@good:evil.org") is None
    assert BanList([]).match("@a:b") is None


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"policies\.community\.flood\.messages"):
        PhenomModeration.parse_config(
            {"policies": {"community": {"flood": {"messages": 0, "per_seconds": 1}}}}
        )
    with pytest.raises(ConfigError, match=r"policies\.default\.links\.mode"):
        PhenomModeration.parse_config({"policies": {"default": {"links": {"mode": "sometimes"}}}})
    with pytest.raises(ConfigError, match=r"ban_lists"):
        PhenomModeration.parse_config({"ban_lists": ["bans"]})
    config = ModerationConfig.model_validate(default_module_config())
    assert set(config.policies) == {"community", "partners", "internal", "default"}
    assert (
        ModerationConfig.model_validate({"policies": {"community": {}}}).policies["default"]
        == RoomPolicy()
    )


def test_merge_live_policy() -> None:
    base = RoomPolicy.model_validate(
        {"flood": {"messages": 5, "per_seconds": 5}, "keywords": [{"keywords": ["x"]}]}
    )
    merged = merge_live_policy(base, {"keywords": [{"keywords": ["y"]}]})
    assert merged.flood == base.flood and merged.keywords[0].keywords == ["y"]
    assert merge_live_policy(base, {}) == base
    with pytest.raises(InvalidConfig, match=r"app\.phenom\.moderation\.policy\.flood\.per_seconds"):
        merge_live_policy(base, {"flood": {"messages": 1, "per_seconds": -1}})
    with pytest.raises(InvalidConfig, match="only be set in the module config"):
        merge_live_policy(base, {"live_policy_power_level": 0})


def test_live_policy_cannot_redirect_notices() -> None:
    # Any user is the creator (top power) of rooms they create: a live policy there must
    # not make the system user post notices into #internal or any other room it is in.
    base = RoomPolicy()
    for target in ("partners", "!secret:hs", "#internal:hs", None):
        with pytest.raises(
            InvalidConfig, match=r"notify_room: can only be set in the module config"
        ):
            merge_live_policy(base, {"notify_room": target})


class _Txn:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._cur = conn.cursor()

    def execute(self, sql: str, args: Any = ()) -> None:
        self._cur.execute(sql, args)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> Any:
        return self._cur.fetchall()


def test_store_flood_mute_and_audit() -> None:
    txn = _Txn(sqlite3.connect(":memory:"))
    store.create_schema(txn)
    now = 1_000_000_000_000
    results = [store.gate(txn, "@u:x", "!r:x", now + i, (10_000, 3)) for i in range(4)]
    assert [r.flood.allowed for r in results if r.flood] == [True, True, True, False]
    # The refused message was not counted: still refused, not escalating the count.
    assert not store.gate(txn, "@u:x", "!r:x", now + 5, (10_000, 3)).flood.allowed
    assert store.gate(txn, "@other:x", "!r:x", now, (10_000, 3)).flood.allowed
    row = store.AuditRow(
        now, "!r:x", "@u:x", "community", "keywords:k", "block", "m.room.message", "kw"
    )
    assert store.record(txn, row, (2, 60_000, 30_000)) is None
    until = store.record(txn, attrs.evolve(row, ts=now + 1), (2, 60_000, 30_000))
    assert until == now + 1 + 30_000
    assert store.gate(txn, "@u:x", "!r:x", now + 2, None).muted_until == until
    rows = store.list_audit(txn, user_id="@u:x")
    assert [r.action for r in rows] == ["mute", "block", "block"]
    assert (
        store.list_audit(txn, room_id="!other:x") == []
        and len(store.list_audit(txn, since_ms=now + 1)) == 2
    )
    store.cleanup(txn, now + 10 * 86_400_000)
    assert store.gate(txn, "@u:x", "!r:x", now + 10 * 86_400_000, None).muted_until is None


def test_rule_names_are_plain_text() -> None:
    """Names reach moderators' notices in #internal: no markup, newlines or essays."""
    from pydantic import ValidationError

    from synapse_phenom.moderation.config import RoomPolicy

    RoomPolicy.model_validate({"keywords": [{"name": "scam links v2", "keywords": ["x"]}]})
    for bad in ("<a href='https://evil'>click</a>", "line\nbreak", "x" * 49, ""):
        with pytest.raises(ValidationError):
            RoomPolicy.model_validate({"keywords": [{"name": bad, "keywords": ["x"]}]})
        with pytest.raises(ValidationError):
            RoomPolicy.model_validate({"regexes": [{"name": bad, "pattern": "x"}]})


def test_flood_and_card_refusals_never_escalate_and_mutes_carry_their_expiry() -> None:
    txn = _Txn(sqlite3.connect(":memory:"))
    store.create_schema(txn)
    now = 1_000_000_000_000
    esc = (2, 60_000, 30_000)
    row = store.AuditRow(now, "!r:x", "@u:x", "community", "flood", "block", "m.room.message", "")
    for i in range(10):  # an offline queue flushed at once
        assert store.record(txn, attrs.evolve(row, ts=now + i), esc) is None
    card = attrs.evolve(row, ts=now + 20, rule="preview_card")
    assert store.record(txn, card, esc) is None
    keyword = attrs.evolve(row, ts=now + 30, rule="keywords:k")
    assert store.record(txn, keyword, esc) is None  # the first real violation, not the 12th
    until = store.record(txn, attrs.evolve(keyword, ts=now + 31), esc)
    assert until == now + 31 + 30_000
    body = mute_violation(until, now + 1031).error_dict()
    assert body["app.phenom.moderation.rule"] == "mute"
    assert body["app.phenom.moderation.muted_until_ms"] == until
    assert body["retry_after_ms"] == until - (now + 1031)
