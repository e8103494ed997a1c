from slurmcast.core.position import StreamPosition
from slurmcast.core.views import SNAPSHOT_CHANNELS, new_view


def at(n: int) -> StreamPosition:
    return StreamPosition(n, "e")


def test_jobs_view_keeps_the_queue():
    view = new_view("jobs", "e")
    assert view is not None
    view.reset([{"job_id": "1", "status": "RUNNING"}])
    view.apply("job_submitted", {"job_id": "2", "status": "PENDING"}, at(1))
    view.apply("job_update", {"job_id": "2", "status": "RUNNING"}, at(2))
    view.apply("job_update", {"job_id": "1", "status": "COMPLETED"}, at(3))
    view.apply("broadcast", {"text": "hi"}, at(4))
    snap = view.snapshot()
    assert snap.position == at(4)
    assert snap.items == [{"job_id": "2", "status": "RUNNING"}]
    view.apply(
        "job_update", {"job_id": "2", "status": "RUNNING", "final_state_confirmed": False}, at(5)
    )
    assert view.snapshot().items == []


def test_nodes_alerts_metrics_views():
    nodes = new_view("nodes", "e")
    nodes.apply("node_added", {"node": "n1", "state": "IDLE"}, at(1))
    nodes.apply("node_update", {"node": "n1", "state": "DOWN"}, at(2))
    nodes.apply("node_added", {"node": "n2", "state": "IDLE"}, at(3))
    nodes.apply("node_removed", {"node": "n2", "state": "IDLE"}, at(4))
    assert nodes.snapshot().items == [{"node": "n1", "state": "DOWN"}]
    alerts = new_view("alerts", "e")
    alerts.apply("alert", {"id": "a", "status": "firing"}, at(1))
    alerts.apply("alert", {"id": "b", "status": "firing"}, at(2))
    alerts.apply("alert", {"id": "a", "status": "resolved"}, at(3))
    assert [a["id"] for a in alerts.snapshot().items] == ["b"]
    metrics = new_view("metrics", "e")
    metrics.apply("metrics_update", {"cluster": {"cpu_usage": 1}}, at(1))
    metrics.apply("metrics_update", {"cluster": {"cpu_usage": 2}}, at(2))
    assert metrics.snapshot().items == [{"cluster": {"cpu_usage": 2}}]


def test_channels_without_state():
    assert new_view("notifications", "e") is None and new_view("user:bob", "e") is None
    assert {"jobs", "nodes", "metrics", "alerts"} == SNAPSHOT_CHANNELS
