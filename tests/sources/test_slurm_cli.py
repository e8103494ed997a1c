"""The Slurm CLI source: real subprocesses, recorded real outputs."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slurmcast.core.records import JobState
from slurmcast.errors import ErrorCode, SourceError
from slurmcast.ports import Source
from slurmcast.sources.slurm_cli import (
    SlurmCliSource,
    SlurmSettings,
    format_version,
    parse_version,
    run_command,
)

from support.fakeslurm import FakeSlurm, sacct_line, squeue_line
from support.slurm_fixtures import OLDEST, fixture_text, rest_items, rest_path, rest_recordings
from support.waiting import eventually

SINCE = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path)


def source_for(fake: FakeSlurm, **settings: Any) -> SlurmCliSource:
    return SlurmCliSource(SlurmSettings(bin_dir=str(fake.bin), timeout=5, **settings))


# -- run_command, on real processes --------------------------------------------


async def test_run_command_returns_stdout_with_utc_and_no_time_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLURM_TIME_FORMAT", "relative")
    monkeypatch.setenv("TZ", "Asia/Seoul")
    result = await run_command(["sh", "-c", 'echo "$TZ:${SLURM_TIME_FORMAT:-unset}"'], 5)
    assert result.stdout == b"UTC:unset\n"


async def test_failing_command_reports_status_and_stderr() -> None:
    with pytest.raises(SourceError) as info:
        await run_command(["sh", "-c", "echo 'Unable to contact slurm controller' >&2; exit 1"], 5)
    assert "sh exited with status 1: Unable to contact slurm controller" in info.value.message
    assert info.value.temporary


async def test_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="squeue-nonexistent: command not found"):
        await run_command(["squeue-nonexistent"], 5)


async def test_timeout_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(SourceError) as info:
        await run_command(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], 0.5)
    assert info.value.code is ErrorCode.SOURCE_TIMEOUT
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


async def test_cancelled_caller_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(run_command(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], 60))

    async def started_pid() -> str:
        return pidfile.read_text().strip() if pidfile.exists() else ""

    await eventually(started_pid, bool)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_versions() -> None:
    assert parse_version(b"slurm-wlm 22.05.8\n") == (22, 5, 8)
    assert parse_version(b"slurm 23.11.1") == (23, 11, 1)
    assert format_version((22, 5, 8)) == "22.05.8"
    with pytest.raises(SourceError):
        parse_version(b"squeue: error")


# -- the source over recorded outputs -----------------------------------------


async def test_detection_is_shown_in_describe(fake: FakeSlurm) -> None:
    source = source_for(fake)
    _: Source = source
    await source.start()
    facts = source.describe()
    assert facts["version"] == "22.05.8"
    assert facts["json_supported"] is True
    assert facts["accounting"] == {
        "storage": "accounting_storage/slurmdbd",
        "available": True,
        "error": None,
    }
    assert facts["min_job_age_s"] == 5
    assert facts["problems"] == []
    assert fake.calls("squeue") == ["--version"]


async def test_first_listing_is_delimited_then_json_with_identical_records(fake: FakeSlurm) -> None:
    source = source_for(fake)
    await source.start()
    first = await source.jobs()
    assert source.describe()["jobs_format"] == "json"
    second = await source.jobs()
    assert fake.calls("squeue")[1].startswith("--noheader --all --states=all --Format=")
    assert fake.calls("squeue")[2] == "--json --all --states=all"
    assert first.jobs == second.jobs
    failed = second.jobs["4"]
    assert (failed.state, failed.exit_code, failed.name) == (JobState.FAILED, 3, "fail-exit3")
    assert second.jobs["7"].gpus == 2


async def test_large_queue_stays_delimited(fake: FakeSlurm) -> None:
    source = source_for(fake, json_max_jobs=3)
    await source.start()
    await source.jobs()
    await source.jobs()
    assert all("--json" not in call for call in fake.calls("squeue"))
    assert source.describe()["jobs_format"] == "delimited"


async def test_nodes_from_json_and_delimited_agree(fake: FakeSlurm) -> None:
    json_source = source_for(fake)
    text_source = source_for(fake, output_format="delimited")
    await json_source.start()
    await text_source.start()
    from_json = await json_source.nodes()
    from_text = await text_source.nodes()
    assert from_json.nodes == from_text.nodes
    assert set(from_json.nodes) == {"node001", "node002", "node003", "node004"}
    assert from_json.nodes["node001"].gpus_total == 2
    assert text_source.describe()["nodes_format"] == "delimited"
    assert "--json" not in fake.calls("sinfo")[-1]


async def test_missing_json_support_falls_back_to_delimited(fake: FakeSlurm) -> None:
    fake.fail("sinfo", "sinfo: error: unrecognized option '--json'")
    source = source_for(fake)
    await source.start()
    fake.heal("sinfo")
    assert source.describe()["json_supported"] is False
    await source.nodes()
    await source.jobs()
    await source.jobs()
    assert "--json" not in fake.calls("squeue") and fake.calls("sinfo")[-1] != "--json"


async def test_controller_down_raises_with_stderr_and_detection_retries(fake: FakeSlurm) -> None:
    fake.fail(
        "squeue", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    )
    source = source_for(fake)
    await source.start()
    assert "Unable to contact slurm controller" in source.describe()["problems"][0]
    with pytest.raises(SourceError, match="Unable to contact slurm controller"):
        await source.jobs()
    fake.heal("squeue")
    snapshot = await source.jobs()
    assert snapshot.jobs and source.describe()["problems"] == []


async def test_unparsable_output_is_an_error_not_an_empty_cluster(fake: FakeSlurm) -> None:
    source = source_for(fake, output_format="json")
    await source.start()
    fake.serve("squeue.json", '{"jobs": [ {"job_id": ')
    with pytest.raises(SourceError, match="invalid JSON"):
        await source.jobs()
    fake.serve("sinfo.json", "<html>proxy error</html>")
    with pytest.raises(SourceError):
        await source.nodes()


async def test_hung_command_times_out(fake: FakeSlurm) -> None:
    source = SlurmCliSource(SlurmSettings(bin_dir=str(fake.bin), timeout=0.5))
    await source.start()
    fake.hang("squeue")
    with pytest.raises(SourceError) as info:
        await source.jobs()
    assert info.value.code is ErrorCode.SOURCE_TIMEOUT


async def test_final_states_come_from_one_bounded_sacct_query(fake: FakeSlurm) -> None:
    source = source_for(fake, output_format="delimited")
    await source.start()
    jobs = (await source.jobs()).jobs
    asked = {job_id: jobs[job_id] for job_id in ("13", "4", "6", "1")}
    finals = await source.final_states(asked, SINCE)
    (call,) = fake.calls("sacct")
    assert "--jobs=1,4,6,13" in call and "--starttime=2026-11-28T04:00:00" in call
    assert finals["4"].state is JobState.FAILED and finals["4"].exit_code == 3
    assert finals["6"].state is JobState.CANCELLED and finals["6"].exit_code == 0
    # Still running according to accounting: returned as accounting sees it.
    assert finals["13"].state is JobState.RUNNING
    assert finals["4"].name == "fail-exit3"  # the rest of the record is the last one seen
    # What the job used comes with its end, from the same query.
    burn = finals["1"].usage
    assert burn is not None and (burn.cpus, burn.cpu_time_s) == (2, 32.487)


async def test_accounting_failure_is_reported_and_heals(fake: FakeSlurm) -> None:
    source = source_for(fake)
    await source.start()
    jobs = (await source.jobs()).jobs
    fake.fail("sacct", "sacct: error: Problem talking to the database: Connection refused")
    assert await source.final_states({"4": jobs["4"]}, SINCE) == {}
    facts = source.describe()
    assert "Problem talking to the database" in facts["accounting"]["error"]
    assert facts["problems"]
    fake.heal("sacct")
    assert (await source.final_states({"4": jobs["4"]}, SINCE))["4"].exit_code == 3
    assert source.describe()["problems"] == []


async def test_no_accounting_configured_means_no_sacct_calls(fake: FakeSlurm) -> None:
    config = fixture_text(OLDEST, "scontrol_show_config.txt").replace(
        "accounting_storage/slurmdbd", "accounting_storage/none"
    )
    fake.serve("config.txt", config)
    source = source_for(fake)
    await source.start()
    jobs = (await source.jobs()).jobs
    assert await source.final_states({"4": jobs["4"]}, SINCE) == {}
    assert fake.calls("sacct") == []
    assert source.describe()["accounting"]["available"] is False


# -- releases after 22.05, from their recordings -------------------------------

RECORDINGS = rest_recordings(skip=(OLDEST,))  # FakeSlurm(root) serves 22.05's CLI recordings


@pytest.mark.parametrize("output_format", ["auto", "json", "delimited"])
@pytest.mark.parametrize(("release", "api"), RECORDINGS)
async def test_recorded_release_shows_jobs_and_nodes(
    tmp_path: Path, release: str, api: str, output_format: str
) -> None:
    fake = FakeSlurm.recording(tmp_path, release, api)
    source = source_for(fake, output_format=output_format)
    await source.start()
    listed = [await source.jobs() for _ in range(2)]  # auto: delimited, then JSON
    nodes = await source.nodes()
    facts = source.describe()
    assert facts["problems"] == [] and facts["version"].startswith(release)
    expected = {str(job["job_id"]) for job in _recorded(release, api, "jobs")}
    assert set(listed[0].jobs) == set(listed[1].jobs) == expected
    assert set(nodes.nodes) == {node["name"] for node in _recorded(release, api, "nodes")}
    # JSON nodes come from scontrol on these releases: sinfo --json groups them.
    if output_format != "delimited":
        assert "show nodes --json" in fake.calls("scontrol")[-1]
        assert facts["nodes_json_command"] == "scontrol show nodes --json"
    else:
        assert all("--json" not in call for call in fake.calls("scontrol"))
    finished = [job for job in listed[1].jobs.values() if job.state.is_terminal]
    assert finished and all(job.exit_code is not None for job in finished)


def _recorded(release: str, api: str, what: str) -> list[dict[str, Any]]:
    return rest_items(release, api, what)


UNKNOWN_SHAPE = '{"meta": {"slurm": {"release": "26.05.0"}}, "errors": [], "hosts": []}'


async def test_unknown_json_shape_falls_back_in_auto_mode(tmp_path: Path) -> None:
    fake = FakeSlurm.recording(tmp_path, "25.11", "v0.0.44")
    fake.serve("scontrol.json", UNKNOWN_SHAPE)
    source = source_for(fake)
    await source.start()
    nodes = await source.nodes()
    assert len(nodes.nodes) == 8
    facts = source.describe()
    assert facts["nodes_format"] == "delimited" and facts["problems"] == []
    problem = facts["json_fallbacks"]["nodes"]
    assert "scontrol show nodes --json" in problem and "26.05.0" in problem
    assert "'nodes'" in problem


async def test_unknown_json_shape_is_a_clear_error_in_json_mode(tmp_path: Path) -> None:
    fake = FakeSlurm.recording(tmp_path, "25.11", "v0.0.44")
    fake.serve("scontrol.json", UNKNOWN_SHAPE)
    fake.serve("squeue.json", UNKNOWN_SHAPE)
    source = source_for(fake, output_format="json")
    await source.start()
    with pytest.raises(SourceError) as info:
        await source.nodes()
    message = info.value.message
    assert "scontrol show nodes --json" in message and "Slurm 26.05.0" in message
    assert "--slurm-format delimited" in message and "hosts" in message
    with pytest.raises(SourceError, match=r"squeue --json.*26\.05\.0.*'jobs'.*--slurm-format"):
        await source.jobs()


def test_fake_lines_parse_like_real_ones() -> None:
    # The helpers used by monitor tests must produce what the parser accepts.
    from slurmcast.sources.slurm.jobs import parse_squeue_delimited
    from slurmcast.sources.slurm.sacct import parse_sacct

    snapshot = parse_squeue_delimited(squeue_line("77", "RUNNING").encode(), SINCE)
    assert snapshot.jobs["77"].state is JobState.RUNNING
    assert parse_sacct(sacct_line("77", "FAILED", "3:0").encode())["77"].exit_code == 3


async def test_auto_mode_bounds_the_json_document_by_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import slurmcast.sources.slurm_cli as cli

    fake = FakeSlurm.recording(tmp_path, "25.11", "v0.0.44")
    recorded = rest_path("25.11", "v0.0.44", "jobs").stat().st_size
    # 15 jobs at the 20 KB a 24.05+ job is assumed to print: just over the budget.
    monkeypatch.setattr(cli, "JSON_MAX_BYTES", 15 * 20 * 1024 - 1)
    source = source_for(fake)
    await source.start()
    await source.jobs()
    await source.jobs()
    assert all("--json" not in call for call in fake.calls("squeue"))
    monkeypatch.setattr(cli, "JSON_MAX_BYTES", 10**9)
    await source.jobs()
    assert "--json" in fake.calls("squeue")[-1]
    # Measured now: the real document fits a budget of its size, one byte less does not.
    monkeypatch.setattr(cli, "JSON_MAX_BYTES", recorded)
    await source.jobs()
    assert "--json" in fake.calls("squeue")[-1]
    monkeypatch.setattr(cli, "JSON_MAX_BYTES", recorded - 1)
    await source.jobs()
    assert "--json" not in fake.calls("squeue")[-1]
