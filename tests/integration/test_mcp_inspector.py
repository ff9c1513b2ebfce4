"""The MCP Inspector CLI (npm @modelcontextprotocol/inspector) as an independent client.

scripts/test installs it into tools/mcp-inspector (``npm ci``) when npm exists; CI has Node 20.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from fixtures_mcp import McpStack

pytestmark = pytest.mark.synapse

INSPECTOR = (
    Path(__file__).resolve().parents[2]
    / "tools"
    / "mcp-inspector"
    / "node_modules"
    / ".bin"
    / "mcp-inspector"
)


def inspector(stack: McpStack, tmp_path: Path, *args: str) -> tuple[int, Any, str]:
    if not INSPECTOR.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{INSPECTOR} missing: scripts/test runs `npm ci` in tools/mcp-inspector")
        pytest.skip("MCP Inspector not installed (needs npm: `cd tools/mcp-inspector && npm ci`)")
    proc = subprocess.run(
        [
            str(INSPECTOR),
            "--cli",
            stack.url,
            "--transport",
            "http",
            "--header",
            f"Authorization: Bearer {stack.token()}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MCP_CATALOG_PATH": str(tmp_path / "catalog.json"), "NO_COLOR": "1"},
    )
    try:
        parsed = json.loads(proc.stdout)
    except ValueError:
        parsed = None
    return proc.returncode, parsed, proc.stdout + proc.stderr


def test_inspector_lists_and_calls_tools(chat: McpStack, tmp_path: Path) -> None:
    """On every backend (sqlite, postgres: Synapse; hasura): nine tools, send -> get round trip."""
    mcp_stack = chat
    code, listed, output = inspector(mcp_stack, tmp_path, "--method", "tools/list")
    assert code == 0, output
    tools = {t["name"]: t for t in listed["tools"]}
    assert len(tools) == 9 and "send_message" in tools
    assert tools["delete_message"]["annotations"]["destructiveHint"] is True
    assert tools["get_messages"]["annotations"]["readOnlyHint"] is True

    code, called, output = inspector(
        mcp_stack,
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "list_room_members",
        "--tool-arg",
        "room=community",
    )
    assert code == 0, output
    assert called.get("isError") in (None, False), output
    members = {m["user_id"] for m in called["structuredContent"]["members"]}
    assert mcp_stack.agent_user_id() in members

    body = f"inspector round trip {uuid.uuid4().hex}"
    code, sent, output = inspector(
        mcp_stack,
        tmp_path,
        *("--method", "tools/call", "--tool-name", "send_message"),
        *("--tool-arg", "room=community", "--tool-arg", f"body={body}"),
    )
    assert code == 0 and sent.get("isError") in (None, False), output
    event_id = sent["structuredContent"]["event_id"]
    code, page, output = inspector(
        mcp_stack,
        tmp_path,
        *("--method", "tools/call", "--tool-name", "get_messages"),
        *("--tool-arg", "room=community", "--tool-arg", "limit=5"),
    )
    assert code == 0 and page.get("isError") in (None, False), output
    newest = page["structuredContent"]["messages"][0]
    assert (newest["event_id"], newest["body"], newest["sender"]) == (
        event_id,
        body,
        mcp_stack.agent_user_id(),
    )
