"""What only the hasura backend promises beyond the shared contract (test_mcp_tools.py):
wait_for_messages never loses a message, neither past its 100-message limit nor when
concurrent senders commit out of order. (On Synapse a burst of over 100 messages between two
calls loses the oldest: docs/mcp.md, "Note for A".)"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import anyio
import psycopg
import pytest
from chat_worlds import LitePerson, LiteWorld
from fixtures_mcp import McpStack
from mcp import Client


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert result.structured_content is not None
    return result.structured_content


def person(stack: McpStack) -> LitePerson:
    p = stack.world.register("Burst Poster")
    assert isinstance(p, LitePerson)
    return p


def test_a_cut_result_says_so_and_continues_exactly(hasura_mcp_stack: McpStack) -> None:
    stack = hasura_mcp_stack
    poster = person(stack)
    tag = uuid.uuid4().hex[:8]

    async def main() -> list[dict[str, Any]]:
        results = []
        async with stack.client() as client:
            start = await ok(client, "wait_for_messages", room="community", timeout_seconds=0)
            for i in range(150):
                poster.send("community", f"burst {tag} {i}")
            cursor = start["next_cursor"]
            for _ in range(3):
                result = await ok(
                    client, "wait_for_messages", room="community", since=cursor, timeout_seconds=1
                )
                results.append(result)
                cursor = result["next_cursor"]
        return results

    first, second, third = anyio.run(main)
    assert len(first["messages"]) == 100 and first["more"] is True and first["timed_out"] is False
    assert len(second["messages"]) == 50 and second["more"] is False
    assert third["messages"] == [] and third["timed_out"] is True
    bodies = [m["body"] for m in first["messages"] + second["messages"]]
    assert bodies == [f"burst {tag} {i}" for i in range(150)]


def test_concurrent_senders_are_never_skipped(hasura_mcp_stack: McpStack) -> None:
    """Four people post at once while an agent follows with wait_for_messages: the agent sees
    every message exactly once (messages of one room commit in seq order)."""
    stack = hasura_mcp_stack
    posters = [person(stack) for _ in range(4)]
    tag = uuid.uuid4().hex[:8]
    per_poster = 40
    sent: set[str] = set()
    lock = threading.Lock()

    def post_all(p: LitePerson, n: int) -> None:
        for i in range(per_poster):
            body = f"race {tag} {n} {i}"
            p.send("community", body)
            with lock:
                sent.add(body)

    async def main() -> list[str]:
        seen: list[str] = []
        async with stack.client() as client:
            cursor = (await ok(client, "wait_for_messages", room="community", timeout_seconds=0))[
                "next_cursor"
            ]
            threads = [
                threading.Thread(target=post_all, args=(p, n)) for n, p in enumerate(posters)
            ]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads) or len(seen) < len(posters) * per_poster:
                result = await ok(
                    client, "wait_for_messages", room="community", since=cursor, timeout_seconds=5
                )
                cursor = result["next_cursor"]
                seen += [
                    m["body"] for m in result["messages"] if m["body"].startswith(f"race {tag}")
                ]
                if result["timed_out"] and not any(t.is_alive() for t in threads):
                    break
            for t in threads:
                t.join()
        return seen

    seen = anyio.run(main)
    assert len(seen) == len(set(seen)), "a message came twice"
    assert set(seen) == sent and len(sent) == len(posters) * per_poster


def test_a_room_s_messages_commit_in_seq_order(hasura_mcp_stack: McpStack) -> None:
    """The mechanism behind the per-room cursor: while one insert into a room is uncommitted,
    a second insert into the same room waits (it would otherwise draw a later seq and could
    commit first); another room does not wait."""
    world = hasura_mcp_stack.world
    assert isinstance(world, LiteWorld)
    sender = person(hasura_mcp_stack).id
    system = "phenom-system"  # member of every room
    insert = (
        "INSERT INTO chat.messages (room_id, sender_id, body) VALUES (%s, %s, 'x') RETURNING seq"
    )
    with psycopg.connect(world.dsn) as first, psycopg.connect(world.dsn) as second:
        held = first.execute(insert, (world.room_uuids["community"], sender)).fetchone()
        second.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            second.execute(insert, (world.room_uuids["community"], sender))
        second.rollback()
        second.execute("SET lock_timeout = '300ms'")
        second.execute(insert, (world.room_uuids["internal"], system))  # another room: no wait
        second.commit()
        first.commit()
        later = second.execute(insert, (world.room_uuids["community"], sender)).fetchone()
        second.commit()
    assert held is not None and later is not None and later[0] > held[0]


def _tools_list(stack: McpStack, token: str) -> int:
    import httpx2

    resp = httpx2.post(
        stack.url,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        timeout=10,
    )
    return resp.status_code


def test_a_revoked_agent_gets_401_on_b_too(hasura_mcp_stack: McpStack) -> None:
    # A: `phenom-chat admin agents revoke` (through Synapse). B has no Synapse: the same
    # promise through `phenom-chat lite agents revoke`, read by every replica within ~5 s.
    import subprocess
    import sys
    import time
    from pathlib import Path

    from fixtures_mcp import COMMUNITY

    stack = hasura_mcp_stack
    cli = [str(Path(sys.executable).parent / "phenom-chat"), "lite", "agents"]
    world = stack.world
    assert isinstance(world, LiteWorld)
    dsn = world.dsn
    token = stack.token(COMMUNITY)

    async def touch() -> None:
        async with stack.client(token) as client:
            await ok(client, "list_rooms")  # the agent's row exists from its first call

    anyio.run(touch)

    def status_becomes(expected: int) -> None:
        deadline = time.monotonic() + 15
        while _tools_list(stack, token) != expected:
            assert time.monotonic() < deadline, f"still not {expected}"
            time.sleep(0.3)

    try:
        done = subprocess.run(
            [*cli, "revoke", "@agent-community:localhost", "--dsn", dsn],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "revoked" in done.stdout
        status_becomes(401)
        # Other agents are not affected.
        assert _tools_list(stack, stack.token()) == 200
    finally:
        subprocess.run([*cli, "enable", "agent-community", "--dsn", dsn], timeout=60, check=True)
    status_becomes(200)
    unknown = subprocess.run(
        [*cli, "revoke", "agent-nobody", "--dsn", dsn], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode != 0 and "agent-nobody" in unknown.stderr + unknown.stdout
