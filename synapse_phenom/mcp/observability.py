"""Observability of the MCP sidecar: Prometheus metrics and one-JSON-object-per-line logs."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "phenom_mcp_tool_calls_total",
            "Tool calls by tool and outcome",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "phenom_mcp_tool_duration_seconds",
            "Tool call duration",
            ["tool"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "phenom_mcp_auth_failures_total",
            "Requests refused by auth",
            ["status"],
            registry=self.registry,
        )


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines (CloudWatch, Loki) parse without rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        message = record.getMessage()
        if record.name == "synapse_phenom.mcp.audit":
            entry.update(json.loads(message))
        else:
            entry["msg"] = message
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonLogFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Per-request chatter (HTTP calls to Synapse, stateless session teardown) is not worth a
    # line each.
    for name in (
        "httpx2",
        "httpcore2",
        "mcp.server.streamable_http",
        "mcp.server.streamable_http_manager",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
