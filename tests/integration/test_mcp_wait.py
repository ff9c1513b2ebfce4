"""``wait_for_messages`` never loses messages: a burst larger than a page arrives in pages.

Through the real MCP server on every backend (the real Synapse; the hasura backend's chat
tables): two people post 150 messages into two of the agent's rooms; the agent pages through
them with ``next_cursor`` and gets every one, exactly once, oldest first, each cut page
saying ``more``.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from chat_worlds import LiteWorld, Person
from fixtures_mcp import McpStack
from harness import eventually
from mcp import Client

pytestmark = pytest.mark.synapse

PAGE = 100  # the server's page size (synapse_wait.WAIT_LIMIT, hasura_wait.WAIT_LIMIT)


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert result.structured_content is not None
    return result.structured_content


def people(chat: McpStack) -> tuple[Person, Person]:
    """A Community member exempt from its flood rule (staff) and a Partners member."""
    if isinstance(chat.world, LiteWorld):
        return (
            chat.world.register("Alice Burst", groups=("team",)),
            chat.world.register("Bob Burst", groups=("partners",)),
        )
    synapse = chat.synapse
    alice = chat.world.register("Alice Burst")
    bob = chat.world.register("Bob Burst")
    with synapse.admin() as admin:
        # Staff are exempt from Community's flood rule (10 messages per 10 s).
        admin.set_groups(alice.user_id, ["team"], "test")
        admin.set_groups(bob.user_id, ["partners"], "test")
    eventually(lambda: chat.world.is_member(bob.user_id, "partners"))
    return alice, bob


def test_a_burst_larger_than_a_page_is_delivered_in_pages(chat: McpStack) -> None:
    community, partners = chat.rooms["community"], chat.rooms["partners"]
    alice, bob = people(chat)
    tag = uuid.uuid4().hex[:8]

    async def start() -> str:
        async with chat.client() as client:
            first = await ok(client, "wait_for_messages", timeout_seconds=0)
            assert first["messages"] == [] and first["timed_out"] is True
            assert first["more"] is False
            return str(first["next_cursor"])

    cursor = anyio.run(start)
    sent: list[tuple[str, str]] = []  # (room, body) in sending order
    for i in range(150):
        if i % 4 == 3:  # 37 in partners, 113 in community, interleaved
            body = f"burst {tag} partners #{i}"
            bob.send("partners", body)
            sent.append((partners, body))
        else:
            body = f"burst {tag} community #{i}"
            alice.send("community", body)
            sent.append((community, body))

    async def drain() -> list[dict[str, Any]]:
        pages = []
        nonlocal cursor
        async with chat.client() as client:
            # The agent's own message in between is no news and must not disturb the cursor.
            # (In #internal, which has no flood rule: in Community the agent's sends and
            # reactions of the tests before this one count towards 10 per 10 s.)
            await ok(client, "send_message", room="internal", body=f"agent {tag}")
            for _ in range(6):
                page = await ok(client, "wait_for_messages", since=cursor, timeout_seconds=2)
                pages.append(page)
                cursor = page["next_cursor"]
                if not page["more"]:
                    break
            pages.append(await ok(client, "wait_for_messages", since=cursor, timeout_seconds=1))
        return pages

    pages = anyio.run(drain)
    *delivering, last = pages
    got = [
        (m["room_id"], m["body"])
        for p in delivering
        for m in p["messages"]
        if m["body"].startswith(f"burst {tag}")
    ]
    assert len(delivering) == 2, [len(p["messages"]) for p in pages]
    assert len(delivering[0]["messages"]) == PAGE and delivering[0]["more"] is True
    assert delivering[0]["timed_out"] is False
    assert len(delivering[1]["messages"]) == 150 - PAGE and delivering[1]["more"] is False
    # Every message exactly once, each room in its sending order, the first page the oldest.
    assert sorted(got) == sorted(sent)
    for room in (community, partners):
        assert [b for r, b in got if r == room] == [b for r, b in sent if r == room]
    first_newest = max(m["timestamp"] for m in delivering[0]["messages"])
    assert all(m["timestamp"] >= first_newest for m in delivering[1]["messages"])
    names = {m["sender"]: m["sender_display_name"] for p in delivering for m in p["messages"]}
    assert names == {alice.user_id: "Alice Burst", bob.user_id: "Bob Burst"}
    # Nothing is left: the next wait times out empty.
    assert last["messages"] == [] and last["timed_out"] is True and last["more"] is False


def test_a_cursor_that_is_not_one_is_refused_clearly(chat: McpStack) -> None:
    async def main() -> list[str]:
        texts = []
        async with chat.client() as client:
            for junk in ("w1.bm90IGpzb24", "w1.eyJzIjogMX0", "not-a-token"):
                result = await client.call_tool(
                    "wait_for_messages", {"since": junk, "timeout_seconds": 0}
                )
                assert result.is_error
                texts.append(" ".join(getattr(c, "text", "") for c in result.content))
        return texts

    for text in anyio.run(main):
        assert "since is not a cursor returned by wait_for_messages" in text


def test_from_now_never_returns_earlier_messages(chat: McpStack) -> None:
    """Two 'from now' calls with a message in between: the second must not return it
    (Synapse answers an identical /sync from its response cache, an older position)."""
    person = chat.world.register("Early Bird")
    body = f"before now {uuid.uuid4().hex}"

    async def call() -> dict[str, Any]:
        async with chat.client() as client:
            return await ok(client, "wait_for_messages", timeout_seconds=0)

    anyio.run(call)
    person.send("community", body)
    eventually(lambda: body in chat.world.bodies("community"))
    later = anyio.run(call)
    assert body not in [m["body"] for m in later["messages"]], later
