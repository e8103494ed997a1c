"""How well a finished job used what it was given, as ``seff`` reports it.

* CPU efficiency: TotalCPU / (Elapsed x allocated CPUs);
* memory efficiency: the largest MaxRSS of any step / the job's memory request
  (per-node or per-CPU requests multiplied out).

A figure accounting did not record is None, and ``reason`` says why, so a
dashboard can show "not measured" instead of a misleading 0 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slurmcast.core.records import JobRecord


@dataclass(frozen=True, slots=True)
class Efficiency:
    elapsed_s: int | None
    cpus: int | None
    cpu_time_s: float | None
    cpu_efficiency: float | None
    memory_requested_mb: int | None
    memory_peak_mb: int | None
    memory_efficiency: float | None
    gpus: int
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "elapsed_s": self.elapsed_s,
            "cpus": self.cpus,
            "cpu_time_s": self.cpu_time_s,
            "cpu_efficiency": self.cpu_efficiency,
            "memory_requested_mb": self.memory_requested_mb,
            "memory_peak_mb": self.memory_peak_mb,
            "memory_efficiency": self.memory_efficiency,
            "gpus": self.gpus,
            "reason": self.reason,
        }


def job_efficiency(job: JobRecord) -> Efficiency:
    """The efficiency of a finished job from its accounting ``usage``.

    Args:
        job: the job as it ended; ``job.usage`` None means accounting had no
            record of it (unavailable, or not there yet).

    Returns:
        The figures; percentages have one decimal and may exceed 100
        (hyper-threads, a request smaller than what the kernel charged).
    """
    usage = job.usage
    elapsed = _elapsed(job)
    if usage is None:
        return Efficiency(
            elapsed_s=elapsed,
            cpus=job.cpus or None,
            cpu_time_s=None,
            cpu_efficiency=None,
            memory_requested_mb=job.memory_mb,
            memory_peak_mb=None,
            memory_efficiency=None,
            gpus=job.gpus,
            reason="accounting has no record of this job",
        )
    if usage.elapsed_s is not None:
        elapsed = usage.elapsed_s
    cpus = usage.cpus or job.cpus or None
    requested = usage.memory_requested_mb or job.memory_mb
    reasons: list[str] = []
    cpu_efficiency = None
    if job.start_time is None and not job.nodes:
        reasons.append("the job never ran")
    elif not elapsed:
        reasons.append("the job ran for less than a second")
    elif usage.cpu_time_s is None or not cpus:
        reasons.append("CPU time not recorded")
    else:
        cpu_efficiency = _percent(usage.cpu_time_s, elapsed * cpus)
    memory_efficiency = None
    if not reasons:
        if usage.memory_peak_mb is None:
            reasons.append("memory use not recorded (no job accounting gather plugin?)")
        elif not requested:
            reasons.append("no memory request to compare with")
        else:
            memory_efficiency = _percent(usage.memory_peak_mb, requested)
    return Efficiency(
        elapsed_s=elapsed,
        cpus=cpus,
        cpu_time_s=usage.cpu_time_s,
        cpu_efficiency=cpu_efficiency,
        memory_requested_mb=requested,
        memory_peak_mb=usage.memory_peak_mb,
        memory_efficiency=memory_efficiency,
        gpus=job.gpus,
        reason="; ".join(reasons) or None,
    )


def _elapsed(job: JobRecord) -> int | None:
    if job.start_time is None or job.end_time is None:
        return None
    return max(int((job.end_time - job.start_time).total_seconds()), 0)


def _percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1)
