"""The poller's diff baseline as bytes, so another instance can resume it.

A poller that takes over must diff its first poll against exactly what the
previous poller last published, or it reports transitions twice (an old
baseline) or loses them (a fresh one). The monitor therefore commits these
parts together with the events they produced (``Broker.commit``):

* ``jobs``: the jobs baseline, its time, and the vanished jobs whose final
  state accounting has not given yet (with the attempts so far);
* ``nodes``: each node as last reported (resource-change threshold base);
* ``alerts``: the conditions firing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from slurmcast.core.alerts import Alert, AlertSeverity, AlertStatus
from slurmcast.core.records import JobRecord, JobsListing, JobState, NodeRecord, NodeState

JOBS, NODES, ALERTS = "jobs", "nodes", "alerts"


def _default(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def encode_jobs(snapshot: JobsListing, unresolved: Mapping[str, int]) -> bytes:
    return _dumps(
        {
            "taken_at": snapshot.taken_at,
            "jobs": list(snapshot.jobs.values()),
            "unresolved": dict(unresolved),
        }
    )


def _job(raw: dict[str, Any]) -> JobRecord:
    raw["state"] = JobState(raw["state"])
    raw["nodes"] = tuple(raw["nodes"])
    for name in ("submit_time", "start_time", "end_time"):
        raw[name] = _time(raw[name])
    return JobRecord(**raw)


def decode_jobs(data: bytes) -> tuple[JobsListing, dict[str, int]]:
    raw = orjson.loads(data)
    taken_at = _time(raw["taken_at"])
    assert taken_at is not None
    jobs = {job.job_id: job for job in map(_job, raw["jobs"])}
    return JobsListing(taken_at, jobs), {k: int(v) for k, v in raw["unresolved"].items()}


def encode_nodes(nodes: Mapping[str, NodeRecord]) -> bytes:
    return _dumps(list(nodes.values()))


def _node(raw: dict[str, Any]) -> NodeRecord:
    raw["state"] = NodeState(raw["state"])
    raw["flags"] = frozenset(raw["flags"])
    raw["partitions"] = tuple(raw["partitions"])
    return NodeRecord(**raw)


def decode_nodes(data: bytes) -> dict[str, NodeRecord]:
    return {node.name: node for node in map(_node, orjson.loads(data))}


def encode_alerts(firing: Mapping[str, Alert]) -> bytes:
    return _dumps(
        [
            {
                "id": a.id,
                "rule": a.rule,
                "severity": a.severity,
                "status": a.status,
                "message": a.message,
                "details": a.details,
                "at": a.at,
                "since": a.since,
            }
            for a in firing.values()
        ]
    )


def decode_alerts(data: bytes) -> dict[str, Alert]:
    alerts = {}
    for raw in orjson.loads(data):
        at, since = _time(raw["at"]), _time(raw["since"])
        assert at is not None and since is not None
        alerts[raw["id"]] = Alert(
            id=raw["id"],
            rule=raw["rule"],
            severity=AlertSeverity(raw["severity"]),
            status=AlertStatus(raw["status"]),
            message=raw["message"],
            details=raw["details"],
            at=at,
            since=since,
        )
    return alerts


@dataclass(frozen=True, slots=True)
class Baseline:
    """What a poller resumes from (None / empty: that part was never committed)."""

    jobs: JobsListing | None
    unresolved: dict[str, int]
    nodes: dict[str, NodeRecord] | None
    alerts: dict[str, Alert]


def decode(parts: Mapping[str, bytes]) -> Baseline:
    jobs, unresolved = decode_jobs(parts[JOBS]) if JOBS in parts else (None, {})
    nodes = decode_nodes(parts[NODES]) if NODES in parts else None
    alerts = decode_alerts(parts[ALERTS]) if ALERTS in parts else {}
    return Baseline(jobs, unresolved, nodes, alerts)
