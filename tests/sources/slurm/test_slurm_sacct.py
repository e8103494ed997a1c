"""sacct -X -P output to final job states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from slurmcast.core.snapshot import JobRecord, JobState
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

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"
VERSIONS = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())
V2205 = FIXTURES / "22.05"


def _at(hour: int, minute: int, second: int) -> datetime:
    return datetime(2026, 11, 28, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_sacct_fixture_parses(version: str) -> None:
    for name in ("sacct_a_X_pipe.txt", "collector_sacct.txt"):
        finals = parse_sacct((FIXTURES / version / name).read_bytes())
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
    finals = parse_sacct((V2205 / "collector_sacct.txt").read_bytes())
    assert finals["2"].state is JobState.FAILED and finals["2"].exit_code == 3
    timeout = finals["10"]
    assert timeout.state is JobState.TIMEOUT
    assert (timeout.start_time, timeout.end_time) == (_at(4, 8, 49), _at(4, 9, 56))
    assert timeout.elapsed_s == 67
    # sacct -X reports 0:0 for jobs squeue saw killed by SIGTERM (raw status 15).
    assert (finals["1"].state, finals["1"].exit_code, finals["1"].exit_signal) == (
        JobState.CANCELLED,
        0,
        0,
    )
    assert finals["3"].state is JobState.PENDING and finals["3"].start_time is None
    # Held and dependent jobs (8, 9) were never eligible: not in the window.
    assert "8" not in finals and "9" not in finals


def test_steps_are_skipped_and_duplicates_keep_the_last() -> None:
    lines = [
        "7|FAILED|1:0|0:0|2026-11-28T03:00:00|2026-11-28T03:00:05|00:00:05|n1|None",
        "7.batch|FAILED|1:0|0:0|2026-11-28T03:00:00|2026-11-28T03:00:05|00:00:05|n1|",
        "7|COMPLETED|0:0|0:0|2026-11-28T03:10:00|2026-11-28T03:20:00|00:10:00|n2|None",
        "",
    ]
    finals = parse_sacct("\n".join(lines))
    assert list(finals) == ["7"]
    assert finals["7"].state is JobState.COMPLETED and finals["7"].nodes == ("n2",)


def test_times_in_another_zone() -> None:
    line = "7|COMPLETED|0:0|0:0|2026-11-28T05:00:00|2026-11-28T05:00:05|00:00:05|n1|None"
    final = parse_sacct(line, tz=timezone(timedelta(hours=2)))["7"]
    assert final.start_time == _at(3, 0, 0)


def test_empty_output() -> None:
    assert parse_sacct(b"") == {}


@pytest.mark.parametrize(
    "text",
    [
        "garbage\n",
        "7|COMPLETED|0:0\n",
        "7|COMPLETED|x:y|0:0|Unknown|Unknown|00:00:00|None assigned|None\n",
        "7|COMPLETED|0:0|0:0|yesterday|Unknown|00:00:00|None assigned|None\n",
        "7|COMPLETED|0:0|0:0|Unknown|Unknown|forever|None assigned|None\n",
        "|COMPLETED|0:0|0:0|Unknown|Unknown|00:00:00|None assigned|None\n",
        "7||0:0|0:0|Unknown|Unknown|00:00:00|None assigned|None\n",
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
    )
