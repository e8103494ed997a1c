"""Slurm is polled once per server, however many clients are connected."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from slurmcast.app import SlurmcastApp

from support.fakerestd import FakeRestd
from support.fakeslurm import FakeSlurm
from support.server import Client, running_server
from support.waiting import eventually

CLIENTS = 30
FAST_POLLS = {"jobs_interval": 0.05, "nodes_interval": 0.05, "metrics_interval": 0.05}


@contextlib.asynccontextmanager
async def polled_with_clients(app: SlurmcastApp) -> AsyncIterator[dict[str, int]]:
    """Connect ``CLIENTS`` subscribers that never read, wait for 20 polls of jobs
    and nodes, and give the poll counts while the clients are still connected
    (the checks compare them with the commands run so far: no await between)."""
    async with contextlib.AsyncExitStack() as stack:
        # Unbounded client queues: these clients never read what they receive.
        clients = [
            await stack.enter_async_context(Client.connect(app, max_queue=None))
            for _ in range(CLIENTS)
        ]
        for client in clients:
            await client.subscribe("jobs", "nodes", "metrics")

        async def polls() -> dict[str, int]:
            return dict(app.health()["polls"])

        counts = await eventually(polls, lambda p: p["jobs"] >= 20 and p["nodes"] >= 20)
        assert app.health()["clients"] == CLIENTS
        yield counts


async def test_commands_per_poll_do_not_grow_with_clients(tmp_path: Path) -> None:
    fake = FakeSlurm(tmp_path)
    async with (
        running_server(source="slurm", slurm_bin_dir=str(fake.bin), **FAST_POLLS) as app,
        polled_with_clients(app) as counts,
    ):
        squeue = [c for c in fake.calls("squeue") if c != "--version"]
        sinfo = fake.calls("sinfo")
        # One listing per completed poll (plus at most one poll in flight),
        # and one sinfo --json probe at start-up: nothing per client.
        assert counts["jobs"] <= len(squeue) <= counts["jobs"] + 1
        assert counts["nodes"] + 1 <= len(sinfo) <= counts["nodes"] + 2
        assert fake.calls("scontrol") == ["show config"]
        # The fixture's queue has no job finishing between polls: no sacct at all.
        assert fake.calls("sacct") == []


async def test_slurmrestd_requests_per_poll_do_not_grow_with_clients() -> None:
    async with (
        FakeRestd("25.11").running() as fake,
        running_server(source="slurmrestd", slurmrestd_url=fake.url, **FAST_POLLS) as app,
        polled_with_clients(app) as counts,
    ):
        jobs = fake.seen("/slurm/v0.0.44/jobs")
        nodes = fake.seen("/slurm/v0.0.44/nodes")
        # One request per completed poll (plus at most one in flight), nothing per client;
        # an unchanged cluster is answered 304 after the first listing.
        assert counts["jobs"] <= len(jobs) <= counts["jobs"] + 1
        assert counts["nodes"] <= len(nodes) <= counts["nodes"] + 1
        assert all("update_time" in request.query for request in jobs[1:])
        details = app.health()["source"]["details"]
        assert details["not_modified"]["jobs"] >= len(jobs) - 2
        assert len(fake.seen("/openapi/v3")) == 1
        # Jobs the recording lists as finished are looked up once, in one batch.
        assert len(fake.seen("/slurmdb/")) <= 2
