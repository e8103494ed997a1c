"""The Slurm records every source produces and the diff engine consumes.

A listing is what a source saw at one instant: the jobs it knows and the
nodes it knows, each keyed by a stable id. Records are frozen so a listing
can be shared between the monitor, the metrics and the diff without copying.
(A channel's *snapshot*, what clients get, is ``core.views.Snapshot``.)

State names are Slurm's full names (``squeue --long`` / ``sacct`` spelling),
never the compact codes, so clients never need Slurm's code tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class JobState(StrEnum):
    """A job's state as Slurm names it.

    Slurm keeps a base state plus flags; ``squeue`` prints a recognised flag
    (COMPLETING, CONFIGURING, ...) instead of the base state, so those flags
    appear here as states too.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETING = "COMPLETING"
    CONFIGURING = "CONFIGURING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    REQUEUED = "REQUEUED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    RESIZING = "RESIZING"
    REVOKED = "REVOKED"
    SIGNALING = "SIGNALING"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    STAGE_OUT = "STAGE_OUT"
    STOPPED = "STOPPED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB_STATES

    @classmethod
    def parse(cls, name: str) -> JobState:
        """Map a state name to a member; anything Slurm adds later becomes UNKNOWN."""
        try:
            return cls(name.strip().upper())
        except ValueError:
            return cls.UNKNOWN


#: States a job never leaves (Slurm's "job_state_codes": the job is finished).
TERMINAL_JOB_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.OUT_OF_MEMORY,
        JobState.REVOKED,
        JobState.SPECIAL_EXIT,
    }
)

#: Terminal states that mean the job did not succeed.
FAILED_JOB_STATES = frozenset(
    {
        JobState.FAILED,
        JobState.NODE_FAIL,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.OUT_OF_MEMORY,
    }
)


class NodeState(StrEnum):
    """A node's display state, derived like ``sinfo`` does from base state + flags."""

    IDLE = "IDLE"
    MIXED = "MIXED"
    ALLOCATED = "ALLOCATED"
    COMPLETING = "COMPLETING"
    DRAINING = "DRAINING"
    DRAINED = "DRAINED"
    DOWN = "DOWN"
    FAIL = "FAIL"
    FAILING = "FAILING"
    MAINT = "MAINT"
    RESERVED = "RESERVED"
    REBOOT = "REBOOT"
    FUTURE = "FUTURE"
    POWERED_DOWN = "POWERED_DOWN"
    INVAL = "INVAL"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, name: str) -> NodeState:
        try:
            return cls(name.strip().upper())
        except ValueError:
            return cls.UNKNOWN


#: Node states an operator wants to hear about: the node cannot take work.
UNAVAILABLE_NODE_STATES = frozenset(
    {
        NodeState.DOWN,
        NodeState.DRAINED,
        NodeState.DRAINING,
        NodeState.FAIL,
        NodeState.FAILING,
        NodeState.INVAL,
    }
)

#: Flag name meaning slurmctld cannot reach the node's slurmd (``*`` suffix in sinfo).
NOT_RESPONDING = "NOT_RESPONDING"


@dataclass(frozen=True, slots=True)
class JobUsage:
    """What accounting measured for a finished job: the inputs of its efficiency.

    Every figure is None when accounting did not record it. ``cpu_time_s`` is
    sacct's TotalCPU (user + system time over every step); ``memory_peak_mb``
    the largest MaxRSS of any step (per task, as ``seff`` reads it);
    ``memory_requested_mb`` the job's whole memory request (per-node or per-CPU
    requests multiplied out).
    """

    elapsed_s: int | None = None
    cpus: int | None = None
    cpu_time_s: float | None = None
    memory_requested_mb: int | None = None
    memory_peak_mb: int | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as a source sees it.

    ``memory_mb`` is the job's total memory request in MiB (None when Slurm
    does not say). ``exit_code`` is the job's return code (not the raw wait
    status) once it is known; ``exit_signal`` the signal that ended it, if any.

    ``reason`` is Slurm's reason code (``Priority``, ``QOSMaxJobsPerUserLimit``);
    ``reason_detail`` Slurm's own longer description when it gives one
    (``ReqNodeNotAvail, UnavailableNodes:node[3-4]``). ``expected_start_time``
    is the scheduler's forecast for a job not started yet (``squeue --start``),
    None when it has none. ``usage`` is what accounting measured once the job
    ended (None until then, or without accounting).
    """

    job_id: str
    name: str
    user: str
    partition: str
    state: JobState
    nodes: tuple[str, ...] = ()
    cpus: int = 0
    memory_mb: int | None = None
    gpus: int = 0
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str | None = None
    time_limit_min: int | None = None
    account: str | None = None
    qos: str | None = None
    dependency: str | None = None
    reservation: str | None = None
    reason_detail: str | None = None
    expected_start_time: datetime | None = None
    usage: JobUsage | None = None


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node as a source sees it. Memory figures are MiB."""

    name: str
    state: NodeState
    cpus_total: int
    cpus_allocated: int = 0
    memory_total_mb: int = 0
    memory_allocated_mb: int = 0
    gpus_total: int = 0
    gpus_allocated: int = 0
    flags: frozenset[str] = frozenset()
    partitions: tuple[str, ...] = ()
    reason: str | None = None
    cpu_load: float | None = None
    memory_free_mb: int | None = None

    @property
    def not_responding(self) -> bool:
        return NOT_RESPONDING in self.flags

    @property
    def cpu_usage(self) -> float:
        """Allocated CPUs as a percentage of the node's CPUs."""
        return percent(self.cpus_allocated, self.cpus_total)

    @property
    def memory_usage(self) -> float:
        return percent(self.memory_allocated_mb, self.memory_total_mb)

    @property
    def gpu_usage(self) -> float:
        return percent(self.gpus_allocated, self.gpus_total)


@dataclass(frozen=True, slots=True)
class JobsListing:
    """Every job a source knew at ``taken_at``, keyed by job id."""

    taken_at: datetime
    jobs: Mapping[str, JobRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodesListing:
    """Every node a source knew at ``taken_at``, keyed by node name."""

    taken_at: datetime
    nodes: Mapping[str, NodeRecord] = field(default_factory=dict)


def percent(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole``, one decimal, 0.0 when ``whole`` is 0."""
    if whole <= 0:
        return 0.0
    return round(100.0 * part / whole, 1)
