"""Metric names used by the alert rules and dashboards, and the names a scrape really exposes.

The check behind ``tests/integration/test_monitoring_metrics.py``: a metric renamed in the
code (or misspelt in a rule or panel) leaves a name that no scrape exposes, and CI fails.
Pure: PromQL text and Prometheus exposition text in, sets of names out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

# Series Prometheus itself makes (not exposed by any target).
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def names_in_expr(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords or label names)."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m.lower() not in _KEYWORDS}


def rule_exprs(path: Path) -> Iterator[str]:
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            yield str(rule["expr"])


def dashboard_exprs(path: Path) -> Iterator[str]:
    def walk(panels: Iterable[dict[str, object]]) -> Iterator[str]:
        for panel in panels:
            for target in panel.get("targets", []) or []:  # type: ignore[attr-defined]
                if isinstance(target, dict) and target.get("expr"):
                    yield str(target["expr"])
            yield from walk(panel.get("panels", []) or [])  # type: ignore[arg-type]

    yield from walk(json.loads(path.read_text())["panels"])


def used_names(exprs: Iterable[str]) -> set[str]:
    return set().union(*(names_in_expr(e) for e in exprs)) - SYNTHETIC


def exposed_names(exposition: str) -> set[str]:
    """Every sample name a target with this /metrics text can produce (also for families
    with no samples yet, e.g. a labelled counter that was never incremented)."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names
