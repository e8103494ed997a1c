"""docs/grafana-dashboard.json is importable and asks only for series the server exports.

That every expression is valid PromQL and finds data is checked against a real
Prometheus in test_prometheus_scrape.py.
"""

from __future__ import annotations

from pathlib import Path

from support.fakeslurm import FakeSlurm
from support.grafana import dashboard, dashboard_expressions, metric_names, panels
from support.metrics import scrape
from support.server import running_server

FAST = {"jobs_interval": 0.2, "nodes_interval": 0.2, "metrics_interval": 0.2}


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36
    # Grafana's import asks for the data source declared here.
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in targets), panel["title"]


def test_the_dashboard_has_the_panels_operators_look_for() -> None:
    titles = " | ".join(p["title"].lower() for p in panels())
    for wanted in (
        "websocket connections",
        "delivery rate per channel",
        "slow-consumer closes",
        "poll duration p95",
        "slurm command duration p95",
        "event loop lag",
        "nodes by state",
        "cpu, memory and gpu allocation",
        "jobs by state",
    ):
        assert wanted in titles, wanted


async def test_every_expression_names_only_series_the_server_exports(tmp_path: Path) -> None:
    fake = FakeSlurm(tmp_path)
    async with running_server(
        source="slurm", slurm_bin_dir=str(fake.bin), slurm_format="delimited", **FAST
    ) as app:
        exported = (await scrape(app)).names
    referenced = set()
    for expression in dashboard_expressions(raw=True):
        names = metric_names(expression)
        assert names, f"no slurmcast series in {expression!r}"
        referenced |= names
    unknown = referenced - exported
    assert not unknown, f"the dashboard asks for series /metrics does not export: {unknown}"
