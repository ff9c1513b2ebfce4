"""The nine MCP tools through the real `mcp` client over HTTP, on every backend.

The same assertions run against the real Synapse (Implementation A: agents act as their own
Matrix users) and the ``hasura`` backend (Implementation B: the ``chat`` tables in the real
test PostgreSQL). A person checks what the agents did through the backend's own people
side (``chat_worlds``): the Matrix client API on A, the chat tables on B.
"""

# mypy: disable-error-code="union-attr"
# (attribute access on an Optional result: None fails the test with AttributeError)
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
import pytest
from chat_worlds import Person
from fixtures_mcp import COMMUNITY, FULL, SLOW, McpStack
from harness import MatrixClient, eventually
from mcp import Client
from mcp_types import CallToolResult
from previews_site import PhenomSite

pytestmark = pytest.mark.synapse  # the Synapse runs; the hasura run needs only PostgreSQL

NINE = {
    "list_rooms",
    "get_messages",
    "search_messages",
    "send_message",
    "react_to_message",
    "list_room_members",
    "wait_for_messages",
    "delete_message",
    "get_link_preview",
}


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn)


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert result.structured_content is not None
    return result.structured_content


async def error_text(client: Client, tool: str, **args: Any) -> str:
    result: CallToolResult = await client.call_tool(tool, args)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
def human(chat: McpStack) -> Person:
    return chat.world.register("Hugo Human")


def test_exactly_nine_tools_with_schemas_and_annotations(chat: McpStack) -> None:
    async def main() -> None:
        async with chat.client() as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == NINE
        for tool in tools.values():
            assert tool.description and len(tool.description) > 20, tool.name
            assert tool.input_schema["type"] == "object"
            assert tool.output_schema is not None, tool.name
            assert tool.annotations is not None
        for name in (
            "list_rooms",
            "get_messages",
            "search_messages",
            "list_room_members",
            "wait_for_messages",
            "get_link_preview",
        ):
            assert tools[name].annotations.read_only_hint is True, name
        for name in ("send_message", "react_to_message", "delete_message"):
            assert tools[name].annotations.read_only_hint is False, name
        assert tools["delete_message"].annotations.destructive_hint is True
        assert tools["send_message"].annotations.destructive_hint is False
        limit = tools["get_messages"].input_schema["properties"]["limit"]
        assert limit["maximum"] == 100 and limit["minimum"] == 1
        assert set(tools["send_message"].input_schema["required"]) == {"room", "body"}

    run(main)


def test_rooms_members_and_agent_identity(chat: McpStack, human: Person) -> None:
    async def main() -> None:
        async with chat.client() as client:
            rooms = (await ok(client, "list_rooms"))["rooms"]
            members = await ok(client, "list_room_members", room="#community:localhost")
        async with chat.client(chat.token(COMMUNITY)) as client:
            community_only = (await ok(client, "list_rooms"))["rooms"]
            denied = await error_text(client, "get_messages", room="internal")
            denied_id = await error_text(client, "list_room_members", room=chat.rooms["partners"])
            missing = await error_text(client, "get_messages", room="#no-such-room:localhost")
            invalid = await error_text(client, "get_messages", room="the lobby")
            remote = await error_text(client, "get_messages", room="#community:elsewhere.example")
        assert {r["key"] for r in rooms} == {"internal", "partners", "community"}
        by_key = {r["key"]: r for r in rooms}
        assert by_key["internal"]["room_id"] == chat.rooms["internal"]
        assert by_key["community"]["alias"] == "#community:localhost"
        assert (
            by_key["community"]["name"] == "Community" and by_key["community"]["member_count"] >= 2
        )
        assert [r["key"] for r in community_only] == ["community"]
        assert "Not allowed" in denied and "internal" in denied
        assert "Not allowed" in denied_id
        assert "Room not found" in missing
        assert "Invalid room" in invalid and "community" in invalid
        assert "not a room of this server" in remote
        roles = {m["user_id"]: m for m in members["members"]}
        assert roles["@phenom:localhost"]["role"] == "admin"
        assert roles[chat.agent_user_id()]["display_name"] == "Full Agent"
        assert roles[human.user_id]["role"] == "member"

    run(main)
    # The agent got into the invite-only rooms its profile allows, the community-only one did not.
    assert chat.world.is_member(chat.agent_user_id(FULL), "internal")
    assert not chat.world.is_member(chat.agent_user_id(COMMUNITY), "internal")


def test_send_markdown_reply_and_thread_seen_by_a_person(chat: McpStack, human: Person) -> None:
    community = chat.rooms["community"]
    question = human.send("community", f"question {uuid.uuid4().hex}")

    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with chat.client() as client:
            sent = await ok(
                client,
                "send_message",
                room="community",
                body="**Yes** — see `docs`",
                reply_to=question,
            )
            threaded = await ok(
                client, "send_message", room="community", body="in the thread", thread_id=question
            )
            thread = await ok(client, "get_messages", room="community", thread_id=question)
            return sent, threaded, thread

    sent, threaded, thread = run(main)
    assert sent["sender"] == chat.agent_user_id() and sent["room_id"] == community
    stored = chat.world.stored("community", sent["event_id"])
    assert stored.sender == "@agent-full:localhost"
    assert stored.body == "**Yes** — see `docs`"
    assert stored.formatted_body == "<strong>Yes</strong> — see <code>docs</code>"
    assert stored.reply_to == question
    assert [m["event_id"] for m in thread["messages"]] == [threaded["event_id"]]
    assert thread["messages"][0]["thread_id"] == question
    assert chat.world.sees(human, "community", sent["event_id"])


def test_agents_are_not_exempt_from_moderation(chat: McpStack) -> None:
    # agent-full may use #internal, so the agents module gave it the "team" group, which
    # the shipped Community policy exempts (staff). An agent (often steered by what users
    # write) must not inherit a staff exemption from a group it only holds to enter rooms.
    async def main() -> str:
        async with chat.client() as client:
            return await error_text(
                client, "send_message", room="community", body="get free crypto now"
            )

    assert "not sent" in run(main)


def test_reactions_are_moderated_like_messages(chat: McpStack) -> None:
    # A reaction key is text every member sees: A moderates m.reaction like a message, so
    # B's react must too (it inserted straight into chat.reactions).
    async def main() -> tuple[str, str, dict[str, Any]]:
        async with chat.client() as client:
            sent = await ok(client, "send_message", room="community", body="react to me")
            target = sent["event_id"]
            keyword = await error_text(
                client, "react_to_message", room="community", event_id=target, emoji="free crypto"
            )
            link = await error_text(
                client, "react_to_message", room="community", event_id=target, emoji="bit.ly/x"
            )
            fine = await ok(
                client, "react_to_message", room="community", event_id=target, emoji="🎉"
            )
            return keyword, link, fine

    keyword, link, fine = run(main)
    assert "not sent" in keyword and "not sent" in link, (keyword, link)
    assert fine["emoji"] == "🎉"


def test_idempotency_key_never_posts_twice(chat: McpStack) -> None:
    key = f"order-{uuid.uuid4().hex}"
    body = f"exactly once {key}"

    async def main() -> list[str]:
        ids = []
        async with chat.client() as client:
            for _ in range(2):
                ids.append(
                    (
                        await ok(
                            client, "send_message", room="community", body=body, idempotency_key=key
                        )
                    )["event_id"]
                )
        # A second connection (as another replica would have) with the same key.
        async with chat.client() as client:
            ids.append(
                (await ok(client, "send_message", room="partners", body=body, idempotency_key=key))[
                    "event_id"
                ]
            )
            ids.append(
                (
                    await ok(
                        client, "send_message", room="community", body=body, idempotency_key=key
                    )
                )["event_id"]
            )
        return ids

    first, second, other_room, third = run(main)
    assert first == second == third
    assert other_room != first
    assert chat.world.bodies("community").count(body) == 1


def test_get_messages_pages_newest_first(chat: McpStack, human: Person) -> None:
    community = chat.rooms["community"]
    tag = uuid.uuid4().hex[:8]
    sent = [human.send("community", f"page {tag} #{i}") for i in range(5)]

    async def main() -> list[dict[str, Any]]:
        pages = []
        cursor = None
        async with chat.client() as client:
            for _ in range(3):
                page = await ok(client, "get_messages", room=community, limit=2, before=cursor)
                pages.append(page)
                cursor = page["next_cursor"]
            too_many = await client.call_tool("get_messages", {"room": "community", "limit": 101})
        assert too_many.is_error
        return pages

    pages = run(main)
    seen = [m["event_id"] for p in pages for m in p["messages"]]
    assert seen[:5] == list(reversed(sent))
    assert all(len(p["messages"]) == 2 for p in pages)
    first = pages[0]["messages"][0]
    assert first["sender"] == human.user_id and first["sender_display_name"] == "Hugo Human"
    assert first["body"] == f"page {tag} #4" and first["trust"] == "untrusted_user_content"
    assert first["timestamp"].endswith("Z")
    assert "untrusted" in pages[0]["notice"]


def test_search_react_and_delete(chat: McpStack, human: Person) -> None:
    word = f"zebra{uuid.uuid4().hex[:8]}"
    target = human.send("community", f"the {word} crossed")

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with chat.client() as client:
            deadline = time.monotonic() + 10
            while True:
                found = await ok(client, "search_messages", query=word)
                if found["messages"] or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.2)
            out["search"] = found
            out["react"] = await ok(
                client, "react_to_message", room="community", event_id=target, emoji="👍"
            )
            out["react_again"] = await ok(
                client, "react_to_message", room="community", event_id=target, emoji="👍"
            )
            out["not_mine"] = await error_text(
                client, "delete_message", room="community", event_id=target
            )
            own = await ok(client, "send_message", room="community", body=f"oops {word}")
            out["own"] = own
            out["delete"] = await ok(
                client, "delete_message", room="community", event_id=own["event_id"], reason="typo"
            )
            out["after"] = await ok(client, "get_messages", room="community", limit=20)
            out["bad_id"] = await error_text(
                client, "react_to_message", room="community", event_id="abc", emoji="👍"
            )
            # Query syntax is never an error: SQL-looking text is just words to search for.
            out["odd"] = await ok(client, "search_messages", query="a' OR 1=1 --")
            out["odd2"] = await ok(client, "search_messages", query='"unclosed -(')
        return out

    out = run(main)
    assert [m["event_id"] for m in out["search"]["messages"]] == [target]
    assert out["search"]["messages"][0]["sender_display_name"] == "Hugo Human"
    assert out["react"]["event_id"] == out["react_again"]["event_id"]
    assert chat.world.reaction("community", out["react"]["event_id"]) == (
        chat.agent_user_id(),
        target,
        "👍",
    )
    assert "Not allowed" in out["not_mine"]
    assert chat.world.stored("community", out["own"]["event_id"]).body is None
    assert word not in json.dumps(out["odd"]) and word not in json.dumps(out["odd2"])
    assert out["own"]["event_id"] not in [m["event_id"] for m in out["after"]["messages"]]
    assert "Invalid event ID" in out["bad_id"]


def test_wait_for_messages_long_polls(chat: McpStack, human: Person) -> None:
    body = f"wake up {uuid.uuid4().hex}"

    async def main() -> tuple[dict[str, Any], float, dict[str, Any]]:
        async with chat.client() as client:
            start = await ok(client, "wait_for_messages", timeout_seconds=0)
            assert start["messages"] == [] and start["timed_out"] is True
            result: dict[str, Any] = {}

            async def waiter() -> None:  # every room of the agent
                result.update(
                    await ok(
                        client,
                        "wait_for_messages",
                        since=start["next_cursor"],
                        timeout_seconds=20,
                    )
                )

            began = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(1.0)
                # In #internal (no flood rule, whatever the agent sent before this test).
                await ok(
                    client,
                    "send_message",
                    room="internal",
                    body="the agent's own words are not news",
                )
                await anyio.to_thread.run_sync(human.send, "community", body)
            waited = time.monotonic() - began
            after = await ok(
                client, "wait_for_messages", since=result["next_cursor"], timeout_seconds=1
            )
        return result, waited, after

    result, waited, after = run(main)
    assert [m["body"] for m in result["messages"]] == [body]
    assert result["timed_out"] is False and result["messages"][0]["sender"] == human.user_id
    assert result["messages"][0]["sender_display_name"] == "Hugo Human"
    assert 1.0 <= waited < 10
    assert after["messages"] == [] and after["timed_out"] is True


def test_link_preview(chat: McpStack, phenom_site: PhenomSite) -> None:
    link = f"{phenom_site.origin}/p/full?t={uuid.uuid4().hex}"

    async def main() -> tuple[dict[str, Any], str]:
        async with chat.client() as client:
            card = await ok(client, "get_link_preview", url=link)
            refused = await error_text(
                client, "get_link_preview", url="http://169.254.169.254/latest/meta-data/"
            )
        return card, refused

    card, refused = run(main)
    assert card["card"]["title"] == "Northern Lights over Tromsø"
    assert card["card"]["url"] == link
    assert "Only links to" in refused


def test_rate_limit_per_agent(chat: McpStack) -> None:
    async def main() -> tuple[list[bool], str, bool]:
        async with chat.client(chat.token(SLOW)) as client:
            oks = [not (await client.call_tool("list_rooms", {})).is_error for _ in range(3)]
            limited = await error_text(client, "list_rooms")
        async with chat.client(chat.token(FULL)) as client:
            other_fine = not (await client.call_tool("list_rooms", {})).is_error
        return oks, limited, other_fine

    oks, limited, other_fine = run(main)
    assert oks == [True, True, True]
    assert "Rate limited" in limited and "3 calls per minute" in limited
    assert other_fine


def test_ops_endpoints_audit_and_metrics(chat: McpStack) -> None:
    async def main() -> str:
        async with chat.client() as client:
            # #internal: no flood rule there, whatever the agent sent before this test.
            return str(
                (await ok(client, "send_message", room="internal", body="audited"))["event_id"]
            )

    event_id = run(main)
    health = httpx2.get(f"{chat.base_url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["backend"] == chat.backend
    metadata = httpx2.get(
        f"{chat.base_url}/.well-known/oauth-protected-resource/mcp", timeout=10
    ).json()
    assert metadata["resource"].endswith("/mcp")
    assert metadata["authorization_servers"] == [chat.signer.issuer]
    assert set(metadata["scopes_supported"]) == {
        "chat-mcp/read",
        "chat-mcp/write",
        "chat-mcp/moderate",
    }
    metrics = httpx2.get(f"{chat.base_url}/metrics", timeout=10).text
    assert 'phenom_mcp_tool_calls_total{outcome="ok",tool="send_message"}' in metrics

    def post_with(header: str, value: str) -> int:
        headers = {
            header: value,
            "Authorization": f"Bearer {chat.token()}",
            "Content-Type": "application/json",
        }
        return httpx2.post(chat.url, headers=headers, content=b"{}", timeout=10).status_code

    assert post_with("Host", "evil.example") == 421  # DNS rebinding
    assert post_with("Origin", "https://evil.example") == 403

    def audited() -> dict[str, Any] | None:
        log = (chat.config_path.parent / "mcp.log").read_text()
        for line in log.splitlines():
            if line.startswith("{") and event_id in line:
                return dict(json.loads(line))
        return None

    record = eventually(audited)
    assert record["audit"] == "mcp_write" and record["tool"] == "send_message"
    assert (
        record["agent"] == "agent-full"
        and record["client_id"] == FULL
        and record["room"] == "internal"
    )


def test_only_the_mcp_appservice_may_place_agents(mcp_stack: McpStack) -> None:
    """A person calling the agents module for themselves gets 403 and stays out of Internal.

    Synapse only: on hasura, agents are placed by the MCP server's own database role
    (`test_rooms_members_and_agent_identity` checks the rooms it gets)."""
    human: MatrixClient = mcp_stack.synapse.register(displayname="Hugo Human")
    resp = human.request(
        "POST", "/_synapse/client/phenom/v1/agent_rooms", json={"rooms": ["internal"]}
    )
    assert resp.status_code == 403 and "application service" in resp.json()["error"]
    assert human.try_join(mcp_stack.synapse.rooms["internal"]).status_code == 403
    assert mcp_stack.synapse.rooms["internal"] not in human.joined_rooms()
