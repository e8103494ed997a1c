"""How a job that leaves squeue is reported: from accounting, or honestly unconfirmed."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from slurmcast.app import SlurmcastApp

from support.fakeslurm import FakeSlurm, sacct_line, squeue_line
from support.server import Client, running_server
from support.waiting import eventually

FAST = {"jobs_interval": 0.05, "nodes_interval": 0.05, "metrics_interval": 0.5}


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    slurm = FakeSlurm(tmp_path)
    slurm.serve("squeue.txt", squeue_line("77", "RUNNING", name="train") + "\n")
    slurm.serve("sacct.txt", "")
    return slurm


def slurm_server(fake: FakeSlurm, **extra: Any) -> AbstractAsyncContextManager[SlurmcastApp]:
    return running_server(
        source="slurm", slurm_bin_dir=str(fake.bin), slurm_format="delimited", **FAST, **extra
    )


async def polls_after(app: SlurmcastApp, count: int) -> None:
    """Wait until the jobs loop has completed ``count`` more polls."""
    start = app.health()["polls"]["jobs"]

    async def polls() -> int:
        return int(app.health()["polls"]["jobs"])

    await eventually(polls, lambda n: n >= start + count)


async def baseline_taken(app: SlurmcastApp) -> None:
    await polls_after(app, 2)


async def test_vanished_job_gets_its_final_state_from_sacct(fake: FakeSlurm) -> None:
    async with slurm_server(fake) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "notifications")
        await baseline_taken(app)
        # The job ends and slurmctld purges it (short MinJobAge) between two polls.
        fake.serve("sacct.txt", sacct_line("77", "FAILED", "3:0") + "\n")
        fake.serve("squeue.txt", "")
        update = await client.wait_for(lambda m: m["type"] == "job_update")
        assert update["data"]["job_id"] == "77"
        assert (update["data"]["previous_status"], update["data"]["status"]) == (
            "RUNNING",
            "FAILED",
        )
        assert update["data"]["exit_code"] == 3
        assert update["data"]["end_time"] == "2026-11-28T04:07:00Z"
        assert "final_state_confirmed" not in update["data"]
        note = await client.wait_for(lambda m: m["type"] == "notification")
        assert note["data"]["type"] == "job_failed" and note["data"]["data"]["exit_code"] == 3
        assert note["data"]["data"]["duration"] == "41s"
        assert any("--jobs=77" in call for call in fake.calls("sacct"))


async def test_job_seen_completing_is_reported_with_accountings_final_state(
    fake: FakeSlurm,
) -> None:
    async with slurm_server(fake) as app, Client.connect(app) as client:
        await client.subscribe("jobs")
        await baseline_taken(app)
        fake.serve("sacct.txt", sacct_line("77", "OUT_OF_MEMORY", "0:125") + "\n")
        fake.serve("squeue.txt", squeue_line("77", "COMPLETING", name="train") + "\n")
        update = await client.wait_for(lambda m: m["type"] == "job_update")
        assert (update["data"]["previous_status"], update["data"]["status"]) == (
            "RUNNING",
            "OUT_OF_MEMORY",
        )
        # It then finishes its epilog and is listed as FAILED: nothing more is reported.
        fake.serve("squeue.txt", squeue_line("77", "FAILED", exit_status="0", name="train") + "\n")
        await polls_after(app, 3)
        # A pong now proves no job_update was queued during those polls.
        assert await client.request({"type": "ping"}) == {"type": "pong"}


async def test_unresolvable_job_is_reported_unconfirmed_after_retries(fake: FakeSlurm) -> None:
    async with slurm_server(fake, final_state_attempts=3) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "notifications")
        await baseline_taken(app)
        fake.fail("sacct", "sacct: error: Problem talking to the database: Connection refused")
        fake.serve("squeue.txt", "")
        update = await client.wait_for(lambda m: m["type"] == "job_update")
        data = update["data"]
        assert data["final_state_confirmed"] is False
        assert data["status"] == data["previous_status"] == "RUNNING"
        # No "completed"/"failed" notification is invented for it.
        assert await client.request({"type": "ping"}) == {"type": "pong"}
        assert len(fake.calls("sacct")) >= 3
        health = app.health()
        assert health["status"] == "degraded"
        assert (
            "Problem talking to the database" in health["source"]["details"]["accounting"]["error"]
        )


async def test_job_listed_finished_waits_for_accounting_then_carries_its_usage(
    fake: FakeSlurm,
) -> None:
    async with slurm_server(fake, final_state_attempts=50) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "notifications")
        await baseline_taken(app)
        # squeue already says FAILED; slurmdbd has not recorded the end yet.
        fake.serve("squeue.txt", squeue_line("77", "FAILED", exit_status="3:0", name="t") + "\n")
        await polls_after(app, 3)
        assert await client.request({"type": "ping"}) == {"type": "pong"}  # nothing sent yet
        fake.serve("sacct.txt", sacct_line("77", "FAILED", "3:0") + "\n")
        update = await client.wait_for(lambda m: m["type"] == "job_update")
        data = update["data"]
        assert (data["previous_status"], data["status"]) == ("RUNNING", "FAILED")
        assert data["exit_code"] == 3
        # The fake job used 20.5 s of CPU in 41 s on 1 CPU.
        assert data["efficiency"]["cpu_efficiency"] == 50.0
        assert data["efficiency"]["elapsed_s"] == 41
        note = await client.wait_for(lambda m: m["type"] == "notification")
        assert note["data"]["data"]["efficiency"]["cpu_efficiency"] == 50.0


async def test_job_listed_finished_is_reported_as_listed_when_accounting_never_has_it(
    fake: FakeSlurm,
) -> None:
    async with slurm_server(fake, final_state_attempts=3) as app, Client.connect(app) as client:
        await client.subscribe("jobs")
        await baseline_taken(app)
        fake.serve("squeue.txt", squeue_line("77", "FAILED", exit_status="3:0", name="t") + "\n")
        update = await client.wait_for(lambda m: m["type"] == "job_update")
        data = update["data"]
        assert (data["status"], data["exit_code"]) == ("FAILED", 3)
        assert "final_state_confirmed" not in data  # squeue saw it end: it is confirmed
        assert data["efficiency"]["reason"] == "accounting has no record of this job"
        assert len([c for c in fake.calls("sacct") if "--jobs=77" in c]) >= 3
