"""Pure logic of the MCP sidecar: argument checks, Markdown, rate limits, audit, event mapping,
agent room rules, token validation, config and the appservice registration."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
import yaml
from loopback import serve

from synapse_phenom.cli import main as cli_main
from synapse_phenom.config import InvalidConfig
from synapse_phenom.mcp import backend as b
from synapse_phenom.mcp import matrix_events as me
from synapse_phenom.mcp.appservice import (
    check_agents_in_namespace,
    read_as_token,
    registration,
    write_registration,
)
from synapse_phenom.mcp.arguments import (
    TokenBucket,
    ToolFailure,
    check_event_id,
    check_room_ref,
    render_markdown,
)
from synapse_phenom.mcp.auth import (
    CognitoTokenVerifier,
    JwksUrlKeys,
    StaticKeys,
    TokenRejected,
    scopes_of,
)
from synapse_phenom.mcp.config import AgentProfile, AuthConfig, load_config
from synapse_phenom.mcp.devkeys import DevSigner
from synapse_phenom.mcp.models import LinkPreview, RoomList, SentMessage
from synapse_phenom.mcp.server import make_backend
from synapse_phenom.mcp.tools import ChatTools, Principal
from synapse_phenom.rooms.config import RoomsConfig
from synapse_phenom.rooms.membership import groups_for_rooms, plan_agent_rooms

AGENT = AgentProfile(localpart="agent-x", rooms=("community",), rate_limit_per_minute=2)


# -- argument checks and Markdown ---------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("community", "community"),
        (" Internal ", "internal"),
        ("#partners:hs", "#partners:hs"),
        ("!abc", "!abc"),
        ("!a:hs", "!a:hs"),
    ],
)
def test_room_refs(given: str, expected: str) -> None:
    assert check_room_ref(given) == expected


@pytest.mark.parametrize("bad", ["lobby", "#nocolon", "!", "! spaced", "", "#a b:hs"])
def test_bad_room_refs_say_what_is_accepted(bad: str) -> None:
    with pytest.raises(ToolFailure, match="internal, partners or community"):
        check_room_ref(bad)


def test_event_ids() -> None:
    assert check_event_id(" $abc ") == "$abc"
    for bad in ("abc", "$", "$a b", "$" + "x" * 300):
        with pytest.raises(ToolFailure, match="Invalid event ID"):
            check_event_id(bad)


def test_markdown_renders_and_escapes_raw_html() -> None:
    assert render_markdown("**hi** `x`") == "<strong>hi</strong> <code>x</code>"
    assert render_markdown("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    two = render_markdown("a\n\n- b\n- c")
    assert two.startswith("<p>a</p>") and "<li>b</li>" in two
    assert render_markdown("[x](javascript:alert(1))") == "[x](javascript:alert(1))"


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])
    assert all(bucket.take() == 0 for _ in range(60))
    assert bucket.take() == pytest.approx(1.0)
    now[0] += 1.0
    assert bucket.take() == 0
    assert bucket.take() > 0


# -- ChatTools against a fake backend -----------------------------------------------------------


class FakeBackend:
    def __init__(self) -> None:
        self.sent: list[tuple[str, b.OutgoingMessage]] = []
        self.fail: Exception | None = None

    async def list_rooms(self, agent: AgentProfile) -> RoomList:
        if self.fail:
            raise self.fail
        return RoomList(rooms=[])

    async def send_message(
        self, agent: AgentProfile, room: str, message: b.OutgoingMessage
    ) -> SentMessage:
        self.sent.append((room, message))
        return SentMessage(event_id="$e1", room_id="!r", sender="@agent-x:hs")

    async def link_preview(self, agent: AgentProfile, url: str) -> LinkPreview:
        return LinkPreview(url=url)


def tools_with(backend: FakeBackend) -> ChatTools:
    return ChatTools(backend)  # type: ignore[arg-type]


def who(*scopes: str, agent: AgentProfile = AGENT) -> Principal:
    return Principal(client_id="c1", agent=agent, scopes=frozenset(scopes))


def test_scope_rate_limit_and_error_texts() -> None:
    backend = FakeBackend()
    tools = tools_with(backend)

    async def main() -> None:
        with pytest.raises(ToolFailure, match="chat-mcp/write"):
            await tools.send_message(who("read"), "community", "hi")
        assert backend.sent == []
        await tools.list_rooms(who("read"))
        await tools.list_rooms(who("read"))
        with pytest.raises(
            ToolFailure, match="Rate limited: this agent may make 2 calls per minute"
        ):
            await tools.list_rooms(who("read"))
        fresh = tools_with(backend)
        backend.fail = b.Forbidden("Not allowed: not your room")
        with pytest.raises(ToolFailure, match="Not allowed: not your room"):
            await fresh.list_rooms(who("read"))
        backend.fail = b.RateLimited("the chat server is throttling", 2.5)
        with pytest.raises(ToolFailure, match=r"Retry in 2\.5 s"):
            await fresh.list_rooms(who("read"))

    anyio.run(main)


def test_send_validates_renders_and_audits(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()
    tools = tools_with(backend)
    agent = AgentProfile(localpart="agent-x", rate_limit_per_minute=100)

    async def main() -> None:
        with pytest.raises(ToolFailure, match="body is empty"):
            await tools.send_message(who("write", agent=agent), "community", "  ")
        with pytest.raises(ToolFailure, match="idempotency_key"):
            await tools.send_message(
                who("write", agent=agent), "community", "x", idempotency_key="has space"
            )
        with pytest.raises(ToolFailure, match="limit must be between 1 and 100"):
            await tools.get_messages(who("read", agent=agent), "community", limit=101)
        with caplog.at_level(logging.INFO, logger="synapse_phenom.mcp.audit"):
            await tools.send_message(
                who("write", agent=agent), "Community", "**bold**", idempotency_key="k-1"
            )
            await tools.list_rooms(who("read", agent=agent))
        with pytest.raises(ToolFailure, match="http"):
            await tools.get_link_preview(who("read", agent=agent), "file:///etc/passwd")

    anyio.run(main)
    room, message = backend.sent[0]
    assert room == "community" and message.formatted_body == "<strong>bold</strong>"
    assert message.idempotency_key == "k-1"
    records = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "synapse_phenom.mcp.audit"
    ]
    assert records == [
        {
            "agent": "agent-x",
            "audit": "mcp_write",
            "client_id": "c1",
            "event_id": "$e1",
            "outcome": "ok",
            "room": "community",
            "tool": "send_message",
        }
    ]


# -- Matrix events -------------------------------------------------------------------------------


def event(content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": "$1",
        "sender": "@a:hs",
        "origin_server_ts": 1_700_000_000_123,
        "content": content,
        **extra,
    }


def test_message_from_event() -> None:
    reply = me.message_from_event(
        event(
            {
                "body": "hi",
                "m.relates_to": {"m.in_reply_to": {"event_id": "$0"}},
                "com.beeper.linkpreviews": [
                    {"matched_url": "https://x/p", "og:title": "T", "og:image": "mxc://hs/m"}
                ],
            }
        ),
        "!r",
        {"@a:hs": "Ada"},
    )
    assert reply is not None
    assert (reply.reply_to, reply.thread_id, reply.sender_display_name) == ("$0", None, "Ada")
    assert reply.timestamp == "2023-11-14T22:13:20.123Z"
    assert reply.previews[0].title == "T" and reply.previews[0].image == "mxc://hs/m"
    threaded = me.message_from_event(
        event(
            {
                "body": "t",
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": "$root",
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": "$root"},
                },
            }
        ),
        "!r",
        {},
    )
    assert threaded is not None and (threaded.thread_id, threaded.reply_to) == ("$root", None)
    assert me.message_from_event(event({}), "!r", {}) is None  # redacted
    assert (
        me.message_from_event(
            event({"body": "* x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}}),
            "!r",
            {},
        )
        is None
    )
    assert me.message_from_event({**event({"body": "x"}), "type": "m.reaction"}, "!r", {}) is None


def test_outgoing_content_and_txn_ids() -> None:
    thread = me.message_content(
        b.OutgoingMessage("b", "<b>b</b>", reply_to=None, thread_id="$t", idempotency_key=None)
    )
    assert thread["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$t",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$t"},
    }
    assert thread["format"] == "org.matrix.custom.html"
    reply = me.message_content(
        b.OutgoingMessage("b", None, reply_to="$r", thread_id=None, idempotency_key=None)
    )
    assert reply == {
        "msgtype": "m.text",
        "body": "b",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$r"}},
    }
    assert me.txn_id("send", "a", "!r", "k") == me.txn_id("send", "a", "!r", "k")
    assert me.txn_id("send", "a", "!r", "k") != me.txn_id("send", "b", "!r", "k")
    assert re.fullmatch(r"mcp\.[0-9a-f]{40}", me.txn_id("x"))


def test_roles_and_v12_creators() -> None:
    assert [me.role_for(p) for p in (None, 100, 50, 0)] == ["admin", "admin", "moderator", "member"]
    create = {
        "sender": "@phenom:hs",
        "content": {"room_version": "12", "additional_creators": ["@b:hs"]},
    }
    assert me.implicit_creators(create) == {"@phenom:hs", "@b:hs"}
    assert me.implicit_creators({"sender": "@a:hs", "content": {"room_version": "10"}}) == set()


# -- agent rooms -------------------------------------------------------------------------------


def test_smallest_groups_for_agent_rooms() -> None:
    config = RoomsConfig()
    assert groups_for_rooms(config, ["community"]) == []
    assert groups_for_rooms(config, ["partners", "community"]) == ["partners"]
    assert groups_for_rooms(config, ["internal"]) == ["team"]
    assert groups_for_rooms(config, ["internal", "partners"]) == ["team"]
    closed = RoomsConfig(groups={"partners": ["partners", "community"]})
    with pytest.raises(ValueError, match="internal"):
        groups_for_rooms(closed, ["internal"])


def test_plan_agent_rooms_joins_wanted_and_leaves_the_rest() -> None:
    plan = plan_agent_rooms(
        RoomsConfig(),
        ["community", "partners"],
        {"internal": "join", "partners": "invite", "community": "ban"},
    )
    assert plan.join == ("partners",) and plan.remove == ("internal",)


# -- tokens -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> DevSigner:
    return DevSigner.load_or_create(tmp_path_factory.mktemp("signer"))


def verifier(signer: DevSigner) -> CognitoTokenVerifier:
    config = AuthConfig(issuer=signer.issuer)
    return CognitoTokenVerifier(config, {"c1": AGENT}, StaticKeys(signer.jwks()))


def test_verifier_accepts_cognito_shaped_tokens_only(signer: DevSigner) -> None:
    v = verifier(signer)

    async def main() -> None:
        token = await v.verify_token(signer.token("c1", ["read", "moderate"]))
        assert token is not None and token.client_id == "c1"
        assert token.scopes == ["chat-mcp/moderate", "chat-mcp/read"]
        claims = signer.claims("c1", ["read"])
        for bad in (
            signer.sign({**claims, "token_use": "id"}),
            signer.sign({k: v for k, v in claims.items() if k != "exp"}),
            signer.sign({**claims, "iss": signer.issuer + "/"}),
            signer.token("c2", ["read"]),
            signer.sign(claims, kid="other"),
            # A person's access token for the agent's app client (user auth flow on it).
            signer.sign({**claims, "sub": "5f1c-user-sub", "username": "alice"}),
            signer.sign({k: v for k, v in claims.items() if k != "sub"}),
        ):
            assert await v.verify_token(bad) is None

    anyio.run(main)


def test_scopes_of_only_counts_this_resource_server() -> None:
    claims = {"scope": "chat-mcp/read other/write chat-mcp/admin chat-mcp/moderate"}
    assert scopes_of(claims, "chat-mcp") == {"read", "moderate"}
    assert scopes_of({"scope": 3}, "chat-mcp") == frozenset()


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, Any], list[int]]]:
    state: dict[str, Any] = {"jwks": {"keys": []}}
    hits: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hits.append(1)
            body = json.dumps(state["jwks"]).encode()
            self.send_response(state.get("status", 200))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serve(Handler) as url:
        yield f"{url}/.well-known/jwks.json", state, hits


def test_jwks_is_cached_and_unknown_kids_refetch_after_the_cooldown(
    jwks_server: tuple[str, dict[str, Any], list[int]], tmp_path: Path
) -> None:
    url, state, hits = jwks_server
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = DevSigner.load_or_create(tmp_path / "old")
    new = DevSigner.load_or_create(tmp_path / "new")
    state["jwks"] = old.jwks()
    keys = JwksUrlKeys(url, cooldown_seconds=0.5, cache_seconds=300)

    async def main() -> None:
        await keys.key_for(old.kid)
        await keys.key_for(old.kid)
        assert len(hits) == 1  # cached
        state["jwks"] = {"keys": [*old.jwks()["keys"], *new.jwks()["keys"]]}
        with pytest.raises(TokenRejected):
            await keys.key_for(new.kid)  # within the cool-down: no refetch
        assert len(hits) == 1
        await anyio.sleep(0.6)
        await keys.key_for(new.kid)  # rotated key: one refetch
        assert len(hits) == 2
        for _ in range(5):
            with pytest.raises(TokenRejected):
                await keys.key_for(f"junk-{time.monotonic()}")
        assert len(hits) == 2  # junk kids cannot hammer the JWKS endpoint

    anyio.run(main)


def test_while_the_jwks_url_is_down_only_cached_keys_are_used(
    jwks_server: tuple[str, dict[str, Any], list[int]], tmp_path: Path
) -> None:
    """PyJWT starts its cool-down on successful fetches only: without our outage window,
    every junk kid during an outage would be one more (up to 5 s) fetch."""
    url, state, hits = jwks_server
    signer = DevSigner.load_or_create(tmp_path)
    state["jwks"] = signer.jwks()
    keys = JwksUrlKeys(url, cooldown_seconds=0.5, cache_seconds=0.2)

    async def main() -> None:
        await keys.key_for(signer.kid)
        assert len(hits) == 1
        await anyio.sleep(0.6)  # the cached set expired, the cool-down is over
        state["status"] = 503  # the endpoint goes down
        with pytest.raises(TokenRejected, match="unreachable"):
            await keys.key_for(f"junk-{time.monotonic()}")
        fetched = len(hits)
        for _ in range(5):
            with pytest.raises(TokenRejected):
                await keys.key_for(f"junk-{time.monotonic()}")
        assert len(hits) == fetched  # no fetch per junk kid while it is down
        await keys.key_for(signer.kid)  # a key seen before still verifies during the outage
        assert len(hits) == fetched

    anyio.run(main)


# -- config, backend choice, registration ----------------------------------------------------


def write_config(path: Path, **over: Any) -> Path:
    raw: dict[str, Any] = {
        "synapse": {"registration_file": str(path.parent / "reg.yaml")},
        "auth": {"issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X"},
        "agents": {"c1": {"localpart": "agent-x"}},
    }
    raw.update(over)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    good = load_config(write_config(tmp_path / "ok.yaml"), {})
    assert good.port == 3001 and good.auth.resource_server == "chat-mcp"
    assert good.auth.effective_jwks_url.endswith("/eu-west-1_X/.well-known/jwks.json")
    assert good.resource_url == "http://localhost:3001/mcp"
    with pytest.raises(InvalidConfig, match=r"mcp\.agents\.c1\.rooms\.0"):
        load_config(
            write_config(
                tmp_path / "a.yaml", agents={"c1": {"localpart": "agent-x", "rooms": ["lobby"]}}
            ),
            {},
        )
    with pytest.raises(InvalidConfig, match=r"mcp\.auth\.issuer"):
        load_config(write_config(tmp_path / "b.yaml", auth={"issuer": "cognito"}), {})
    with pytest.raises(InvalidConfig, match="share one localpart"):
        load_config(
            write_config(
                tmp_path / "c.yaml",
                agents={"a": {"localpart": "agent-x"}, "b": {"localpart": "agent-x"}},
            ),
            {},
        )
    hasura = {"database_url": "postgresql://mcp@db/phenom"}
    assert (
        load_config(
            write_config(tmp_path / "d.yaml", hasura=hasura), {"BACKEND_TYPE": "hasura"}
        ).backend
        == "hasura"
    )
    with pytest.raises(InvalidConfig, match=r"mcp\.backend"):
        load_config(write_config(tmp_path / "e.yaml"), {"BACKEND_TYPE": "mongo"})


def test_hasura_backend_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="backend 'hasura' needs a 'hasura' section"):
        load_config(write_config(tmp_path / "h.yaml"), {"BACKEND_TYPE": "hasura"})
    with pytest.raises(InvalidConfig, match=r"mcp\.hasura\.database_url"):
        load_config(
            write_config(tmp_path / "i.yaml", hasura={"database_url": "mysql://x"}),
            {"BACKEND_TYPE": "hasura"},
        )
    with pytest.raises(InvalidConfig, match=r"mcp\.hasura\.rooms"):
        load_config(
            write_config(
                tmp_path / "j.yaml",
                hasura={"database_url": "postgresql://x/y", "rooms": {"everyone": ["lobby"]}},
            ),
            {"BACKEND_TYPE": "hasura"},
        )
    # CHAT_DATABASE_URL supplies (or overrides) the URL, so passwords stay out of the file.
    config = load_config(
        write_config(tmp_path / "k.yaml"),
        {"BACKEND_TYPE": "hasura", "CHAT_DATABASE_URL": "postgresql://mcp:secret@db:5432/phenom"},
    )
    assert config.hasura is not None and config.hasura.database_url.endswith("@db:5432/phenom")
    assert config.hasura.pool_max_size == 10 and config.hasura.server_name == "localhost"
    backend = make_backend(config)  # lazy: connects on the first call, not here
    assert type(backend).__name__ == "HasuraBackend"


def test_registration_namespace_and_tokens(tmp_path: Path) -> None:
    reg = registration("chat.example")
    regex = re.compile(reg["namespaces"]["users"][0]["regex"])
    assert regex.fullmatch("@agent-bot:chat.example")
    assert not regex.fullmatch("@agentbot:chat.example") and not regex.fullmatch(
        "@agent-bot:chatXexample"
    )
    assert reg["namespaces"]["users"][0]["exclusive"] is True and reg["url"] is None
    assert (
        reg["as_token"] != reg["hs_token"]
        and reg["as_token"] != registration("chat.example")["as_token"]
    )
    path = tmp_path / "reg.yaml"
    assert write_registration(path, "chat.example")
    token = read_as_token(path)
    assert not write_registration(path, "chat.example") and read_as_token(path) == token
    assert path.stat().st_mode & 0o077 == 0
    # An agent outside the namespace is a startup error naming its key, not 403s later.
    check_agents_in_namespace(path, "chat.example", {"c1": "agent-bot"})
    with pytest.raises(InvalidConfig, match=r"mcp\.agents\.c2\.localpart: @alice:chat\.example"):
        check_agents_in_namespace(path, "chat.example", {"c1": "agent-bot", "c2": "alice"})
    with pytest.raises(InvalidConfig, match="c1"):
        check_agents_in_namespace(path, "other.example", {"c1": "agent-bot"})


def test_accepted_tokens_are_cached_until_they_expire(signer: DevSigner) -> None:
    v = verifier(signer)
    token = signer.token("c1", ["read"], lifetime=1)

    async def main() -> None:
        first = await v.verify_token(token)
        assert first is not None and await v.verify_token(token) is first
        await anyio.sleep(1.1)
        assert await v.verify_token(token) is None  # expired: re-validated and refused

    anyio.run(main)


def test_dev_token_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["dev-token", "--data-dir", str(tmp_path), "--scopes", "read"]) == 2
    assert "run `phenom-chat dev" in capsys.readouterr().err
    signer = DevSigner.load_or_create(tmp_path)
    assert (
        cli_main(
            [
                "dev-token",
                "--data-dir",
                str(tmp_path),
                "--scopes",
                "read,write",
                "--client-id",
                "c9",
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(
        token, signer.private_key.public_key(), algorithms=["RS256"], issuer=signer.issuer
    )
    assert claims["client_id"] == "c9" and claims["scope"] == "chat-mcp/read chat-mcp/write"
    assert claims["token_use"] == "access"
    assert cli_main(["dev-token", "--data-dir", str(tmp_path), "--scopes", "admin"]) == 2


def test_mcp_registration_command_keeps_existing_tokens(tmp_path: Path) -> None:
    path = tmp_path / "reg.yaml"
    assert (
        cli_main(["mcp-registration", "--output", str(path), "--server-name", "chat.example"]) == 0
    )
    token = read_as_token(path)
    assert (
        cli_main(["mcp-registration", "--output", str(path), "--server-name", "chat.example"]) == 0
    )
    assert read_as_token(path) == token
    assert yaml.safe_load(path.read_text())["namespaces"]["users"][0]["regex"].endswith(
        r"chat\.example"
    )
