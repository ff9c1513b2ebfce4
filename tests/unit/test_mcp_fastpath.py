"""The light tools/call path answers exactly what the SDK's own path answers.

Same app (``build_app``, canned backend), built with and without ``PHENOM_MCP_SDK_ONLY=1``,
same requests in both protocol eras: successes, tool failures, argument errors, unknown
tools, envelope and header rejections. Compared: HTTP status and the JSON-RPC message (the
SDK's legacy path frames it as SSE; the light path answers JSON).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp.server import streamable_http_manager as manager
from mcp_inprocess import LEGACY, MODERN, call_body, inprocess_mcp

PROBES: list[tuple[str, str, Any, dict[str, Any], dict[str, str]]] = [
    # (label, tool, arguments, extra _meta, extra headers)
    ("send", "send_message", {"room": "internal", "body": "hi **there**"}, {}, {}),
    ("page", "get_messages", {"room": "internal", "limit": 3}, {}, {}),
    ("backend refusal", "send_message", {"room": "internal", "body": "refuse"}, {}, {}),
    ("tool check", "get_messages", {"room": "internal", "limit": 500}, {}, {}),
    ("missing argument", "send_message", {"room": "internal"}, {}, {}),
    ("wrong type", "get_messages", {"room": "internal", "limit": "many"}, {}, {}),
    ("unknown tool", "no_such_tool", {}, {}, {}),
    ("arguments not an object", "list_rooms", [1, 2], {}, {}),
]
MODERN_ONLY: list[tuple[str, str, Any, dict[str, Any], dict[str, str]]] = [
    ("header names another tool", "list_rooms", {}, {}, {"Mcp-Name": "send_message"}),
    (
        "unsupported version",
        "list_rooms",
        {},
        {"io.modelcontextprotocol/protocolVersion": "1999-01-01"},
        {},
    ),
    ("param header", "get_messages", {"room": "internal"}, {}, {"Mcp-Param-Room": "partners"}),
]


def _message(text: str, content_type: str) -> dict[str, Any]:
    if content_type.startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        return dict(json.loads(data[-1]))
    return dict(json.loads(text))


async def _answers(
    sdk_only: bool, version: str, probes: list[Any], raw: bool = False
) -> list[tuple[int, Any]]:
    """(status, JSON-RPC message) per probe; ``raw``: (status, body text), for refusals."""
    out: list[tuple[int, Any]] = []
    async with inprocess_mcp(sdk_only) as mcp:
        for _, tool, args, meta, extra in probes:
            headers = {**mcp.headers(version, tool), **extra}
            body = call_body(tool, args, version, **meta)
            resp = await mcp.client.post("/mcp", content=body, headers=headers)
            answer = resp.text if raw else _message(resp.text, resp.headers["content-type"])
            out.append((resp.status_code, answer))
    return out


@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_light_path_and_sdk_path_give_the_same_answers(
    version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = PROBES + (MODERN_ONLY if version == MODERN else [])
    sdk_calls: list[str] = []  # requests the SDK's own handlers served
    for name in ("handle_modern_request", "StreamableHTTPServerTransport"):
        real = getattr(manager, name)

        def counted(*args: Any, real: Any = real, name: str = name, **kwargs: Any) -> Any:
            sdk_calls.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(manager, name, counted)
    sdk = anyio.run(_answers, True, version, probes)
    assert len(sdk_calls) == len(probes)
    sdk_calls.clear()
    light = anyio.run(_answers, False, version, probes)
    # The light path served the plain calls; the SDK only what it must (unknown tool, …).
    assert len(sdk_calls) < len(probes) - 5, sdk_calls
    for (label, *_), want, got in zip(probes, sdk, light, strict=True):
        assert got == want, label
    # The probes cover both outcomes: results and errors.
    assert any("result" in m and not m["result"].get("isError") for _, m in sdk)
    assert any("result" in m and m["result"].get("isError") for _, m in sdk)
    assert any("error" in m for _, m in sdk)


# Requests an attacker shapes: a DNS-rebinding page (Host, Origin), a form post (no JSON
# content type), a tool the token has no scope for (delete_message needs moderate), no or a
# bad token, a client that does not accept SSE. Neither path may run the tool for any of
# them, and both must answer alike.
HOSTILE: list[tuple[str, str, Any, dict[str, Any], dict[str, str]]] = [
    (
        "rebinding host",
        "send_message",
        {"room": "internal", "body": "x"},
        {},
        {"Host": "evil.example"},
    ),
    (
        "rebinding origin",
        "send_message",
        {"room": "internal", "body": "x"},
        {},
        {"Origin": "http://evil.example"},
    ),
    (
        "form post",
        "send_message",
        {"room": "internal", "body": "x"},
        {},
        {"Content-Type": "text/plain"},
    ),
    ("no scope", "delete_message", {"room": "internal", "event_id": "$e"}, {}, {}),
    ("no token", "list_rooms", {}, {}, {"Authorization": ""}),
    ("bad token", "list_rooms", {}, {}, {"Authorization": "Bearer x.y.z"}),
    # Streamable HTTP: the client MUST accept both; the SDK answers 406 (the light path ran it).
    ("accepts json only", "list_rooms", {}, {}, {"Accept": "application/json"}),
]


@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_hostile_requests_get_the_same_refusals(version: str) -> None:
    sdk = anyio.run(_answers, True, version, HOSTILE, True)
    light = anyio.run(_answers, False, version, HOSTILE, True)
    for (label, *_), want, got in zip(HOSTILE, sdk, light, strict=True):
        assert got == want, label
        assert want[0] in (400, 401, 403, 406, 415, 421), (label, want)
