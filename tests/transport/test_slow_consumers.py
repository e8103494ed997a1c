"""A client that stops reading must not delay anyone else, and is closed alone."""

import asyncio
import logging

import pytest

from support.metrics import scrape
from support.rawws import RawClient
from support.server import Client, http_json, running_server
from support.waiting import eventually

MESSAGES = 40
PAYLOAD = "x" * (256 * 1024)


async def test_stalled_client_is_closed_with_4008_and_others_get_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="slurmcast.ws")
    async with running_server(client_buffer_limit=64 * 1024, slow_client_grace=30.0) as app:
        stalled = await asyncio.to_thread(RawClient, app.ws.port, rcvbuf=4096)
        try:
            stalled.send_text('{"type":"subscribe","channel":"jobs"}')
            _, ack = await asyncio.to_thread(stalled.read_frame)
            assert b'"subscribed"' in ack
            async with Client.connect(app, max_size=None) as healthy:
                await healthy.subscribe("jobs")
                received: list[int] = []

                async def read_all() -> None:
                    while len(received) < MESSAGES:
                        received.append((await healthy.recv())["data"]["seq"])

                reader = asyncio.create_task(read_all())
                for seq in range(MESSAGES):
                    # Each POST returns only after the publication was written to
                    # every subscriber: a blocking write would stall here.
                    status, _ = await http_json(
                        app,
                        "POST",
                        "/broadcast",
                        {"channel": "jobs", "message": {"seq": seq, "pad": PAYLOAD}},
                    )
                    assert status == 200
                await reader
                assert received == list(range(MESSAGES))
                assert any("slow consumer" in r.getMessage() for r in caplog.records)
                # The stalled client finds its close frame behind what it never read.
                assert await asyncio.to_thread(stalled.read_until_close) == 4008
                closes = (await scrape(app)).get("slurmcast_ws_slow_consumer_closes_total")
                assert closes == 1
                stalled.close()
                await eventually(
                    lambda: http_json(app, "GET", "/health"), lambda r: r[1]["clients"] == 1
                )
        finally:
            stalled.close()


async def test_dead_connection_is_dropped_by_keepalive() -> None:
    async with running_server(ping_interval=0.2, ping_timeout=0.2) as app:
        silent = await asyncio.to_thread(RawClient, app.ws.port)
        try:
            await eventually(
                lambda: http_json(app, "GET", "/health"), lambda r: r[1]["clients"] == 1
            )
            # It never answers pings, so the server must give up on it.
            await eventually(
                lambda: http_json(app, "GET", "/health"), lambda r: r[1]["clients"] == 0
            )
        finally:
            silent.close()


async def test_live_client_survives_keepalive() -> None:
    async with (
        running_server(ping_interval=0.1, ping_timeout=5) as app,
        Client.connect(app, ping_interval=None) as client,
    ):
        await client.subscribe("jobs")

        async def server_latencies() -> list[float]:
            return [conn.latency for conn in app.ws.connections]

        # A measured latency means the server pinged and this client ponged.
        await eventually(server_latencies, lambda values: values and values[0] > 0)
        assert await client.request({"type": "ping"}) == {"type": "pong"}
        _, health = await http_json(app, "GET", "/health")
        assert health["clients"] == 1
