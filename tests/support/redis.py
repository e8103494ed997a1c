"""Redis for tests: the shared server (key prefixes per test), or a private one.

The shared server is ``SLURMCAST_TEST_REDIS`` (default redis://127.0.0.1:6379/0).
Each test uses a fresh random key prefix and deletes its keys afterwards, so
tests never touch anything else in it. When it cannot be reached, Redis tests
are skipped, or fail when SLURMCAST_REQUIRE_REDIS=1 (CI).

``PrivateRedis`` runs a ``redis-server`` of its own on a free port, without
persistence, for tests that stop and restart Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from support.waiting import eventually

REDIS_URL = os.environ.get("SLURMCAST_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("SLURMCAST_REQUIRE_REDIS") == "1"


def new_prefix() -> str:
    return f"sctest-{secrets.token_hex(5)}"


async def redis_unreachable_reason(url: str = REDIS_URL) -> str | None:
    client = Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
        return None
    except Exception as exc:
        return f"Redis at {url} is unreachable ({exc})"
    finally:
        await client.aclose()


async def require_redis() -> None:
    reason = await redis_unreachable_reason()
    if reason is not None:
        if REQUIRE_REDIS:
            pytest.fail(f"{reason}, and SLURMCAST_REQUIRE_REDIS=1")
        pytest.skip(f"{reason}; set SLURMCAST_REQUIRE_REDIS=1 to make this a failure")


async def delete_prefix(prefix: str, url: str = REDIS_URL) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def shared_prefix() -> AsyncIterator[str]:
    """A fresh key prefix on the shared Redis, deleted afterwards."""
    await require_redis()
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        await delete_prefix(prefix)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own: start, stop (as a crash: nothing persisted), start again."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            if REQUIRE_REDIS:
                pytest.fail("redis-server is not installed, and SLURMCAST_REQUIRE_REDIS=1")
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="slurmcast-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await eventually(lambda: redis_unreachable_reason(self.url), lambda r: r is None, 20)

    async def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
            self.process = None

    async def __aenter__(self) -> PrivateRedis:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
