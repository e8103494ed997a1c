"""The HTTP port's connection limits, over raw sockets: slow requests are cut, addresses capped.

Every deadline here is a setting of the server under test, never a bound on
how fast the test runs: each test waits for the server to close a connection
(with the suite's generous guard against hanging), not for time to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import aiohttp
import orjson
import pytest

from slurmcast.app import SlurmcastApp
from slurmcast.http.connections import LogThrottle

from support.server import WAIT, http_json, running_server
from support.waiting import eventually

QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
#: A second loopback address: a client that is not the one at its limit.
OTHER_ADDRESS = "127.0.0.2"
SLURMCAST = Path(sys.executable).with_name("slurmcast")

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
T = TypeVar("T")


@contextlib.asynccontextmanager
async def raw(
    app: SlurmcastApp | SimpleNamespace, local: str = "127.0.0.1"
) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", app.http.port, local_addr=(local, 0)
    )
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends before it closes the connection."""
    async with asyncio.timeout(WAIT):
        return await reader.read()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head, await reader.readexactly(length)


def timeout_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "timed out so far" in r.getMessage()]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]


async def test_requests_whose_headers_never_arrive_are_closed_and_others_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        running_server(**QUIET, http_header_timeout=0.5) as app,
        contextlib.AsyncExitStack() as stack,
    ):
        slow = [await stack.enter_async_context(raw(app)) for _ in range(5)]
        for _, writer in slow[:4]:
            writer.write(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: a")
        # The fifth sends nothing at all. A well-behaved client is served meanwhile.
        status, health = await http_json(app, "GET", "/health")
        assert status == 200 and health["status"] == "healthy"
        for reader, _ in slow:
            assert await until_closed(reader) == b""
        assert app.health()["http"]["timed_out"] == 5
    lines = timeout_lines(caplog)
    assert len(lines) == 1, lines  # one line, not one per connection
    assert "waiting for a request's headers for more than 0.5 s" in lines[0]
    assert "(1 timed out so far" in lines[0]


async def test_a_body_that_does_not_arrive_in_time_is_cut_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        running_server(**QUIET, http_body_timeout=0.5) as app,
        raw(app) as (reader, writer),
    ):
        writer.write(
            b"POST /broadcast HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"message": '
        )
        assert await until_closed(reader) == b""
        assert app.health()["http"]["timed_out"] == 1
        status, _ = await http_json(app, "POST", "/broadcast", {"message": {"n": 1}})
        assert status == 200
    (line,) = timeout_lines(caplog)
    assert "waiting for a request's body for more than 0.5 s" in line
    assert not tracebacks(caplog)


async def test_a_stalled_request_on_a_kept_alive_connection_is_closed() -> None:
    async with (
        running_server(**QUIET, http_header_timeout=0.5) as app,
        raw(app) as (reader, writer),
    ):
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and orjson.loads(body)["status"] == "healthy"
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert await until_closed(reader) == b""
        assert app.health()["http"]["timed_out"] == 1


async def test_a_stalled_request_pipelined_behind_another_is_closed() -> None:
    # The second request's first bytes come with the first request, before
    # the server knows where the first one ends.
    async with (
        running_server(**QUIET, http_header_timeout=0.5) as app,
        raw(app) as (reader, writer),
    ):
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n")
        sent = await until_closed(reader)
        assert sent.startswith(b"HTTP/1.1 200") and sent.count(b"HTTP/1.1") == 1


async def test_an_idle_kept_alive_connection_is_closed_without_counting_a_timeout() -> None:
    async with (
        running_server(**QUIET, http_header_timeout=0.5) as app,
        raw(app) as (reader, writer),
    ):
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200")
        assert await until_closed(reader) == b""
        assert app.health()["http"]["timed_out"] == 0


async def test_a_slow_but_steady_client_within_the_deadlines_is_served() -> None:
    async with (
        running_server(**QUIET, http_header_timeout=WAIT, http_body_timeout=WAIT) as app,
        raw(app) as (reader, writer),
    ):
        body = orjson.dumps({"message": {"text": "hello"}})
        request = (
            b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        for i in range(0, len(request), 7):  # a send each, as a slow client makes them
            writer.write(request[i : i + 7])
            await writer.drain()
        head, answer = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and orjson.loads(answer)["success"] is True
        assert app.health()["http"]["timed_out"] == 0


async def test_connections_over_the_per_address_limit_are_refused_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        running_server(**QUIET, http_max_connections_per_ip=3) as app,
        contextlib.AsyncExitStack() as stack,
    ):
        held = [await stack.enter_async_context(raw(app)) for _ in range(3)]
        for _, writer in held:
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and no more
        await eventually(awaitable(app.http.connections.stats), lambda s: s["connections"] == 3)
        for _ in range(2):
            async with raw(app) as (reader, writer):
                # Sent at once, as clients do: the answer must not be lost to a reset.
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                refused = await until_closed(reader)
            head, _, body = refused.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 429")
            assert orjson.loads(body)["code"] == "too_many_requests"
        # Another address is served meanwhile.
        connector = aiohttp.TCPConnector(local_addr=(OTHER_ADDRESS, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"http://127.0.0.1:{app.http.port}/health") as response,
        ):
            assert response.status == 200
            assert (await response.json())["http"] == {
                "connections": 4,
                "refused_per_ip": 2,
                "timed_out": 0,
            }
        # A connection that closes makes room for the next.
        held[0][1].close()
        await eventually(awaitable(app.http.connections.stats), lambda s: s["connections"] == 2)
        status, _ = await http_json(app, "GET", "/health")
        assert status == 200
    lines = [m for r in caplog.records if "refused an HTTP" in (m := r.getMessage())]
    assert len(lines) == 1, lines
    assert "127.0.0.1" in lines[0] and "limit of 3" in lines[0]


async def test_health_shows_the_connection_counters_to_admins_only() -> None:
    async with running_server(**QUIET, api_key="k" * 20) as app:
        _, public = await http_json(app, "GET", "/health")
        assert "http" not in public
        _, full = await http_json(app, "GET", "/health", headers={"X-API-Key": "k" * 20})
        assert set(full["http"]) == {"connections", "refused_per_ip", "timed_out"}
        assert full["http"]["connections"] >= 1


def test_the_log_throttle_logs_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    throttle = LogThrottle(logging.getLogger("slurmcast.test"), interval=60, clock=lambda: now[0])
    for n in range(1, 6):
        throttle.warning("event %d", n)
    now[0] += 59.9
    throttle.warning("event %d", 6)
    now[0] += 0.1
    throttle.warning("event %d", 7)
    assert [r.getMessage() for r in caplog.records] == ["event 1", "event 7"]


def awaitable(function: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def call() -> T:
        return function()

    return call


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def health_from_elsewhere(port: int) -> dict[str, Any] | None:
    connector = aiohttp.TCPConnector(local_addr=(OTHER_ADDRESS, 0))
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"http://127.0.0.1:{port}/health") as response,
        ):
            return cast("dict[str, Any]", await response.json())
    except aiohttp.ClientError:
        return None


async def test_the_limits_hold_in_the_real_server_process(tmp_path: Path) -> None:
    # `slurmcast serve` runs on uvloop, whose transports are not asyncio's classes.
    port = free_port()
    env = dict(
        os.environ,
        SLURMCAST_DATA_DIR=str(tmp_path / "data"),
        SLURMCAST_HOST="127.0.0.1",
        SLURMCAST_WS_PORT=str(free_port()),
        SLURMCAST_HTTP_PORT=str(port),
        SLURMCAST_HTTP_HEADER_TIMEOUT="0.5",
        SLURMCAST_HTTP_MAX_CONNECTIONS_PER_IP="2",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SLURMCAST), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        await eventually(lambda: health_from_elsewhere(port), lambda h: h is not None)
        app = SimpleNamespace(http=SimpleNamespace(port=port))
        async with raw(app) as (first, w1), raw(app) as (second, w2):
            for writer in (w1, w2):
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            await eventually(
                lambda: health_from_elsewhere(port),
                lambda h: cast("dict[str, Any]", h)["http"]["connections"] >= 2,
            )
            async with raw(app) as (reader, writer):
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await until_closed(reader)).startswith(b"HTTP/1.1 429")
            for reader in (first, second):
                assert await until_closed(reader) == b""
        health = await health_from_elsewhere(port)
        assert health is not None
        stats = health["http"]
        assert (stats["refused_per_ip"], stats["timed_out"]) == (1, 2)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
    text = log.read_text()
    assert text.count("refused an HTTP connection") == 1
    assert text.count("timed out so far") == 1
    assert "Traceback" not in text
