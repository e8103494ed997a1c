"""slurmcast against a real Slurm 22.05 started on this machine.

The local cluster (four slurmd nodes, partitions debug and gpu, slurmdbd)
comes from ../shared/slurm/start-local-slurm.sh, run with MinJobAge=5 so
finished jobs leave squeue within seconds: final states must come from
sacct. Selected with ``-m slurm``; needs root. On a machine without the
scripts the tests are skipped, unless SLURMCAST_REQUIRE_SLURM=1 (as in CI).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.localslurm import SLOW, run, sbatch, start_slurm
from support.recorder import Recorder, job_event, notification
from support.server import Client, http_json, running_server
from support.waiting import eventually

pytestmark = pytest.mark.slurm

LIVE = {"source": "slurm", "jobs_interval": 0.5, "nodes_interval": 0.5, "metrics_interval": 2.0}


async def test_jobs_and_nodes_on_real_slurm(local_slurm: Path) -> None:
    async with running_server(**LIVE) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "nodes", "notifications", "alerts")
        async with Recorder.on(client) as seen:
            await eventually(
                lambda: http_json(app, "GET", "/health"),
                lambda r: r[1]["polls"]["jobs"] >= 2 and r[1]["polls"]["nodes"] >= 2,
            )
            # Started first: Slurm enforces time limits on a ~30 s cycle.
            timeout_job = sbatch("--time=1", "--wrap", "sleep 300")
            ok_job = sbatch("--wrap", "sleep 3")
            failing_job = sbatch("--wrap", "exit 3")
            held_job = sbatch("--hold", "--wrap", "sleep 1")

            for job in (ok_job, failing_job, held_job, timeout_job):
                submitted = await seen.expect(job_event("job_submitted", job), SLOW)
                assert submitted["data"]["status"] == "PENDING"
                assert submitted["data"]["user"] == "root"

            await seen.expect(job_event("job_update", ok_job, "RUNNING"), SLOW)
            done = await seen.expect(job_event("job_update", ok_job, "COMPLETED"), SLOW)
            assert done["data"]["exit_code"] == 0 and done["data"]["previous_status"] == "RUNNING"
            note = await seen.expect(notification("job_completed", ok_job), SLOW)
            assert note["data"]["data"]["exit_code"] == 0
            assert note["data"]["data"]["duration_s"] >= 3

            failed = await seen.expect(job_event("job_update", failing_job, "FAILED"), SLOW)
            assert failed["data"]["exit_code"] == 3
            note = await seen.expect(notification("job_failed", failing_job), SLOW)
            assert note["data"]["data"]["exit_code"] == 3

            run("scancel", held_job)
            cancelled = await seen.expect(job_event("job_update", held_job, "CANCELLED"), SLOW)
            assert cancelled["data"]["previous_status"] == "PENDING"
            await seen.expect(notification("job_cancelled", held_job), SLOW)

            run("scontrol", "update", "nodename=node004", "state=drain", "reason=test")
            try:
                drained = await seen.expect(
                    lambda m: (
                        m["type"] == "node_update"
                        and m["data"]["node"] == "node004"
                        and m["data"]["state"] in ("DRAINED", "DRAINING")
                    ),
                    SLOW,
                )
                assert drained["data"]["reason"] == "test"
                alert = await seen.expect(
                    lambda m: (
                        m["type"] == "alert"
                        and m["data"]["id"] == "node_unavailable:node004"
                        and m["data"]["status"] == "firing"
                    ),
                    SLOW,
                )
                assert "test" in alert["data"]["message"]
            finally:
                run("scontrol", "update", "nodename=node004", "state=resume")
            await seen.expect(
                lambda m: (
                    m["type"] == "alert"
                    and m["data"]["id"] == "node_unavailable:node004"
                    and m["data"]["status"] == "resolved"
                ),
                SLOW,
            )
            back = await seen.expect(
                lambda m: (
                    m["type"] == "node_update"
                    and m["data"]["node"] == "node004"
                    and m["data"]["state"] == "IDLE"
                    and "NOT_RESPONDING" not in m["data"]["flags"]
                ),
                SLOW,
            )
            assert back["data"]["cpus"]["total"] == 4

            timed_out = await seen.expect(job_event("job_update", timeout_job, "TIMEOUT"), 240)
            assert timed_out["data"]["previous_status"] in ("RUNNING", "COMPLETING")
            await seen.expect(notification("job_timeout", timeout_job), SLOW)

            # Each job's updates form one chain, and each end is reported once.
            for job in (ok_job, failing_job, held_job, timeout_job):
                updates = seen.matching(job_event("job_update", job))
                chain = ["PENDING"] + [u["data"]["status"] for u in updates]
                assert [u["data"]["previous_status"] for u in updates] == chain[:-1]
                finals = [s for s in chain if s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")]
                assert len(finals) == 1, chain

        health = app.health()
        details = health["source"]["details"]
        assert details["version"].startswith("22.05")
        assert details["accounting"]["available"] is True
        assert details["min_job_age_s"] == 5


#: Two busy loops for 20 s (bash: sbatch --wrap runs /bin/sh, which has no SECONDS).
BURN_2_CPUS = (
    "bash -c 'end=$((SECONDS+20)); "
    "for i in 1 2; do (while [ $SECONDS -lt $end ]; do :; done) & done; wait'"
)
#: Touch 400 MiB, hold it 8 s.
TOUCH_400M = (
    "python3 -c 'import time; b = bytearray(400 << 20); "
    "b[::4096] = bytes(len(b[::4096])); time.sleep(8)'"
)


async def test_efficiency_and_reasons_on_real_slurm(local_slurm: Path) -> None:
    # Accounting samples every second (--acctg-freq); the final state waits for slurmdbd.
    settings = {**LIVE, "final_state_attempts": 60}
    async with running_server(**settings) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "notifications")
        async with Recorder.on(client) as seen:
            measured = ("--mem=200M", "--acctg-freq=task=1")
            burn = sbatch("-c", "2", *measured, "--wrap", BURN_2_CPUS)
            idle = sbatch("-c", "2", *measured, "--wrap", "sleep 20")
            memory = sbatch("-c", "1", "--mem=1000M", "--acctg-freq=task=1", "--wrap", TOUCH_400M)
            held = sbatch("--hold", "--wrap", "sleep 1")
            dependent = sbatch(f"--dependency=afterok:{burn}", "-t", "1", "--wrap", "sleep 1")
            later = sbatch("--begin=now+3600", "--wrap", "sleep 1")
            try:
                waiting = {
                    job: (await seen.expect(job_event("job_submitted", job), SLOW))["data"]
                    for job in (held, later)
                }
                assert waiting[held]["reason"] == "JobHeldUser"
                assert f"scontrol release {held}" in waiting[held]["reason_text"]
                assert waiting[later]["reason"] == "BeginTime"
                assert waiting[later]["expected_start_time"] is not None
                assert "UTC" in waiting[later]["reason_text"]

                def waits_on_dependency(message: dict[str, Any]) -> bool:
                    data = message["data"]
                    return (
                        message["type"] in ("job_submitted", "job_update")
                        and data["job_id"] == dependent
                        and data["reason"] == "Dependency"
                    )

                on_dependency = (await seen.expect(waits_on_dependency, SLOW))["data"]
                assert f"afterok:{burn}" in on_dependency["reason_text"]

                ended = {}
                for job in (burn, idle, memory):
                    done = await seen.expect(job_event("job_update", job, "COMPLETED"), SLOW)
                    ended[job] = done["data"]
                busy, asleep = ended[burn]["efficiency"], ended[idle]["efficiency"]
                assert busy["cpus"] == 2 and busy["elapsed_s"] >= 19
                # 2 busy CPUs for 20 s against sleep: whatever else loads this machine,
                # the busy job used CPU time and the sleeping one almost none.
                assert busy["cpu_efficiency"] > 25.0 > 2.0 > asleep["cpu_efficiency"]
                touched = ended[memory]["efficiency"]
                assert touched["memory_requested_mb"] == 1000
                assert 390 <= touched["memory_peak_mb"] <= 600
                assert 39.0 <= touched["memory_efficiency"] <= 60.0
                note = await seen.expect(notification("job_completed", burn), SLOW)
                assert (
                    note["data"]["data"]["efficiency"]["cpu_efficiency"] == busy["cpu_efficiency"]
                )
            finally:
                run("scancel", held, dependent, later, check=False)


async def test_job_purged_between_polls_gets_exact_final_state_from_sacct(
    local_slurm: Path,
) -> None:
    # Loops poll once at start; this test drives the polls itself.
    quiet = {**LIVE, "jobs_interval": 3600.0, "nodes_interval": 3600.0}
    async with running_server(**quiet) as app, Client.connect(app) as client:
        await client.subscribe("jobs", "notifications")
        async with Recorder.on(client) as seen:
            job = sbatch("--wrap", "sleep 2; exit 7")
            await app.monitor.poll_jobs()
            await seen.expect(job_event("job_submitted", job), SLOW)

            async def listed() -> bool:
                result = await asyncio.to_thread(
                    subprocess.run,
                    ["squeue", "--noheader", "--states=all", "--jobs", job],
                    capture_output=True,
                    text=True,
                )
                return result.returncode == 0 and job in result.stdout

            # The job runs, ends, and slurmctld forgets it (MinJobAge=5) unseen.
            await eventually(listed, lambda is_listed: not is_listed, SLOW)

            async def poll_and_look() -> list[dict[str, Any]]:
                await app.monitor.poll_jobs()
                return seen.matching(job_event("job_update", job, "FAILED"))

            (update,) = await eventually(poll_and_look, bool, SLOW)
            assert update["data"]["exit_code"] == 7
            assert "final_state_confirmed" not in update["data"]
            note = await seen.expect(notification("job_failed", job), SLOW)
            assert note["data"]["data"]["exit_code"] == 7
        assert app.health()["source"]["details"]["commands"]["sacct"] >= 1


async def test_stopped_controller_degrades_alerts_and_recovers(local_slurm: Path) -> None:
    settings = {**LIVE, "backoff_max": 2.0, "slurm_timeout": 15.0, "source_timeout": 20.0}
    async with running_server(**settings) as app, Client.connect(app) as client:
        await client.subscribe("alerts")
        async with Recorder.on(client) as seen:
            await eventually(
                lambda: http_json(app, "GET", "/health"), lambda r: r[1]["polls"]["jobs"] >= 1
            )
            run("bash", str(local_slurm / "stop-local-slurm.sh"), "--slurm-only", "--keep-jobs")
            try:
                firing = await seen.expect(
                    lambda m: (
                        m["data"]["id"] == "source_unavailable" and m["data"]["status"] == "firing"
                    ),
                    SLOW,
                )
                assert "squeue" in firing["data"]["message"] or "sinfo" in firing["data"]["message"]
                _, health = await http_json(app, "GET", "/health")
                assert health["status"] == "degraded" and health["source"]["last_error"]
                # Clients are served throughout.
                assert await client.ws.ping() is not None
            finally:
                start_slurm(local_slurm)
            resolved = await seen.expect(
                lambda m: (
                    m["data"]["id"] == "source_unavailable" and m["data"]["status"] == "resolved"
                ),
                SLOW,
            )
            assert resolved["data"]["since"] == firing["data"]["since"]
            _, health = await eventually(
                lambda: http_json(app, "GET", "/health"),
                lambda r: r[1]["status"] == "healthy",
                SLOW,
            )
            # The alert fired once for the whole outage.
            assert len(seen.matching(lambda m: m["data"]["id"] == "source_unavailable")) == 2
