"""Events from the simulated cluster reach a real client with the documented shapes."""

from __future__ import annotations

import re
from typing import Any, cast

from support.server import Client, running_server

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")

JOB_FIELDS = {
    "job_id",
    "name",
    "status",
    "previous_status",
    "user",
    "partition",
    "nodes",
    "start_time",
    "end_time",
    "exit_code",
    "resources",
}
NODE_FIELDS = {"node", "state", "previous_state", "cpus", "memory", "gpus"}
CLUSTER_FIELDS = {
    "cpu_usage",
    "memory_usage",
    "gpu_usage",
    "total_jobs",
    "running_jobs",
    "pending_jobs",
    "total_nodes",
    "idle_nodes",
}
NOTIFICATION_FIELDS = {"id", "type", "title", "message", "severity", "read", "data"}
ALERT_FIELDS = {"id", "severity", "status", "message", "details"}

FAST = {
    "sim_speed": 120.0,
    "sim_seed": 3,
    "jobs_interval": 0.1,
    "nodes_interval": 0.1,
    "metrics_interval": 0.2,
    # Nodes drain and fail often enough for node alerts within seconds.
    "sim_node_events": 2000.0,
}


def check_envelope(message: dict[str, Any], channel: str) -> dict[str, Any]:
    assert set(message) == {"channel", "type", "timestamp", "data", "offset", "epoch"}, message
    assert isinstance(message["offset"], int) and message["offset"] > 0
    assert isinstance(message["epoch"], str) and message["epoch"]
    assert message["channel"] == channel
    assert ISO_Z.match(message["timestamp"]), message["timestamp"]
    return cast("dict[str, Any]", message["data"])


async def test_every_channel_delivers_documented_events() -> None:
    seen: dict[str, dict[str, Any]] = {}
    wanted = {
        "job_submitted",
        "job_update",
        "node_update",
        "metrics_update",
        "notification",
        "alert",
    }
    async with running_server(**FAST) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "nodes", "metrics", "notifications", "alerts")

        def record(message: dict[str, Any]) -> bool:
            seen.setdefault(message["type"], message)
            return wanted <= set(seen)

        await client.wait_for(record, timeout=60)

    data = check_envelope(seen["job_submitted"], "jobs")
    assert set(data) >= JOB_FIELDS and isinstance(data["job_id"], str)
    assert set(data["resources"]) >= {"cpus", "memory", "gpus"}
    assert re.match(r"^\d+(\.\d)?(MB|GB|TB)$", data["resources"]["memory"])

    data = check_envelope(seen["job_update"], "jobs")
    assert set(data) >= JOB_FIELDS and data["status"] != data["previous_status"]
    assert isinstance(data["nodes"], list)

    data = check_envelope(seen["node_update"], "nodes")
    assert set(data) >= NODE_FIELDS
    assert set(data["cpus"]) >= {"total", "allocated", "idle"}
    assert set(data["memory"]) >= {"total", "allocated", "free"}
    assert set(data["gpus"]) >= {"total", "allocated", "idle"}
    assert data["state"] != data["previous_state"] or data["flags"]

    data = check_envelope(seen["metrics_update"], "metrics")
    assert set(data["cluster"]) >= CLUSTER_FIELDS
    assert data["nodes"] and {"node", "cpu_usage", "memory_usage", "gpu_usage"} <= set(
        data["nodes"][0]
    )

    data = check_envelope(seen["notification"], "notifications")
    assert set(data) >= NOTIFICATION_FIELDS and data["read"] is False
    assert data["type"] in {
        "job_submitted",
        "job_completed",
        "job_failed",
        "job_cancelled",
        "job_timeout",
    }
    assert "job_id" in data["data"] and "duration" in data["data"]

    data = check_envelope(seen["alert"], "alerts")
    assert set(data) >= ALERT_FIELDS
    assert data["severity"] in {"info", "warning", "critical"}
    assert data["status"] in {"firing", "resolved"}


async def test_job_lifecycle_is_consistent_for_one_job() -> None:
    """Follow one job: submitted, then updates whose previous_status chains, to a final state."""
    final_states = {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
    }
    async with (
        running_server(**{**FAST, "sim_speed": 3600.0}) as app,
        Client.connect(app) as client,
    ):
        await client.subscribe("jobs", "notifications")
        first = await client.wait_for(lambda m: m["type"] == "job_submitted")
        job_id = first["data"]["job_id"]
        status = first["data"]["status"]
        finished = None
        notified = None
        while finished is None or notified is None:
            message = await client.recv()
            data = message["data"]
            if message["type"] == "job_update" and data["job_id"] == job_id:
                assert data["previous_status"] == status
                status = data["status"]
                if status in final_states:
                    finished = data
            elif (
                message["type"] == "notification"
                and data["data"]["job_id"] == job_id
                and data["type"] != "job_submitted"
            ):
                notified = data
        assert finished["end_time"] is not None
        assert notified["data"]["status"] == finished["status"]
        assert notified["data"]["exit_code"] == finished["exit_code"]


async def test_health_reports_polls_and_source() -> None:
    async with running_server(**FAST) as app, Client.connect(app) as client:
        await client.subscribe("metrics")
        await client.wait_for(lambda m: m["type"] == "metrics_update")
        health = app.health()
        assert health["status"] == "healthy"
        assert health["source"]["last_success"] is not None
        assert health["source"]["details"]["kind"] == "simulator"
        assert health["polls"]["jobs"] > 0 and health["polls"]["nodes"] > 0
