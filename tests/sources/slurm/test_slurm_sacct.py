"""sacct -X -P output to final job states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from slurmcast.core.records import JobRecord, JobState, JobUsage
from slurmcast.errors import SourceError
from slurmcast.sources.slurm.jobs import parse_squeue_json
from slurmcast.sources.slurm.sacct import (
    SACCT_ARGS,
    SACCT_FIELDS,
    FinalState,
    apply_final_state,
    parse_sacct,
    sacct_args,
)

from support.slurm_fixtures import OLDEST, files, folder, versions_with

V2205 = folder(OLDEST)


def _at(hour: int, minute: int, second: int) -> datetime:
    return datetime(2026, 11, 28, hour, minute, second, tzinfo=UTC)


def _on_6th(hour: int, minute: int, second: int) -> datetime:
    return datetime(2026, 12, 6, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize("version", versions_with("*sacct*.txt"))
def test_every_sacct_fixture_parses(version: str) -> None:
    for path in files(version, "*sacct*.txt"):
        name = path.name
        finals = parse_sacct(path.read_bytes())
        assert finals, name
        for job_id, final in finals.items():
            assert final.job_id == job_id and job_id.isdigit()
            assert final.state is not JobState.UNKNOWN
            if final.state.is_terminal:
                assert final.end_time is not None and final.exit_code is not None
            else:
                assert final.exit_code is None and final.end_time is None


def test_sample_with_header_and_other_columns() -> None:
    finals = parse_sacct((V2205 / "sacct_a_X_pipe.txt").read_bytes())
    assert set(finals) == {"1", "2", "3", "4", "5", "7", "11", "12", "13", "14", "15", "6"}
    assert finals["2"] == FinalState(
        job_id="2",
        state=JobState.FAILED,
        exit_code=3,
        exit_signal=0,
        derived_exit_code=0,
        start_time=_at(3, 26, 41),
        end_time=_at(3, 26, 41),
        elapsed_s=0,
        reason=None,
        nodes=("node001",),
    )
    assert finals["1"].state is JobState.COMPLETED and finals["1"].elapsed_s == 5
    cancelled = finals["3"]  # "CANCELLED by 0", never got nodes ("None assigned")
    assert cancelled.state is JobState.CANCELLED
    assert (cancelled.start_time, cancelled.nodes) == (None, ())
    assert cancelled.end_time == _at(3, 26, 41)
    # Rejected submission: sacct says 1:0 where squeue's raw status 1 means signal 1.
    assert (finals["12"].exit_code, finals["12"].exit_signal) == (1, 0)
    # Array task 6_1 is keyed by its raw id.
    assert finals["14"].state is JobState.RUNNING and finals["14"].nodes == ("node001",)
    assert finals["4"].nodes == ("node001", "node002")
    assert finals["11"].reason == "PartitionNodeLimit"


def test_collector_capture() -> None:
    # tests/fixtures/slurm/capture-22.05.sh: jobs 1-3 measured, 4 exit 3, 5 timeout, 6 cancelled.
    finals = parse_sacct((V2205 / "collector_sacct.txt").read_bytes())
    assert finals["4"].state is JobState.FAILED and finals["4"].exit_code == 3
    timeout = finals["5"]
    assert timeout.state is JobState.TIMEOUT
    assert (timeout.start_time, timeout.end_time) == (_on_6th(17, 12, 22), _on_6th(17, 13, 29))
    assert timeout.elapsed_s == 67
    # The job line says 0:0 for a job squeue saw killed by SIGTERM (raw status 15).
    assert (finals["6"].state, finals["6"].exit_code, finals["6"].exit_signal) == (
        JobState.CANCELLED,
        0,
        0,
    )
    assert finals["8"].state is JobState.PENDING and finals["8"].start_time is None
    # Held and dependent jobs (9, 10) were never eligible: not in the window.
    assert "9" not in finals and "10" not in finals
    assert set(finals) == {"1", "2", "3", "4", "5", "6", "7", "8", "12", "13", "14", "15"}


def test_collector_usage_from_job_and_step_lines() -> None:
    finals = parse_sacct((V2205 / "collector_sacct.txt").read_bytes())
    burn, idle, memory = finals["1"].usage, finals["2"].usage, finals["3"].usage
    # Two busy loops on 2 CPUs for 20 s; sleep 20 on 2 CPUs; 400 MiB touched in 1000M.
    assert burn == JobUsage(
        elapsed_s=20, cpus=2, cpu_time_s=32.487, memory_requested_mb=200, memory_peak_mb=8
    )
    assert idle == JobUsage(
        elapsed_s=20, cpus=2, cpu_time_s=0.002, memory_requested_mb=200, memory_peak_mb=3
    )
    assert memory is not None and memory.memory_requested_mb == 1000
    assert memory.memory_peak_mb == round(424832 / 1024)
    assert finals["7"].usage is not None and finals["7"].usage.memory_peak_mb is None  # running


def test_steps_give_the_peak_and_the_cpu_time_of_their_job() -> None:
    lines = [
        "9|COMPLETED|0:0|0:0|2026-11-28T03:00:00|2026-11-28T03:01:40|00:01:40|n[1-2]|8|01:10:00||"
        "4G|billing=8,cpu=8,mem=8G,node=2|None",
        "9.batch|COMPLETED|0:0||2026-11-28T03:00:00|2026-11-28T03:01:40|00:01:40|n1|4|00:00.500|"
        "10240K||cpu=4,mem=4G,node=1|",
        "9.0|COMPLETED|0:0||2026-11-28T03:00:01|2026-11-28T03:01:40|00:01:39|n[1-2]|8|01:09:59.500|"
        "3.5G||cpu=8,mem=8G,node=2|",
        "9.extern|COMPLETED|0:0||2026-11-28T03:00:00|2026-11-28T03:01:40|00:01:40|n[1-2]|8|"
        "00:00:00|||cpu=8,mem=8G,node=2|",
    ]
    usage = parse_sacct("\n".join(lines))["9"].usage
    assert usage == JobUsage(
        elapsed_s=100, cpus=8, cpu_time_s=4200.0, memory_requested_mb=8192, memory_peak_mb=3584
    )


@pytest.mark.parametrize(
    ("req_mem", "expected"),
    [("2Gn", 4096), ("512Mc", 2048), ("3000M", 3000), ("", None)],
)
def test_requested_memory_without_alloc_tres(req_mem: str, expected: int | None) -> None:
    # Releases before 21.08 suffix ReqMem with n (per node) or c (per CPU).
    line = (
        f"9|COMPLETED|0:0|0:0|2026-11-28T03:00:00|2026-11-28T03:01:40|00:01:40|n[1-2]|4|00:10|"
        f"|{req_mem}||None"
    )
    usage = parse_sacct(line)["9"].usage
    assert usage is not None and usage.memory_requested_mb == expected


def test_header_without_usage_columns_gives_no_usage() -> None:
    finals = parse_sacct((V2205 / "sacct_a_X_pipe.txt").read_bytes())
    assert all(final.usage is None for final in finals.values())


def test_steps_are_skipped_and_duplicates_keep_the_last() -> None:
    lines = [
        "7|FAILED|1:0|0:0|2026-11-28T03:00:00|2026-11-28T03:00:05|00:00:05|n1|1|00:01.000||1G|"
        "cpu=1,mem=1G|None",
        "7.batch|FAILED|1:0||2026-11-28T03:00:00|2026-11-28T03:00:05|00:00:05|n1|1|00:01.000|"
        "2048K||cpu=1,mem=1G|",
        "7|COMPLETED|0:0|0:0|2026-11-28T03:10:00|2026-11-28T03:20:00|00:10:00|n2|1|00:02.000||1G|"
        "cpu=1,mem=1G|None",
        "",
    ]
    finals = parse_sacct("\n".join(lines))
    assert list(finals) == ["7"]
    assert finals["7"].state is JobState.COMPLETED and finals["7"].nodes == ("n2",)


def test_times_in_another_zone() -> None:
    line = (
        "7|COMPLETED|0:0|0:0|2026-11-28T05:00:00|2026-11-28T05:00:05|00:00:05|n1|1|0|||cpu=1|None"
    )
    final = parse_sacct(line, tz=timezone(timedelta(hours=2)))["7"]
    assert final.start_time == _at(3, 0, 0)


def test_empty_output() -> None:
    assert parse_sacct(b"") == {}


@pytest.mark.parametrize(
    "text",
    [
        "garbage\n",
        "7|COMPLETED|0:0\n",
        "7|COMPLETED|x:y|0:0|Unknown|Unknown|00:00:00|None assigned|1|0|||cpu=1|None\n",
        "7|COMPLETED|0:0|0:0|yesterday|Unknown|00:00:00|None assigned|1|0|||cpu=1|None\n",
        "7|COMPLETED|0:0|0:0|Unknown|Unknown|forever|None assigned|1|0|||cpu=1|None\n",
        "|COMPLETED|0:0|0:0|Unknown|Unknown|00:00:00|None assigned|1|0|||cpu=1|None\n",
        "7||0:0|0:0|Unknown|Unknown|00:00:00|None assigned|1|0|||cpu=1|None\n",
        "7|COMPLETED|0:0|0:0|Unknown|Unknown|00:00:00|None assigned|x|0|||cpu=1|None\n",
        "7|COMPLETED|0:0|0:0|Unknown|Unknown|00:00:00|None assigned|1|soon|||cpu=1|None\n",
        "7|COMPLETED|0:0|0:0|Unknown|Unknown|00:00:00|None assigned|1|0||lots|cpu=1|None\n",
        "7.batch|COMPLETED|0:0||Unknown|Unknown|00:00:00|n1|1|0|big||cpu=1|\n",
        "JobIDRaw|State\n7|COMPLETED\n",
        "JobIDRaw|State|ExitCode|DerivedExitCode|Start|End|Elapsed|NodeList|Reason\n7|X\n",
    ],
)
def test_malformed_input(text: str) -> None:
    with pytest.raises(SourceError):
        parse_sacct(text)


def test_sacct_args() -> None:
    since = datetime(2026, 11, 28, 5, 0, tzinfo=timezone(timedelta(hours=2)))
    args = sacct_args(since, job_ids=["14", "15"], terminal_only=True)
    assert args[: len(SACCT_ARGS)] == list(SACCT_ARGS)
    assert args[len(SACCT_ARGS) :] == [
        "--starttime=2026-11-28T03:00:00",
        "--endtime=now",
        "--jobs=14,15",
        "--state=CA,CD,F,TO,NF,PR,BF,DL,OOM",
    ]
    assert f"--format={','.join(SACCT_FIELDS)}" in SACCT_ARGS
    bounded = sacct_args(_at(3, 0, 0), _at(3, 5, 0))
    assert bounded[-2:] == ["--starttime=2026-11-28T03:00:00", "--endtime=2026-11-28T03:05:00"]


def test_apply_final_state() -> None:
    jobs = parse_squeue_json((V2205 / "squeue_json.json").read_bytes(), _at(3, 27, 0)).jobs
    last_seen = jobs["4"]  # RUNNING on node[001-002]
    final = FinalState(
        job_id="4",
        state=JobState.TIMEOUT,
        exit_code=0,
        exit_signal=15,
        derived_exit_code=0,
        start_time=_at(3, 26, 41),
        end_time=_at(3, 56, 41),
        elapsed_s=1800,
        reason="TimeLimit",
    )
    record = apply_final_state(last_seen, final)
    assert record == JobRecord(
        job_id="4",
        name="long-2nodes",
        user="root",
        partition="debug",
        state=JobState.TIMEOUT,
        nodes=("node001", "node002"),
        cpus=2,
        memory_mb=1000,
        gpus=0,
        submit_time=_at(3, 26, 40),
        start_time=_at(3, 26, 41),
        end_time=_at(3, 56, 41),
        exit_code=0,
        exit_signal=15,
        reason="TimeLimit",
        time_limit_min=30,
        account="root",
        qos="normal",
    )
