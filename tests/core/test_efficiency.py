"""Job efficiency as seff computes it, from accounting's usage of a finished job."""

from datetime import timedelta

from slurmcast.core.efficiency import job_efficiency
from slurmcast.core.records import JobState, JobUsage

from support.builders import T0, finished, job


def test_cpu_and_memory_efficiency_like_seff() -> None:
    # The 22.05 capture: two busy loops on 2 CPUs for 20 s; 415 MiB peak of 1000M.
    burn = finished(
        "1",
        JobState.COMPLETED,
        cpus=2,
        usage=JobUsage(
            elapsed_s=20, cpus=2, cpu_time_s=32.487, memory_requested_mb=1000, memory_peak_mb=415
        ),
    )
    result = job_efficiency(burn)
    assert (result.cpu_efficiency, result.memory_efficiency) == (81.2, 41.5)
    assert (result.elapsed_s, result.cpus, result.cpu_time_s) == (20, 2, 32.487)
    assert result.reason is None
    assert result.as_dict()["memory_peak_mb"] == 415


def test_usage_figures_win_over_the_listing() -> None:
    record = finished(
        "2",
        JobState.COMPLETED,
        minutes=10,
        cpus=4,
        memory_mb=8192,
        usage=JobUsage(elapsed_s=60, cpus=8, cpu_time_s=48.0, memory_requested_mb=4096),
    )
    result = job_efficiency(record)
    assert (result.elapsed_s, result.cpus, result.cpu_efficiency) == (60, 8, 10.0)
    assert result.memory_requested_mb == 4096
    assert result.memory_efficiency is None
    assert result.reason is not None and "memory use not recorded" in result.reason


def test_no_accounting_record_gives_nulls_and_says_why() -> None:
    result = job_efficiency(finished("3", JobState.FAILED, minutes=2, gpus=2))
    assert result.cpu_efficiency is None and result.memory_efficiency is None
    assert (result.elapsed_s, result.cpus, result.gpus) == (120, 4, 2)
    assert result.reason == "accounting has no record of this job"


def test_job_that_never_ran() -> None:
    never = job(
        "4", JobState.CANCELLED, end_time=T0 + timedelta(minutes=1), usage=JobUsage(elapsed_s=0)
    )
    result = job_efficiency(never)
    assert result.cpu_efficiency is None and result.reason == "the job never ran"


def test_job_that_ran_less_than_a_second() -> None:
    quick = finished(
        "5", JobState.COMPLETED, minutes=0, usage=JobUsage(elapsed_s=0, cpus=1, cpu_time_s=0.0)
    )
    result = job_efficiency(quick)
    assert result.cpu_efficiency is None
    assert result.reason == "the job ran for less than a second"


def test_no_cpu_time_or_memory_request() -> None:
    record = finished(
        "6",
        JobState.COMPLETED,
        memory_mb=None,
        usage=JobUsage(elapsed_s=30, cpus=1, cpu_time_s=None, memory_peak_mb=10),
    )
    result = job_efficiency(record)
    assert result.cpu_efficiency is None and result.memory_efficiency is None
    assert result.reason == "CPU time not recorded"
