"""The readable lines of ``slurmcast tail``, one per message type."""

from __future__ import annotations

from typing import Any

import pytest

from slurmcast.client.formatting import format_line

TS = "2026-11-28T04:19:06.880Z"


def job(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "job_id": "1251",
        "name": "md_sim",
        "user": "carol",
        "status": "FAILED",
        "previous_status": "RUNNING",
        "exit_code": 3,
        "exit_signal": None,
    }
    data.update(fields)
    return data


def node(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "node": "node001",
        "state": "MIXED",
        "previous_state": "ALLOCATED",
        "flags": [],
        "reason": None,
        "cpus": {"total": 64, "allocated": 62, "idle": 2},
        "cpu_usage": 96.9,
    }
    data.update(fields)
    return data


@pytest.mark.parametrize(
    ("channel", "kind", "data", "line"),
    [
        (
            "jobs",
            "job_update",
            job(),
            "2026-11-28T04:19:06Z jobs job_update 1251 md_sim carol RUNNING -> FAILED exit 3",
        ),
        (
            "jobs",
            "job_submitted",
            job(
                job_id="1246",
                name="eval_bert",
                user="erin",
                status="PENDING",
                previous_status=None,
                exit_code=None,
            ),
            "2026-11-28T04:19:06Z jobs job_submitted 1246 eval_bert erin PENDING",
        ),
        (
            "jobs",
            "job_submitted",
            job(status="PENDING", previous_status=None, exit_code=None, reason="Priority"),
            "2026-11-28T04:19:06Z jobs job_submitted 1251 md_sim carol PENDING waits: Priority",
        ),
        (
            "jobs",
            "job_update",
            job(status="CANCELLED", exit_code=None, exit_signal=9, final_state_confirmed=False),
            "2026-11-28T04:19:06Z jobs job_update 1251 md_sim carol RUNNING -> CANCELLED "
            "signal 9 (final state unconfirmed)",
        ),
        (
            "jobs",
            "job_update",
            job(
                status="PENDING",
                previous_status="PENDING",
                exit_code=None,
                reason="Resources",
                previous_reason="Priority",
            ),
            "2026-11-28T04:19:06Z jobs job_update 1251 md_sim carol PENDING -> PENDING "
            "waits: Priority -> Resources",
        ),
        (
            "jobs",
            "job_update",
            job(
                status="COMPLETED",
                exit_code=0,
                efficiency={"cpu_efficiency": 88.0, "memory_efficiency": None},
            ),
            "2026-11-28T04:19:06Z jobs job_update 1251 md_sim carol RUNNING -> COMPLETED exit 0 "
            "cpu 88%",
        ),
        (
            "nodes",
            "node_update",
            node(),
            "2026-11-28T04:19:06Z nodes node_update node001 ALLOCATED -> MIXED cpus 62/64",
        ),
        (
            "nodes",
            "node_update",
            node(state="DOWN", previous_state="MIXED", flags=["NOT_RESPONDING"], reason="disk"),
            "2026-11-28T04:19:06Z nodes node_update node001 MIXED -> DOWN cpus 62/64 "
            'NOT_RESPONDING reason "disk"',
        ),
        (
            "nodes",
            "node_added",
            node(
                node="node017",
                state="IDLE",
                previous_state=None,
                cpus={"total": 64, "allocated": 0},
            ),
            "2026-11-28T04:19:06Z nodes node_added node017 IDLE cpus 0/64",
        ),
        (
            "nodes",
            "node_resource_change",
            node(node="node004", previous_state=None, cpu_usage=75.0, previous_cpu_usage=50.0),
            "2026-11-28T04:19:06Z nodes node_resource_change node004 MIXED cpu 50.0% -> 75.0%",
        ),
        (
            "metrics",
            "metrics_update",
            {
                "cluster": {
                    "cpu_usage": 60.7,
                    "memory_usage": 37.3,
                    "gpu_usage": 25.0,
                    "running_jobs": 85,
                    "pending_jobs": 9,
                    "total_nodes": 8,
                    "idle_nodes": 0,
                    "unavailable_nodes": 2,
                },
                "nodes": [],
            },
            "2026-11-28T04:19:06Z metrics metrics_update cpu 60.7% memory 37.3% gpu 25.0% "
            "jobs 85 running 9 pending nodes 8 (0 idle, 2 unavailable)",
        ),
        (
            "notifications",
            "notification",
            {
                "type": "job_failed",
                "severity": "error",
                "user": "carol",
                "message": "Job #1251 (md_sim) failed with exit code 139",
            },
            "2026-11-28T04:19:06Z notifications notification error job_failed carol: "
            "Job #1251 (md_sim) failed with exit code 139",
        ),
        (
            "alerts",
            "alert",
            {
                "id": "cpu_usage_high",
                "status": "firing",
                "severity": "warning",
                "message": "Cluster CPU usage is 93.1% (threshold 90%)",
            },
            "2026-11-28T04:19:06Z alerts alert firing warning cpu_usage_high: "
            "Cluster CPU usage is 93.1% (threshold 90%)",
        ),
        (
            "jobs",
            "broadcast",
            {"text": "maintenance at 18:00"},
            "2026-11-28T04:19:06Z jobs broadcast maintenance at 18:00",
        ),
        (
            "all",
            "broadcast",
            {"text": "hello", "level": 2},
            '2026-11-28T04:19:06Z all broadcast {"text":"hello","level":2}',
        ),
        (
            "jobs",
            "something_new",
            {"a": 1},
            '2026-11-28T04:19:06Z jobs something_new {"a":1}',
        ),
        (
            "alerts",
            "maintenance",
            {"text": "scratch offline 06:00"},
            "2026-11-28T04:19:06Z alerts maintenance scratch offline 06:00",
        ),
        (
            "jobs",
            "job_notice",
            {"text": "quota reset"},
            "2026-11-28T04:19:06Z jobs job_notice quota reset",
        ),
    ],
)
def test_channel_messages(channel: str, kind: str, data: dict[str, Any], line: str) -> None:
    message = {"channel": channel, "type": kind, "timestamp": TS, "data": data}
    assert format_line(message) == line


def test_synthetic_messages() -> None:
    position = {"offset": 1040, "epoch": "a1b2c3d4"}
    snapshot = {"type": "snapshot", "channel": "jobs", "position": position, "data": [{}, {}]}
    assert format_line(snapshot) == "-- jobs snapshot: 2 items at 1040:a1b2c3d4"
    snapshot["data"] = [{}]
    assert format_line(snapshot) == "-- jobs snapshot: 1 item at 1040:a1b2c3d4"
    resync = {"type": "resync", "channel": "nodes", "position": position}
    assert format_line(resync) == "-- nodes resync: history lost; state reset from 1040:a1b2c3d4"


def test_missing_fields_print_as_question_marks() -> None:
    assert format_line({"type": "job_update", "data": {}}) == "? ? job_update ? ? ? ?"
