from collections.abc import Iterable
from typing import Any

from slurmcast.core.views import (
    SNAPSHOT_CHANNELS,
    ChannelState,
    StateChange,
    state_change,
    state_items,
)


def replay(
    channel: str,
    messages: Iterable[tuple[str, Any]],
    seed: Iterable[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    state = ChannelState()
    state.reset(state_items(channel, seed))
    for event_type, data in messages:
        change = state_change(channel, event_type, data)
        if change is not None:
            state.apply(change)
    return list(state.items.values())


def test_jobs_state_keeps_the_queue() -> None:
    messages = [
        ("job_submitted", {"job_id": "2", "status": "PENDING"}),
        ("job_update", {"job_id": "2", "status": "RUNNING"}),
        ("job_update", {"job_id": "1", "status": "COMPLETED"}),
        ("broadcast", {"text": "hi"}),
    ]
    seed = [{"job_id": "1", "status": "RUNNING"}]
    assert replay("jobs", messages, seed) == [{"job_id": "2", "status": "RUNNING"}]
    unconfirmed = (
        "job_update",
        {"job_id": "2", "status": "RUNNING", "final_state_confirmed": False},
    )
    assert replay("jobs", [*messages, unconfirmed], seed) == []


def test_nodes_alerts_metrics_state() -> None:
    nodes = [
        ("node_added", {"node": "n1", "state": "IDLE"}),
        ("node_update", {"node": "n1", "state": "DOWN"}),
        ("node_added", {"node": "n2", "state": "IDLE"}),
        ("node_removed", {"node": "n2", "state": "IDLE"}),
    ]
    assert replay("nodes", nodes) == [{"node": "n1", "state": "DOWN"}]
    alerts = [
        ("alert", {"id": "a", "status": "firing"}),
        ("alert", {"id": "b", "status": "firing"}),
        ("alert", {"id": "a", "status": "resolved"}),
    ]
    assert [a["id"] for a in replay("alerts", alerts)] == ["b"]
    metrics = [
        ("metrics_update", {"cluster": {"cpu_usage": 1}}),
        ("metrics_update", {"cluster": {"cpu_usage": 2}}),
    ]
    assert replay("metrics", metrics) == [{"cluster": {"cpu_usage": 2}}]


def test_channels_without_state() -> None:
    assert state_change("notifications", "job_completed", {"job_id": "1"}) is None
    assert state_change("user:bob", "job_completed", {"job_id": "1"}) is None
    assert state_change("jobs", "job_update", ["not", "an", "object"]) is None
    assert state_change("jobs", "job_update", {"job_id": 7}) is None
    assert state_change("nodes", "broadcast", {"node": "n1"}) is None
    assert state_change("alerts", "alert", {"id": "x", "status": "firing"}) == StateChange(
        "x", {"id": "x", "status": "firing"}
    )
    assert state_items("notifications", [{"a": 1}]) == {}
    assert {"jobs", "nodes", "metrics", "alerts"} == SNAPSHOT_CHANNELS
