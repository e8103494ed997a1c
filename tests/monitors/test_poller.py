"""Monitor loops against a source that fails, hangs and recovers."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from slurmcast.app import SlurmcastApp
from slurmcast.core.records import JobRecord, JobsListing, NodesListing
from slurmcast.errors import SourceError
from slurmcast.sources.simulator.source import SimulatorSource

from support.server import Client, http_json, server_settings

Predicate = Callable[[dict[str, Any]], bool]


class FlakySource:
    """The real simulator behind a switch that makes every call fail or hang."""

    kind = "simulator"

    def __init__(self, inner: SimulatorSource) -> None:
        self.inner = inner
        self.mode = "ok"  # "ok" | "fail" | "hang"

    async def _gate(self) -> None:
        if self.mode == "fail":
            raise SourceError("squeue: error: slurm_load_jobs: Unable to contact slurm controller")
        if self.mode == "hang":
            await asyncio.Event().wait()

    async def start(self) -> None:
        await self.inner.start()

    async def jobs(self) -> JobsListing:
        await self._gate()
        return await self.inner.jobs()

    async def nodes(self) -> NodesListing:
        await self._gate()
        return await self.inner.nodes()

    async def final_states(
        self, jobs: Mapping[str, JobRecord], since: datetime
    ) -> Mapping[str, JobRecord]:
        await self._gate()
        return await self.inner.final_states(jobs, since)

    @property
    def accounting_answers(self) -> bool:
        return self.mode == "ok"

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    async def close(self) -> None:
        await self.inner.close()


FAST = {
    "jobs_interval": 0.05,
    "nodes_interval": 0.05,
    "metrics_interval": 0.1,
    "backoff_max": 0.2,
    "source_timeout": 0.3,
}


async def start(source: FlakySource) -> SlurmcastApp:
    app = SlurmcastApp(server_settings(**FAST, data_dir=tempfile.mkdtemp()), source=source)
    await app.start()
    return app


def is_source_alert(status: str) -> Predicate:
    return lambda m: (
        m["type"] == "alert"
        and m["data"]["id"] == "source_unavailable"
        and m["data"]["status"] == status
    )


async def test_failing_source_degrades_alerts_once_and_recovers_without_losing_jobs() -> None:
    source = FlakySource(SimulatorSource(seed=5, speed=120.0))
    app = await start(source)
    submitted: list[int] = []
    try:
        async with Client.connect(app) as client:
            await client.subscribe("alerts", "jobs")

            def watch(predicate: Predicate) -> Predicate:
                def check(message: dict[str, Any]) -> bool:
                    if message["type"] == "job_submitted":
                        submitted.append(int(message["data"]["job_id"]))
                    return predicate(message)

                return check

            await client.wait_for(watch(lambda m: m["type"] == "job_submitted"))
            source.mode = "fail"
            firing = await client.wait_for(watch(is_source_alert("firing")))
            assert firing["data"]["severity"] == "critical"
            assert "Unable to contact slurm controller" in firing["data"]["message"]
            _, health = await http_json(app, "GET", "/health")
            assert health["status"] == "degraded"
            assert "Unable to contact" in health["source"]["last_error"]
            # Clients are still served while the source is down.
            assert await client.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
            source.mode = "ok"
            resolved = await client.wait_for(watch(is_source_alert("resolved")))
            assert resolved["data"]["since"] == firing["data"]["since"]
            _, health = await http_json(app, "GET", "/health")
            assert health["status"] == "healthy"
            # Submissions keep flowing after the outage...
            last = max(submitted)
            await client.wait_for(
                watch(lambda m: m["type"] == "job_submitted" and int(m["data"]["job_id"]) > last)
            )
            # ...and none was lost: the simulator numbers jobs consecutively.
            assert submitted == list(range(submitted[0], submitted[0] + len(submitted)))
            # The alert fired exactly once during the whole outage.
            assert app.monitor.alerts.firing.get("source_unavailable") is None
    finally:
        await app.stop()


async def test_hanging_source_times_out_and_degrades() -> None:
    source = FlakySource(SimulatorSource(seed=5, speed=1.0))
    source.mode = "hang"
    app = await start(source)
    try:
        async with Client.connect(app) as client:
            # The first polls failed before the servers opened: the alert is
            # already firing, so it is in the alerts snapshot.
            reply = await client.request(
                {"type": "subscribe", "channel": "alerts", "snapshot": True}
            )
            assert reply["type"] == "subscribed"
            snapshot = await client.recv()
            assert snapshot["type"] == "snapshot"
            (alert,) = [a for a in snapshot["data"] if a["id"] == "source_unavailable"]
            assert alert["status"] == "firing"
            assert "did not answer within 0.3s" in alert["message"]
            assert await client.request({"type": "ping"}) == {"type": "pong"}
            _, health = await http_json(app, "GET", "/health")
            assert health["status"] == "degraded"
            assert health["source"]["last_success"] is None
    finally:
        await app.stop()
