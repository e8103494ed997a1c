"""Job notifications: what a person wants to be told when a job starts its life or ends it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from slurmcast.core.channels import Channel
from slurmcast.core.efficiency import job_efficiency
from slurmcast.core.events import JobEvent, JobStateChanged, JobSubmitted
from slurmcast.core.records import JobRecord, JobState
from slurmcast.core.timefmt import format_duration, iso_z


class NotificationType(StrEnum):
    JOB_SUBMITTED = "job_submitted"
    #: Made only for people whose notification rules ask for it (``core.notify.plan``).
    JOB_STARTED = "job_started"
    JOB_PENDING = "job_pending"
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    JOB_TIMEOUT = "job_timeout"
    ALERT = "alert"
    SYSTEM = "system"
    INFO = "info"


class Severity(StrEnum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    type: NotificationType
    title: str
    message: str
    severity: Severity
    created_at: datetime
    user: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    channel: ClassVar[Channel] = Channel.NOTIFICATIONS
    event_type: ClassVar[str] = "notification"

    @property
    def owner(self) -> str | None:
        return self.user

    def data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type.value,
            "title": self.title,
            "message": self.message,
            "severity": self.severity.value,
            "read": False,
            "user": self.user,
            "created_at": iso_z(self.created_at),
            "data": self.details,
        }


# Terminal state -> (notification type, severity, title, message template).
_FINISHED: dict[JobState, tuple[NotificationType, Severity, str, str]] = {
    JobState.COMPLETED: (
        NotificationType.JOB_COMPLETED,
        Severity.SUCCESS,
        "Job Completed",
        "Job #{id} ({name}) has finished successfully",
    ),
    JobState.FAILED: (
        NotificationType.JOB_FAILED,
        Severity.ERROR,
        "Job Failed",
        "Job #{id} ({name}) failed with exit code {exit}",
    ),
    JobState.OUT_OF_MEMORY: (
        NotificationType.JOB_FAILED,
        Severity.ERROR,
        "Job Out of Memory",
        "Job #{id} ({name}) ran out of memory",
    ),
    JobState.NODE_FAIL: (
        NotificationType.JOB_FAILED,
        Severity.ERROR,
        "Job Node Failure",
        "Job #{id} ({name}) ended because a node it ran on failed",
    ),
    JobState.BOOT_FAIL: (
        NotificationType.JOB_FAILED,
        Severity.ERROR,
        "Job Boot Failure",
        "Job #{id} ({name}) could not start: node boot failure",
    ),
    JobState.SPECIAL_EXIT: (
        NotificationType.JOB_FAILED,
        Severity.ERROR,
        "Job Failed",
        "Job #{id} ({name}) ended with a special exit state",
    ),
    JobState.CANCELLED: (
        NotificationType.JOB_CANCELLED,
        Severity.WARNING,
        "Job Cancelled",
        "Job #{id} ({name}) was cancelled",
    ),
    JobState.PREEMPTED: (
        NotificationType.JOB_CANCELLED,
        Severity.WARNING,
        "Job Preempted",
        "Job #{id} ({name}) was preempted",
    ),
    JobState.REVOKED: (
        NotificationType.JOB_CANCELLED,
        Severity.WARNING,
        "Job Revoked",
        "Job #{id} ({name}) was revoked (it runs on another cluster)",
    ),
    JobState.TIMEOUT: (
        NotificationType.JOB_TIMEOUT,
        Severity.WARNING,
        "Job Timed Out",
        "Job #{id} ({name}) reached its time limit",
    ),
    JobState.DEADLINE: (
        NotificationType.JOB_TIMEOUT,
        Severity.WARNING,
        "Job Missed Deadline",
        "Job #{id} ({name}) could not finish before its deadline",
    ),
}


def job_duration_s(job: JobRecord) -> float | None:
    """Run time of a job that started; None if it never ran or times are unknown."""
    if job.start_time is None or job.end_time is None:
        return None
    return max((job.end_time - job.start_time).total_seconds(), 0.0)


def notifications_for(
    events: Iterable[JobEvent], now: datetime, new_id: Callable[[], str]
) -> list[Notification]:
    """Notifications raised by job events: one on submission, one on finishing.

    A ``JobStateChanged`` that is not confirmed raises nothing: we do not
    tell a person their job completed when we do not know that it did.
    """
    out: list[Notification] = []
    for event in events:
        job = event.job
        if isinstance(event, JobSubmitted):
            out.append(
                Notification(
                    id=new_id(),
                    type=NotificationType.JOB_SUBMITTED,
                    title="Job Submitted",
                    message=f"Job #{job.job_id} ({job.name}) was submitted to {job.partition}",
                    severity=Severity.INFO,
                    created_at=now,
                    user=job.user,
                    details=_details(job),
                )
            )
        elif isinstance(event, JobStateChanged) and event.confirmed:
            spec = _FINISHED.get(job.state)
            if spec is None:
                continue
            kind, severity, title, template = spec
            out.append(
                Notification(
                    id=new_id(),
                    type=kind,
                    title=title,
                    message=template.format(id=job.job_id, name=job.name, exit=job.exit_code),
                    severity=severity,
                    created_at=now,
                    user=job.user,
                    details=_details(job),
                )
            )
    return out


def _details(job: JobRecord) -> dict[str, Any]:
    duration = job_duration_s(job)
    details: dict[str, Any] = {
        "job_id": job.job_id,
        "name": job.name,
        "user": job.user,
        "partition": job.partition,
        "status": job.state.value,
        "exit_code": job.exit_code,
        "exit_signal": job.exit_signal,
        "nodes": list(job.nodes),
        "duration": format_duration(duration),
        "duration_s": duration,
    }
    if job.state.is_terminal:
        details["efficiency"] = job_efficiency(job).as_dict()
    return details
