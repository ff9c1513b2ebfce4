"""Alert rules and dashboard as code: promtool validates and unit-tests them.

promtool comes from Debian's ``prometheus`` package (``.ci/run`` installs it). Locally a
missing promtool skips these tests with the reason; on CI (CI=true) it is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from synapse_phenom.ops.metric_names import (
    dashboard_exprs,
    exposed_names,
    names_in_expr,
    rule_exprs,
    used_names,
)

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "prometheus" / "phenom-alerts.yml"
RULE_TESTS = MONITORING / "prometheus" / "phenom-alerts.test.yml"
DASHBOARD = MONITORING / "grafana" / "phenom-chat.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("CI must run promtool: install Debian's prometheus package (.ci/run does)")
    pytest.skip(
        "promtool not installed: apt-get install --no-install-recommends prometheus (CI does)"
    )


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_are_valid_and_their_unit_tests_pass(promtool: str) -> None:
    check = run(promtool, "check", "rules", RULES.name, cwd=RULES.parent)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_section() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = {
        c["alertname"]
        for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for c in t["alert_rule_test"]
    }
    assert alerts == tested
    runbook = (ROOT / "docs" / "operations.md").read_text()
    missing = [a for a in sorted(alerts) if f"### {a}" not in runbook]
    assert not missing, f"docs/operations.md has no section for {missing}"


def _copy_with(tmp_path: Path, old: str, new: str) -> None:
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new, 1))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)


def test_a_broken_expression_fails_promtool(promtool: str, tmp_path: Path) -> None:
    _copy_with(
        tmp_path,
        "sum by (instance, module, callback) (rate(phenom_module_callback_errors_total[5m])) > 0",
        "sum by (instance, module, callback) (rate(phenom_module_callback_errors_total[5m]) > 0",
    )
    check = run(promtool, "check", "rules", RULES.name, cwd=tmp_path)
    assert check.returncode != 0 and "parse error" in (check.stdout + check.stderr).lower()
    assert run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path).returncode != 0


def test_an_alert_that_no_longer_fires_fails_the_unit_tests(promtool: str, tmp_path: Path) -> None:
    _copy_with(
        tmp_path,
        "synapse_replication_tcp_command_queue) > 100",
        "synapse_replication_tcp_command_queue) > 1000",
    )
    tested = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert (
        tested.returncode != 0 and "SynapseWorkerReplicationBehind" in tested.stdout + tested.stderr
    )


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    exprs = list(dashboard_exprs(DASHBOARD))
    assert len(exprs) >= 15
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(rules))
    check = run(promtool, "check", "rules", "dashboard-rules.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_metric_names_of_expressions() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, tool) "
        '(rate(phenom_mcp_tool_duration_seconds_bucket{tool!="x"}[10m]))) > '
        "5"
        " and on (instance) max_over_time(up[5m]) - ignoring (name) "
        "synapse_event_persisted_position offset 5m"
    )
    assert names_in_expr(expr) == {
        "phenom_mcp_tool_duration_seconds_bucket",
        "up",
        "synapse_event_persisted_position",
    }
    assert "up" not in used_names(["up == 0"])


def test_a_renamed_metric_is_missing_from_the_exposed_names() -> None:
    exposition = (
        "# HELP phenom_preview_fetches_total x\n# TYPE phenom_preview_fetches_total "
        "counter\n"
        "# HELP phenom_preview_fetch_seconds x\n# TYPE phenom_preview_fetch_seconds "
        "histogram\n"
        'phenom_preview_fetch_seconds_bucket{le="+Inf"} 0.0\nphenom_preview_fetch_seconds_count '
        "0.0\n"
        "phenom_preview_fetch_seconds_sum 0.0\n"
    )
    exposed = exposed_names(exposition)
    assert {"phenom_preview_fetches_total", "phenom_preview_fetch_seconds_bucket"} <= exposed
    renamed = exposition.replace(
        "phenom_preview_fetches_total", "phenom_preview_fetch_results_total"
    )
    assert "phenom_preview_fetches_total" not in exposed_names(renamed)
    used = used_names(rule_exprs(RULES)) | used_names(dashboard_exprs(DASHBOARD))
    assert "phenom_preview_fetches_total" in used
