from collections.abc import Mapping, Set

from slurmcast.core.diff import diff_jobs, diff_nodes, needs_final_state
from slurmcast.core.events import (
    JobEvent,
    JobReasonChanged,
    JobStateChanged,
    JobSubmitted,
    NodeAdded,
    NodeRemoved,
    NodeResourceChanged,
    NodeStateChanged,
)
from slurmcast.core.records import NOT_RESPONDING, JobRecord, JobState, NodeState

from support.builders import T0, by_id, by_name, finished, job, node

P, R = JobState.PENDING, JobState.RUNNING
CG = JobState.COMPLETING


def events_of(
    prev: Mapping[str, JobRecord],
    curr: Mapping[str, JobRecord],
    finals: Mapping[str, JobRecord] | None = None,
    carry: Set[str] = frozenset(),
) -> list[JobEvent]:
    events, _ = diff_jobs(prev, curr, finals, carry)
    return events


def test_new_pending_job_is_submitted_only() -> None:
    events = events_of({}, by_id(job("1")))
    assert events == [JobSubmitted(job("1"))]
    data = events[0].data()
    assert events[0].event_type == "job_submitted"
    assert data["job_id"] == "1" and data["status"] == "PENDING"
    assert data["previous_status"] is None
    assert data["resources"] == {"cpus": 4, "memory": "8GB", "memory_mb": 8192, "gpus": 0}


def test_new_job_first_seen_running_gets_submitted_then_update_from_pending() -> None:
    running = job("1", R, nodes=("node001", "node002"), start_time=T0)
    submitted, update = events_of({}, by_id(running))
    assert isinstance(submitted, JobSubmitted) and update == JobStateChanged(running, P)
    # Submitted as it was submitted, so previous_status chains for clients.
    assert submitted.data()["status"] == "PENDING"
    assert submitted.data()["nodes"] == [] and submitted.data()["start_time"] is None
    assert update.data()["previous_status"] == "PENDING"
    assert update.data()["nodes"] == ["node001", "node002"]


def test_new_job_first_seen_finished_reports_its_final_state() -> None:
    done = finished("1", JobState.COMPLETED, exit_code=0)
    submitted, update = events_of({}, by_id(done))
    assert submitted.data()["status"] == "PENDING"
    assert update.data()["status"] == "COMPLETED" and update.data()["exit_code"] == 0


def test_state_change_and_no_change() -> None:
    prev = by_id(job("1"), job("2"))
    curr = by_id(job("1", R), job("2"))
    events, baseline = diff_jobs(prev, curr)
    assert events == [JobStateChanged(job("1", R), P)]
    data = events[0].data()
    assert data["status"] == "RUNNING" and data["previous_status"] == "PENDING"
    assert baseline == curr


def test_finished_in_listing_carries_exit_code() -> None:
    done = finished("1", JobState.FAILED, exit_code=3)
    (event,) = events_of(by_id(job("1", R)), by_id(done))
    assert event.data()["exit_code"] == 3 and event.data()["status"] == "FAILED"
    assert event.data()["end_time"] == "2026-01-01T14:30:00Z"


def test_needs_final_state_lists_vanished_and_finishing_jobs() -> None:
    prev = by_id(job("1", R), job("2", JobState.COMPLETED), job("3", R), job("4", R), job("5", R))
    curr = by_id(job("3", CG), finished("4", JobState.FAILED), job("5", R), job("6", CG))
    wanted = needs_final_state(prev, curr)
    assert set(wanted) == {"1", "3", "4", "6"}
    assert wanted["1"] == prev["1"] and wanted["3"] == curr["3"]
    # A job already reported finished is never asked about again.
    assert needs_final_state(by_id(finished("4", JobState.FAILED)), curr).keys() == {"3", "6"}


def test_vanished_job_resolved_from_finals() -> None:
    prev = by_id(job("1", R), job("2", JobState.COMPLETED))
    final = finished("1", JobState.TIMEOUT)
    events, baseline = diff_jobs(prev, {}, {"1": final})
    assert events == [JobStateChanged(final, R)]
    assert baseline == {}


def test_accounting_final_beats_the_listing_and_is_reported_once() -> None:
    # squeue shows COMPLETING while the epilog runs; accounting already knows FAILED.
    prev = by_id(job("1", R))
    final = finished("1", JobState.FAILED, exit_code=3)
    events, baseline = diff_jobs(prev, by_id(job("1", CG)), {"1": final})
    assert events == [JobStateChanged(final, R)]
    assert baseline["1"] == final
    # Later readings of the finished job change nothing...
    for reading in (job("1", CG), finished("1", JobState.COMPLETED, exit_code=0)):
        events, baseline = diff_jobs(baseline, by_id(reading))
        assert events == [] and baseline["1"] == final
    # ...and its leaving the listing is silent.
    assert diff_jobs(baseline, {}) == ([], {})


def test_requeue_after_finish_is_reported() -> None:
    failed = finished("1", JobState.NODE_FAIL)
    (event,) = events_of(by_id(failed), by_id(job("1", P, reason="BeginTime")))
    assert event.data()["previous_status"] == "NODE_FAIL" and event.data()["status"] == "PENDING"


def test_non_terminal_final_is_not_used() -> None:
    # Accounting lags: it still says RUNNING for a job squeue shows COMPLETING.
    events = events_of(by_id(job("1", R)), by_id(job("1", CG)), {"1": job("1", R)})
    assert [e.data()["status"] for e in events] == ["COMPLETING"]


def test_vanished_job_without_final_is_carried_then_unconfirmed() -> None:
    prev = by_id(job("1", R))
    events, baseline = diff_jobs(prev, {}, {}, carry=frozenset({"1"}))
    assert events == [] and baseline == prev
    (event,) = events_of(baseline, {}, {})
    assert isinstance(event, JobStateChanged) and event.confirmed is False
    data = event.data()
    assert data["status"] == "RUNNING" and data["final_state_confirmed"] is False


def test_terminal_job_leaving_listing_is_silent() -> None:
    assert events_of(by_id(finished("1", JobState.COMPLETED)), {}) == []


def test_diff_is_linear_sized_output_for_large_queue() -> None:
    prev = {str(i): job(str(i)) for i in range(20000)}
    curr = dict(prev)
    curr["5"] = job("5", R)
    curr["20000"] = job("20000")
    events = events_of(prev, curr)
    assert [type(e) for e in events] == [JobStateChanged, JobSubmitted]


def test_node_state_change_added_removed() -> None:
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


def test_not_responding_flag_is_a_state_change() -> None:
    events, _ = diff_nodes(by_name(node()), by_name(node(flags=frozenset({NOT_RESPONDING}))), 20.0)
    assert len(events) == 1 and isinstance(events[0], NodeStateChanged)
    assert events[0].data()["flags"] == ["NOT_RESPONDING"]


def test_resource_change_threshold_is_strict_and_uses_last_reported() -> None:
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


def test_state_change_does_not_double_report_resources() -> None:
    events, _ = diff_nodes(
        by_name(node("n")), by_name(node("n", NodeState.ALLOCATED, cpus_allocated=64)), 20
    )
    assert [type(e) for e in events] == [NodeStateChanged]


def test_pending_job_waiting_for_another_reason_is_a_job_update() -> None:
    prev = by_id(job("1", P, reason="Priority"))
    curr = by_id(job("1", P, reason="Resources"))
    (event,) = events_of(prev, curr)
    assert isinstance(event, JobReasonChanged)
    data = event.data()
    assert event.event_type == "job_update"
    assert (data["status"], data["previous_status"]) == ("PENDING", "PENDING")
    assert (data["reason"], data["previous_reason"]) == ("Resources", "Priority")
    assert data["reason_text"] and "cpu" in data["reason_text"]
    # The same reason again, or a running job's reason, says nothing.
    assert events_of(curr, by_id(job("1", P, reason="Resources"))) == []
    assert events_of(by_id(job("1", R)), by_id(job("1", R, reason="Prolog"))) == []


def test_ending_job_keeps_the_gpus_it_was_seen_running_with() -> None:
    # Slurm empties gres_detail once a job ends; the count seen while running is exact.
    prev = by_id(job("1", R, gpus=2, nodes=("gpu01",)))
    curr = by_id(finished("1", JobState.COMPLETED, gpus=0))
    (event,) = events_of(prev, curr)
    assert isinstance(event, JobStateChanged) and event.job.gpus == 2
    _, baseline = diff_jobs(prev, curr)
    assert baseline["1"].gpus == 2
    # Resolved from accounting after it left the listing: the same.
    resolved = {"1": finished("1", JobState.FAILED, gpus=0)}
    (gone,) = events_of(prev, {}, finals=resolved)
    assert gone.job.gpus == 2
    # A count the end record does give is kept as it is.
    (other,) = events_of(prev, by_id(finished("1", JobState.COMPLETED, gpus=4)))
    assert other.job.gpus == 4
