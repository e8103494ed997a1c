"""The payloads clients receive for job events: the public contract of docs/protocol.md."""

from datetime import timedelta

from slurmcast.core.events import JobStateChanged, JobSubmitted, job_payload
from slurmcast.core.records import JobState, JobUsage

from support.builders import T0, finished, job


def test_pending_job_says_why_it_waits_and_when_it_should_start() -> None:
    waiting = job(
        "7",
        account="physics",
        qos="normal",
        reason="QOSMaxJobsPerUserLimit",
        expected_start_time=T0 + timedelta(hours=1),
    )
    data = JobSubmitted(waiting).data()
    assert (data["account"], data["qos"]) == ("physics", "normal")
    assert data["reason"] == "QOSMaxJobsPerUserLimit"
    assert data["reason_text"] == (
        "You already have as many running jobs as QOS normal allows per user; "
        "this job starts when one of them ends."
    )
    assert data["expected_start_time"] == "2026-01-01T13:00:00Z"
    assert "efficiency" not in data


def test_finished_job_carries_efficiency_and_no_stale_waiting_text() -> None:
    usage = JobUsage(elapsed_s=600, cpus=2, cpu_time_s=60.0)
    done = finished("8", JobState.CANCELLED, minutes=10, reason="Priority", usage=usage)
    data = JobStateChanged(done, JobState.RUNNING).data()
    assert data["efficiency"]["cpu_efficiency"] == 5.0
    assert data["reason"] == "Priority" and data["reason_text"] is None
    failed = finished("9", JobState.FAILED, reason="NonZeroExitCode", exit_code=2)
    assert job_payload(failed)["reason_text"] == "The job ended with a non-zero exit code."


def test_running_job_has_no_reason_text_and_no_expected_start() -> None:
    data = job_payload(job("10", JobState.RUNNING, start_time=T0))
    assert data["reason_text"] is None and data["expected_start_time"] is None
