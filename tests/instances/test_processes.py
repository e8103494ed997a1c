"""Real instances as real processes sharing Redis: SIGKILL one, lose nothing.

Three ``slurmcast serve`` processes on their own ports, one Redis key prefix,
the same simulated cluster (seed and start time) so that whichever instance
polls sees the same jobs. Clients are real WebSocket clients; instances are
killed with SIGKILL (no goodbye, no lease release).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from instances.test_instances import check_transitions
from slurmcast.sources.simulator.source import SimulatorSource

from support.redis import REDIS_URL, PrivateRedis, free_port, shared_prefix
from support.server import Client
from support.waiting import eventually

SIM = {"sim_seed": "7", "sim_speed": "30"}


@dataclass
class Instance:
    name: str
    ws_port: int
    http_port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/"

    async def health(self) -> dict[str, Any] | None:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{self.http_port}/health") as response,
            ):
                return await response.json()  # type: ignore[no-any-return]
        except aiohttp.ClientError:
            return None

    async def post(self, body: dict[str, Any]) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{self.http_port}/broadcast", json=body) as response,
        ):
            return response.status

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def spawn(name: str, workdir: Path, flags: dict[str, str]) -> Instance:
    ws_port, http_port = free_port(), free_port()
    flags = {"ws_port": str(ws_port), "http_port": str(http_port), **flags}
    argv = [sys.executable, "-m", "slurmcast", "serve"]
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", value]
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return Instance(name, ws_port, http_port, process, log)


async def serving(instance: Instance) -> bool:
    """True once /health answers; False if the process died (its log says why)."""
    while instance.process.poll() is None:
        if await instance.health() is not None:
            return True
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def cluster(
    count: int, redis_url: str = REDIS_URL, **options: str
) -> AsyncIterator[list[Instance]]:
    async with shared_prefix() as prefix:
        workdir = Path(tempfile.mkdtemp(prefix="slurmcast-cluster-"))
        started: list[Instance] = []
        try:
            for n in range(count):
                name = f"p{n}"
                flags = {
                    "host": "127.0.0.1",
                    "broker": "redis",
                    "redis_url": redis_url,
                    "redis_prefix": prefix,
                    "instance_id": name,
                    "data_dir": str(workdir / name),
                    "log_level": "INFO",
                    **options,
                }
                for _ in range(5):
                    instance = spawn(name, workdir, flags)
                    started.append(instance)
                    async with asyncio.timeout(60):
                        if await serving(instance):
                            break
                    # A port probed free was taken before the server bound it: others.
                    assert "address already in use" in instance.log.read_text()
                    started.remove(instance)
                else:
                    raise AssertionError(f"{name} could not bind free ports")
            yield started
        finally:
            for instance in started:
                if instance.process.poll() is None:
                    instance.process.terminate()
            for instance in started:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    instance.process.wait(timeout=20)
                if instance.process.poll() is None:
                    instance.kill()


async def leader_of(instances: list[Instance]) -> Instance:
    async def leaders() -> list[Instance]:
        found = []
        for instance in instances:
            if instance.process.poll() is None:
                body = await instance.health()
                if body is not None and body["instance"]["leader"]:
                    found.append(instance)
        return found

    (leader,) = await eventually(leaders, lambda found: len(found) == 1, timeout=60)
    return leader


async def test_killing_the_poller_moves_polling_without_repeating_or_losing_a_transition() -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    options = {
        **SIM,
        "sim_start": start.isoformat(),
        "jobs_interval": "0.3",
        "nodes_interval": "0.3",
        "metrics_interval": "1",
        "leader_ttl": "1.5",
    }
    async with cluster(3, **options) as instances:
        leader = await leader_of(instances)
        watched = next(i for i in instances if i is not leader)
        updates: list[dict[str, Any]] = []
        async with Client.connect(watched.ws_port) as client:
            await client.subscribe("jobs")

            async def collect(count: int) -> None:
                while len(updates) < count:
                    message = await client.recv(timeout=60)
                    if message["type"] in ("job_submitted", "job_update"):
                        updates.append(message)

            await collect(30)
            leader.kill()
            before = len(updates)
            successor = await leader_of(instances)
            assert successor is not leader
            await collect(before + 30)
            stopped = datetime.now(UTC)
        text = successor.log.read_text()
        assert "resuming from the committed baseline" in text, text[-3000:]
        check_transitions(updates)
        offsets = [m["offset"] for m in updates]
        assert offsets == sorted(offsets)
        # Ground truth: the same simulated cluster, run here to now.
        truth = SimulatorSource(seed=7, speed=30.0, start=start)
        await truth.jobs()
        final = {
            m["data"]["job_id"]: m["data"]["status"]
            for m in updates
            if m["data"]["end_time"] is not None
        }
        assert final, "some jobs ended during the run"
        for job_id, status in final.items():
            record = truth.cluster.final_record(job_id)
            assert record is not None and record.state.value == status, (job_id, status)
        # And every job that ended well before the last poll had its end reported,
        # failover or not (simulated time runs 30x the wall clock from `start`).
        settled = start + (stopped - timedelta(seconds=3) - start) * 30
        for job_id in {m["data"]["job_id"] for m in updates}:
            record = truth.cluster.final_record(job_id)
            if record is not None and record.end_time is not None and record.end_time < settled:
                assert job_id in final, f"the end of job {job_id} was never reported"


async def test_a_client_whose_instance_is_killed_recovers_everything_on_another() -> None:
    total = 300
    quiet = {"jobs_interval": "3600", "nodes_interval": "3600", "metrics_interval": "3600"}
    async with cluster(3, **quiet) as (a, b, c):
        async with Client.connect(a.ws_port) as first:
            reply = await first.request({"type": "subscribe", "channel": "jobs"})
            position = reply["position"]
        done = asyncio.Event()

        async def publish() -> None:
            for seq in range(total):
                assert await c.post({"channel": "jobs", "message": {"seq": seq}}) == 200
            done.set()

        publisher = asyncio.create_task(publish())
        seen: list[int] = []
        try:
            async with connect(a.ws_url) as ws:
                client = Client(ws)
                await client.send({"type": "subscribe", "channel": "jobs", "since": position})
                assert (await client.recv())["recovered"] is True
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        message = await client.recv()
                        seen.append(message["data"]["seq"])
                        position = {"offset": message["offset"], "epoch": message["epoch"]}
                        if len(seen) == 50:
                            os.kill(a.process.pid, signal.SIGKILL)
            a.process.wait()
            async with connect(b.ws_url) as ws:
                client = Client(ws)
                await client.send({"type": "subscribe", "channel": "jobs", "since": position})
                reply = await client.recv()
                assert reply["recovered"] is True, reply
                while len(seen) < total:
                    seen.append((await client.recv())["data"]["seq"])
            await done.wait()
        finally:
            publisher.cancel()
        assert seen == list(range(total))


async def test_redis_stopped_and_started_during_a_stream() -> None:
    """Two processes on a Redis of the test's own, stopped and started (empty) mid-stream."""
    quiet = {"jobs_interval": "3600", "nodes_interval": "3600", "metrics_interval": "3600"}
    async with PrivateRedis() as redis_server, cluster(2, redis_server.url, **quiet) as (a, b):
        async with connect(a.ws_url) as ws:
            client = Client(ws)
            await client.subscribe("jobs")
            for n in range(5):
                assert await b.post({"channel": "jobs", "message": {"n": n}}) == 200
            before = [await client.recv() for _ in range(5)]
            assert [m["data"]["n"] for m in before] == [0, 1, 2, 3, 4]
            polls = await polls_of([a, b])()
            await redis_server.stop()
            # Publishing is refused, clearly; the instances stay up and say why.
            assert await b.post({"channel": "jobs", "message": {"n": 5}}) == 503
            health = await eventually(
                a.health, lambda h: cast("dict[str, Any]", h)["broker"]["connected"] is False
            )
            assert health is not None
            assert health["status"] == "degraded"
            assert (await client.request({"type": "ping"}))["type"] == "pong"
            await redis_server.start()
            try:
                await client.wait_for(lambda m: False, timeout=60)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4010
        # The poller finds no baseline in the empty Redis and sets the channels'
        # state afresh (one more new epoch): wait for that before resubscribing.
        await eventually(polls_of([a, b]), lambda total: total > polls, timeout=60)
        last = before[-1]
        async with connect(a.ws_url) as ws:
            client = Client(ws)
            since = {"offset": last["offset"], "epoch": last["epoch"]}
            reply = await client.request(
                {"type": "subscribe", "channel": "jobs", "since": since, "snapshot": True}
            )
            assert reply["recovered"] is False and reply["position"]["epoch"] != last["epoch"]
            assert await b.post({"channel": "jobs", "message": {"n": 6}}) == 200
            live = await client.wait_for(lambda m: m.get("type") == "broadcast", timeout=60)
            assert live["data"] == {"n": 6} and live["epoch"] == reply["position"]["epoch"]
        await eventually(
            a.health, lambda h: cast("dict[str, Any]", h)["status"] == "healthy", timeout=60
        )


def polls_of(instances: list[Instance]) -> Callable[[], Awaitable[int]]:
    """A probe: jobs polls made so far by these instances together."""

    async def total() -> int:
        bodies = [await instance.health() for instance in instances]
        return sum(body["polls"]["jobs"] for body in bodies if body is not None)

    return total
