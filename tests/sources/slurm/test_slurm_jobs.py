"""squeue --json and the delimited squeue fallback, on real Slurm outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from slurmcast.core.records import JobRecord, JobState
from slurmcast.errors import SourceError
from slurmcast.sources.slurm.jobs import (
    SQUEUE_ARGS,
    SQUEUE_DELIMITER,
    SQUEUE_FIELDS,
    parse_squeue_delimited,
    parse_squeue_json,
)

from support.slurm_fixtures import (
    JOB_LISTINGS,
    OLDEST,
    files,
    folder,
    job_listings,
    versions_with,
)

V2205 = folder(OLDEST)
TAKEN_AT = datetime(2026, 11, 28, 3, 27, tzinfo=UTC)


def _at(hour: int, minute: int, second: int) -> datetime:
    return datetime(2026, 11, 28, hour, minute, second, tzinfo=UTC)


def _json_jobs(path: Path) -> dict[str, JobRecord]:
    snapshot = parse_squeue_json(path.read_bytes(), TAKEN_AT)
    assert snapshot.taken_at == TAKEN_AT
    return dict(snapshot.jobs)


def _project_wide_sample(path: Path) -> str:
    """Rewrite the ``squeue -O ...:|`` sample into the collector's field order."""
    header, *lines = path.read_text().splitlines()
    columns = header.split("|")
    # The sample's first two columns are both "JOBID": -O JobID, then JobArrayID.
    source = {
        "JobID": 0,
        "State": columns.index("STATE"),
        "UserName": columns.index("USER"),
        "Account": columns.index("ACCOUNT"),
        "Partition": columns.index("PARTITION"),
        "QOS": columns.index("QOS"),
        "NumCPUs": columns.index("CPUS"),
        "NumNodes": columns.index("NODES"),
        "NumTasks": columns.index("TASKS"),
        "tres-alloc": columns.index("TRES_ALLOC"),
        "tres-per-job": columns.index("TRES_PER_JOB"),
        "tres-per-node": columns.index("TRES_PER_NODE"),
        "SubmitTime": columns.index("SUBMIT_TIME"),
        "StartTime": columns.index("START_TIME"),
        "EndTime": columns.index("END_TIME"),
        "TimeLimit": columns.index("TIME_LIMIT"),
        "exit_code": columns.index("EXIT_CODE"),
        "Reason": columns.index("REASON"),
        "NodeList": columns.index("NODELIST"),
        "ReasonList": columns.index("NODELIST(REASON)"),
        "Name": columns.index("NAME"),
    }
    rows = []
    for line in lines:
        values = line.split("|")
        rows.append(
            SQUEUE_DELIMITER.join(
                values[source[field]] if field in source else "N/A" for field in SQUEUE_FIELDS
            )
        )
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- every version


@pytest.mark.parametrize("version", versions_with(*JOB_LISTINGS, exclude="slurmdb"))
def test_every_squeue_json_fixture_parses_completely(version: str) -> None:
    paths = job_listings(version) + files(version, "rest_v*_job_*.json", exclude="slurmdb")
    assert paths
    for path in paths:
        raw_jobs = orjson.loads(path.read_bytes())["jobs"]
        jobs = _json_jobs(path)
        assert len(jobs) == len(raw_jobs), path.name
        for job_id, job in jobs.items():
            assert job.job_id == job_id and job_id.isdigit()
            assert job.state is not JobState.UNKNOWN
            assert job.submit_time is not None and job.submit_time.tzinfo is UTC
            assert job.user and job.partition
            if job.state is JobState.PENDING:
                assert job.start_time is None and job.nodes == ()
            if job.state is JobState.RUNNING:
                assert job.start_time is not None and job.nodes
                assert job.end_time is None and job.exit_code is None
            if job.state.is_terminal:
                assert job.end_time is not None and job.exit_code is not None


@pytest.mark.parametrize("version", versions_with("collector_squeue.txt"))
def test_collector_json_and_delimited_outputs_agree(version: str) -> None:
    directory = folder(version)
    raw = (directory / "collector_squeue_json.json").read_bytes()
    from_json = parse_squeue_json(raw, COLLECTED_AT).jobs
    text = (directory / "collector_squeue.txt").read_bytes()
    from_text = parse_squeue_delimited(text, COLLECTED_AT).jobs
    assert from_json == from_text


# ---------------------------------------------------------------- 22.05 sample


@pytest.fixture(scope="module")
def sample() -> dict[str, JobRecord]:
    return _json_jobs(V2205 / "squeue_json.json")


def test_sample_ids_are_raw_job_ids(sample: dict[str, JobRecord]) -> None:
    # _jobids.txt: ok=1 fail=2 cancel=3 long=4 gpu=5 arr=6 ... ; tasks 6_1, 6_2 are 14, 15.
    assert set(sample) == {str(number) for number in range(1, 16)}
    assert [sample[i].name for i in ("14", "15", "6")] == ["array-job"] * 3


def test_sample_exit_3_job(sample: dict[str, JobRecord]) -> None:
    job = sample["2"]
    assert job.name == "fail-exit3"
    assert job.state is JobState.FAILED
    assert (job.exit_code, job.exit_signal) == (3, 0)
    assert job.reason == "NonZeroExitCode"
    assert job.nodes == ("node001",)
    assert (job.start_time, job.end_time) == (_at(3, 26, 41), _at(3, 26, 41))


def test_sample_completed_job(sample: dict[str, JobRecord]) -> None:
    job = sample["1"]
    assert job.state is JobState.COMPLETED
    assert (job.exit_code, job.exit_signal) == (0, 0)
    assert job.submit_time == _at(3, 26, 40)
    assert (job.start_time, job.end_time) == (_at(3, 26, 41), _at(3, 26, 46))
    assert (job.user, job.account, job.partition) == ("root", "root", "debug")
    assert (job.cpus, job.memory_mb, job.gpus) == (1, 100, 0)
    assert job.reason is None
    assert job.time_limit_min is None


def test_sample_job_cancelled_while_pending_never_started(sample: dict[str, JobRecord]) -> None:
    job = sample["3"]
    assert job.state is JobState.CANCELLED
    assert job.nodes == ()
    assert job.start_time is None
    assert job.end_time == _at(3, 26, 41)
    assert job.cpus == 1  # "cpus" is null: taken from the requested TRES


def test_sample_running_jobs(sample: dict[str, JobRecord]) -> None:
    two_nodes = sample["4"]
    assert two_nodes.state is JobState.RUNNING
    assert two_nodes.nodes == ("node001", "node002")
    assert (two_nodes.cpus, two_nodes.memory_mb, two_nodes.time_limit_min) == (2, 1000, 30)
    assert two_nodes.end_time is None  # squeue's end is start + limit: a forecast
    assert two_nodes.exit_code is None and two_nodes.exit_signal is None
    gpu = sample["5"]
    assert (gpu.partition, gpu.gpus, gpu.memory_mb, gpu.cpus) == ("gpu", 1, 1024, 2)
    assert gpu.time_limit_min == 1440


def test_sample_pending_jobs(sample: dict[str, JobRecord]) -> None:
    reasons = {job_id: sample[job_id].reason for job_id in ("7", "8", "9", "10", "11")}
    assert reasons == {
        "7": "Resources",
        "8": "JobHeldUser",
        "9": "BeginTime",
        "10": "Dependency",
        "11": "PartitionNodeLimit",
    }
    too_big = sample["7"]
    assert too_big.state is JobState.PENDING
    assert too_big.start_time is None  # squeue gives an expected start a year ahead
    assert (too_big.cpus, too_big.memory_mb) == (4, 400)


def test_sample_rejected_submissions(sample: dict[str, JobRecord]) -> None:
    memory = sample["12"]
    assert memory.state is JobState.FAILED and memory.reason == "BadConstraints"
    assert memory.memory_mb == 999 * 1024
    # Raw status 1 is "signal 1" (jobcomp prints 0:1; sacct prints 1:0).
    assert (memory.exit_code, memory.exit_signal) == (0, 1)
    assert memory.start_time is None
    assert sample["13"].gpus == 8


def test_wide_text_sample_matches_json_sample(sample: dict[str, JobRecord]) -> None:
    text = _project_wide_sample(V2205 / "squeue_O_wide.txt")
    # The sample was taken without the Dependency and Reservation columns.
    expected = {
        job_id: JobRecord(**{**_fields(job), "dependency": None, "reservation": None})
        for job_id, job in sample.items()
    }
    assert dict(parse_squeue_delimited(text, TAKEN_AT).jobs) == expected


def test_rest_v0036_matches_v0038_but_has_no_user_names(sample: dict[str, JobRecord]) -> None:
    old = _json_jobs(V2205 / "rest_v0.0.36_jobs.json")
    assert set(old) == set(sample)
    for job_id, job in old.items():
        assert job.user == "0"  # slurmrestd v0.0.36 leaves user_name empty: uid instead
        assert job == JobRecord(**{**_fields(sample[job_id]), "user": "0"})


def _fields(job: JobRecord) -> dict[str, Any]:
    return {name: getattr(job, name) for name in JobRecord.__slots__}


# ------------------------------------------------------- 22.05 collector capture


#: When the collector outputs were recorded (tests/fixtures/slurm/capture-22.05.sh).
COLLECTED_AT = datetime(2026, 12, 6, 17, 13, 50, tzinfo=UTC)


def _collected(hour: int, minute: int, second: int, day: int = 6) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture(scope="module")
def collector() -> dict[str, JobRecord]:
    return dict(
        parse_squeue_json((V2205 / "collector_squeue_json.json").read_bytes(), COLLECTED_AT).jobs
    )


def test_collector_cancelled_running_job_has_sigterm(collector: dict[str, JobRecord]) -> None:
    job = collector["6"]
    assert job.name == "weird|name with spaces"
    assert job.state is JobState.CANCELLED
    assert (job.exit_code, job.exit_signal) == (0, 15)
    assert job.start_time is not None and job.nodes == ("node001",)
    assert job.reason is None and job.qos == "normal"


def test_collector_timeout_and_gpu_jobs(collector: dict[str, JobRecord]) -> None:
    timeout = collector["5"]
    assert timeout.state is JobState.TIMEOUT
    assert (timeout.exit_code, timeout.exit_signal) == (0, 15)
    assert (timeout.reason, timeout.time_limit_min) == ("TimeLimit", 1)
    gpu = collector["7"]
    assert (gpu.gpus, gpu.memory_mb, gpu.partition) == (2, 1500, "gpu")


def test_collector_array_records(collector: dict[str, JobRecord]) -> None:
    # Array 8: tasks 8_1, 8_2 run as jobs 13, 14; job 8 is the pending rest (8_[3-6]).
    assert collector["8"].state is JobState.PENDING
    assert collector["8"].reason == "Resources"
    assert collector["13"].nodes == ("node002",) and collector["14"].nodes == ("node003",)
    assert collector["15"].name == "quick ok"


def test_collector_pending_jobs_say_why_and_when(collector: dict[str, JobRecord]) -> None:
    waiting = {job_id: collector[job_id] for job_id in ("8", "9", "10", "11", "12", "15")}
    assert {job_id: job.reason for job_id, job in waiting.items()} == {
        "8": "Resources",
        "9": "JobHeldUser",
        "10": "Dependency",
        "11": "BeginTime",
        "12": "ReqNodeNotAvail",
        "15": "Priority",
    }
    assert collector["10"].dependency == "afterok:7(unfulfilled)"
    assert collector["12"].reason_detail == "ReqNodeNotAvail, UnavailableNodes:node004"
    # Forecasts: the begin time, and a backfill estimate; a year ahead means none.
    assert collector["11"].expected_start_time == _collected(18, 12, 21)
    assert collector["15"].expected_start_time == _collected(17, 12, 22, day=7)
    assert collector["8"].expected_start_time is None
    assert collector["9"].expected_start_time is None  # held: Slurm gives 0
    assert all(job.start_time is None for job in waiting.values())
    assert collector["7"].expected_start_time is None  # running: a real start instead


def test_collector_text_keeps_the_delimiter_in_job_names() -> None:
    text = (V2205 / "collector_squeue.txt").read_text()
    jobs = parse_squeue_delimited(text, COLLECTED_AT).jobs
    assert jobs["6"].name == "weird|name with spaces"


# ------------------------------------------------------------------- format


def test_squeue_args_use_the_field_list() -> None:
    assert SQUEUE_ARGS[0] == "squeue"
    assert "--states=all" in SQUEUE_ARGS and "--noheader" in SQUEUE_ARGS
    format_arg = SQUEUE_ARGS[-1].removeprefix("--Format=")
    specs = format_arg.split(",")
    assert [spec.split(":")[0] for spec in specs] == list(SQUEUE_FIELDS)
    assert SQUEUE_FIELDS[-1] == "Name"
    assert specs[-1] == "Name:"


def _line(**overrides: str) -> str:
    values = {
        "JobID": "42",
        "State": "RUNNING",
        "UserName": "alice",
        "Account": "physics",
        "Partition": "debug",
        "QOS": "normal",
        "NumCPUs": "8",
        "NumNodes": "2",
        "NumTasks": "8",
        "tres-alloc": "cpu=8,mem=16G,node=2,billing=8",
        "tres-per-job": "N/A",
        "tres-per-node": "gres:gpu:2",
        "tres-per-socket": "N/A",
        "tres-per-task": "N/A",
        "SubmitTime": "2026-11-28T03:00:00",
        "StartTime": "2026-11-28T03:01:00",
        "EndTime": "2026-11-28T04:01:00",
        "TimeLimit": "1:00:00",
        "exit_code": "0",
        "Reason": "None",
        "Dependency": "(null)",
        "Reservation": "(null)",
        "NodeList": "gpu-[1-2]",
        "ReasonList": "gpu-[1-2]",
        "Name": "train",
    }
    values.update(overrides)
    return SQUEUE_DELIMITER.join(values[field] for field in SQUEUE_FIELDS)


def test_delimited_line() -> None:
    job = parse_squeue_delimited(_line() + "\n", TAKEN_AT).jobs["42"]
    assert job == JobRecord(
        job_id="42",
        name="train",
        user="alice",
        partition="debug",
        state=JobState.RUNNING,
        nodes=("gpu-1", "gpu-2"),
        cpus=8,
        memory_mb=16384,
        gpus=4,  # gres:gpu:2 per node, 2 nodes (no gres/gpu TRES tracked)
        submit_time=_at(3, 0, 0),
        start_time=_at(3, 1, 0),
        end_time=None,
        exit_code=None,
        exit_signal=None,
        reason=None,
        time_limit_min=60,
        account="physics",
        qos="normal",
    )


def test_delimited_exit_codes_of_every_release() -> None:
    # 22.05 prints the raw wait status; 23.02+ prints rc:signal (the issue-11 failure).
    cases = {"768": (3, 0), "15": (0, 15), "3:0": (3, 0), "0:15": (0, 15), "0:0": (0, 0)}
    for text, expected in cases.items():
        job = parse_squeue_delimited(_line(State="FAILED", exit_code=text), TAKEN_AT).jobs["42"]
        assert (job.exit_code, job.exit_signal) == expected, text


def test_delimited_pending_job_details() -> None:
    line = _line(
        State="PENDING",
        StartTime="2026-11-28T05:00:00",
        EndTime="N/A",
        NodeList="",
        Reason="ReqNodeNotAvail, UnavailableNodes:gpu-[3-4]",
        ReasonList="(ReqNodeNotAvail, UnavailableNodes:gpu-[3-4])",
        Dependency="afterany:41(unfulfilled)",
        Reservation="maint",
    )
    job = parse_squeue_delimited(line, TAKEN_AT).jobs["42"]
    assert job.reason == "ReqNodeNotAvail"
    assert job.reason_detail == "ReqNodeNotAvail, UnavailableNodes:gpu-[3-4]"
    assert (job.dependency, job.reservation) == ("afterany:41(unfulfilled)", "maint")
    assert job.start_time is None and job.expected_start_time == _at(5, 0, 0)
    later = _line(State="PENDING", StartTime="2027-11-28T03:27:00", NodeList="")
    assert parse_squeue_delimited(later, TAKEN_AT).jobs["42"].expected_start_time is None


def test_delimited_gpus_per_socket() -> None:
    line = _line(**{"tres-per-node": "N/A", "tres-per-socket": "gres/gpu:2", "NumNodes": "3"})
    assert parse_squeue_delimited(line, TAKEN_AT).jobs["42"].gpus == 6


def test_delimited_name_may_contain_the_delimiter() -> None:
    name = f"odd{SQUEUE_DELIMITER}name"
    jobs = parse_squeue_delimited(_line(Name=name), TAKEN_AT).jobs
    assert jobs["42"].name == name


def test_delimited_completing_job_reports_its_exit() -> None:
    line = _line(State="COMPLETING", exit_code="768")
    job = parse_squeue_delimited(line, TAKEN_AT).jobs["42"]
    assert job.state is JobState.COMPLETING
    assert (job.exit_code, job.exit_signal) == (3, 0)
    assert job.end_time == _at(4, 1, 0)


def test_delimited_times_in_another_zone() -> None:
    from datetime import timedelta, timezone

    job = parse_squeue_delimited(_line(), TAKEN_AT, tz=timezone(timedelta(hours=2))).jobs["42"]
    assert job.submit_time == _at(1, 0, 0)


def test_delimited_empty_output_is_an_empty_snapshot() -> None:
    assert parse_squeue_delimited(b"", TAKEN_AT).jobs == {}
    assert parse_squeue_delimited(b"\n\n", TAKEN_AT).jobs == {}


@pytest.mark.parametrize(
    "text",
    [
        "garbage line without separators\n",
        "JOBID|NAME|ST\n1|x|R\n",
        _line() + "\n" + _line(JobID="43").rsplit(SQUEUE_DELIMITER, 3)[0] + "\n",
        _line(SubmitTime="yesterday"),
        _line(TimeLimit="forever"),
        _line(NumCPUs="many"),
        _line(**{"tres-alloc": "cpu=8,mem=lots"}),
        _line(NodeList="gpu-[1-2"),
        _line(JobID=""),
        _line(State=""),
        _line() + "\x00",
    ],
)
def test_delimited_malformed_input(text: str) -> None:
    with pytest.raises(SourceError):
        parse_squeue_delimited(text, TAKEN_AT)


def test_delimited_error_names_the_line() -> None:
    with pytest.raises(SourceError, match="line 2"):
        parse_squeue_delimited(_line() + "\n" + _line(SubmitTime="bad") + "\n", TAKEN_AT)


# ------------------------------------------------------- JSON shapes and errors


def _document(*jobs: dict[str, Any], errors: list[Any] | None = None) -> bytes:
    return orjson.dumps({"meta": {}, "errors": errors or [], "jobs": list(jobs)})


def _wrapped(number: int) -> dict[str, Any]:
    return {"set": True, "infinite": False, "number": number}


def test_json_v0040_shapes() -> None:
    # REST/CLI v0.0.40+: NO_VAL-tagged numbers, state arrays, structured exit codes.
    running = {
        "job_id": 42,
        "name": "sim",
        "user_name": "bob",
        "partition": "cpu",
        "account": "chem",
        "job_state": ["RUNNING"],
        "nodes": "c[01-02]",
        "node_count": _wrapped(2),
        "cpus": _wrapped(8),
        "tasks": _wrapped(8),
        "memory_per_node": _wrapped(2048),
        "memory_per_cpu": {"set": False, "infinite": False, "number": 0},
        "tres_alloc_str": "",
        "tres_req_str": "",
        "submit_time": _wrapped(1795836400),
        "start_time": _wrapped(1795836401),
        "end_time": _wrapped(1795840001),
        "time_limit": _wrapped(60),
        "exit_code": {"status": ["SUCCESS"], "return_code": _wrapped(0), "signal": {}},
        "state_reason": "None",
    }
    finished = {
        **running,
        "job_id": 43,
        "job_state": ["COMPLETED", "COMPLETING"],
        "time_limit": {"set": False, "infinite": True, "number": 0},
        "exit_code": {
            "status": ["SIGNALED"],
            "return_code": _wrapped(0),
            "signal": {"id": _wrapped(9), "name": "KILL"},
        },
    }
    jobs = parse_squeue_json(_document(running, finished), TAKEN_AT).jobs
    job = jobs["42"]
    assert job.state is JobState.RUNNING
    assert (job.cpus, job.memory_mb, job.time_limit_min) == (8, 4096, 60)
    assert job.nodes == ("c01", "c02")
    assert job.start_time == _at(3, 26, 41) and job.end_time is None
    done = jobs["43"]
    assert done.state is JobState.COMPLETING
    assert (done.exit_code, done.exit_signal) == (0, 9)
    assert done.end_time == datetime(2026, 11, 28, 4, 26, 41, tzinfo=UTC)
    assert done.time_limit_min is None


def test_json_memory_per_cpu_and_gpu_requests() -> None:
    job = {
        "job_id": 7,
        "job_state": "PENDING",
        "user_name": "",
        "user_id": 1001,
        "cpus": 4,
        "memory_per_cpu": 512,
        "memory_per_node": None,
        "tres_per_job": "gres:gpu:3",
        "submit_time": 1795836400,
    }
    record = parse_squeue_json(_document(job), TAKEN_AT).jobs["7"]
    assert (record.user, record.memory_mb, record.gpus) == ("1001", 2048, 3)
    assert (record.name, record.partition, record.account) == ("", "", None)


def test_json_empty_job_list() -> None:
    assert parse_squeue_json(_document(), TAKEN_AT).jobs == {}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        (V2205 / "squeue_json.json").read_bytes()[:5000],
        b"[]",
        b'"jobs"',
        b'{"meta": {}, "errors": []}',
        b'{"jobs": {"1": {}}}',
        b'{"jobs": [1]}',
        b'{"jobs": [{"job_state": "RUNNING"}]}',
        b'{"jobs": [{"job_id": "x", "job_state": "RUNNING"}]}',
        b'{"jobs": [{"job_id": 1}]}',
        b'{"jobs": [{"job_id": 1, "job_state": 5}]}',
        b'{"jobs": [{"job_id": 1, "job_state": "RUNNING", "nodes": "n[1-"}]}',
        b'{"jobs": [{"job_id": 1, "job_state": "RUNNING", "tres_req_str": "mem=lots"}]}',
        b'{"jobs": [{"job_id": 1, "job_state": "RUNNING", "gres_detail": ["gpu:x:y"]}]}',
        b'{"errors": [{"error": "Invalid job id", "error_number": 2017}], "jobs": []}',
    ],
)
def test_json_malformed_input(raw: bytes) -> None:
    with pytest.raises(SourceError):
        parse_squeue_json(raw, TAKEN_AT)


def test_json_errors_are_reported() -> None:
    raw = _document(errors=[{"error": "Unable to contact slurm controller", "error_number": 1}])
    with pytest.raises(SourceError, match="Unable to contact slurm controller"):
        parse_squeue_json(raw, TAKEN_AT)


def test_parsers_restore_the_garbage_collector() -> None:
    import gc

    assert gc.isenabled()
    parse_squeue_json((V2205 / "squeue_json.json").read_bytes(), TAKEN_AT)
    assert gc.isenabled()
    with pytest.raises(SourceError):
        parse_squeue_json(b'{"jobs": [{"job_id": 1}]}', TAKEN_AT)
    assert gc.isenabled()
    gc.disable()
    try:
        parse_squeue_json((V2205 / "squeue_json.json").read_bytes(), TAKEN_AT)
        assert not gc.isenabled()
    finally:
        gc.enable()
