"""``phenom-chat doctor`` on a fresh dev stack (all green) and on deliberately broken ones.

The dev stack is started exactly as a newcomer does (``phenom-chat dev``); each breakage
is real: the MCP sidecar process is stopped, the MCP server is given a registration whose
token Synapse does not know, a room's alias is deleted. The doctor must name each one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2
import psycopg2
import pytest
import yaml
from fixtures_mcp import McpStack
from harness import eventually, free_port, require_postgres_dsn, require_redis, start_dev_command

from synapse_phenom.cli import main as cli_main
from synapse_phenom.ops import devstack
from synapse_phenom.ops.doctor import Target
from synapse_phenom.ops.doctor_core import check_database
from synapse_phenom.ops.doctor_services import check_workers

pytestmark = pytest.mark.synapse

BIN = Path(sys.executable).parent / "phenom-chat"


def doctor(data_dir: Path, *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = subprocess.run(
        [str(BIN), "doctor", "--data-dir", str(data_dir), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "PHENOM_ADMIN_TOKEN": ""},
    )
    rows = json.loads(proc.stdout)
    return proc.returncode, {r["check"]: r for r in rows}


def mcp_child(parent: int) -> int:
    """The MCP server process the dev command started (a child of it)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"mcp" in cmdline:
            return int(stat.parent.name)
    raise AssertionError("the dev command runs no MCP process")


def test_doctor_green_then_names_each_breakage(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    port = free_port()
    proc = start_dev_command(data_dir, port)
    try:
        # Healthy: every check passes (offline dev: the public Phenom origin is only a warning).
        def green() -> dict[str, dict[str, Any]]:
            code, rows = doctor(data_dir)
            assert code == 0, {k: v for k, v in rows.items() if v["status"] == "fail"}
            return rows

        rows = eventually(green, timeout=30, interval=1)
        for name in (
            "config renders",
            "database",
            "modules loaded",
            "room internal",
            "room partners",
            "room community",
            "system user",
            "appservice",
            "MCP /health",
            "MCP JWKS",
        ):
            assert rows[name]["status"] == "pass", rows[name]
        assert "PhenomOps" in rows["modules loaded"]["detail"]

        # Wrong appservice token: the MCP config names a registration Synapse never loaded.
        mcp_config = yaml.safe_load((data_dir / "mcp.yaml").read_text())
        registration = yaml.safe_load((data_dir / "mcp-appservice.yaml").read_text())
        (tmp_path / "wrong-reg.yaml").write_text(
            yaml.safe_dump({**registration, "as_token": "not-the-token"})
        )
        mcp_config["synapse"]["registration_file"] = str(tmp_path / "wrong-reg.yaml")
        (tmp_path / "wrong-mcp.yaml").write_text(yaml.safe_dump(mcp_config))
        code, rows = doctor(data_dir, "--mcp-config", str(tmp_path / "wrong-mcp.yaml"))
        assert code == 1
        assert rows["appservice"]["status"] == "fail"
        assert "tokens differ" in rows["appservice"]["detail"] and rows["appservice"]["fix"]

        # Missing room: its alias is gone.
        token = devstack.ensure_admin_token(data_dir.resolve(), f"http://127.0.0.1:{port}")
        resp = httpx2.delete(
            f"http://127.0.0.1:{port}/_matrix/client/v3/directory/room/{quote('#partners:localhost')}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 200, resp.text
        code, rows = doctor(data_dir)
        assert code == 1
        assert rows["room partners"]["status"] == "fail"
        assert "#partners:localhost does not resolve" in rows["room partners"]["detail"]
        assert rows["room community"]["status"] == "pass"

        # MCP sidecar stopped.
        os.kill(mcp_child(proc.pid), signal.SIGTERM)
        code, rows = eventually(
            lambda: (r := doctor(data_dir)) and r[1]["MCP /health"]["status"] == "fail" and r,
            timeout=30,
        )
        assert code == 1
        assert (
            "unreachable" in rows["MCP /health"]["detail"]
            and "phenom-chat mcp" in rows["MCP /health"]["fix"]
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def test_doctor_on_the_test_synapse_checks_its_database(
    mcp_stack: McpStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both engines: on PostgreSQL the doctor connects and checks the C collation."""
    synapse = mcp_stack.synapse
    token_file = tmp_path / "token"
    token_file.write_text(synapse.admin_token)
    args = [
        "doctor",
        "--config",
        str(synapse.config_path),
        "--mcp-config",
        str(mcp_stack.config_path),
        "--token-file",
        str(token_file),
        "--json",
    ]
    capsys.readouterr()
    code = cli_main(args)
    rows = {r["check"]: r for r in json.loads(capsys.readouterr().out)}
    assert code == 0, {k: v for k, v in rows.items() if v["status"] == "fail"}
    if synapse.engine == "postgres":
        assert rows["database"]["status"] == "pass" and "collation C" in rows["database"]["detail"]
    else:
        assert "SQLite" in rows["database"]["detail"]
    assert rows["MCP /health"]["status"] == "pass" and rows["appservice"]["status"] == "pass"


def test_doctor_fails_a_database_without_c_collation() -> None:
    dsn = require_postgres_dsn("the collation check needs PostgreSQL")
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    name = f"phenom_doctor_{os.getpid()}"
    with conn.cursor() as cur:
        cur.execute(
            "SELECT collname FROM pg_collation"
            " WHERE collname IN ('C.utf8', 'C.UTF-8', 'en_US.utf8')"
        )
        locales = [r[0] for r in cur.fetchall()]
        assert locales, "no non-C locale to test with"
        cur.execute(
            f"CREATE DATABASE {name} TEMPLATE template0"
            f" LC_COLLATE '{locales[0]}' LC_CTYPE '{locales[0]}'"
        )
    try:
        parts = urlsplit(dsn)
        config = {
            "server_name": "x",
            "database": {
                "name": "psycopg2",
                "args": {
                    "host": parts.hostname,
                    "port": parts.port or 5432,
                    "user": parts.username,
                    "dbname": name,
                },
            },
        }
        check = check_database(
            Target(config=config, base_url="http://127.0.0.1:1", admin_token=None, production=True)
        )
        assert (
            check.status == "fail" and "needs C/C" in check.detail and "LC_COLLATE='C'" in check.fix
        )
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def test_doctor_checks_redis_and_the_replication_listener() -> None:
    require_redis("the workers check talks to Redis")
    closed = free_port()
    config = {
        "server_name": "x",
        "redis": {"enabled": True, "host": "127.0.0.1", "port": 6379},
        "instance_map": {"main": {"host": "127.0.0.1", "port": closed}},
    }
    target = Target(config=config, base_url="http://127.0.0.1:1", admin_token=None, production=True)
    rows = {c.name: c for c in check_workers(target)}
    assert rows["redis"].status == "pass" and "PONG" in rows["redis"].detail
    assert rows["instance main"].status == "fail" and rows["instance main"].fix
    config["redis"] = {"enabled": True, "host": "127.0.0.1", "port": closed}
    assert {c.name: c for c in check_workers(target)}["redis"].status == "fail"
    assert (
        check_workers(Target(config={}, base_url="", admin_token=None, production=False))[0].status
        == "skip"
    )
