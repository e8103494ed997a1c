"""The HTTP API over real sockets."""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from slurmcast.app import SlurmcastApp

from support.server import Client, http_json, running_server
from support.waiting import eventually


@pytest.fixture
async def app() -> AsyncIterator[SlurmcastApp]:
    async with running_server() as app:
        yield app


async def test_broadcast_to_one_channel_reaches_only_its_subscribers(app: SlurmcastApp) -> None:
    async with Client.connect(app) as jobs, Client.connect(app) as nodes:
        await jobs.subscribe("jobs")
        await nodes.subscribe("nodes")
        status, body = await http_json(
            app, "POST", "/broadcast", {"channel": "jobs", "message": {"text": "maintenance at 6"}}
        )
        assert (status, body) == (200, {"success": True, "channel": "jobs", "delivered": 1})
        message = await jobs.recv()
        assert message["channel"] == "jobs" and message["type"] == "broadcast"
        assert message["data"] == {"text": "maintenance at 6"}
        assert message["timestamp"].endswith("Z")
        # The broadcast was written before the HTTP reply; a pong now proves
        # the nodes subscriber got nothing in between.
        assert await nodes.request({"type": "ping"}) == {"type": "pong"}


async def test_a_posted_custom_type_reaches_clients_as_that_type(app: SlurmcastApp) -> None:
    async with Client.connect(app) as client:
        await client.subscribe("alerts")
        posted = {"type": "maintenance", "data": {"start": "18:00", "nodes": ["node001"]}}
        status, body = await http_json(
            app, "POST", "/broadcast", {"channel": "alerts", "message": posted}
        )
        assert (status, body["delivered"]) == (200, 1)
        message = await client.recv()
        assert message["type"] == "maintenance" and message["channel"] == "alerts"
        assert message["data"] == {"start": "18:00", "nodes": ["node001"]}
        assert {"timestamp", "offset", "epoch"} <= set(message)
        # Stored like any message: history replays it with its type.
        history = await client.request({"type": "history", "channel": "alerts", "limit": 1})
        assert history["publications"][-1]["type"] == "maintenance"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "job_update", "data": {"job_id": "1", "status": "COMPLETED"}}, "reserved_type"),
        ({"type": "pong"}, "reserved_type"),
        ({"type": "maintenance", "data": {}, "text": "beside data"}, "invalid_message"),
        ({"type": 7, "data": {}}, "invalid_field"),
    ],
)
async def test_the_servers_own_types_cannot_be_posted(
    app: SlurmcastApp, message: dict[str, Any], code: str
) -> None:
    async with Client.connect(app) as client:
        await client.subscribe("jobs")
        status, body = await http_json(
            app, "POST", "/broadcast", {"channel": "jobs", "message": message}
        )
        assert (status, body["success"], body["code"]) == (400, False, code)
        # Nothing was published: the next message on the channel is a later broadcast.
        await http_json(app, "POST", "/broadcast", {"channel": "jobs", "message": {"n": 1}})
        assert (await client.recv())["data"] == {"n": 1}


async def test_broadcast_all_reaches_every_client(app: SlurmcastApp) -> None:
    async with Client.connect(app) as a, Client.connect(app) as b:
        await a.subscribe("alerts")
        status, body = await http_json(
            app, "POST", "/broadcast", {"channel": "all", "message": {"m": 1}}
        )
        assert status == 200 and body["delivered"] == 2
        for client in (a, b):
            message = await client.recv()
            assert message["channel"] == "all" and message["data"] == {"m": 1}


async def test_broadcast_defaults_to_all(app: SlurmcastApp) -> None:
    async with Client.connect(app) as a:
        status, body = await http_json(app, "POST", "/broadcast", {"message": {"m": 2}})
        assert status == 200 and body["delivered"] == 1
        assert (await a.recv())["data"] == {"m": 2}


@pytest.mark.parametrize(
    ("body", "raw", "code"),
    [
        (None, b"{not json", "invalid_json"),
        ([1, 2], None, "not_an_object"),
        ({"channel": "jobs"}, None, "missing_message"),
        ({"channel": "jobs", "message": "hi"}, None, "invalid_field"),
        ({"channel": "gpus", "message": {}}, None, "unknown_channel"),
        ({"channel": 5, "message": {}}, None, "invalid_field"),
    ],
)
async def test_bad_broadcasts_get_400_with_json_error(
    app: SlurmcastApp, body: Any, raw: bytes | None, code: str
) -> None:
    status, reply = await http_json(app, "POST", "/broadcast", body, raw=raw)
    assert status == 400
    assert reply["success"] is False and reply["code"] == code and reply["message"]


async def test_body_over_limit_gets_413() -> None:
    async with running_server(http_max_body=1024) as app:
        status, reply = await http_json(
            app, "POST", "/broadcast", {"channel": "jobs", "message": {"x": "y" * 4096}}
        )
        assert status == 413 and reply["code"] == "body_too_large"


async def test_unknown_route_is_a_json_404(app: SlurmcastApp) -> None:
    status, reply = await http_json(app, "GET", "/nope")
    assert status == 404 and reply["success"] is False


async def test_health_counts_follow_clients(app: SlurmcastApp) -> None:
    status, health = await http_json(app, "GET", "/health")
    assert status == 200
    assert health["status"] == "healthy" and health["clients"] == 0
    assert set(health) >= {"status", "clients", "subscriptions", "uptime_s", "source"}
    assert health["source"]["kind"] == "simulator"
    assert set(health["source"]) >= {"kind", "last_success", "last_error"}
    async with Client.connect(app) as a:
        await a.subscribe("jobs", "metrics")
        async with Client.connect(app) as b:
            await b.subscribe("jobs")
            _, health = await http_json(app, "GET", "/health")
            assert health["clients"] == 2
            assert health["subscriptions"]["jobs"] == 2
            assert health["subscriptions"]["metrics"] == 1
        _, health = await eventually(
            lambda: http_json(app, "GET", "/health"), lambda r: r[1]["clients"] == 1
        )
        assert health["subscriptions"]["jobs"] == 1
    await eventually(lambda: http_json(app, "GET", "/health"), lambda r: r[1]["clients"] == 0)
