"""The real MCP app (``build_app``) in this process, over ASGI, in front of a canned backend.

For comparing the light tools/call path with the SDK's own (``PHENOM_MCP_SDK_ONLY``) on
identical requests, and for measuring the app's CPU per call (bench/bench_mcp_cpu.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import attrs
import httpx2
import yaml
from loopback import serve

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.mcp.backend import InvalidRequest, OutgoingMessage
from synapse_phenom.mcp.config import AgentProfile, McpConfig
from synapse_phenom.mcp.devkeys import DEV_CLIENT_ID
from synapse_phenom.mcp.models import Message, MessagePage, SentMessage
from synapse_phenom.mcp.observability import configure_logging
from synapse_phenom.mcp.server import build_app

MODERN = "2026-07-28"
LEGACY = "2025-11-25"


class CannedBackend:
    """Answers at once: a sent message (or a refusal for the body "refuse"), a page."""

    async def health(self) -> dict[str, object]:
        return {"ok": True}

    async def send_message(
        self, agent: AgentProfile, room: str, message: OutgoingMessage
    ) -> SentMessage:
        if message.body == "refuse":
            raise InvalidRequest("The chat server refused it: too long, shorten it.")
        return SentMessage(event_id="$e", room_id="!r:localhost", sender="@agent-dev:localhost")

    async def get_messages(
        self, agent: AgentProfile, room: str, limit: int, before: str | None, thread: str | None
    ) -> MessagePage:
        return MessagePage(
            messages=[
                Message(
                    event_id=f"$e{i}",
                    room_id="!r:localhost",
                    sender="@u:localhost",
                    sender_display_name="U",
                    body="hello world " * 5,
                    timestamp="2026-11-30T17:00:00.000Z",
                )
                for i in range(limit)
            ],
            next_cursor="t1-2_3",
        )

    async def aclose(self) -> None:
        pass


def call_body(tool: str, args: Any, version: str, rid: int = 1, **meta: Any) -> str:
    """A tools/call request; 2026-07-28 ones carry the per-request envelope."""
    params: dict[str, Any] = {"name": tool, "arguments": args}
    envelope: dict[str, Any] = {}
    if version == MODERN:
        envelope = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "1"},
        }
    if envelope or meta:
        params["_meta"] = {**envelope, **meta}
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})


@attrs.frozen
class InProcessMcp:
    client: httpx2.AsyncClient
    token: str

    def headers(self, version: str, tool: str = "") -> dict[str, str]:
        out = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": version,
        }
        if version == MODERN:
            out |= {"Mcp-Method": "tools/call", "Mcp-Name": tool}
        return out


class _NoOpsModule(BaseHTTPRequestHandler):
    """A homeserver without Phenom's ops module: 404 for the revoked-agents list, which
    the MCP server reads before it accepts agent tokens (``mcp/revocation.py``)."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errcode": "M_UNRECOGNIZED"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@asynccontextmanager
async def inprocess_mcp(sdk_only: bool) -> AsyncIterator[InProcessMcp]:
    """The app built with (``sdk_only``) or without ``PHENOM_MCP_SDK_ONLY=1``."""
    with (
        tempfile.TemporaryDirectory(prefix="mcp-inprocess-") as tmp,
        serve(_NoOpsModule) as homeserver,
    ):
        data = Path(tmp)
        registration = mcp_dev.write_registration_file(data, "localhost")
        files = mcp_dev.prepare_mcp(data, homeserver, port=3999, registration=registration)
        config = McpConfig.model_validate(yaml.safe_load(files.config.read_text()))
        configure_logging("WARNING")
        before = os.environ.get("PHENOM_MCP_SDK_ONLY")
        os.environ["PHENOM_MCP_SDK_ONLY"] = "1" if sdk_only else "0"
        try:
            app = build_app(config, CannedBackend())  # type: ignore[arg-type]
        finally:
            if before is None:
                os.environ.pop("PHENOM_MCP_SDK_ONLY", None)
            else:
                os.environ["PHENOM_MCP_SDK_ONLY"] = before
        token = files.signer.token(DEV_CLIENT_ID, ["read", "write"])
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:3999"
            ) as client,
        ):
            yield InProcessMcp(client, token)
