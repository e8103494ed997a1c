"""Snapshot plus deltas is exactly the cluster's state, after a busy simulated hour."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from slurmcast.app import SlurmcastApp
from slurmcast.core.records import TERMINAL_JOB_STATES

from support.server import Client, running_server
from support.waiting import eventually

if TYPE_CHECKING:
    from slurmcast.sources.simulator.source import SimulatorSource

FINAL = {state.value for state in TERMINAL_JOB_STATES}


class Dashboard:
    """What a client keeps: the documented rules for applying deltas to a snapshot."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}

    def apply(self, message: dict[str, Any]) -> None:
        data: Any
        kind, data = message["type"], message.get("data")
        if kind == "snapshot":
            target = self.jobs if message["channel"] == "jobs" else self.nodes
            key = "job_id" if message["channel"] == "jobs" else "node"
            target.update({item[key]: item for item in data})
        elif kind in ("job_submitted", "job_update"):
            if data["status"] in FINAL or data.get("final_state_confirmed") is False:
                self.jobs.pop(data["job_id"], None)
            else:
                self.jobs[data["job_id"]] = data
        elif kind == "node_removed":
            self.nodes.pop(data["node"], None)
        elif kind in ("node_added", "node_update", "node_resource_change"):
            self.nodes[data["node"]] = data


async def test_snapshot_plus_deltas_equals_the_source_after_a_simulated_hour() -> None:
    busy = {
        "sim_speed": 900.0,
        "jobs_interval": 0.05,
        "nodes_interval": 0.05,
        "sim_node_events": 50.0,
    }
    async with running_server(**busy) as app, Client.connect(app, max_queue=None) as client:
        await eventually(lambda: _ready(app), bool)
        start = cast("SimulatorSource", app.source).cluster.now
        dashboard = Dashboard()
        for channel in ("jobs", "nodes"):
            await client.send({"type": "subscribe", "channel": channel, "snapshot": True})
        reader_done = asyncio.Event()

        async def read() -> None:
            while True:
                message = await client.recv()
                if message.get("type") == "pong":
                    reader_done.set()
                    return
                dashboard.apply(message)

        reader = asyncio.create_task(read())
        await eventually(
            lambda: _sim_time(app), lambda now: now - start >= timedelta(hours=1), timeout=60
        )
        # Stop the world: no more polls, hence no more messages; then drain.
        await app.stop_polling()
        await client.send({"type": "ping"})
        await reader_done.wait()
        await reader

        # The truth: what the source returned at the last poll of each kind.
        assert app.monitor.jobs is not None and app.monitor.nodes is not None
        truth_jobs = {
            job_id: job
            for job_id, job in app.monitor.jobs.jobs.items()
            if not job.state.is_terminal
        }
        assert len(truth_jobs) > 20  # a busy cluster, not a trivially empty one
        assert set(dashboard.jobs) == set(truth_jobs)
        for job_id, job in truth_jobs.items():
            shown = dashboard.jobs[job_id]
            assert shown["status"] == job.state.value
            assert shown["nodes"] == list(job.nodes)
        truth_nodes = app.monitor.nodes.nodes
        assert set(dashboard.nodes) == set(truth_nodes)
        for name, node in truth_nodes.items():
            assert dashboard.nodes[name]["state"] == node.state.value


async def _ready(app: SlurmcastApp) -> bool:
    return app.monitor.jobs is not None and app.monitor.nodes is not None


async def _sim_time(app: SlurmcastApp) -> datetime:
    return cast("SimulatorSource", app.source).cluster.now
