"""Clients that try to make the server hold memory or bandwidth for them.

Every test here talks to a real server over loopback. A hostile client must
be refused, rate-limited or closed; it must never leave state behind it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import gc
import logging
import os
import secrets
import socket
import struct
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode

from slurmcast.app import SlurmcastApp
from slurmcast.brokers.memory import MemoryBroker
from slurmcast.brokers.redis import RedisBroker
from slurmcast.transport.ws_connection import WsConnection

from support.rawws import RawClient
from support.redis import require_redis
from support.server import WAIT, Client, http_json, running_server, server_settings
from support.tokens import SECRET, hs256
from support.waiting import eventually

JWT = {"auth": "jwt", "jwt_secret": SECRET}
#: Rate limits that never get in the way of a test about something else.
UNLIMITED = {"rate_limit": 1e9, "rate_burst": 1_000_000}


def url(app: SlurmcastApp, query: str = "") -> str:
    return f"ws://127.0.0.1:{app.ws.port}/{query}"


def handshake(token: str | None = None, **extra: str) -> list[str]:
    key = base64.b64encode(os.urandom(16)).decode()
    target = f"/?token={token}" if token else "/"
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in extra.items():
        lines.append(f"{name.replace('_', '-')}: {value}")
    return lines


def send_request(port: int, lines: list[str], *, read: bool) -> bytes:
    """Send one HTTP request; read the answer until the server closes, or hang up at once."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        if not read:
            # RST instead of FIN: the server sees the client vanish mid-handshake.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def server_connections(app: SlurmcastApp) -> Callable[[], Awaitable[int]]:
    """A probe: the app's WebSocket connections still alive (open, handshaking or leaked):
    those the server counts, or any still reachable from anywhere (a leak)."""

    async def count() -> int:
        gc.collect()
        reachable = sum(
            1
            for thing in gc.get_objects()
            if isinstance(thing, WsConnection) and thing.server is app.ws
        )
        return max(reachable, len(app.ws.connections))

    return count


# -- 1. handshakes -------------------------------------------------------------------


async def test_refused_and_abandoned_handshakes_leave_nothing_behind() -> None:
    async with running_server(**JWT, allowed_origins="https://dash.example.org") as app:
        port, token = app.ws.port, hs256("alice")
        no_upgrade = [f"GET /?token={token} HTTP/1.1", "Host: 127.0.0.1"]
        for _ in range(20):
            answer = await asyncio.to_thread(send_request, port, no_upgrade, read=True)
            assert answer.startswith(b"HTTP/1.1 4"), answer[:40]
            foreign = handshake(token, Origin="https://evil.example.com")
            answer = await asyncio.to_thread(send_request, port, foreign, read=True)
            assert answer.startswith(b"HTTP/1.1 403"), answer[:40]
            await asyncio.to_thread(send_request, port, handshake(token), read=False)
        # Every one of those 60 requests carried a valid token; none may outlive
        # its handshake (each used to keep its connection and principal for good).
        await eventually(server_connections(app), lambda n: n == 0)
        headers = {"Authorization": f"Bearer {token}"}
        async with Client.connect(app, additional_headers=headers) as client:
            assert await client.request({"type": "ping"}) == {"type": "pong"}
            assert await server_connections(app)() == 1, "the probe sees a live connection"


async def test_half_open_handshakes_count_toward_the_per_address_limit() -> None:
    async with running_server(max_connections_per_ip=2) as app:
        silent = [socket.create_connection(("127.0.0.1", app.ws.port)) for _ in range(2)]
        try:
            for sock in silent:
                sock.sendall(b"GET / HTTP/1.1\r\n")  # ...and never the rest
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url(app), open_timeout=WAIT):
                    pass
            assert refused.value.response.status_code == 429
        finally:
            for sock in silent:
                sock.close()

        async def admitted() -> bool:
            try:
                async with connect(url(app), open_timeout=WAIT) as ws:
                    return await Client(ws).request({"type": "ping"}) == {"type": "pong"}
            except InvalidStatus:
                return False

        # Once the silent connections are gone, the address has room again.
        await eventually(admitted, bool)


@contextlib.asynccontextmanager
async def patient_server(**overrides: Any) -> AsyncIterator[SlurmcastApp]:
    """A server whose handshakes never time out: whatever closes a socket, it is not that."""
    with tempfile.TemporaryDirectory(prefix="slurmcast-test-") as data_dir:
        app = SlurmcastApp(server_settings(data_dir=data_dir, **overrides))
        app.ws.settings = dataclasses.replace(app.ws.settings, handshake_timeout=3600.0)
        await app.start()
        try:
            yield app
        finally:
            await app.stop()


def cut_at_once(sock: socket.socket) -> bool:
    """Whether the server hung up on this socket without a word."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


async def test_sockets_far_over_the_per_address_limit_are_cut_at_accept() -> None:
    async with patient_server(max_connections_per_ip=2) as app:
        port = app.ws.port
        sockets = [socket.create_connection(("127.0.0.1", port), WAIT) for _ in range(4)]
        try:
            # Two within the limit, two more that would be answered 429: all kept...
            extra = socket.create_connection(("127.0.0.1", port), WAIT)
            sockets.append(extra)
            # ...but a fifth, twice over the limit, costs the server nothing more.
            assert await asyncio.to_thread(cut_at_once, extra)
        finally:
            for sock in sockets:
                sock.close()


# -- 2. private channels nobody publishes on -------------------------------------------


def stored_user_channels(app: SlurmcastApp) -> set[str]:
    """The ``user:`` channels the broker keeps anything for, in this process."""
    broker = app.broker
    if broker.kind == "memory":
        memory = cast(MemoryBroker, broker)
        return {c for c in [*memory._channels, *memory._states] if c.startswith("user:")}
    return {c for c in cast(RedisBroker, broker)._delivered if c.startswith("user:")}


async def redis_user_keys(app: SlurmcastApp) -> list[bytes]:
    broker = cast(RedisBroker, app.broker)
    pattern = f"{app.settings.redis_prefix}:*user:*"
    return [key async for key in broker.redis.scan_iter(match=pattern, count=1000)]


@pytest.mark.parametrize("broker", ["memory", "redis"])
async def test_subscribing_to_unused_user_channels_keeps_nothing(broker: str) -> None:
    if broker == "redis":
        await require_redis()
    async with running_server(broker=broker, **UNLIMITED) as app, Client.connect(app) as client:
        names = [f"user:x{secrets.token_hex(6)}" for _ in range(96)]
        for start in range(0, len(names), 32):
            batch = names[start : start + 32]
            await client.send({"type": "subscribe", "channels": batch})
            for _ in batch:
                assert (await client.recv())["type"] == "subscribed"
            for name in batch[:4]:
                reply = await client.request({"type": "history", "channel": name, "limit": 10})
                assert reply["type"] == "history" and reply["publications"] == []
            await client.send({"type": "unsubscribe", "channels": batch})
            for _ in batch:
                assert (await client.recv())["type"] == "unsubscribed"
        assert stored_user_channels(app) == set()
        if broker == "redis":
            assert await redis_user_keys(app) == []


# -- 3. control frames -------------------------------------------------------------------


def flood_pings(client: RawClient, count: int, payload: bytes = b"") -> int:
    """Send PING frames without reading; returns how many went out before the server hung up."""
    frame = Frame(Opcode.PING, payload).serialize(mask=True)
    for sent in range(count):
        try:
            client.sock.sendall(frame)
        except OSError:
            return sent
    return count


async def test_ping_frames_count_toward_the_rate_limit() -> None:
    limits = {"rate_limit": 60, "rate_burst": 3, "flood_warnings": 2}
    async with running_server(**limits) as app:
        client = await asyncio.to_thread(RawClient, app.ws.port)
        try:
            await asyncio.to_thread(flood_pings, client, 50)
            assert await asyncio.to_thread(client.read_until_close) == 1008
        finally:
            client.close()


async def closed_as_slow(caplog: pytest.LogCaptureFixture) -> None:
    """Wait until the server has closed a client as a slow consumer.

    The client must not read before: reading while the server still writes
    would drain the very backlog that makes it slow.
    """

    async def slow_consumers() -> int:
        return sum("slow consumer" in r.getMessage() for r in caplog.records)

    await eventually(slow_consumers, bool)


async def test_unread_pongs_count_toward_the_slow_consumer_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="slurmcast.ws")
    settings = {
        **UNLIMITED,
        "client_buffer_limit": 64 * 1024,
        "slow_client_grace": 30.0,
        # No keepalive ping in the way: the only close that can come is ours.
        "ping_interval": 3600.0,
    }
    async with running_server(**settings) as app:
        client = await asyncio.to_thread(RawClient, app.ws.port, rcvbuf=4096)
        try:
            # 25 MiB of pings: their pongs used to pile up in the server unread.
            # (The kernel's socket buffers take the first few MiB of them.)
            await asyncio.to_thread(flood_pings, client, 200_000, b"p" * 125)
            await closed_as_slow(caplog)
            assert await asyncio.to_thread(client.read_until_close) == 4008
        finally:
            client.close()


# -- 4. replies much bigger than requests ------------------------------------------------


async def fill_history(app: SlurmcastApp, channel: str, count: int, size: int) -> None:
    for n in range(count):
        status, _ = await http_json(
            app,
            "POST",
            "/broadcast",
            {"channel": channel, "message": {"n": n, "pad": "x" * size}},
        )
        assert status == 200


async def test_history_requests_are_charged_by_the_size_of_their_answer() -> None:
    async with running_server(history_size="jobs=1000", rate_limit=60, rate_burst=10) as app:
        await fill_history(app, "jobs", 40, 16 * 1024)  # 640 KiB of history
        async with Client.connect(app, max_size=None) as client:
            for n in range(10):  # within the burst, counting one token per message
                await client.send({"type": "history", "channel": "jobs", "limit": 1000, "id": n})
            answers = [await client.recv() for _ in range(10)]
        served = [a for a in answers if a["type"] == "history"]
        limited = [a for a in answers if a.get("code") == "rate_limited"]
        # The first answer is served in full; it costs enough that most of the
        # rest must wait (before, all ten 640 KiB answers went out).
        assert len(served[0]["publications"]) == 40
        assert limited and len(served) <= 2, [a["type"] for a in answers]


async def test_unread_replies_count_toward_the_slow_consumer_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="slurmcast.ws")
    settings = {
        **UNLIMITED,
        "client_buffer_limit": 256 * 1024,
        "slow_client_grace": 30.0,
        "ping_interval": 3600.0,
    }
    async with running_server(history_size="jobs=1000", **settings) as app:
        await fill_history(app, "jobs", 40, 16 * 1024)
        client = await asyncio.to_thread(RawClient, app.ws.port, rcvbuf=4096)
        try:
            for _ in range(20):  # 13 MiB of answers
                client.send_text('{"type":"history","channel":"jobs","limit":1000}')
            await closed_as_slow(caplog)
            assert await asyncio.to_thread(client.read_until_close) == 4008
        finally:
            client.close()
