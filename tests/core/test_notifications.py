import itertools
from collections.abc import Iterable

import pytest

from slurmcast.core.events import JobEvent, JobStateChanged, JobSubmitted
from slurmcast.core.notifications import Notification, notifications_for
from slurmcast.core.records import JobState, JobUsage

from support.builders import T0, finished, job


def make(events: Iterable[JobEvent]) -> list[Notification]:
    ids = (f"n{i}" for i in itertools.count())
    return notifications_for(events, T0, lambda: next(ids))


def test_submission_notification() -> None:
    (note,) = make([JobSubmitted(job("7"))])
    data = note.data()
    assert data["id"] == "n0" and data["type"] == "job_submitted"
    assert data["read"] is False and data["severity"] == "info"
    assert data["user"] == "alice" and data["data"]["job_id"] == "7"
    assert note.event_type == "notification"


@pytest.mark.parametrize(
    ("state", "kind", "severity"),
    [
        (JobState.COMPLETED, "job_completed", "success"),
        (JobState.FAILED, "job_failed", "error"),
        (JobState.OUT_OF_MEMORY, "job_failed", "error"),
        (JobState.NODE_FAIL, "job_failed", "error"),
        (JobState.CANCELLED, "job_cancelled", "warning"),
        (JobState.PREEMPTED, "job_cancelled", "warning"),
        (JobState.TIMEOUT, "job_timeout", "warning"),
    ],
)
def test_finish_notifications(state: JobState, kind: str, severity: str) -> None:
    done = finished("9", state, minutes=150, exit_code=3 if state is JobState.FAILED else 0)
    (note,) = make([JobStateChanged(done, JobState.RUNNING)])
    data = note.data()
    assert data["type"] == kind and data["severity"] == severity
    assert data["data"]["duration"] == "2h 30m" and data["data"]["duration_s"] == 9000
    assert data["data"]["exit_code"] == done.exit_code
    assert data["data"]["status"] == state.value
    if state is JobState.FAILED:
        assert "exit code 3" in data["message"]


def test_no_notification_for_non_final_or_unconfirmed_changes() -> None:
    running = job("1", JobState.RUNNING)
    assert make([JobStateChanged(running, JobState.PENDING)]) == []
    assert make([JobStateChanged(running, JobState.RUNNING, confirmed=False)]) == []


def test_cancelled_while_pending_has_no_duration() -> None:
    (note,) = make([JobStateChanged(job("1", JobState.CANCELLED), JobState.PENDING)])
    assert note.data()["data"]["duration"] is None


def test_finish_notifications_carry_efficiency() -> None:
    usage = JobUsage(
        elapsed_s=9000, cpus=4, cpu_time_s=18000.0, memory_requested_mb=8192, memory_peak_mb=2048
    )
    done = finished("9", JobState.COMPLETED, minutes=150, usage=usage)
    (note,) = make([JobStateChanged(done, JobState.RUNNING)])
    efficiency = note.data()["data"]["efficiency"]
    assert (efficiency["cpu_efficiency"], efficiency["memory_efficiency"]) == (50.0, 25.0)
    assert efficiency["reason"] is None
    unmeasured = finished("10", JobState.TIMEOUT)
    (note,) = make([JobStateChanged(unmeasured, JobState.RUNNING)])
    assert note.data()["data"]["efficiency"]["cpu_efficiency"] is None
    assert note.data()["data"]["efficiency"]["reason"]
    # Submission notifications have nothing to measure yet.
    (submitted,) = make([JobSubmitted(job("11"))])
    assert "efficiency" not in submitted.data()["data"]
