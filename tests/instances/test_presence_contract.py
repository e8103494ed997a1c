"""What every presence store promises (``ports.Presence``), run against each implementation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from slurmcast.instances.presence_local import LocalPresence
from slurmcast.instances.presence_redis import RedisPresence
from slurmcast.ports import Presence

from support.redis import REDIS_URL, shared_prefix

MakePresence = Callable[[], contextlib.AbstractAsyncContextManager[Presence]]


@contextlib.asynccontextmanager
async def local() -> AsyncIterator[Presence]:
    yield LocalPresence()


@contextlib.asynccontextmanager
async def in_redis() -> AsyncIterator[Presence]:
    async with shared_prefix() as prefix:
        redis = Redis.from_url(REDIS_URL)
        try:
            yield RedisPresence(redis, prefix, ttl=30)
        finally:
            await redis.aclose()


@pytest.fixture(params=[local, in_redis], ids=["local", "redis"])
def make_presence(request: pytest.FixtureRequest) -> MakePresence:
    make: MakePresence = request.param
    return make


COUNTS = {"clients": 3, "subscriptions": {"jobs": 2, "nodes": 1}, "leader": True}


async def test_nothing_reported_means_no_instance(make_presence: MakePresence) -> None:
    async with make_presence() as presence:
        assert await presence.instances() == {}


async def test_an_instance_reads_back_what_it_reported(make_presence: MakePresence) -> None:
    async with make_presence() as presence:
        await presence.report("a", COUNTS)
        assert await presence.instances() == {"a": COUNTS}


async def test_a_new_report_replaces_the_previous_one(make_presence: MakePresence) -> None:
    async with make_presence() as presence:
        await presence.report("a", COUNTS)
        await presence.report("a", {**COUNTS, "clients": 7})
        assert (await presence.instances())["a"]["clients"] == 7
