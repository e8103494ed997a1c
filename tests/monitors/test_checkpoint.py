from datetime import UTC, datetime

from slurmcast.core.alerts import Alert, AlertSeverity, AlertStatus
from slurmcast.core.records import JobRecord, JobsListing, JobState, NodeRecord, NodeState
from slurmcast.monitors import checkpoint

T = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def test_every_part_round_trips() -> None:
    job = JobRecord(
        "42",
        "train",
        "alice",
        "gpu",
        JobState.RUNNING,
        ("n1", "n2"),
        8,
        4096,
        1,
        submit_time=T,
        start_time=T,
        exit_code=None,
        reason="None",
        account="proj",
    )
    done = JobRecord("43", "x", "bob", "cpu", JobState.FAILED, (), end_time=T, exit_code=3)
    node = NodeRecord(
        "n1",
        NodeState.MIXED,
        32,
        8,
        128000,
        4000,
        2,
        1,
        frozenset({"DRAIN", "NOT_RESPONDING"}),
        ("gpu",),
        "maint",
        1.5,
        1000,
    )
    alert = Alert(
        "node_unavailable:n1",
        "node_unavailable",
        AlertSeverity.WARNING,
        AlertStatus.FIRING,
        "Node n1 is DRAINING",
        {"node": "n1"},
        T,
        T,
    )
    parts = {
        checkpoint.JOBS: checkpoint.encode_jobs(JobsListing(T, {"42": job, "43": done}), {"44": 2}),
        checkpoint.NODES: checkpoint.encode_nodes({"n1": node}),
        checkpoint.ALERTS: checkpoint.encode_alerts({alert.id: alert}),
    }
    baseline = checkpoint.decode(parts)
    assert baseline.jobs == JobsListing(T, {"42": job, "43": done})
    assert baseline.unresolved == {"44": 2}
    assert baseline.nodes == {"n1": node}
    assert baseline.alerts == {alert.id: alert}


def test_missing_parts_mean_no_baseline() -> None:
    baseline = checkpoint.decode({})
    assert baseline.jobs is None and baseline.nodes is None
    assert baseline.unresolved == {} and baseline.alerts == {}
