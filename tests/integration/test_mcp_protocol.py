"""MCP protocol edges, probed with raw JSON-RPC over HTTP against the real sidecar + Synapse.

What the conformance suite and raw probes found: capabilities only for what is served,
-32602 for an unknown tool, the package version in serverInfo, 405 for GET on the
stateless endpoint, a clear "shorten it" for messages too large, and search queries full
of full-text-search syntax that never reach the homeserver as a 500. On every backend.
"""

from __future__ import annotations

import json
import uuid
from importlib.metadata import version
from typing import Any

import anyio
import httpx2
import pytest
from fixtures_mcp import McpStack
from mcp import Client

pytestmark = pytest.mark.synapse

PROTOCOL = "2025-06-18"


def rpc(stack: McpStack, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON-RPC request (initialize-era headers), its response parsed from JSON or SSE."""
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    if method != "initialize":
        message["params"] = {**(params or {})}
    resp = httpx2.post(
        stack.url,
        json=message,
        headers={
            "Authorization": f"Bearer {stack.token()}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
        },
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    if resp.headers["content-type"].startswith("application/json"):
        return dict(resp.json())
    data = [line[5:].strip() for line in resp.text.splitlines() if line.startswith("data:")]
    return dict(json.loads(data[-1]))


def initialize(stack: McpStack) -> dict[str, Any]:
    return rpc(
        stack,
        "initialize",
        {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    )


def test_only_tools_are_advertised_and_the_version_is_the_packages(chat: McpStack) -> None:
    result = initialize(chat)["result"]
    assert result["serverInfo"]["version"] == version("synapse-phenom")
    assert result["serverInfo"]["name"] == "phenom-chat"
    capabilities = result["capabilities"]
    assert "tools" in capabilities
    assert "prompts" not in capabilities and "resources" not in capabilities
    for method in ("prompts/get", "prompts/list", "resources/list", "resources/read"):
        error = rpc(chat, method, {"name": "x", "uri": "x://y"})["error"]
        assert error["code"] == -32601, (method, error)  # method not found


MODERN = "2026-07-28"


def call_tool(stack: McpStack, params: dict[str, Any], **headers: str) -> httpx2.Response:
    """A raw tools/call POST; ``headers`` add to or replace the defaults (PROTOCOL's era)."""
    return httpx2.post(
        stack.url,
        json={"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params},
        headers={
            "Authorization": f"Bearer {stack.token()}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
            **headers,
        },
        timeout=30,
    )


def test_a_plain_tools_call_is_answered_with_json_and_progress_keeps_sse(chat: McpStack) -> None:
    def post(params: dict[str, Any]) -> httpx2.Response:
        return call_tool(chat, params)

    plain = post({"name": "list_rooms", "arguments": {}})
    assert plain.headers["content-type"] == "application/json"
    assert {r["key"] for r in plain.json()["result"]["structuredContent"]["rooms"]} == {
        "internal",
        "partners",
        "community",
    }
    progress = post({"name": "list_rooms", "arguments": {}, "_meta": {"progressToken": "p1"}})
    assert progress.headers["content-type"].startswith("text/event-stream")
    assert "structuredContent" in progress.text
    # The fast path keeps the transport's DNS-rebinding check.
    evil = httpx2.post(
        chat.url,
        json={"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "list_rooms"}},
        headers={
            "Authorization": f"Bearer {chat.token()}",
            "Accept": "application/json, text/event-stream",
            "Host": "evil.example",
        },
        timeout=30,
    )
    assert evil.status_code == 421


def test_a_modern_envelope_tools_call_keeps_the_sdks_checks_and_result_shape(
    chat: McpStack,
) -> None:
    """A 2026-07-28 tools/call answered by the light path keeps the SDK's envelope ladder,
    result sieve (``resultType``), serverInfo stamp and DNS-rebinding check."""

    def post(params: dict[str, Any], **headers: str) -> httpx2.Response:
        modern = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"}
        return call_tool(chat, params, **{**modern, "Mcp-Name": "list_rooms", **headers})

    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "1"},
    }
    plain = post({"name": "list_rooms", "arguments": {}, "_meta": envelope})
    assert plain.status_code == 200, plain.text
    assert plain.headers["content-type"] == "application/json"
    result = plain.json()["result"]
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "phenom-chat"
    assert {r["key"] for r in result["structuredContent"]["rooms"]} == {
        "internal",
        "partners",
        "community",
    }
    # The SDK's header rung: Mcp-Name must name the tool in the body.
    mismatch = post(
        {"name": "list_rooms", "arguments": {}, "_meta": envelope}, **{"Mcp-Name": "send_message"}
    )
    assert "error" in mismatch.json(), mismatch.text
    # The envelope rung: a modern request without its _meta pair is refused, not served.
    bare = post({"name": "list_rooms", "arguments": {}})
    assert "envelope" in bare.json()["error"]["message"], bare.text
    # DNS-rebinding protection still applies.
    evil = post({"name": "list_rooms", "arguments": {}, "_meta": envelope}, Host="evil.example")
    assert evil.status_code == 421


def test_an_unknown_tool_is_invalid_params(chat: McpStack) -> None:
    error = rpc(chat, "tools/call", {"name": "no_such_tool", "arguments": {}})["error"]
    assert error["code"] == -32602
    assert "no_such_tool" in error["message"] and "tools/list" in error["message"]


def test_the_stateless_endpoint_answers_get_and_delete_with_405(chat: McpStack) -> None:
    for method in ("GET", "DELETE"):
        for headers in ({}, {"Authorization": f"Bearer {chat.token()}"}):
            resp = httpx2.request(
                method,
                chat.url,
                headers={**headers, "Accept": "text/event-stream"},
                timeout=10,
            )
            assert resp.status_code == 405, (method, headers.keys(), resp.status_code)
            assert resp.headers["allow"] == "POST"


async def tool(client: Client, name: str, **args: Any) -> tuple[bool, Any]:
    result = await client.call_tool(name, args)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    return result.is_error, (text if result.is_error else result.structured_content)


def test_a_message_too_large_for_the_homeserver_says_to_shorten_it(chat: McpStack) -> None:
    async def main() -> list[tuple[bool, Any]]:
        async with chat.client() as client:
            return [
                # Under the character limit, but its HTML (&lt; for each <) is ~116 KB.
                await tool(client, "send_message", room="community", body="<" * 29_000),
                # Four bytes per character: 112 KB of UTF-8.
                await tool(client, "send_message", room="community", body="😀" * 28_000),
                await tool(client, "send_message", room="community", body="x" * 30_001),
            ]

    async def nul() -> tuple[bool, Any]:
        async with chat.client() as client:
            return await tool(client, "send_message", room="community", body="a\x00b")

    is_error, text = anyio.run(nul)
    assert is_error and "NUL" in text

    for is_error, text in anyio.run(main):
        assert is_error
        assert "hort" in text and "split" in text, text  # "Shorten…" / "shorten…"
        assert "try again shortly" not in text


FTS_SYNTAX = (
    "a' OR 1=1 --",
    '"',
    '""',
    "*",
    "NEAR(",
    "-",
    "--",
    '"unbalanced quote',
    "OR",
    "AND",
    "NOT",
    "x OR",
    "OR x",
    "-x",
    "x OR -y",
    "(x",
    "x:y",
    "^x",
    "x*",
    "NEAR(x y)",
    "x NEAR/3 y",
    "the",
    "\x00",
    "%",
    "'; DROP TABLE events; --",
)


def test_search_with_full_text_syntax_never_fails_on_the_homeserver(
    chat: McpStack,
) -> None:
    person = chat.world.register("Searcher")
    word = f"fts{uuid.uuid4().hex[:10]}"
    person.send("community", f"{word} OR 1=1 alpha-beta NEAR the end")

    async def main() -> dict[str, tuple[bool, Any]]:
        async with chat.client() as client:
            out = {q: await tool(client, "search_messages", query=q) for q in FTS_SYNTAX}
            for q in (f"{word}", f"{word} OR", f"'{word}' OR 1=1 --", f'"{word}', f"NEAR({word}"):
                out[q] = await tool(client, "search_messages", query=q)
            return out

    for query, (is_error, answer) in anyio.run(main).items():
        if is_error:
            assert "Nothing to search for" in answer or "query must be" in answer, (query, answer)
            assert "failed (500" not in answer
        else:
            assert isinstance(answer["messages"], list)
        if word in query:
            assert not is_error, (query, answer)
            found = [m["body"].split()[0] for m in answer["messages"]]
            # `'w' OR 1=1 --` is "w or 1 1": other messages with a 1 match too.
            assert found == [word] if query == word else word in found, (query, found)
