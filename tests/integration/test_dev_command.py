"""`phenom-chat dev` as a newcomer runs it: up, usable, stops cleanly, keeps data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from harness import PRODUCTION_ENV, MatrixClient, env_without_phenom, free_port, spawn_dev
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

BIN = Path(sys.executable).parent / "phenom-chat"


def start_dev(data_dir: Path, port: int) -> subprocess.Popen[str]:
    # Narrow on purpose: into a pipe, the banner must not wrap whatever COLUMNS says.
    return spawn_dev(data_dir, "--port", str(port), columns=40)


def wait_up(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("dev exited early:\n" + "".join(seen))
        seen.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(seen)
    raise AssertionError("dev stack did not come up:\n" + "".join(seen))


def child_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_cleanly(proc: subprocess.Popen[str], signum: int, children: list[int]) -> None:
    """Signal the dev command; it must exit 0 and leave no child process behind."""
    proc.send_signal(signum)
    proc.wait(60)
    assert proc.returncode == 0
    assert not any(alive(p) for p in children), "a child outlived the dev command"


def provision(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "provision-user", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.slow  # dev tooling: not in the oldest-Synapse run (scripts/test-oldest)
def test_dev_stack_lifecycle(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    port = free_port()
    children: list[int] = []
    proc = start_dev(data_dir, port)
    try:
        banner = wait_up(proc)
        for alias in ("#internal:localhost", "#partners:localhost", "#community:localhost"):
            assert alias in banner
        assert f"http://127.0.0.1:{port}" in banner
        command = (
            f"provision-user --data-dir {data_dir} --username alice --password 'choose-one' "
            "--groups team"
        )
        assert any(line.rstrip().endswith(command) for line in banner.splitlines()), banner
        assert any(str(data_dir / "agent-token") in line for line in banner.splitlines())

        created = provision(
            data_dir, "--username", "alice", "--password", "pw-alice", "--groups", "team"
        )
        assert created.returncode == 0, created.stdout + created.stderr
        assert "@alice:localhost created" in created.stdout
        bad = provision(data_dir, "--username", "bob", "--groups", "no spaces allowed")
        assert bad.returncode == 2 and "invalid group name" in bad.stderr
        children = child_pids(proc.pid)
        assert children, "dev started no processes"
    finally:
        stop_cleanly(proc, signal.SIGTERM, children)

    # Second run, same dir: the user and their rooms are still there.
    children = []
    proc = start_dev(data_dir, port)
    try:
        wait_up(proc)
        resp = httpx2.post(
            f"http://127.0.0.1:{port}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "pw-alice",
            },
        )
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
        client = MatrixClient(f"http://127.0.0.1:{port}", "@alice:localhost", token)
        assert len(client.joined_rooms()) == 3
        children = child_pids(proc.pid)
        assert children, "dev started no processes"
    finally:
        stop_cleanly(proc, signal.SIGINT, children)


def test_render_config_names_missing_variables(tmp_path: Path) -> None:
    env = env_without_phenom(COLUMNS="200")
    result = subprocess.run([str(BIN), "render-config"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "PHENOM_SERVER_NAME" in result.stderr and "PHENOM_DB_HOST" in result.stderr
    env.update(PRODUCTION_ENV)
    out = tmp_path / "homeserver.yaml"
    result = subprocess.run(
        [str(BIN), "render-config", "-o", str(out)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert 'server_name: "chat.example.org"' in out.read_text()


def test_dev_hasura_backend_with_embedded_postgres(tmp_path: Path) -> None:
    """`dev --backend hasura` with no database: embedded PostgreSQL, migrations, rooms, an agent
    token that works; a second run keeps the data; nothing outlives the command."""
    data_dir = tmp_path / "dev-b"
    mcp_port = free_port()

    def start() -> subprocess.Popen[str]:
        return spawn_dev(data_dir, "--backend", "hasura", "--mcp-port", str(mcp_port))

    async def call(tool: str, **args: object) -> dict[str, Any]:
        token = (data_dir / "agent-token").read_text().strip()
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
            Client(
                streamable_http_client(f"http://127.0.0.1:{mcp_port}/mcp", http_client=http)
            ) as client,
        ):
            if tool == "tools/list":
                return {"tools": [t.name for t in (await client.list_tools()).tools]}
            result = await client.call_tool(tool, dict(args))
            assert not result.is_error, result.content
            assert result.structured_content is not None
            return result.structured_content

    body = f"hello from B {uuid.uuid4().hex}"
    proc = start()
    children: list[int] = []
    try:
        banner = wait_up(proc)
        assert "hasura backend" in banner and "embedded" in banner
        for alias in ("#internal:localhost", "#partners:localhost", "#community:localhost"):
            assert alias in banner
        assert len(anyio.run(call, "tools/list")["tools"]) == 9
        anyio.run(lambda: call("send_message", room="community", body=body))
        children = child_pids(proc.pid)
        assert children, "dev started no processes"
    finally:
        stop_cleanly(proc, signal.SIGTERM, children)

    proc = start()
    children = []
    try:
        wait_up(proc)
        page = anyio.run(lambda: call("get_messages", room="community", limit=5))
        assert [m["body"] for m in page["messages"]][:1] == [body]
        children = child_pids(proc.pid)
    finally:
        stop_cleanly(proc, signal.SIGINT, children)


def test_dev_database_url_needs_the_hasura_backend(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(BIN),
            "dev",
            "--data-dir",
            str(tmp_path),
            "--database-url",
            "postgresql://x@127.0.0.1/y",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2 and "--backend hasura" in result.stderr


def test_ports_in_use_are_reported_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    with socket.socket() as synapse_port, socket.socket() as mcp_port:
        for sock in (synapse_port, mcp_port):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        busy, busy_mcp = synapse_port.getsockname()[1], mcp_port.getsockname()[1]
        began = time.monotonic()
        result = subprocess.run(
            [BIN, "dev", "--data-dir", data_dir, "--port", str(busy), "--mcp-port", str(busy_mcp)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        same = subprocess.run(
            [BIN, "dev", "--data-dir", data_dir, "--port", "18008", "--mcp-port", "18008"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"Synapse (--port): port {busy} on 127.0.0.1 is already in use" in result.stderr
    assert f"MCP server (--mcp-port): port {busy_mcp} on 127.0.0.1 is already in use" in (
        result.stderr
    )
    assert "is up" not in result.stdout
    assert not (data_dir / "homeserver.yaml").exists()  # nothing was prepared or started
    assert time.monotonic() - began < 30
    assert same.returncode == 2 and "cannot both use port 18008" in same.stderr
