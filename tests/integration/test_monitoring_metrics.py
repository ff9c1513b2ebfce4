"""Every metric name an alert rule or dashboard panel uses exists in a real scrape.

Scrapes the test Synapse (all Phenom modules, ``/_synapse/metrics`` on the client port as
in the dev stack) and the real MCP server (``/metrics``). Renaming a metric in the code,
or misspelling one in deploy/monitoring/, fails this test.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from fixtures_mcp import McpStack

from synapse_phenom.ops.metric_names import dashboard_exprs, exposed_names, rule_exprs, used_names

pytestmark = pytest.mark.synapse

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def test_rules_and_dashboard_use_only_exposed_metrics(mcp_stack: McpStack) -> None:
    synapse_text = httpx2.get(f"{mcp_stack.synapse.base_url}/_synapse/metrics", timeout=30).text
    mcp_text = httpx2.get(f"{mcp_stack.base_url}/metrics", timeout=30).text
    exposed = exposed_names(synapse_text) | exposed_names(mcp_text)
    assert (
        "phenom_module_callback_errors_total" in exposed
        and "phenom_mcp_tool_calls_total" in exposed
    )
    rules = used_names(rule_exprs(MONITORING / "prometheus" / "phenom-alerts.yml"))
    panels = used_names(dashboard_exprs(MONITORING / "grafana" / "phenom-chat.json"))
    assert len(rules) >= 12 and len(panels) >= 15
    assert not rules - exposed, (
        f"alert rules use metrics no target exposes: {sorted(rules - exposed)}"
    )
    assert not panels - exposed, (
        f"dashboard panels use metrics no target exposes: {sorted(panels - exposed)}"
    )
