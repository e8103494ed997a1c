"""docs/grafana-dashboard.json, read the way the tests check it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
#: What Grafana puts in place of ``$__rate_interval`` for a 1 s scrape interval, near enough.
RATE_INTERVAL = "10s"
#: Metric names an expression refers to: slurmcast's own and the process collector's.
METRIC_NAME = re.compile(r"\b(?:slurmcast|process|python)_[a-z0-9_]+\b")


def dashboard() -> dict[str, Any]:
    loaded = orjson.loads(DASHBOARD.read_bytes())
    assert isinstance(loaded, dict)
    return loaded


def panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel, rows' nested ones included."""
    found: list[dict[str, Any]] = []
    for panel in (board or dashboard())["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_expressions(*, raw: bool = False) -> list[str]:
    """Every target's PromQL, with Grafana's ``$__rate_interval`` filled in (unless ``raw``)."""
    expressions = [target["expr"] for panel in panels() for target in panel.get("targets", [])]
    if raw:
        return expressions
    return [e.replace("$__rate_interval", RATE_INTERVAL) for e in expressions]


def metric_names(expression: str) -> set[str]:
    return set(METRIC_NAME.findall(expression))
