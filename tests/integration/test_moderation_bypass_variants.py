"""Issue 9, second adversarial pass, through the real Synapse: variants of the bypass
classes the first fixes missed (tests/unit/test_moderation_variants.py has more of each)."""

# ruff: noqa: RUF001  (look-alike characters are the point of these tests)

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import MatrixClient, SynapseStack, eventually

from synapse_phenom.ops import hsconfig

pytestmark = pytest.mark.synapse


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


def plain_users(synapse: SynapseStack) -> Iterator[MatrixClient]:
    """Fresh plain users, each refused at most four times (the fifth refusal mutes)."""
    while True:
        user = synapse.register()
        for _ in range(4):
            yield user


def refused_by(synapse: SynapseStack, cases: list[tuple[dict[str, Any], str]]) -> None:
    room = synapse.rooms["community"]
    users = plain_users(synapse)
    failures = []
    for content, rule in cases:
        resp = next(users).send_raw(room, content)
        got = resp.json().get("app.phenom.moderation.rule", "") if resp.status_code != 200 else ""
        if resp.status_code != 403 or not got.startswith(rule):
            failures.append((content, resp.status_code, resp.text[:200]))
    assert not failures, failures


def test_legacy_mention_rules_are_not_switched_off_by_a_nested_m_mentions(
    synapse: SynapseStack,
) -> None:
    """Synapse applies its legacy body rules unless the TOP-LEVEL content has m.mentions."""
    room = synapse.rooms["community"]
    members = [synapse.register() for _ in range(6)]
    sender = synapse.register()
    assert sender.send_raw(room, text("hello")).status_code == 200
    names = "hi " + " ".join(m.localpart for m in members)
    nested = {"m.new_content": {"msgtype": "m.text", "body": "x", "m.mentions": {}}}
    refused_by(
        synapse,
        [
            (text(names, x={"m.mentions": {}}), "mentions:users"),
            (text(names, **nested), "mentions:users"),
            (text("@room look", x={"m.mentions": {}}), "mentions:room"),
            (text("@ROOM look"), "mentions:room"),
            (text("@r\u200boom look"), "mentions:room"),
            (text("＠room look"), "mentions:room"),
        ],
    )
    # A top-level m.mentions still turns the legacy rules off, as in Synapse.
    assert sender.send_raw(room, text(names, **{"m.mentions": {}})).status_code == 200


def test_boxed_letters_and_marks_fold_to_the_keyword(synapse: SynapseStack) -> None:
    refused_by(
        synapse,
        [
            (text("🅑🅐🅓🅦🅞🅡🅓"), "keywords"),
            (text("⒝⒜⒟⒲⒪⒭⒟"), "keywords"),
            (text("🇧\u200b🇦\u200b🇩\u200b🇼\u200b🇴\u200b🇷\u200b🇩"), "keywords"),
            (text("bad\u20e3word"), "keywords"),
            (text("b\u20dda\u20ddd\u20ddw\u20ddo\u20ddr\u20ddd\u20dd"), "keywords"),
            (text("bad\ufff9word"), "keywords"),
            (text("ΒΑDWΟRD"), "keywords"),  # Greek capitals
            (text("SСАМ"), "keywords"),  # Cyrillic capitals
        ],
    )


def test_html_read_as_browsers_and_sanitizing_clients_show_it(synapse: SynapseStack) -> None:
    def html(markup: str) -> dict[str, Any]:
        return text("hello", format="org.matrix.custom.html", formatted_body=markup)

    refused_by(
        synapse,
        [
            (html("bad<!-- x -->word"), "keywords"),
            (html("bad<img alt='word' src='mxc://a/b'>"), "keywords"),
            (html("bad<section></section>word"), "keywords"),
            (html("spam<template>coin</template>"), "keywords"),
            (html("bad<mx-reply>x</mx-reply>word"), "keywords"),
            (html("<bdo dir='rtl'>drowdab</bdo>"), "keywords"),
            (text("log in at 192.168.0.1:8080/login"), "links:domain"),
            (text("see 💩.la now"), "links:domain"),
            (text("evil❤.com"), "links:domain"),
            (text("free\u200bcrypto"), "keywords"),
            (text("#FreeCrypto"), "keywords"),
        ],
    )


def test_rewrite_mode_checks_membership_reasons_and_mutes(tmp_path: Path) -> None:
    """display_names: rewrite (check_event_allowed sees member events): a reason shown in
    the timeline that breaks the room's rules is removed, the membership change still
    happens; a muted user's membership events other than leaving are refused."""
    stack = SynapseStack.start(
        tmp_path / "rewrite",
        hsconfig.DevDatabase(),
        module_overrides={hsconfig.MODERATION_MODULE: {"display_names": "rewrite"}},
    )
    try:
        room = stack.rooms["community"]
        user, team = stack.register(), stack.register()
        with stack.admin() as admin:
            admin.provision(team.user_id, ["team"])

        def member() -> dict[str, Any]:
            return dict(team.state(room, "m.room.member", user.user_id).json())

        leave = f"/_matrix/client/v3/rooms/{room}/leave"
        user.call("POST", leave, json={"reason": "free crypto at evil.com"})
        gone = eventually(lambda: member().get("membership") == "leave" and member())
        assert "reason" not in gone, gone
        user.call(
            "POST",
            f"/_matrix/client/v3/rooms/{room}/join",
            json={"reason": "ʙᴀᴅᴡᴏʀᴅ https://evil.com"},
        )
        back = eventually(lambda: member().get("membership") == "join" and member())
        assert "reason" not in back, back
        user.call("POST", leave, json={"reason": "see you"})  # a clean reason stays
        clean = eventually(lambda: member().get("membership") == "leave" and member())
        assert clean.get("reason") == "see you", clean
        user.call("POST", f"/_matrix/client/v3/rooms/{room}/join", json={})
        for i in range(5):
            user.send_raw(room, text(f"badword {i}"))
        user.call(
            "PUT",
            f"/_matrix/client/v3/profile/{user.user_id}/displayname",
            json={"displayname": "renamed while muted"},
        )
        time.sleep(1)
        assert member().get("displayname") != "renamed while muted", member()
        user.call("POST", leave, json={})
    finally:
        stack.stop()


def test_a_muted_user_cannot_rename_in_the_room_but_can_leave(synapse: SynapseStack) -> None:
    """(Per-room names are off: allow_per_room_profiles: false. A global rename reaches the
    room through a join membership update, which the mute refuses.)"""
    room = synapse.rooms["community"]
    user = synapse.register()
    for i in range(5):
        user.send_raw(room, text(f"badword {i}"))
    assert user.send_raw(room, text("clean")).json().get("app.phenom.moderation.rule") == "mute"
    # A profile change reaches every room but this one (given time to propagate).
    user.call(
        "PUT",
        f"/_matrix/client/v3/profile/{user.user_id}/displayname",
        json={"displayname": "renamed while muted"},
    )
    time.sleep(1)
    assert user.state(room, "m.room.member", user.user_id).json().get("displayname") != (
        "renamed while muted"
    )
    user.call("POST", f"/_matrix/client/v3/rooms/{room}/leave", json={})
    # Leaving works; coming back waits for the end of the mute.
    rejoin = user.request("POST", f"/_matrix/client/v3/rooms/{room}/join", json={})
    assert rejoin.status_code == 403, rejoin.text
    assert rejoin.json().get("app.phenom.moderation.rule") == "mute", rejoin.text


def test_user_text_in_the_audit_row_never_turns_a_refusal_into_an_accept(
    synapse: SynapseStack,
) -> None:
    """The audit row holds user text (a link, a msgtype, the event type): characters the
    database cannot store (NUL on PostgreSQL) must neither fail the check open nor lose
    the audit row."""
    six = {"m.mentions": {"user_ids": [f"@u{i}:localhost" for i in range(6)]}}
    users = plain_users(synapse)
    room = synapse.rooms["community"]
    for event_type, content, rule in [
        ("m.room.message", text("see https://evil.com/\u0000x"), "links:domain"),
        ("m.room.message", text("see evil.com/\u0000"), "links:domain"),
        ("org.example%00x", six, "mentions:users"),  # (percent-encoded in the path)
    ]:
        user = next(users)
        path = f"/_matrix/client/v3/rooms/{room}/send/{event_type}/nul{time.time_ns()}"
        resp = user.request("PUT", path, json=content)
        assert resp.status_code == 403, (event_type, resp.status_code, resp.text)
        assert resp.json().get("app.phenom.moderation.rule") == rule, resp.text
