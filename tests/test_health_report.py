"""The /health document of a running instance: its keys, and ok versus degraded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slurmcast import __version__
from slurmcast.app import SlurmcastApp
from slurmcast.health import HealthReport
from slurmcast.ports import Source
from slurmcast.storage import default_url

from support.server import Client, http_json, running_server

KEYS = {
    "status",
    "version",
    "instance",
    "broker",
    "cluster",
    "clients",
    "subscriptions",
    "uptime_s",
    "source",
    "storage",
    "http",
    "published",
    "polls",
}


@pytest.fixture
async def app() -> AsyncIterator[SlurmcastApp]:
    async with running_server() as app:
        yield app


async def test_a_healthy_instance_reports_ok_with_every_part(app: SlurmcastApp) -> None:
    report = app.health()
    assert set(report) == KEYS
    assert report["status"] == "healthy"
    assert report["version"] == __version__
    assert report["instance"] == {"id": app.instance_id, "leader": True}
    assert report["broker"] == {"kind": "memory", "connected": True}
    assert report["source"]["kind"] == "simulator"
    assert report["source"]["failing"] == {}
    assert report["source"]["details"]["kind"] == "simulator"
    assert report["storage"]["available"] is True and report["storage"]["error"] is None
    assert report["storage"]["backend"] == "sqlite"
    assert report["uptime_s"] >= 0
    # The first poll happened before the servers opened.
    assert report["polls"]["jobs"] >= 1 and report["polls"]["nodes"] >= 1
    assert report["published"] >= 1
    assert report["clients"] == 0
    assert set(report["subscriptions"]) == {
        "jobs",
        "nodes",
        "metrics",
        "notifications",
        "alerts",
        "user",
    }


async def test_the_http_endpoint_serves_the_same_report(app: SlurmcastApp) -> None:
    status, body = await http_json(app, "GET", "/health")
    assert status == 200
    assert set(body) == KEYS
    assert body["status"] == "healthy" and body["instance"]["id"] == app.instance_id


async def test_clients_and_subscriptions_are_counted(app: SlurmcastApp) -> None:
    async with Client.connect(app) as first, Client.connect(app) as second:
        await first.subscribe("jobs", "nodes")
        await second.subscribe("jobs", "user:alice")
        report = app.health()
        assert report["clients"] == 2
        assert report["subscriptions"] == {
            "alerts": 0,
            "jobs": 2,
            "metrics": 0,
            "nodes": 1,
            "notifications": 0,
            "user": 1,
        }


async def test_a_failing_monitor_loop_degrades_and_its_success_restores(
    app: SlurmcastApp,
) -> None:
    now = datetime.now(UTC)
    app.monitor.health.record_failure("nodes", "SourceError: squeue timed out", now)
    report = app.health()
    assert report["status"] == "degraded"
    assert report["source"]["failing"] == {"nodes": "SourceError: squeue timed out"}
    assert report["source"]["last_error"] == "SourceError: squeue timed out"
    assert report["source"]["last_error_at"] is not None
    app.monitor.health.record_success("nodes", now)
    assert app.health()["status"] == "healthy"
    status, body = await http_json(app, "GET", "/health")
    assert status == 200 and body["status"] == "healthy"


class TroubledSource:
    """Wraps the running source; its description reports a problem."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "problems": ["sacct is not answering"]}


async def test_source_problems_degrade(app: SlurmcastApp) -> None:
    troubled: Any = TroubledSource(app.source)
    report = HealthReport(
        instance="i-1",
        hub=app.hub,
        node=app.node,
        broker=app.broker,
        source=troubled,
        monitor=app.monitor,
        leadership=app.leadership,
        notifications=app.notifications,
        http_connections=lambda: app.http.connections,
        cluster_totals=lambda: {},
    )()
    assert report["status"] == "degraded"
    assert report["source"]["details"]["problems"] == ["sacct is not answering"]
    assert report["source"]["failing"] == {}  # the polls themselves succeed
    assert report["instance"]["id"] == "i-1"
    assert report["cluster"] is None  # no totals yet: null, not {}


async def test_an_unreachable_database_degrades(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")  # the database's directory cannot be created under a file
    async with running_server(database_url=default_url(blocker / "data")) as app:
        report = app.health()
        assert report["status"] == "degraded"
        assert report["storage"]["available"] is False
        assert report["storage"]["error"]
        # Everything else is fine: only storage degrades it.
        assert report["source"]["failing"] == {}
        assert report["broker"]["connected"] is True
        status, body = await http_json(app, "GET", "/health")
        assert status == 200 and body["status"] == "degraded"  # still 200
