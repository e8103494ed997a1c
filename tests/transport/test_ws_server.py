"""The WebSocket protocol over real sockets, with a real client."""

from collections.abc import AsyncIterator

import pytest
from websockets.exceptions import ConnectionClosed

from slurmcast.app import SlurmcastApp

from support.server import Client, http_json, running_server


@pytest.fixture
async def app() -> AsyncIterator[SlurmcastApp]:
    async with running_server() as app:
        yield app


async def test_subscribe_unsubscribe_single_and_multiple(app: SlurmcastApp) -> None:
    async with Client.connect(app) as client:
        reply = await client.request({"type": "subscribe", "channel": "jobs"})
        position = reply.pop("position")
        assert reply == {"type": "subscribed", "channel": "jobs", "message": "Subscribed to jobs"}
        assert isinstance(position["offset"], int) and position["epoch"]
        await client.send({"type": "subscribe", "channels": ["nodes", "alerts"], "id": "s2"})
        first, second = await client.recv(), await client.recv()
        assert [(first["channel"], first["id"]), (second["channel"], second["id"])] == [
            ("nodes", "s2"),
            ("alerts", "s2"),
        ]
        _, health = await http_json(app, "GET", "/health")
        assert health["subscriptions"] == {
            "alerts": 1,
            "jobs": 1,
            "metrics": 0,
            "nodes": 1,
            "notifications": 0,
            "user": 0,
        }
        await client.send({"type": "unsubscribe", "channels": ["jobs", "nodes"], "id": 9})
        acks = [await client.recv(), await client.recv()]
        assert [(a["type"], a["channel"], a["id"]) for a in acks] == [
            ("unsubscribed", "jobs", 9),
            ("unsubscribed", "nodes", 9),
        ]
        reply = await client.request({"type": "unsubscribe", "channel": "alerts"})
        assert reply["type"] == "unsubscribed" and "id" not in reply
        _, health = await http_json(app, "GET", "/health")
        assert sum(health["subscriptions"].values()) == 0


async def test_ping_pong_with_and_without_id(app: SlurmcastApp) -> None:
    async with Client.connect(app) as client:
        assert await client.request({"type": "ping"}) == {"type": "pong"}
        assert await client.request({"type": "ping", "id": 123}) == {"type": "pong", "id": 123}


BAD_FRAMES = [
    ("{oops", "invalid_json"),
    ("[1, 2, 3]", "not_an_object"),
    ('"hello"', "not_an_object"),
    ('{"channel": "jobs"}', "missing_type"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "subscribe"}', "missing_channel"),
    ('{"type": "subscribe", "channel": "weather"}', "unknown_channel"),
    ('{"type": "subscribe", "channel": 42}', "invalid_field"),
    ('{"type": "subscribe", "channels": "jobs"}', "invalid_field"),
    ('{"type": 1}', "invalid_field"),
    ('{"type": "ping", "id": {"a": 1}}', "invalid_field"),
    ('{"type": "broadcast", "channel": "jobs", "message": {"x": 1}}', "forbidden"),
    (b'{"type": "ping"}', "binary_not_supported"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_input_gets_error_and_connection_stays_open(
    app: SlurmcastApp, frame: str | bytes, code: str
) -> None:
    async with Client.connect(app) as client, Client.connect(app) as bystander:
        await bystander.subscribe("jobs")
        reply = await client.request(frame)
        assert reply["type"] == "error" and reply["code"] == code, reply
        assert reply["message"]
        # The same connection keeps working...
        assert await client.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
        # ...and so does everyone else's.
        status, _ = await http_json(
            app, "POST", "/broadcast", {"channel": "jobs", "message": {"n": 1}}
        )
        assert status == 200
        message = await bystander.recv()
        assert message["data"] == {"n": 1}


async def test_error_reply_echoes_id(app: SlurmcastApp) -> None:
    async with Client.connect(app) as client:
        reply = await client.request({"type": "subscribe", "channel": "nope", "id": "x1"})
        assert reply["id"] == "x1" and reply["code"] == "unknown_channel"


async def test_oversized_frame_closes_only_that_connection_with_1009() -> None:
    async with (
        running_server(max_message_size=1024) as app,
        Client.connect(app) as big,
        Client.connect(app) as other,
    ):
        await big.send("x" * 2048)
        with pytest.raises(ConnectionClosed) as info:
            await big.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert await other.request({"type": "ping"}) == {"type": "pong"}


async def test_graceful_stop_closes_clients_with_1001() -> None:
    async with running_server() as app, Client.connect(app) as client:
        await client.subscribe("jobs")
        await app.stop()
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
