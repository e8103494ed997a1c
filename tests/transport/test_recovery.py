"""Positions, history and loss-free recovery over real sockets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from websockets.asyncio.client import connect

from slurmcast.app import SlurmcastApp

from support.builders import job_data
from support.server import Client, running_server

QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}


async def publish(app: SlurmcastApp, count: int, channel: str = "jobs", start: int = 0) -> None:
    for seq in range(start, start + count):
        await app.node.publish(channel, "broadcast", {"seq": seq}, datetime.now(UTC))


async def test_every_message_carries_its_position(app_quiet: SlurmcastApp) -> None:
    async with Client.connect(app_quiet) as client:
        reply = await client.request({"type": "subscribe", "channel": "jobs"})
        start = reply["position"]["offset"]
        epoch = reply["position"]["epoch"]
        await publish(app_quiet, 3)
        await publish(app_quiet, 1, channel="alerts")
        offsets = [(await client.recv())["offset"] for _ in range(3)]
        assert offsets == [start + 1, start + 2, start + 3]
    async with Client.connect(app_quiet) as client:
        await client.subscribe("jobs")
        await publish(app_quiet, 1)
        message = await client.recv()
        assert message["epoch"] == epoch and message["offset"] == start + 4


@pytest.fixture(params=["memory", "redis"])
async def app_quiet(request: pytest.FixtureRequest) -> AsyncIterator[SlurmcastApp]:
    """One delivery path, two brokers: every recovery test runs on both."""
    async with running_server(broker=request.param, **QUIET) as app:
        yield app


async def test_history_request(app_quiet: SlurmcastApp) -> None:
    await publish(app_quiet, 5)
    async with Client.connect(app_quiet) as client:
        reply = await client.request({"type": "history", "channel": "jobs", "limit": 3, "id": 1})
        assert reply["type"] == "history" and reply["id"] == 1
        assert [p["data"]["seq"] for p in reply["publications"]] == [2, 3, 4]
        top = reply["position"]
        assert top["offset"] == reply["publications"][-1]["offset"]
        since = {"offset": top["offset"] - 2, "epoch": top["epoch"]}
        reply = await client.request({"type": "history", "channel": "jobs", "since": since})
        assert [p["data"]["seq"] for p in reply["publications"]] == [3, 4]
        assert reply["complete"] is True
        stale = {"offset": 1, "epoch": "not-this-one"}
        reply = await client.request({"type": "history", "channel": "jobs", "since": stale})
        assert reply["complete"] is False
        bad = await client.request({"type": "history", "channel": "jobs", "limit": 0})
        assert bad["code"] == "invalid_field"


async def test_history_limit_counts_what_the_filter_lets_through(app_quiet: SlurmcastApp) -> None:
    users = ["alice", "bob", "bob", "alice", "bob", "bob", "alice", "bob"]
    for seq, user in enumerate(users):
        data = job_data(str(seq), user=user) | {"seq": seq}
        await app_quiet.node.publish("jobs", "job_update", data, datetime.now(UTC), owner=user)
    async with Client.connect(app_quiet) as client:
        reply = await client.request(
            {"type": "history", "channel": "jobs", "limit": 2, "filter": {"user": "alice"}}
        )
        assert [p["data"]["seq"] for p in reply["publications"]] == [3, 6]


async def test_reconnect_recovers_what_was_missed_then_goes_live(app_quiet: SlurmcastApp) -> None:
    async with Client.connect(app_quiet) as client:
        reply = await client.request({"type": "subscribe", "channel": "jobs"})
        await publish(app_quiet, 2)
        last = (await client.recv(), await client.recv())[1]
    await publish(app_quiet, 4, start=2)  # missed while away
    since = {"offset": last["offset"], "epoch": last["epoch"]}
    async with Client.connect(app_quiet) as client:
        reply = await client.request({"type": "subscribe", "channel": "jobs", "since": since})
        assert reply["recovered"] is True
        assert reply["position"]["offset"] == last["offset"] + 4
        replayed = [(await client.recv())["data"]["seq"] for _ in range(4)]
        assert replayed == [2, 3, 4, 5]
        await publish(app_quiet, 1, start=6)
        live = await client.recv()
        assert live["data"]["seq"] == 6 and live["offset"] == last["offset"] + 5


BROKERS = pytest.mark.parametrize("broker", ["memory", "redis"])


@BROKERS
async def test_changed_epoch_or_overflowed_history_is_not_recovered(broker: str) -> None:
    async with (
        running_server(**QUIET, broker=broker, history_size="jobs=5") as app,
        Client.connect(app) as client,
    ):
        await publish(app, 20)
        reply = await client.request(
            {"type": "subscribe", "channel": "jobs", "since": {"offset": 3, "epoch": "gone"}}
        )
        assert reply["recovered"] is False and reply["position"]["offset"] == 20
        epoch = reply["position"]["epoch"]
        await client.request({"type": "unsubscribe", "channel": "jobs"})
        # Still the right epoch, but offset 3 left the 5-message window long ago.
        reply = await client.request(
            {
                "type": "subscribe",
                "channel": "jobs",
                "since": {"offset": 3, "epoch": epoch},
                "snapshot": True,
            }
        )
        assert reply["recovered"] is False
        snapshot = await client.recv()
        assert snapshot["type"] == "snapshot" and snapshot["position"]["offset"] == 20
        # Live messages continue right after the snapshot's position.
        await publish(app, 1, start=20)
        assert (await client.recv())["offset"] == 21


async def test_restart_changes_the_epoch() -> None:
    async with running_server(**QUIET) as app, Client.connect(app) as client:
        reply = await client.request({"type": "subscribe", "channel": "jobs"})
        old = reply["position"]["epoch"]
    async with running_server(**QUIET) as app, Client.connect(app) as client:
        reply = await client.request(
            {"type": "subscribe", "channel": "jobs", "since": {"offset": 0, "epoch": old}}
        )
        assert reply["recovered"] is False and reply["position"]["epoch"] != old


@BROKERS
async def test_flaky_client_sees_every_offset_exactly_once_in_order(broker: str) -> None:
    """A steady stream; the client drops at random moments, even mid-recovery."""
    total = 1500
    rng = random.Random(7)
    async with running_server(**QUIET, broker=broker, history_size="jobs=1000") as app:
        url = f"ws://127.0.0.1:{app.ws.port}/"
        seen: list[int] = []
        done = asyncio.Event()
        async with Client.connect(app) as first:
            # Where the stream starts, before anything is published.
            position = (await first.request({"type": "subscribe", "channel": "jobs"}))["position"]

        async def stream() -> None:
            for seq in range(total):
                await app.node.publish("jobs", "broadcast", {"seq": seq}, datetime.now(UTC))
                if seq % 25 == 0:
                    await asyncio.sleep(0.002)
            done.set()

        publisher = asyncio.create_task(stream())
        reconnects = 0
        try:
            while len(seen) < total:
                async with connect(url, max_queue=None) as ws:
                    client = Client(ws)
                    await client.send({"type": "subscribe", "channel": "jobs", "since": position})
                    if rng.random() < 0.2 and reconnects < 60:
                        reconnects += 1
                        continue  # gone before even reading the reply: mid-recovery
                    reply = await client.recv()
                    assert reply["type"] == "subscribed", reply
                    assert reply["recovered"] is True, reply
                    budget = rng.randint(1, 120) if reconnects < 60 else total
                    while len(seen) < total and budget:
                        message = await client.recv()
                        seen.append(message["data"]["seq"])
                        position = {"offset": message["offset"], "epoch": message["epoch"]}
                        budget -= 1
                    reconnects += 1
            await done.wait()
        finally:
            publisher.cancel()
        assert reconnects >= 20
        assert seen == list(range(total))
