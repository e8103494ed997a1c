"""Hand-built records for core tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from slurmcast.core.records import JobRecord, JobState, NodeRecord, NodeState

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def job(job_id: str = "1", state: JobState = JobState.PENDING, **fields: Any) -> JobRecord:
    values: dict[str, Any] = {
        "job_id": job_id,
        "name": f"job{job_id}",
        "user": "alice",
        "partition": "cpu",
        "state": state,
        "cpus": 4,
        "memory_mb": 8192,
        "submit_time": T0,
    }
    values.update(fields)
    return JobRecord(**values)


def finished(job_id: str, state: JobState, minutes: float = 150, **fields: Any) -> JobRecord:
    return job(
        job_id,
        state,
        start_time=T0,
        end_time=T0 + timedelta(minutes=minutes),
        nodes=("node001",),
        **fields,
    )


def node(
    name: str = "node001",
    state: NodeState = NodeState.IDLE,
    cpus_allocated: int = 0,
    **fields: Any,
) -> NodeRecord:
    values: dict[str, Any] = {
        "name": name,
        "state": state,
        "cpus_total": 64,
        "cpus_allocated": cpus_allocated,
        "memory_total_mb": 262144,
        "gpus_total": 0,
    }
    values.update(fields)
    return NodeRecord(**values)


def by_id(*jobs: JobRecord) -> dict[str, JobRecord]:
    return {j.job_id: j for j in jobs}


def by_name(*nodes: NodeRecord) -> dict[str, NodeRecord]:
    return {n.name: n for n in nodes}


def job_data(
    job_id: str, status: str = "RUNNING", user: str = "alice", **fields: Any
) -> dict[str, Any]:
    """A whole ``job_update`` payload, as the monitors publish it (the specs check every field)."""
    from slurmcast.core.events import job_payload

    return job_payload(job(job_id, JobState(status), user=user, **fields))
