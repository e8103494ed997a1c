from slurmcast.core.diff import diff_jobs, diff_nodes, vanished_unfinished
from slurmcast.core.events import (
    JobStateChanged,
    JobSubmitted,
    NodeAdded,
    NodeRemoved,
    NodeResourceChanged,
    NodeStateChanged,
)
from slurmcast.core.snapshot import NOT_RESPONDING, JobState, NodeState
from support.builders import T0, by_id, by_name, finished, job, node

P, R = JobState.PENDING, JobState.RUNNING


def test_new_pending_job_is_submitted_only():
    events = diff_jobs({}, by_id(job("1")))
    assert events == [JobSubmitted(job("1"))]
    data = events[0].data()
    assert events[0].event_type == "job_submitted"
    assert data["job_id"] == "1" and data["status"] == "PENDING"
    assert data["previous_status"] is None
    assert data["resources"] == {"cpus": 4, "memory": "8GB", "memory_mb": 8192, "gpus": 0}


def test_new_job_first_seen_running_gets_submitted_then_update_from_pending():
    running = job("1", R, nodes=("node001", "node002"), start_time=T0)
    submitted, update = diff_jobs({}, by_id(running))
    assert isinstance(submitted, JobSubmitted) and update == JobStateChanged(running, P)
    # Submitted as it was submitted, so previous_status chains for clients.
    assert submitted.data()["status"] == "PENDING"
    assert submitted.data()["nodes"] == [] and submitted.data()["start_time"] is None
    assert update.data()["previous_status"] == "PENDING"
    assert update.data()["nodes"] == ["node001", "node002"]


def test_new_job_first_seen_finished_reports_its_final_state():
    done = finished("1", JobState.COMPLETED, exit_code=0)
    submitted, update = diff_jobs({}, by_id(done))
    assert submitted.data()["status"] == "PENDING"
    assert update.data()["status"] == "COMPLETED" and update.data()["exit_code"] == 0


def test_state_change_and_no_change():
    prev = by_id(job("1"), job("2"))
    curr = by_id(job("1", R), job("2"))
    events = diff_jobs(prev, curr)
    assert events == [JobStateChanged(job("1", R), P)]
    data = events[0].data()
    assert data["status"] == "RUNNING" and data["previous_status"] == "PENDING"


def test_finished_in_listing_carries_exit_code():
    done = finished("1", JobState.FAILED, exit_code=3)
    (event,) = diff_jobs(by_id(job("1", R)), by_id(done))
    assert event.data()["exit_code"] == 3 and event.data()["status"] == "FAILED"
    assert event.data()["end_time"] == "2026-01-01T14:30:00Z"


def test_vanished_job_resolved_from_finals():
    prev = by_id(job("1", R), job("2", JobState.COMPLETED))
    assert vanished_unfinished(prev, {}) == ["1"]
    final = finished("1", JobState.TIMEOUT)
    events = diff_jobs(prev, {}, {"1": final})
    assert events == [JobStateChanged(final, R)]


def test_vanished_job_without_final_is_unconfirmed_not_invented():
    prev = by_id(job("1", R))
    (event,) = diff_jobs(prev, {}, {})
    assert isinstance(event, JobStateChanged) and event.confirmed is False
    data = event.data()
    assert data["status"] == "RUNNING" and data["final_state_confirmed"] is False


def test_terminal_job_leaving_listing_is_silent():
    assert diff_jobs(by_id(finished("1", JobState.COMPLETED)), {}) == []


def test_diff_is_linear_sized_output_for_large_queue():
    prev = {str(i): job(str(i)) for i in range(20000)}
    curr = dict(prev)
    curr["5"] = job("5", R)
    curr["20000"] = job("20000")
    events = diff_jobs(prev, curr)
    assert [type(e) for e in events] == [JobStateChanged, JobSubmitted]


def test_node_state_change_added_removed():
    reported = by_name(node("node001"), node("node002"))
    curr = by_name(node("node001", NodeState.DRAINED, reason="disk"), node("node003"))
    events, baseline = diff_nodes(reported, curr, 20.0)
    kinds = {type(e): e for e in events}
    assert set(kinds) == {NodeStateChanged, NodeAdded, NodeRemoved}
    update = kinds[NodeStateChanged].data()
    assert update["state"] == "DRAINED" and update["previous_state"] == "IDLE"
    assert update["cpus"] == {"total": 64, "allocated": 0, "idle": 64}
    assert update["memory"]["total"] == "256GB" and update["memory"]["free_mb"] == 262144
    assert kinds[NodeRemoved].node.name == "node002"
    assert set(baseline) == {"node001", "node003"}


def test_not_responding_flag_is_a_state_change():
    events, _ = diff_nodes(by_name(node()), by_name(node(flags=frozenset({NOT_RESPONDING}))), 20.0)
    assert len(events) == 1 and isinstance(events[0], NodeStateChanged)
    assert events[0].data()["flags"] == ["NOT_RESPONDING"]


def test_resource_change_threshold_is_strict_and_uses_last_reported():
    base = by_name(node("n", NodeState.MIXED, cpus_allocated=32))  # 50 %
    # +12.5 points: below the threshold, nothing reported, baseline kept.
    events, baseline = diff_nodes(base, by_name(node("n", NodeState.MIXED, cpus_allocated=40)), 20)
    assert events == [] and baseline["n"].cpus_allocated == 32
    # Drift to +25 points from the last *reported* usage: reported now.
    events, baseline = diff_nodes(
        baseline, by_name(node("n", NodeState.MIXED, cpus_allocated=48)), 20
    )
    assert len(events) == 1 and isinstance(events[0], NodeResourceChanged)
    assert events[0].data()["previous_cpu_usage"] == 50.0
    assert events[0].data()["cpu_usage"] == 75.0
    assert baseline["n"].cpus_allocated == 48


def test_state_change_does_not_double_report_resources():
    events, _ = diff_nodes(
        by_name(node("n")), by_name(node("n", NodeState.ALLOCATED, cpus_allocated=64)), 20
    )
    assert [type(e) for e in events] == [NodeStateChanged]
