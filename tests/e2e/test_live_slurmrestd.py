"""slurmcast through the local Slurm 22.05's slurmrestd: its unix socket, and TCP with JWT.

The same events as the CLI source (tests/e2e/test_live_slurm.py), from
``--source slurmrestd``: jobs that run, complete, fail and are cancelled, a node
drained and resumed, final states and usage from slurmdbd, and a token that
expires mid-run and is renewed through the token file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.localslurm import RESTD_SOCKET, RESTD_URL, SLOW, run, sbatch
from support.recorder import Recorder, job_event, notification
from support.server import Client, http_json, running_server
from support.waiting import eventually

pytestmark = pytest.mark.slurm

RESTD = {
    "source": "slurmrestd",
    "jobs_interval": 0.5,
    "nodes_interval": 0.5,
    "metrics_interval": 2.0,
    "backoff_max": 2.0,
    "final_state_attempts": 20,
}


def scontrol_token(lifespan: int) -> str:
    return run("scontrol", "token", "username=root", f"lifespan={lifespan}").strip()


async def polled(app: Any) -> None:
    await eventually(
        lambda: http_json(app, "GET", "/health"),
        lambda r: r[1]["polls"]["jobs"] >= 2 and r[1]["polls"]["nodes"] >= 2,
        SLOW,
    )


async def test_unix_socket_without_token(local_slurm: Path) -> None:
    url = f"unix://{RESTD_SOCKET}"
    async with running_server(**RESTD, slurmrestd_url=url) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "nodes", "notifications")
        async with Recorder.on(client) as seen:
            await polled(app)
            ok = sbatch("--wrap", "sleep 3")
            failing = sbatch("--wrap", "exit 3")
            held = sbatch("--hold", "--wrap", "sleep 1")
            for job in (ok, failing, held):
                await seen.expect(job_event("job_submitted", job), SLOW)
            held_update = await seen.expect(job_event("job_submitted", held), SLOW)
            assert held_update["data"]["reason"] == "JobHeldUser"

            await seen.expect(job_event("job_update", ok, "RUNNING"), SLOW)
            done = await seen.expect(job_event("job_update", ok, "COMPLETED"), SLOW)
            assert done["data"]["exit_code"] == 0
            assert done["data"]["efficiency"]["elapsed_s"] >= 3
            await seen.expect(notification("job_completed", ok), SLOW)
            failed = await seen.expect(job_event("job_update", failing, "FAILED"), SLOW)
            # 22.05's slurmdbd says return code 0 here; squeue's raw status says 3.
            assert failed["data"]["exit_code"] == 3
            run("scancel", held)
            cancelled = await seen.expect(job_event("job_update", held, "CANCELLED"), SLOW)
            assert cancelled["data"]["previous_status"] == "PENDING"

            run("scontrol", "update", "nodename=node004", "state=drain", "reason=restd test")
            try:
                drained = await seen.expect(
                    lambda m: (
                        m["type"] == "node_update"
                        and m["data"]["node"] == "node004"
                        and m["data"]["state"] in ("DRAINED", "DRAINING")
                    ),
                    SLOW,
                )
                assert drained["data"]["reason"] == "restd test"
            finally:
                run("scontrol", "update", "nodename=node004", "state=resume")
            await seen.expect(
                lambda m: (
                    m["type"] == "node_update"
                    and m["data"]["node"] == "node004"
                    and m["data"]["state"] == "IDLE"
                    and "NOT_RESPONDING" not in m["data"]["flags"]
                ),
                SLOW,
            )
        details = app.health()["source"]["details"]
        assert details["kind"] == "slurmrestd" and details["release"] == "22.05.8"
        assert details["api"]["slurm"] == "v0.0.38" and details["api"]["slurmdb"] == "v0.0.38"
        assert details["auth"]["token"] == "none"
        # 22.05's slurmrestd fails a conditional /nodes after some node changes: then nodes
        # are asked plainly (tests/sources/slurmrestd covers the 304 answers themselves).
        assert details["unconditional"] in ([], ["nodes"])
        assert details["requests"]["jobs"] >= app.health()["polls"]["jobs"]


async def test_tcp_with_jwt_and_a_token_renewed_through_its_file(
    local_slurm: Path, tmp_path: Path
) -> None:
    token_file = tmp_path / "slurmcast.jwt"
    token_file.write_text(scontrol_token(3600) + "\n")  # "SLURM_JWT=..." as scontrol prints it
    settings = {
        **RESTD,
        "slurmrestd_url": RESTD_URL,
        "slurmrestd_user": "root",
        "slurmrestd_token_file": str(token_file),
    }
    async with running_server(**settings) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "alerts")
        async with Recorder.on(client) as seen:
            await polled(app)
            ok = sbatch("--wrap", "sleep 1")
            failing = sbatch("--wrap", "exit 3")
            await seen.expect(job_event("job_update", ok, "COMPLETED"), SLOW)
            failed = await seen.expect(job_event("job_update", failing, "FAILED"), SLOW)
            assert failed["data"]["exit_code"] == 3

            # The token expires mid-run: one clear alert saying so and how to renew.
            token_file.write_text(scontrol_token(2) + "\n")

            def source_alert(status: str) -> Callable[[dict[str, Any]], bool]:
                return lambda m: (
                    m["type"] == "alert"
                    and m["data"]["id"] == "source_unavailable"
                    and m["data"]["status"] == status
                )

            firing = await seen.expect(source_alert("firing"), SLOW)
            message = firing["data"]["message"]
            assert "the token expired at" in message
            assert "scontrol token username=root" in message and str(token_file) in message
            _, health = await http_json(app, "GET", "/health")
            assert health["status"] == "degraded"

            token_file.write_text(scontrol_token(3600) + "\n")
            await seen.expect(source_alert("resolved"), SLOW)
            later = sbatch("--wrap", "sleep 1")
            await seen.expect(job_event("job_update", later, "COMPLETED"), SLOW)
        details = app.health()["source"]["details"]
        assert details["auth"]["user"] == "root" and details["auth"]["token_expires"]
        assert len(seen.matching(source_alert("firing"))) == 1
