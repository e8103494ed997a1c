"""The client against a real in-process server: subscriptions, snapshots, requests, errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import pytest

from slurmcast.app import SlurmcastApp
from slurmcast.client import (
    ClientClosed,
    ClientError,
    ConnectionFailed,
    ConnectionState,
    Position,
    SlurmcastClient,
)

from support.server import WAIT, http_json, running_server
from support.waiting import eventually, take

T = TypeVar("T")

QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}


def url(app: SlurmcastApp) -> str:
    return f"ws://127.0.0.1:{app.ws.port}/"


async def publish(app: SlurmcastApp, count: int, channel: str = "jobs", start: int = 0) -> None:
    for seq in range(start, start + count):
        await app.node.publish(channel, "broadcast", {"seq": seq}, datetime.now(UTC))


async def job_update(app: SlurmcastApp, job_id: str, user: str, status: str = "RUNNING") -> None:
    data = {"job_id": job_id, "user": user, "status": status, "partition": "cpu"}
    await app.node.publish("jobs", "job_update", data, datetime.now(UTC), user)


@pytest.fixture
async def app() -> AsyncIterator[SlurmcastApp]:
    async with running_server(**QUIET) as app:
        yield app


async def test_async_iteration_delivers_messages_in_order_with_positions(app: SlurmcastApp) -> None:
    async with SlurmcastClient(url(app)) as client:
        assert client.state is ConnectionState.CONNECTED
        sub = await client.subscribe("jobs")
        start = sub.position
        assert start is not None
        await publish(app, 3)
        messages = await take(sub, 3)
        assert [m["data"]["seq"] for m in messages] == [0, 1, 2]
        assert [m["offset"] - start.offset for m in messages] == [1, 2, 3]
        assert sub.position == Position(start.offset + 3, start.epoch)
    # cast: leaving the block changed the state; mypy keeps the narrowing from inside.
    assert cast(ConnectionState, client.state) is ConnectionState.CLOSED


async def test_callbacks_sync_and_async_are_called_in_order(app: SlurmcastApp) -> None:
    plain: list[int] = []
    awaited: list[int] = []
    done = asyncio.Event()

    def on_jobs(message: dict[str, Any]) -> None:
        plain.append(message["data"]["seq"])

    async def on_alerts(message: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        awaited.append(message["data"]["seq"])
        if len(awaited) == 3:
            done.set()

    async with SlurmcastClient(url(app)) as client:
        jobs = await client.subscribe("jobs", on_jobs)
        await client.subscribe("alerts", on_alerts)
        await publish(app, 3)
        await publish(app, 3, channel="alerts")
        async with asyncio.timeout(WAIT):
            await done.wait()
        await eventually(lambda: _value(len(plain)), lambda n: n == 3)
        assert plain == [0, 1, 2] and awaited == [0, 1, 2]
        with pytest.raises(TypeError, match="callback"):
            await anext(jobs)


async def _value(value: T) -> T:
    return value


async def test_a_callback_that_raises_is_logged_and_delivery_continues(
    app: SlurmcastApp, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []
    done = asyncio.Event()

    def fragile(message: dict[str, Any]) -> None:
        seq = message["data"]["seq"]
        if seq == 1:
            raise RuntimeError("dashboard bug")
        seen.append(seq)
        if seq == 2:
            done.set()

    with caplog.at_level(logging.ERROR, logger="slurmcast.client"):
        async with SlurmcastClient(url(app)) as client:
            await client.subscribe("jobs", fragile)
            await publish(app, 3)
            async with asyncio.timeout(WAIT):
                await done.wait()
    assert seen == [0, 2]
    assert "subscription callback for jobs raised" in caplog.text
    assert "dashboard bug" in caplog.text


async def test_filter_is_applied_by_the_server(app: SlurmcastApp) -> None:
    async with SlurmcastClient(url(app)) as client:
        sub = await client.subscribe("jobs", filter={"user": ["alice", "carol"]})
        await job_update(app, "1", "bob")
        await job_update(app, "2", "alice")
        await job_update(app, "3", "dave")
        await job_update(app, "4", "carol")
        messages = await take(sub, 2)
        assert [m["data"]["job_id"] for m in messages] == ["2", "4"]


async def _polled(app: SlurmcastApp) -> bool:
    return app.monitor.jobs is not None and app.monitor.nodes is not None


async def test_snapshot_is_one_message_joined_from_every_part(
    app: SlurmcastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small parts, so the cluster's nodes arrive in several snapshot frames.
    monkeypatch.setattr("slurmcast.core.session.SNAPSHOT_CHUNK", 3)
    await eventually(lambda: _polled(app), bool)
    async with SlurmcastClient(url(app)) as client:
        sub = await client.subscribe("nodes", snapshot=True)
        (snapshot,) = await take(sub, 1)
        assert set(snapshot) == {"type", "channel", "position", "data"}
        assert snapshot["type"] == "snapshot" and snapshot["channel"] == "nodes"
        assert app.monitor.nodes is not None
        assert len(app.monitor.nodes.nodes) > 3
        assert {n["node"] for n in snapshot["data"]} == set(app.monitor.nodes.nodes)
        assert Position.from_dict(snapshot["position"]) == sub.position
        data = dict(snapshot["data"][0], state="DRAIN")
        await app.node.publish("nodes", "node_update", data, datetime.now(UTC))
        (delta,) = await take(sub, 1)
        assert delta["type"] == "node_update"
        assert delta["offset"] == snapshot["position"]["offset"] + 1


async def test_history_ping_and_mark_read(app: SlurmcastApp) -> None:
    await publish(app, 5)
    async with SlurmcastClient(url(app)) as client:
        page = await client.history("jobs", limit=3)
        assert [p["data"]["seq"] for p in page.publications] == [2, 3, 4]
        assert page.position is not None and page.position.offset == page.publications[-1]["offset"]
        assert page.complete is None
        since = (page.position.offset - 2, page.position.epoch)
        page = await client.history("jobs", since=since)
        assert [p["data"]["seq"] for p in page.publications] == [3, 4] and page.complete is True
        assert await client.ping() >= 0
        assert await client.mark_read(["notif-0000000000000000"]) == []
        with pytest.raises(ClientError) as info:
            await client.mark_read([])
        assert info.value.code == "invalid_field" and "ids" in info.value.message
        with pytest.raises(ClientError) as info:
            await client.history("jobs", limit=0)
        assert info.value.code == "invalid_field"
        # The connection is fine after refused requests.
        assert await client.ping() >= 0


async def test_mark_read_marks_a_stored_notification(app: SlurmcastApp) -> None:
    status, body = await http_json(
        app,
        "POST",
        "/notifications",
        {"user": "alice", "title": "Hello", "message": "Maintenance tonight", "type": "system"},
    )
    assert status == 201, body
    notification_id = body["notification"]["id"]
    async with SlurmcastClient(url(app)) as client:
        assert await client.mark_read([notification_id]) == [notification_id]


async def test_refused_subscriptions_raise_typed_errors_and_leave_nothing_behind(
    app: SlurmcastApp,
) -> None:
    async with SlurmcastClient(url(app)) as client:
        with pytest.raises(ClientError) as info:
            await client.subscribe("gpus")
        assert info.value.code == "unknown_channel"
        with pytest.raises(ClientError) as info:
            await client.subscribe("notifications", snapshot=True)
        assert info.value.code == "snapshot_not_available"
        with pytest.raises(ClientError) as info:
            await client.subscribe("jobs", filter={"colour": "red"})
        assert info.value.code == "invalid_filter"
        assert client.subscriptions == {}
        sub = await client.subscribe("jobs")
        with pytest.raises(ValueError, match="already subscribed"):
            await client.subscribe("jobs")
        await publish(app, 1)
        assert (await take(sub, 1))[0]["data"] == {"seq": 0}


async def test_unsubscribe_ends_the_iteration(app: SlurmcastApp) -> None:
    async with SlurmcastClient(url(app)) as client:
        sub = await client.subscribe("jobs")
        await publish(app, 2)
        assert (await take(sub, 1))[0]["data"] == {"seq": 0}
        await sub.unsubscribe()
        assert not sub.active
        # What was already queued may still come out; then the iteration ends.
        assert [m["data"]["seq"] async for m in sub] in ([], [1])
        await eventually(
            lambda: _value(app.hub.subscription_counts().get("jobs", 0)), lambda n: n == 0
        )
        again = await client.subscribe("jobs")
        await publish(app, 1, start=2)
        assert (await take(again, 1))[0]["data"] == {"seq": 2}


async def test_messages_for_every_client_arrive_on_the_all_pseudo_channel(
    app: SlurmcastApp,
) -> None:
    async with SlurmcastClient(url(app)) as client:
        everyone = await client.subscribe("all")
        status, _ = await http_json(app, "POST", "/broadcast", {"message": {"text": "hi all"}})
        assert status == 200
        (message,) = await take(everyone, 1)
        assert message["channel"] == "all" and message["type"] == "broadcast"
        assert message["data"] == {"text": "hi all"} and "offset" not in message


async def test_close_ends_iterations_and_refuses_later_calls(app: SlurmcastApp) -> None:
    client = SlurmcastClient(url(app))
    await client.connect()
    sub = await client.subscribe("jobs")
    await client.close()
    assert [m async for m in sub] == []
    with pytest.raises(ClientClosed):
        await client.ping()
    await client.close()  # idempotent


async def test_closing_at_once_after_connecting_logs_no_error(
    app: SlurmcastApp, caplog: pytest.LogCaptureFixture
) -> None:
    # The reader task may not have run yet when close() comes.
    with caplog.at_level(logging.ERROR, logger="slurmcast.client"):
        for _ in range(3):
            async with SlurmcastClient(url(app)) as client:
                assert client.state is ConnectionState.CONNECTED
            # cast: leaving the block changed the state; mypy keeps the narrowing from inside.
            assert cast(ConnectionState, client.state) is ConnectionState.CLOSED
    assert caplog.records == []


async def test_calls_before_connect_and_an_unreachable_server() -> None:
    client = SlurmcastClient("ws://127.0.0.1:9/")
    with pytest.raises(ClientError) as info:
        await client.ping()
    assert info.value.code == "not_connected"
    states: list[ConnectionState] = []
    client.on_state = states.append
    with pytest.raises(ConnectionFailed) as failed:
        await client.connect()
    assert failed.value.code == "connection_failed" and "127.0.0.1:9" in failed.value.message
    assert client.state is ConnectionState.FAILED and client.error is failed.value
    assert states == [ConnectionState.CONNECTING, ConnectionState.FAILED]
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        SlurmcastClient("http://example.org/")


async def test_rate_limited_subscriptions_are_retried_and_requests_refused_with_a_type() -> None:
    # 10 messages a second, bursts of 2: the third subscribe in a row is refused.
    async with (
        running_server(**QUIET, rate_limit=600.0, rate_burst=2) as app,
        SlurmcastClient(url(app)) as client,
    ):
        subs = [await client.subscribe(c) for c in ("jobs", "nodes", "alerts", "metrics")]
        assert [s.channel for s in subs] == ["jobs", "nodes", "alerts", "metrics"]
        counts = app.hub.subscription_counts()
        assert all(counts[s.channel] == 1 for s in subs)
        results = await asyncio.gather(*(client.ping() for _ in range(4)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, ClientError)]
        assert refused and all(r.code == "rate_limited" and r.retry_after for r in refused)
        # The replies matched their requests: the connection still works.
        assert await ping_politely(client) >= 0


async def ping_politely(client: SlurmcastClient) -> float:
    """Ping, waiting as long as the server says whenever it is rate limited."""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                return await client.ping()
            except ClientError as exc:
                assert exc.code == "rate_limited" and exc.retry_after is not None
                await asyncio.sleep(exc.retry_after)
