"""``slurmcast serve --source slurm`` on the recorded outputs of Slurm 24.05-25.11.

A real server process runs fake squeue/sinfo/scontrol/sacct (``--slurm-bin-dir``)
that print a release's real recordings (tests/support/fakeslurm.py), in every
``--slurm-format``: its snapshots hold the recording's jobs and nodes and its
health is not degraded.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from test_cli import SLURMCAST, env_for, free_port, health

from support.fakeslurm import FakeSlurm
from support.slurm_fixtures import rest_document
from support.waiting import eventually

#: The newest API each release's recordings have, all formats on the oldest and newest.
CASES = [
    ("24.05", "v0.0.41", "auto"),
    ("24.05", "v0.0.41", "json"),
    ("24.05", "v0.0.41", "delimited"),
    ("24.11", "v0.0.42", "auto"),
    ("25.05", "v0.0.43", "auto"),
    ("25.11", "v0.0.44", "auto"),
    ("25.11", "v0.0.44", "json"),
    ("25.11", "v0.0.44", "delimited"),
]


async def _get(port: int, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


@pytest.mark.parametrize(("release", "api", "output_format"), CASES)
async def test_server_shows_a_recorded_release(
    tmp_path: Path, release: str, api: str, output_format: str
) -> None:
    fake = FakeSlurm.recording(tmp_path, release, api)
    recorded_jobs = rest_document(release, api, "jobs")
    recorded_nodes = rest_document(release, api, "nodes")
    live_states = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING"}
    live_ids = {
        str(job["job_id"]) for job in recorded_jobs["jobs"] if set(job["job_state"]) & live_states
    }
    ws_port, http_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    command = [str(SLURMCAST), "serve", "--source", "slurm", "--slurm-bin-dir", str(fake.bin)]
    command += ["--slurm-format", output_format, "--jobs-interval", "0.5"]
    command += ["--nodes-interval", "0.5"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env_for(ws_port, http_port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Two job polls: in auto mode the first listing is delimited, the next JSON.
        report = await eventually(
            lambda: health(http_port),
            lambda h: h is not None and h["source"]["details"]["commands"].get("squeue", 0) >= 4,
        )
        assert report is not None
        assert report["status"] == "healthy", report
        details = report["source"]["details"]
        assert details["version"].startswith(release) and details["problems"] == []
        assert details["nodes_format"] == ("delimited" if output_format == "delimited" else "json")
        jobs = await _get(http_port, "/snapshot/jobs")
        nodes = await _get(http_port, "/snapshot/nodes")
        assert {job["job_id"] for job in jobs["data"]} == live_ids
        assert {node["node"] for node in nodes["data"]} == {
            node["name"] for node in recorded_nodes["nodes"]
        }
        pending = [job for job in jobs["data"] if job["status"] == "PENDING"]
        assert pending and all(job["reason_text"] for job in pending)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    assert "Traceback" not in log.read_text()
