"""The simulated cluster's mutable records (nodes and jobs) and how Slurm would report them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from slurmcast.core.records import (
    NOT_RESPONDING,
    JobRecord,
    JobState,
    JobUsage,
    NodeRecord,
    NodeState,
)

CPU_NODE: Final = (64, 262_144, 0)  # cpus, memory MiB, gpus
GPU_NODE: Final = (64, 524_288, 4)
#: A tick that never comes: the end of a job with no planned end, an event that never fires.
NEVER: Final = 2**62


@dataclass(frozen=True, slots=True)
class User:
    name: str
    account: str
    weight: float
    gpu_share: float
    cpu_jobs: tuple[str, ...]
    gpu_jobs: tuple[str, ...] = ()


@dataclass(slots=True)
class Job:
    job_id: str
    name: str
    user: User
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    time_limit_min: int
    submit_tick: int
    runtime_s: int  # hidden plan: how long it would run if nothing intervenes
    outcome: JobState  # hidden plan: how it ends
    exit_code: int
    cancel_tick: int
    load: float  # busy fraction of its CPUs, for the node's cpu_load
    mem_use: float  # fraction of its memory request actually used
    eligible: bool = False
    start_tick: int | None = None
    end_tick: int = NEVER
    end_state: JobState = JobState.COMPLETED
    node: Node | None = None


@dataclass(slots=True)
class Node:
    name: str
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    cpus_alloc: int = 0
    mem_alloc: int = 0
    gpus_alloc: int = 0
    jobs: dict[str, Job] = field(default_factory=dict)  # a dict, not a set: ordered
    drain: bool = False
    down: bool = False
    reason: str | None = None

    @property
    def available(self) -> bool:
        return not (self.drain or self.down)

    def fits(self, job: Job) -> bool:
        return (
            self.available
            and self.cpus - self.cpus_alloc >= job.cpus
            and self.memory_mb - self.mem_alloc >= job.memory_mb
            and self.gpus - self.gpus_alloc >= job.gpus
        )

    def state(self) -> NodeState:
        if self.down:
            return NodeState.DOWN
        if self.drain:
            return NodeState.DRAINING if self.cpus_alloc else NodeState.DRAINED
        if self.cpus_alloc == 0:
            return NodeState.IDLE
        return NodeState.ALLOCATED if self.cpus_alloc >= self.cpus else NodeState.MIXED


def node_record(node: Node) -> NodeRecord:
    """The node as sinfo would show it, with the load and free memory of its jobs."""
    load: float | None = None
    free: int | None = None
    if not node.down:
        load = round(0.02 + sum(j.cpus * j.load for j in node.jobs.values()), 2)
        used = sum(int(j.memory_mb * j.mem_use) for j in node.jobs.values())
        free = max(0, node.memory_mb - node.memory_mb // 32 - used)  # OS keeps ~3%
    return NodeRecord(
        name=node.name,
        state=node.state(),
        cpus_total=node.cpus,
        cpus_allocated=node.cpus_alloc,
        memory_total_mb=node.memory_mb,
        memory_allocated_mb=node.mem_alloc,
        gpus_total=node.gpus,
        gpus_allocated=node.gpus_alloc,
        flags=frozenset({NOT_RESPONDING}) if node.down else frozenset(),
        partitions=(node.partition,),
        reason=node.reason,
        cpu_load=load,
        memory_free_mb=free,
    )


def job_record(
    job: Job,
    state: JobState,
    origin: datetime,
    *,
    reason: str | None = None,
    exit_code: int | None = None,
    exit_signal: int | None = None,
    usage: JobUsage | None = None,
) -> JobRecord:
    """The job in ``state``, its ticks turned into times counted from ``origin`` (tick 0)."""
    start = None if job.start_tick is None else origin + timedelta(seconds=job.start_tick)
    return JobRecord(
        job_id=job.job_id,
        name=job.name,
        user=job.user.name,
        partition=job.partition,
        state=state,
        nodes=() if job.node is None else (job.node.name,),
        cpus=job.cpus,
        memory_mb=job.memory_mb,
        gpus=job.gpus,
        submit_time=origin + timedelta(seconds=job.submit_tick),
        start_time=start,
        end_time=origin + timedelta(seconds=job.end_tick) if state.is_terminal else None,
        exit_code=exit_code,
        exit_signal=exit_signal,
        reason=reason,
        time_limit_min=job.time_limit_min,
        account=job.user.account,
        qos="normal",
        usage=usage,
    )


def job_usage(job: Job) -> JobUsage:
    """What accounting would have measured: the job's planned load and memory use.

    Derived from draws made at submission, so recording it changes nothing in
    the simulation itself.
    """
    if job.start_tick is None:
        return JobUsage(
            elapsed_s=0, cpus=job.cpus, cpu_time_s=0.0, memory_requested_mb=job.memory_mb
        )
    elapsed = job.end_tick - job.start_tick
    return JobUsage(
        elapsed_s=elapsed,
        cpus=job.cpus,
        cpu_time_s=round(elapsed * job.cpus * job.load, 1),
        memory_requested_mb=job.memory_mb,
        memory_peak_mb=int(job.memory_mb * job.mem_use),
    )
