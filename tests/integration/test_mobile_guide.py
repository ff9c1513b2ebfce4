"""Every code block of docs/mobile-integration.md runs, against the real Synapse (issue 16, item 2).

JavaScript blocks (```js title=NAME) run under Node with the matrix-js-sdk pinned in
tools/matrix-js-sdk (``npm ci`` there; scripts/test does it). Each run loads ALL of the guide's
JavaScript blocks as one module, then a driver below calls the functions of block NAME against
the shared test Synapse and prints a JSON result the test checks. XML blocks (platform config)
are parsed and checked. A block with no driver or check fails the first test: the guide cannot
grow code that is not run.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import plistlib
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2
import pytest
from fixtures_cognito import CognitoEmulator
from harness import MatrixClient, SynapseStack, eventually, unique
from mobile_guide_drivers import DRIVER_HELPERS, DRIVERS
from previews_site import LOGO, PhenomSite

pytestmark = pytest.mark.synapse

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "mobile-integration.md"
SDK_DIR = ROOT / "tools" / "matrix-js-sdk"
NODE = SDK_DIR / "node_modules" / ".bin" / "node"
SDK_ENTRY = SDK_DIR / "node_modules" / "matrix-js-sdk" / "lib" / "index.js"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.M | re.S)
RESULT = "PHENOM-GUIDE-RESULT "


def guide_blocks() -> list[tuple[str, str, str]]:
    """(language, title, code) of every fenced block, in order."""
    out = []
    for lang, info, code in FENCE.findall(GUIDE.read_text()):
        title = re.search(r"title=(\S+)", info)
        out.append((lang, title.group(1) if title else "", code))
    return out


def js_blocks() -> dict[str, str]:
    return {title: code for lang, title, code in guide_blocks() if lang == "js"}


def run_js(tmp_path: Path, title: str, env: dict[str, Any], timeout: float = 120) -> Any:
    """Run the guide's JS with the driver of ``title``; return the driver's result."""
    if not NODE.exists() or not SDK_ENTRY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SDK_DIR}/node_modules missing: scripts/test runs `npm ci` there")
        pytest.skip(f"matrix-js-sdk not installed (needs npm: `cd {SDK_DIR} && npm ci`)")
    module = "\n".join(
        [
            f"import * as sdk from {json.dumps(SDK_ENTRY.as_uri())};",
            f"import {{ logger }} from {json.dumps(SDK_ENTRY.with_name('logger.js').as_uri())};",
            'logger.setLevel?.("silent");',
            "const env = JSON.parse(process.env.PHENOM_GUIDE_ENV);",
            *js_blocks().values(),
            DRIVER_HELPERS,
            "const result = await (async () => {",
            DRIVERS[title],
            "})();",
            f"console.log({json.dumps(RESULT)} + JSON.stringify(result));",
            "process.exit(0);",
        ]
    )
    script = tmp_path / f"{title}.mjs"
    script.write_text(module)
    proc = subprocess.run(
        [str(NODE), str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PHENOM_GUIDE_ENV": json.dumps(env)},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    assert proc.returncode == 0 and lines, (
        f"{title}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return json.loads(lines[-1][len(RESULT) :])


def check_ios_ats(code: str) -> None:
    plist = plistlib.loads(code.encode())
    assert plist["NSAppTransportSecurity"] == {"NSAllowsLocalNetworking": True}
    assert plist["NSLocalNetworkUsageDescription"]


def check_android_cleartext(code: str) -> None:
    root = ET.fromstring(code)
    assert root.tag == "network-security-config"
    (config,) = root.findall("domain-config")
    assert config.get("cleartextTrafficPermitted") == "true"
    assert "10.0.2.2" in {d.text for d in config.findall("domain")}
    assert root.find("base-config") is None  # release defaults untouched


XML_CHECKS = {"ios-ats": check_ios_ats, "android-cleartext": check_android_cleartext}

# Implementation B's client code talks to a Hasura engine, which cannot be installed here
# (docs/deployment.md, "What remains unverified"); the Actions it calls are checked against
# the metadata by tests/integration/test_lite_metadata.py instead. Listed, so none slips in.
NOT_RUNNABLE_HERE = {"hasura-apollo-client": "needs a Hasura GraphQL Engine"}


def test_every_block_of_the_guide_is_checked() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 12
    for lang, title, _code in blocks:
        assert title, f"a ```{lang} block of {GUIDE.name} has no title=NAME (so no test runs it)"
        if title in NOT_RUNNABLE_HERE:
            continue
        assert lang in ("js", "xml"), f"{title}: only js and xml blocks are tested"
    titles = [t for _lang, t, _code in blocks]
    assert len(titles) == len(set(titles)), "block titles must be unique"
    assert {t for lang, t, _ in blocks if lang == "js"} == set(DRIVERS)
    assert {t for lang, t, _ in blocks if lang == "xml"} == set(XML_CHECKS)


@pytest.mark.parametrize("title", sorted(XML_CHECKS))
def test_platform_config_blocks(title: str) -> None:
    (code,) = [c for lang, t, c in guide_blocks() if t == title]
    XML_CHECKS[title](code)


# -- JavaScript blocks against the shared Synapse --------------------------------------


def session_of(client: MatrixClient) -> dict[str, Any]:
    who = client.call("GET", "/_matrix/client/v3/account/whoami")
    return {
        "homeserverUrl": client.base_url,
        "userId": client.user_id,
        "accessToken": client.access_token,
        "deviceId": who.get("device_id"),
    }


def in_room(client: MatrixClient, room_id: str) -> bool:
    return room_id in client.joined_rooms()


def private_room(synapse: SynapseStack, *members: MatrixClient) -> tuple[MatrixClient, str]:
    owner = synapse.register(unique("owner"))
    body = {"preset": "private_chat", "invite": [m.user_id for m in members]}
    room_id = owner.call("POST", "/_matrix/client/v3/createRoom", json=body)["room_id"]
    for member in members:
        member.join(room_id)
    return owner, room_id


def test_client_setup(synapse: SynapseStack, tmp_path: Path) -> None:
    client = synapse.register(unique("setup"))
    got = run_js(tmp_path, "client-setup", {"session": session_of(client)})
    assert synapse.rooms["community"] in got["rooms"]
    assert got["rejected"] == "M_UNKNOWN_TOKEN"


def test_sso_login(synapse: SynapseStack, cognito_sso: CognitoEmulator, tmp_path: Path) -> None:
    user = cognito_sso.create_user(groups=["partners"])
    public = f"http://localhost:{urlsplit(synapse.base_url).port}"
    env = {"homeserverUrl": public, "email": user.email, "password": user.password}
    got = run_js(tmp_path, "sso-login", env)
    session = got["session"]
    assert got["refused"] is None
    with synapse.admin() as admin:
        assert admin.user_by_external_id("oidc-cognito", user.sub) == session["userId"]
    signed_in = MatrixClient(synapse.base_url, session["userId"], session["accessToken"])
    assert (
        signed_in.call("GET", "/_matrix/client/v3/account/whoami")["device_id"]
        == session["deviceId"]
    )
    assert signed_in.joined_rooms() == {synapse.rooms["partners"], synapse.rooms["community"]}


def test_session_storage(synapse: SynapseStack, tmp_path: Path) -> None:
    session = {
        "homeserverUrl": synapse.base_url,
        "userId": "@x:localhost",
        "accessToken": "t",
        "deviceId": "D",
    }
    got = run_js(tmp_path, "session-storage", {"session": session})
    assert got == {"before": None, "after": session, "keys": ["phenom.chat.session"]}


def test_room_list_hides_follow_up_cards(
    synapse: SynapseStack, phenom_site: PhenomSite, tmp_path: Path
) -> None:
    reader = synapse.register(unique("reader"))
    owner, room_id = private_room(synapse, reader)
    # Only the server makes follow-up cards (a client-sent one is refused): a real one.
    message = owner.send(room_id, f"Tonight's sky {phenom_site.origin}/p/full?t={unique('')}")
    follow_up = eventually(lambda: _follow_up_of(owner, room_id, message), timeout=15)
    got = run_js(
        tmp_path,
        "room-list",
        {"session": session_of(reader), "roomId": room_id, "followUpId": follow_up},
    )
    assert got["sdkLast"] == "app.phenom.link_preview"  # what a naive room list would show
    assert got["shown"] == message
    assert "app.phenom.link_preview" in got["hidden"]
    assert room_id in got["list"]


def _follow_up_of(client: MatrixClient, room_id: str, event_id: str) -> str | None:
    related = client.call(
        "GET",
        f"/_matrix/client/v1/rooms/{quote(room_id)}/relations/{quote(event_id)}/m.reference/app.phenom.link_preview",
    )
    return str(related["chunk"][0]["event_id"]) if related["chunk"] else None


def _card_ready(client: MatrixClient, room_id: str, event_id: str) -> bool:
    """The server's card is on the message (inline) or in a follow-up."""
    if client.event(room_id, event_id)["content"].get("m.url_previews"):
        return True
    related = client.call(
        "GET",
        f"/_matrix/client/v1/rooms/{quote(room_id)}/relations/{quote(event_id)}/m.reference/app.phenom.link_preview",
    )
    return bool(related["chunk"])


def test_link_cards(synapse: SynapseStack, phenom_site: PhenomSite, tmp_path: Path) -> None:
    reader, forger = synapse.register(unique("reader")), synapse.register(unique("forger"))
    owner, room_id = private_room(synapse, reader, forger)
    link = f"{phenom_site.origin}/p/full?t={unique('')}"
    shown = owner.send(room_id, f"Tonight's sky ({link}) — join us!")
    other = f"{phenom_site.origin}/p/full?t={unique('')}"
    edited = owner.send(room_id, f"Also {other}")
    for event_id in (shown, edited):
        eventually(functools.partial(_card_ready, owner, room_id, event_id), timeout=15)
    edit = owner.send_raw(
        room_id,
        {
            "msgtype": "m.text",
            "body": "* Also: never mind",
            "m.new_content": {"msgtype": "m.text", "body": "Also: never mind"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": edited},
        },
    ).json()["event_id"]
    plain = owner.send(room_id, "no link here")
    forged_card = {
        "m.relates_to": {"rel_type": "m.reference", "event_id": plain},
        "m.url_previews": [{"matched_url": link, "og:url": link, "og:title": "Forged"}],
    }
    forged = forger.send_raw(room_id, forged_card, event_type="app.phenom.link_preview")
    wait_for = [shown, edited, edit, plain] + (
        [forged.json()["event_id"]] if forged.status_code == 200 else []
    )
    env = {
        "session": session_of(reader),
        "roomId": room_id,
        "siteOrigin": phenom_site.origin,
        "waitFor": wait_for,
        "edited": edited,
        "messages": {"shown": shown, "edited": edited, "plain": plain},
    }
    got = run_js(tmp_path, "link-cards", env)
    (card,) = got["shown"]
    assert card["title"] == "Northern Lights over Tromsø"
    assert card["url"]
    assert got["edited"] == []  # the edit removed the link: no card
    assert got["plain"] == []  # someone else's "follow-up" is not a card


def test_composer_preview(synapse: SynapseStack, phenom_site: PhenomSite, tmp_path: Path) -> None:
    client = synapse.register(unique("composer"))
    url = f"{phenom_site.origin}/p/full?t={unique('')}"
    got = run_js(tmp_path, "composer-preview", {"session": session_of(client), "phenomUrl": url})
    assert got["phenom"]["card"]["title"] == "Northern Lights over Tromsø"
    assert got["phenom"]["preview"]["matched_url"] == url
    assert got["other"] is None


def test_send_with_card(synapse: SynapseStack, phenom_site: PhenomSite, tmp_path: Path) -> None:
    reader = synapse.register(unique("reader"))
    owner, room_id = private_room(synapse, reader)
    url = f"{phenom_site.origin}/p/full?t={unique('')}"
    env = {"session": session_of(owner), "roomId": room_id, "phenomUrl": url}
    got = run_js(tmp_path, "send-with-card", env)
    assert got["signed"]["refusal"] is None, got
    (entry,) = reader.event(room_id, got["signed"]["eventId"])["content"]["m.url_previews"]
    assert entry["og:title"] == "Northern Lights over Tromsø" and entry["app.phenom.card"]["sig"]
    for name in ("changed", "invented"):
        refusal = got[name]["refusal"]
        assert got[name]["eventId"] is None and refusal["rule"] == "preview_card", got
        assert refusal["status"] == 403 and refusal["retryAfterMs"] is None
        assert "composer" in refusal["message"]


def test_media(synapse: SynapseStack, tmp_path: Path) -> None:
    client = synapse.register(unique("media"))
    env = {"session": session_of(client), "pngBase64": base64.b64encode(LOGO).decode()}
    got = run_js(tmp_path, "media", env)
    assert got["mxc"].startswith("mxc://localhost/")
    assert got["same"] and got["thumbBytes"] > 0
    assert "/_matrix/client/v1/media/download/" in got["authUrl"]
    assert "/_matrix/media/v3/download/" in got["plainUrl"]
    assert got["plainStatus"] == 404  # why the guide insists on the authenticated URL


def test_refusals(synapse: SynapseStack, tmp_path: Path) -> None:
    client = synapse.register(unique("refused"))
    community = synapse.rooms["community"]
    eventually(functools.partial(in_room, client, community))
    got = run_js(tmp_path, "refusals", {"session": session_of(client), "roomId": community})
    refusal = got["refused"]["refusal"]
    assert got["refused"]["eventId"] is None
    assert refusal["status"] == 403 and refusal["errcode"] == "M_FORBIDDEN"
    assert refusal["rule"].startswith("links")
    assert "youtube.com" in refusal["message"]
    assert refusal["retryAfterMs"] is None
    assert got["accepted"]["eventId"] and got["accepted"]["refusal"] is None


def test_offline_queue_is_paced_below_the_flood_rule(synapse: SynapseStack, tmp_path: Path) -> None:
    paced, burst = synapse.register(unique("paced")), synapse.register(unique("burst"))
    community = synapse.rooms["community"]
    for client in (paced, burst):
        eventually(functools.partial(in_room, client, community))
    env = {
        "session": session_of(paced),
        "burstSession": session_of(burst),
        "roomId": community,
        "count": 12,  # more than the Community flood rule allows in 10 s
    }
    got = run_js(tmp_path, "offline-queue", env, timeout=180)
    assert got["sent"] == 12 and got["refusal"] is None
    # The control: the same queue sent at once trips the flood rule ...
    assert got["burstRefusals"], "the burst was not refused: the pacing proves nothing"
    flood = got["burstRefusals"][0]
    assert flood["errcode"] == "M_LIMIT_EXCEEDED" and flood["rule"] == "flood"
    assert flood["retryAfterMs"] > 0
    # ... and the paced user collected no violation (the burst user did).
    assert audit(synapse, paced.user_id) == []
    assert [e["rule"] for e in audit(synapse, burst.user_id)][:1] == ["flood"]


def audit(synapse: SynapseStack, user_id: str) -> list[dict[str, Any]]:
    resp = httpx2.get(
        f"{synapse.base_url}/_synapse/client/phenom/v1/moderation/audit",
        params={"user_id": user_id},
        headers={"Authorization": f"Bearer {synapse.admin_token}"},
        timeout=10,
    )
    resp.raise_for_status()
    return list(resp.json()["entries"])


def test_removals(synapse: SynapseStack, tmp_path: Path) -> None:
    client = synapse.register(unique("removed"))
    with synapse.admin() as admin:
        admin.set_groups(client.user_id, ["team"], "guide-test")
    env = {"session": session_of(client), "adminToken": synapse.admin_token}
    got = run_js(tmp_path, "removals", env)
    by_room = {r["roomId"]: r for r in got}
    assert set(by_room) == {synapse.rooms["internal"], synapse.rooms["partners"]}
    internal = by_room[synapse.rooms["internal"]]
    assert internal["banned"] is False
    assert internal["reason"] == "You are no longer in the group 'team'."
    assert internal["removal"] == {"code": "group_required", "room": "internal", "groups": ["team"]}
    assert by_room[synapse.rooms["partners"]]["removal"]["groups"] == ["partners", "team"]


GATEWAY = "https://push.example.test/_matrix/push/v1/notify"


def test_push(synapse: SynapseStack, tmp_path: Path) -> None:
    client = synapse.register(unique("push"))
    got = run_js(tmp_path, "push", {"session": session_of(client), "gatewayUrl": GATEWAY})
    (pusher,) = got["registered"]
    assert pusher["pushkey"] == "a1b2c3d4e5f6" and pusher["app_id"] == "app.thephenom.ios"
    assert pusher["data"] == {"url": GATEWAY, "format": "event_id_only"}
    assert got["after"] == []


def test_sign_out(synapse: SynapseStack, tmp_path: Path) -> None:
    client = synapse.register(unique("signout"))
    got = run_js(tmp_path, "sign-out", {"session": session_of(client), "gatewayUrl": GATEWAY})
    assert got == {"whoami": 401, "stored": []}
