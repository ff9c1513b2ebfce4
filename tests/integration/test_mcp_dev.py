"""Acceptance: `phenom-chat dev` serves Synapse and MCP; with DIR/agent-token an MCP client
lists the nine tools, and what send_message posts reaches a Matrix user from the agent's own ID."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import httpx2
import pytest
from harness import free_port, spawn_dev
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

BIN = Path(sys.executable).parent / "phenom-chat"


@pytest.mark.slow  # dev tooling: not in the oldest-Synapse run (scripts/test-oldest)
def test_dev_serves_mcp_next_to_synapse(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    port, mcp_port = free_port(), free_port()
    proc = spawn_dev(data_dir, "--port", str(port), "--mcp-port", str(mcp_port))
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "dev exited early:\n" + "".join(seen)
            seen.append(line)
            if "Ctrl-C stops everything" in line:
                break
        banner = "".join(seen)
        assert f"http://127.0.0.1:{mcp_port}/mcp" in banner
        token = (data_dir / "agent-token").read_text().strip()
        assert (data_dir / "agent-token").stat().st_mode & 0o077 == 0

        made = subprocess.run(
            [
                str(BIN),
                "provision-user",
                "--data-dir",
                str(data_dir),
                "--username",
                "alice",
                "--password",
                "pw-alice-1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        base = f"http://127.0.0.1:{port}"
        login = httpx2.post(
            f"{base}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "pw-alice-1",
            },
            timeout=30,
        ).json()
        alice = {"Authorization": f"Bearer {login['access_token']}"}
        since = httpx2.get(
            f"{base}/_matrix/client/v3/sync", headers=alice, params={"timeout": 0}, timeout=30
        ).json()["next_batch"]
        body = f"hello from the dev agent {uuid.uuid4().hex}"

        async def main() -> tuple[list[str], str]:
            async with (
                httpx2.AsyncClient(
                    headers={"Authorization": f"Bearer {token}"}, timeout=60
                ) as http,
                Client(
                    streamable_http_client(f"http://127.0.0.1:{mcp_port}/mcp", http_client=http)
                ) as client,
            ):
                names = [t.name for t in (await client.list_tools()).tools]
                sent = await client.call_tool("send_message", {"room": "community", "body": body})
                assert not sent.is_error, sent.content
                assert sent.structured_content is not None
                return names, str(sent.structured_content["event_id"])

        names, event_id = anyio.run(main)
        assert len(names) == 9
        events: list[dict[str, object]] = []
        deadline = time.monotonic() + 15
        while (
            not any(e.get("event_id") == event_id for e in events) and time.monotonic() < deadline
        ):
            sync = httpx2.get(
                f"{base}/_matrix/client/v3/sync",
                headers=alice,
                params={"since": since, "timeout": 5000},
                timeout=30,
            ).json()
            since = sync["next_batch"]
            for room in sync.get("rooms", {}).get("join", {}).values():
                events.extend(room.get("timeline", {}).get("events", []))
        mine = [e for e in events if e.get("event_id") == event_id]
        assert mine and mine[0]["sender"] == "@agent-dev:localhost"
        assert mine[0]["content"]["body"] == body  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0
    for probe in (
        f"http://127.0.0.1:{port}/_matrix/client/versions",
        f"http://127.0.0.1:{mcp_port}/health",
    ):
        try:
            httpx2.get(probe, timeout=2)
            raise AssertionError(f"{probe} still answers after Ctrl-C")
        except httpx2.TransportError:
            pass
