"""Several instances sharing one Redis, in one process: channels, recovery, one poller, faults.

Each instance is a whole SlurmcastApp with its own servers on its own ports;
they share nothing but Redis (and the key prefix), exactly as separate
processes would. tests/cluster/test_processes.py does the same with real
processes and SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from slurmcast.app import SlurmcastApp
from slurmcast.client import SlurmcastClient

from support.builders import job_data
from support.redis import REDIS_URL, PrivateRedis, shared_prefix
from support.server import Client, http_json, running_server
from support.waiting import eventually

QUIET: dict[str, Any] = {
    "jobs_interval": 3600.0,
    "nodes_interval": 3600.0,
    "metrics_interval": 3600.0,
}


@contextlib.asynccontextmanager
async def instances(
    count: int, *, url: str = REDIS_URL, prefix: str | None = None, **settings: Any
) -> AsyncIterator[list[SlurmcastApp]]:
    async with contextlib.AsyncExitStack() as stack:
        if prefix is None:
            prefix = await stack.enter_async_context(shared_prefix())
        apps = []
        for n in range(count):
            app = await stack.enter_async_context(
                running_server(
                    broker="redis",
                    redis_url=url,
                    redis_prefix=prefix,
                    instance_id=f"instance-{n}",
                    **settings,
                )
            )
            apps.append(app)
        yield apps


async def broadcast(
    app: SlurmcastApp, channel: str, data: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    return await http_json(app, "POST", "/broadcast", {"channel": channel, "message": data})


async def test_a_client_on_one_instance_gets_what_another_publishes() -> None:
    async with (
        instances(3, **QUIET) as (a, b, c),
        Client.connect(a) as on_a,
        Client.connect(c) as on_c,
    ):
        await on_a.subscribe("jobs")
        await on_c.subscribe("jobs")
        status, body = await broadcast(b, "jobs", {"text": "from b"})
        assert status == 200 and body["success"] is True
        got_a, got_c = await on_a.recv(), await on_c.recv()
        assert got_a["data"] == got_c["data"] == {"text": "from b"}
        assert (got_a["offset"], got_a["epoch"]) == (got_c["offset"], got_c["epoch"])
        # "all" reaches every client on every instance, outside any stream.
        await broadcast(c, "all", {"text": "everyone"})
        for client in (on_a, on_c):
            message = await client.recv()
            assert message["data"] == {"text": "everyone"} and "offset" not in message


async def test_a_client_walking_from_instance_to_instance_loses_and_repeats_nothing() -> None:
    total = 600
    rng = random.Random(11)
    async with instances(3, **QUIET, history_size="jobs=1000") as apps:
        async with Client.connect(apps[0]) as first:
            position = (await first.request({"type": "subscribe", "channel": "jobs"}))["position"]
        done = asyncio.Event()

        async def stream() -> None:
            for seq in range(total):
                publisher = apps[seq % 3]
                await publisher.node.publish("jobs", "broadcast", {"seq": seq}, datetime.now(UTC))
                if seq % 20 == 0:
                    await asyncio.sleep(0.002)
            done.set()

        task = asyncio.create_task(stream())
        seen: list[int] = []
        hops = 0
        try:
            while len(seen) < total:
                app = apps[hops % 3]
                async with connect(f"ws://127.0.0.1:{app.ws.port}/", max_queue=None) as ws:
                    client = Client(ws)
                    await client.send({"type": "subscribe", "channel": "jobs", "since": position})
                    reply = await client.recv()
                    assert reply["type"] == "subscribed" and reply["recovered"] is True, reply
                    budget = rng.randint(1, 80) if hops < 40 else total
                    while len(seen) < total and budget:
                        message = await client.recv()
                        seen.append(message["data"]["seq"])
                        position = {"offset": message["offset"], "epoch": message["epoch"]}
                        budget -= 1
                hops += 1
            await done.wait()
        finally:
            task.cancel()
        assert hops >= 10
        assert seen == list(range(total))


async def test_history_and_snapshots_are_the_same_on_every_instance() -> None:
    async with instances(2, **QUIET) as (a, b):
        # After the poller's first poll, which sets the jobs state wholesale.
        await eventually(lambda: _value(a.monitor.polls["jobs"] + b.monitor.polls["jobs"]), bool)
        for n in range(3):
            job = job_data(f"t{n}")
            await a.node.publish("jobs", "job_update", job, datetime.now(UTC), "alice")
        done = job_data("t1", "COMPLETED")
        await b.node.publish("jobs", "job_update", done, datetime.now(UTC), "alice")
        snapshots = [await http_json(app, "GET", "/snapshot/jobs") for app in (a, b)]
        assert snapshots[0] == snapshots[1]
        status, body = snapshots[0]
        assert status == 200
        assert sorted(j["job_id"] for j in body["data"] if j["job_id"][0] == "t") == ["t0", "t2"]
        assert body["position"]["offset"] == 4
        async with Client.connect(b) as client:
            reply = await client.request({"type": "history", "channel": "jobs", "limit": 10})
            assert [p["offset"] for p in reply["publications"]] == [1, 2, 3, 4]


FAST: dict[str, Any] = {
    "sim_seed": 5,
    "sim_speed": 60.0,
    # The same cluster on every instance: whoever polls sees the same jobs.
    "sim_start": datetime.now(UTC).isoformat(),
    "jobs_interval": 0.2,
    "nodes_interval": 0.2,
    "metrics_interval": 0.5,
    "leader_ttl": 1.5,
    "presence_ttl": 1.5,
}


def leaders(apps: list[SlurmcastApp]) -> list[str]:
    return [app.instance_id for app in apps if app.leadership.is_leader]


async def test_one_instance_polls_and_health_describes_the_cluster() -> None:
    async with instances(3, **FAST) as apps:
        await eventually(lambda: _value(leaders(apps)), lambda found: len(found) == 1)
        async with Client.connect(apps[0]) as one, Client.connect(apps[0]) as two:
            await one.subscribe("jobs")
            await two.subscribe("nodes")
            reports = await eventually(
                lambda: _health(apps),
                lambda bodies: all((body["cluster"] or {}).get("clients") == 2 for body in bodies),
            )
        for app, body in zip(apps, reports, strict=True):
            assert body["status"] == "healthy"
            assert body["instance"] == {
                "id": app.instance_id,
                "leader": app.leadership.is_leader,
            }
            assert body["broker"]["kind"] == "redis" and body["broker"]["connected"] is True
            assert body["cluster"]["instances"] == 3
        assert sum(body["instance"]["leader"] for body in reports) == 1
        # Only the leader polls: the others' sources were never asked.
        for app in apps:
            assert (app.monitor.polls["jobs"] > 0) == app.leadership.is_leader


async def test_when_the_poller_stops_another_takes_over_without_repeating_a_transition() -> None:
    async with instances(2, **FAST) as apps, Client.connect(apps[1]) as client:
        await client.subscribe("jobs")
        first = await eventually(lambda: _value(leaders(apps)), lambda found: len(found) == 1)
        old = next(app for app in apps if app.instance_id == first[0])
        new = next(app for app in apps if app is not old)
        updates: list[dict[str, Any]] = []

        async def collect(until: int) -> None:
            while len(updates) < until:
                message = await client.recv()
                if message["type"] in ("job_submitted", "job_update"):
                    updates.append(message)

        await collect(20)
        await old.stop_polling()  # the lease is released: the other takes over at once
        await eventually(lambda: _value(new.leadership.is_leader), bool)
        count = len(updates)
        await collect(count + 20)
        assert new.monitor.polls["jobs"] > 0
        check_transitions(updates)


def check_transitions(updates: list[dict[str, Any]]) -> None:
    """Every job's messages form one chain: each starts where the last one ended.

    A transition reported twice, or one lost, breaks the chain; offsets run
    without a gap.
    """
    offsets = [m["offset"] for m in updates]
    assert offsets == sorted(set(offsets))
    last: dict[str, str] = {}
    for message in updates:
        data = message["data"]
        job = data["job_id"]
        if message["type"] == "job_submitted":
            assert job not in last, f"job {job} submitted twice"
        elif job in last:
            assert data["previous_status"] == last[job], (job, data, last[job])
        last[job] = data["status"]


async def test_redis_outage_keeps_clients_refuses_publishes_and_recovers() -> None:
    async with (
        PrivateRedis() as redis_server,
        instances(2, url=redis_server.url, prefix="outage", **QUIET) as (a, b),
    ):
        async with Client.connect(a) as watcher:
            await watcher.subscribe("alerts", "jobs")
            status, _ = await broadcast(b, "jobs", {"n": 1})
            assert status == 200
            first = await watcher.wait_for(lambda m: m.get("type") == "broadcast")
            polls = a.monitor.polls["jobs"] + b.monitor.polls["jobs"]
            await redis_server.stop()
            alert = await watcher.wait_for(lambda m: m.get("type") == "alert")
            assert alert["data"]["rule"] == "broker_unavailable"
            assert alert["data"]["status"] == "firing" and "offset" not in alert
            status, body = await broadcast(b, "jobs", {"n": 2})
            assert status == 503 and body["code"] == "broker_unavailable"
            status, health = await http_json(a, "GET", "/health")
            assert health["status"] == "degraded" and health["broker"]["connected"] is False
            assert (await watcher.request({"type": "ping"}))["type"] == "pong"
            await redis_server.start()
            # Redis came back empty: the streams are gone, the client must resync.
            try:
                await watcher.wait_for(lambda m: False, timeout=30)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4010
        # The poller finds no baseline in the empty Redis and sets the channels'
        # state afresh (one more new epoch): wait for that before resubscribing.
        await eventually(
            lambda: _value(a.monitor.polls["jobs"] + b.monitor.polls["jobs"]),
            lambda total: total > polls,
        )
        async with Client.connect(a) as back:
            since = {"offset": first["offset"], "epoch": first["epoch"]}
            reply = await back.request(
                {"type": "subscribe", "channel": "jobs", "since": since, "snapshot": True}
            )
            assert reply["recovered"] is False
            assert reply["position"]["epoch"] != first["epoch"]
            assert (await back.recv())["type"] == "snapshot"
            status, _ = await broadcast(b, "jobs", {"n": 3})
            assert status == 200
            live = await back.wait_for(lambda m: m.get("type") == "broadcast")
            assert live["data"] == {"n": 3} and live["epoch"] == reply["position"]["epoch"]
            await eventually(lambda: _health([a]), lambda bodies: bodies[0]["status"] == "healthy")


async def _value(value: Any) -> Any:
    return value


async def _health(apps: list[SlurmcastApp]) -> list[dict[str, Any]]:
    return [(await http_json(app, "GET", "/health"))[1] for app in apps]


async def test_a_dashboard_client_rides_out_a_redis_restart() -> None:
    """The Python client on one instance: Redis restarts empty, the client resyncs
    from a fresh snapshot on its own and goes on receiving live messages."""
    async with (
        PrivateRedis() as redis_server,
        instances(2, url=redis_server.url, prefix="dash", **QUIET) as (a, b),
    ):
        client = SlurmcastClient(
            f"ws://127.0.0.1:{a.ws.port}/", backoff_initial=0.05, backoff_max=0.5
        )
        try:
            await client.connect()
            sub = await client.subscribe("jobs", snapshot=True)
            messages = aiter(sub)
            async with asyncio.timeout(60):
                first = await anext(messages)
                assert first["type"] == "snapshot"
                old = first["position"]["epoch"]
                await redis_server.stop()
                await redis_server.start()
                while True:
                    message = await anext(messages)
                    if message["type"] == "snapshot" and message["position"]["epoch"] != old:
                        break
                assert sub.resyncs >= 1
                # Live again: keep publishing until one arrives (a re-seed by the
                # poller may make the client resync once more meanwhile).
                for n in range(1000):
                    await broadcast(b, "jobs", {"n": n})
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            while True:
                                live = await anext(messages)
                                if live["type"] == "broadcast":
                                    break
                        break
                assert sub.position is not None
                assert live["epoch"] == sub.position.epoch != old
        finally:
            await client.close()
