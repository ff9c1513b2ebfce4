"""CPU per tools/call of the MCP app itself, in one process, without Synapse or sockets.

The real ``build_app`` (auth, scope gate, the light path or the SDK, tools, models) in front
of a backend that answers at once with canned results (a sent message; a page of 20
messages), driven over ASGI by httpx2 in the same process. CPU time (``process_time``) per
call, client included: far less noisy than wall clock on a shared machine. Compare the two
paths in one run:

    .venv/bin/python bench/bench_mcp_cpu.py [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2
import yaml

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.mcp.backend import OutgoingMessage
from synapse_phenom.mcp.config import AgentProfile, McpConfig
from synapse_phenom.mcp.devkeys import DEV_CLIENT_ID
from synapse_phenom.mcp.models import Message, MessagePage, SentMessage
from synapse_phenom.mcp.observability import configure_logging
from synapse_phenom.mcp.server import build_app


class CannedBackend:
    async def health(self) -> dict[str, object]:
        return {"ok": True}

    async def send_message(
        self, agent: AgentProfile, room: str, message: OutgoingMessage
    ) -> SentMessage:
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


CALLS: Sequence[tuple[str, dict[str, Any]]] = (
    ("send_message", {"room": "internal", "body": "bench"}),
    ("get_messages", {"room": "internal", "limit": 20}),
)


MODERN = "2026-07-28"


def request_body(tool: str, args: dict[str, Any], version: str) -> str:
    params: dict[str, Any] = {"name": tool, "arguments": args}
    if version == MODERN:  # the per-request envelope of the stateless revision
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        }
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})


async def measure(calls: int, version: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-mcp-cpu-") as tmp:
        data = Path(tmp)
        registration = mcp_dev.write_registration_file(data, "localhost")
        files = mcp_dev.prepare_mcp(
            data, "http://127.0.0.1:9", port=3999, registration=registration
        )
        config = McpConfig.model_validate(yaml.safe_load(files.config.read_text()))
        configure_logging("WARNING")
        app = build_app(config, CannedBackend())  # type: ignore[arg-type]
        headers = {
            "Authorization": f"Bearer {files.signer.token(DEV_CLIENT_ID, ['read', 'write'])}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": version,
        }
        out = {}
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:3999"
            ) as client,
        ):
            for tool, args in CALLS:
                body = request_body(tool, args, version)
                call_headers = {**headers, "Mcp-Method": "tools/call", "Mcp-Name": tool}

                async def one(
                    body: str = body, call_headers: dict[str, str] = call_headers
                ) -> None:
                    resp = await client.post("/mcp", content=body, headers=call_headers)
                    if resp.status_code != 200 or '"isError":true' in resp.text:
                        raise RuntimeError(resp.text[:300])

                for _ in range(50):
                    await one()
                started = time.process_time()
                for _ in range(calls):
                    await one()
                out[tool] = 1000 * (time.process_time() - started) / calls
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    results = {}
    for label, sdk_only, version in (
        ("2025-11-25 SDK path", "1", "2025-11-25"),
        ("2025-11-25 light path", "0", "2025-11-25"),
        (f"{MODERN} SDK path", "1", MODERN),
        (f"{MODERN} light path", "0", MODERN),
    ):
        os.environ["PHENOM_MCP_SDK_ONLY"] = sdk_only
        results[label] = anyio.run(measure, args.calls, version)
    print("CPU ms per tools/call (app + in-process client, canned backend):")
    for label, row in results.items():
        print(f"  {label:22}  " + "  ".join(f"{t} {ms:.2f}" for t, ms in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
