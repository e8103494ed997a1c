"""Values, not only parsing, on the real outputs of every Slurm release after 22.05.

22.05 has its own captures (test_slurm_jobs.py, test_slurm_nodes.py); here are the
23.02 CLI captures and the 24.05-25.11 slurmrestd captures, whose documents are
the CLI's JSON of the same release. Each folder's README.md says where they come from.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from slurmcast.core.diff import diff_jobs
from slurmcast.core.records import JobRecord, JobState, NodeRecord, NodeState
from slurmcast.sources.slurm.jobs import parse_squeue_json
from slurmcast.sources.slurm.nodes import parse_nodes_json
from slurmcast.sources.slurm.sacct_json import parse_sacct_json

from support.slurm_fixtures import files, fixture_bytes, fixture_json

TAKEN_AT = datetime(2025, 11, 12, 12, 0, tzinfo=UTC)
REST_RELEASES = ("24.05", "24.11", "25.05", "25.11")


def _captures(kind: str) -> list[tuple[str, str, Path]]:
    """(release, label, path) of every ``rest_<api>_<kind>_<label>.json``."""
    found = []
    for release in REST_RELEASES:
        exclude = "" if kind == "slurmdb_job" else "slurmdb"
        for path in files(release, f"rest_v*_{kind}_*.json", exclude=exclude):
            label = path.stem.split(f"_{kind}_", 1)[1]
            found.append((release, label, path))
    return found


def _one_job(path: Path) -> JobRecord:
    (job,) = parse_squeue_json(path.read_bytes(), TAKEN_AT).jobs.values()
    return job


def _one_node(path: Path) -> NodeRecord:
    (node,) = parse_nodes_json(path.read_bytes(), TAKEN_AT).nodes.values()
    return node


def _id(case: tuple[str, str, Path]) -> str:
    return case[2].name.removeprefix("rest_").removesuffix(".json") + "@" + case[0]


# ---------------------------------------------------------------- jobs, 24.05-25.11

STATE_CASES = [c for c in _captures("job") if not c[1].startswith(("gpus", "unfound"))]


@pytest.mark.parametrize("case", STATE_CASES, ids=_id)
def test_job_states_exit_codes_and_times(case: tuple[str, str, Path]) -> None:
    _, label, path = case
    job = _one_job(path)
    ended = (job.exit_code, job.exit_signal, job.reason, job.end_time is not None)
    if label == "completed":
        assert job.state is JobState.COMPLETED and ended == (0, 0, None, True)
    elif label == "failed":
        assert job.state is JobState.FAILED and ended == (1, 0, "NonZeroExitCode", True)
    elif label == "timeout":
        # Killed by SIGTERM at the limit: no return code, signal 15.
        assert job.state is JobState.TIMEOUT and ended == (0, 15, "TimeLimit", True)
    elif label == "running":
        assert job.state is JobState.RUNNING and ended[:2] == (None, None)
        assert job.start_time is not None and job.nodes
    elif label == "pending":
        assert job.state is JobState.PENDING and job.reason in ("BeginTime", "Resources")
        assert job.start_time is None and job.expected_start_time is not None
        assert job.submit_time is not None and job.expected_start_time > job.submit_time
    else:
        pytest.fail(f"no expectation for {label}")
    assert job.qos == "normal" and job.account and job.user and job.partition


#: GPUs each recorded job held (from its submit line and gres_detail); two crawls ran
#: on clusters whose GPU nodes had 6 GPUs instead of 4.
GPUS = {
    "completed": 4, "gres": 4, "multi-nodes": 8, "multi-types": 1, "pending": 4,
    "per-node": 2, "per-socket": 2, "per-task": 4, "running": 4, "type": 1,
}  # fmt: skip
SIX_GPU_NODES = {"24.11/v0.0.42", "25.05/v0.0.41"}
SIX_GPUS = {"completed": 6, "gres": 6, "multi-nodes": 12, "multi-types": 2, "pending": 6,
            "running": 6}  # fmt: skip
GPU_CASES = [c for c in _captures("job") if c[1].startswith("gpus-")]


@pytest.mark.parametrize("case", GPU_CASES, ids=_id)
def test_gpu_counts_of_every_request_form(case: tuple[str, str, Path]) -> None:
    release, label, path = case
    form = label.removeprefix("gpus-")
    api = path.name.split("_")[1]
    expected = GPUS[form]
    if f"{release}/{api}" in SIX_GPU_NODES:
        expected = SIX_GPUS.get(form, expected)
    assert _one_job(path).gpus == expected


@pytest.mark.parametrize(
    "path", [c[2] for c in GPU_CASES if c[1] == "gpus-per-socket"], ids=lambda p: p.parent.name
)
def test_a_finished_per_socket_job_keeps_its_gpus(path: Path) -> None:
    # The issue: once the job ends Slurm empties gres_detail and the count fell to 0.
    document = orjson.loads(path.read_bytes())
    running = document["jobs"][0]
    ended = {**running, "job_state": ["COMPLETED"], "gres_detail": []}
    raw = orjson.dumps({**document, "jobs": [ended]})
    finished = _one_job_raw(raw)
    assert finished.gpus == 2  # from tres_per_socket, one socket per node
    # And a job seen running keeps the exact count when its end says less.
    seen = _one_job(path)
    dropped = dataclasses.replace(finished, gpus=0)
    events, _ = diff_jobs({seen.job_id: seen}, {seen.job_id: dropped})
    assert events[0].job.gpus == seen.gpus


def _one_job_raw(raw: bytes) -> JobRecord:
    (job,) = parse_squeue_json(raw, TAKEN_AT).jobs.values()
    return job


# ---------------------------------------------------------------- nodes, 24.05-25.11

NODE_CASES = _captures("node")


@pytest.mark.parametrize("case", NODE_CASES, ids=_id)
def test_node_states_and_resources(case: tuple[str, str, Path]) -> None:
    _, label, path = case
    node = _one_node(path)
    assert node.cpus_total in (32, 48, 64) and node.memory_total_mb > 0
    if label == "drain":
        assert (node.state, node.reason) == (NodeState.DRAINED, "ECC memory error")
        assert "DRAIN" in node.flags
    elif label == "draining":
        assert (node.state, node.reason) == (NodeState.DRAINING, "ECC memory error")
        assert node.cpus_allocated > 0
    elif label == "down":
        assert (node.state, node.reason) == (NodeState.DOWN, "CPU dead")
    elif label == "allocated":
        assert node.state is NodeState.ALLOCATED
        assert node.cpus_allocated == node.cpus_total == 64
    elif label == "mixed":
        assert node.state is NodeState.MIXED and 0 < node.cpus_allocated < node.cpus_total
    elif label == "planned":
        assert "PLANNED" in node.flags and node.cpus_allocated == 0
    elif label.startswith("with-gpus") and label.endswith("-allocated"):
        assert node.gpus_allocated == node.gpus_total in (4, 6)
    elif label.startswith("with-gpus") and label.endswith("-idle"):
        assert node.gpus_total in (4, 6) and node.gpus_allocated == 0
    elif label.startswith("with-gpus") and label.endswith("-mixed"):
        assert node.state is NodeState.MIXED and 0 < node.gpus_allocated < node.gpus_total
    elif label in ("idle", "without-gpu"):
        assert node.cpus_allocated in (0, node.cpus_total)
    else:
        pytest.fail(f"no expectation for {label}")
    if node.cpu_load is not None:
        assert 0 <= node.cpu_load < 64


# ---------------------------------------------------------------- accounting, 24.05-25.11

DB_CASES = [c for c in _captures("slurmdb_job") if not c[1].startswith("gpus")]


@pytest.mark.parametrize("case", DB_CASES, ids=_id)
def test_accounting_records(case: tuple[str, str, Path]) -> None:
    _, label, path = case
    document = orjson.loads(path.read_bytes())
    ((job_id, final),) = parse_sacct_json(path.read_bytes()).items()
    raw = document["jobs"][0]
    assert job_id == str(raw["job_id"])
    usage = final.usage
    assert usage is not None and usage.elapsed_s == raw["time"]["elapsed"]
    if label in ("completed", "archived", "failed", "timeout"):
        assert final.state.is_terminal and final.end_time is not None
        # 512 MB per CPU on these clusters, resolved to the job's whole request.
        assert usage.memory_requested_mb == 512 * (usage.cpus or 1)
        # An emulated cluster: nothing was measured (no steps at all if it never ran).
        assert usage.cpu_time_s == (0.0 if raw["steps"] else None)
        assert usage.memory_peak_mb is None  # steps carry no MaxRSS there
    if label == "failed":
        assert (final.state, final.exit_code, final.exit_signal) == (JobState.FAILED, 1, 0)
    elif label == "timeout":
        assert final.state is JobState.TIMEOUT and final.exit_code == 0
    elif label == "completed":
        assert (final.state, final.exit_code) == (JobState.COMPLETED, 0)
    elif label == "pending":
        assert final.state is JobState.PENDING and final.exit_code is None
        assert final.start_time is None or final.nodes == ()
    elif label == "running":
        assert final.state is JobState.RUNNING and final.exit_code is None and final.nodes


def test_accounting_peak_memory_and_cpu_time_from_steps() -> None:
    # A 25.11 record with what a real cluster measures put into its batch step.
    document = fixture_json("25.11", "rest_v0.0.44_slurmdb_job_completed.json")
    job = document["jobs"][0]
    step = job["steps"][0]
    step["time"]["total"] = {"seconds": 100, "microseconds": 1_500_000}
    step["tres"]["requested"]["max"] = [{"type": "mem", "name": "", "id": 2, "count": 3 << 30}]
    usage = parse_sacct_json(orjson.dumps(document))[str(job["job_id"])].usage
    assert usage is not None
    assert (usage.cpu_time_s, usage.memory_peak_mb) == (101.5, 3072)


# ---------------------------------------------------------------- 23.02 CLI captures


def test_2302_squeue_json() -> None:
    raw = fixture_bytes("23.02", "cli_squeue_json_rivos_dataparser.json")
    jobs = parse_squeue_json(raw, datetime(2023, 9, 15, tzinfo=UTC)).jobs
    assert set(jobs) == {"52175550", "52173767", "52410472"}
    held = jobs["52175550"]
    assert (held.state, held.reason) == (JobState.PENDING, "JobHeldUser")
    assert held.reason_detail == "launch failed requeued held"
    assert (held.cpus, held.memory_mb, held.qos, held.account) == (1, 4096, "normal", "rvs")
    assert held.expected_start_time is None and held.start_time is None
    done = jobs["52173767"]
    assert done.state is JobState.COMPLETED and (done.exit_code, done.exit_signal) == (0, 0)
    assert done.nodes == ("cs66",) and done.time_limit_min == 120
    assert done.start_time == datetime(2023, 9, 14, 7, 7, 18, tzinfo=UTC)


def test_2302_grouped_sinfo_one_node_per_record() -> None:
    raw = fixture_bytes("23.02", "cli_sinfo_json_N_localhost.json")
    nodes = parse_nodes_json(raw, TAKEN_AT, "sinfo --json").nodes
    assert nodes == {
        "localhost": NodeRecord(
            name="localhost",
            state=NodeState.ALLOCATED,
            cpus_total=1,
            cpus_allocated=1,
            memory_total_mb=1,
            memory_allocated_mb=1,
            partitions=("debug",),
            cpu_load=0.78,
            memory_free_mb=227,
        )
    }


def test_2302_grouped_sinfo_record_of_ten_nodes() -> None:
    raw = fixture_bytes("23.02", "cli_sinfo_json_rivos_excerpt.json")
    nodes = parse_nodes_json(raw, TAKEN_AT, "sinfo --json").nodes
    assert list(nodes)[:3] == ["cs62", "cs63", "cs64"] and len(nodes) == 10
    node = nodes["cs204"]
    assert (node.state, node.reason) == (NodeState.DRAINING, "IT-4461")
    assert (node.cpus_total, node.memory_total_mb) == (64, 770000)
    # The group's sums spread over its nodes; ranges that differ are unknown per node.
    assert (node.cpus_allocated, node.memory_allocated_mb) == (11, 2048)
    assert node.cpu_load is None and node.memory_free_mb is None
