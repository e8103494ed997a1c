"""What every polling lease promises (``ports.Lease``), run against each implementation.

The Redis lease's own behaviour with several holders (exclusion, expiry,
fencing tokens) is in ``test_lease_redis.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from slurmcast.instances.lease_redis import RedisLease
from slurmcast.instances.lease_sole import SoleLease
from slurmcast.ports import Lease

from support.redis import REDIS_URL, shared_prefix

MakeLease = Callable[[], contextlib.AbstractAsyncContextManager[Lease]]


@contextlib.asynccontextmanager
async def sole() -> AsyncIterator[Lease]:
    yield SoleLease()


@contextlib.asynccontextmanager
async def in_redis() -> AsyncIterator[Lease]:
    async with shared_prefix() as prefix:
        redis = Redis.from_url(REDIS_URL)
        try:
            yield RedisLease(redis, f"{prefix}:lease", 30)
        finally:
            await redis.aclose()


@pytest.fixture(params=[sole, in_redis], ids=["sole", "redis"])
def make_lease(request: pytest.FixtureRequest) -> MakeLease:
    make: MakeLease = request.param
    return make


async def test_a_free_lease_is_acquired_renewed_released_and_acquired_again(
    make_lease: MakeLease,
) -> None:
    async with make_lease() as lease:
        assert await lease.acquire()
        assert await lease.renew()
        await lease.release()
        assert await lease.acquire()
        await lease.release()


async def test_releasing_a_lease_not_held_is_harmless(make_lease: MakeLease) -> None:
    async with make_lease() as lease:
        await lease.release()
        await lease.release()
        assert await lease.acquire()


async def test_the_token_is_stable_while_held(make_lease: MakeLease) -> None:
    async with make_lease() as lease:
        assert await lease.acquire()
        token = lease.token
        assert await lease.renew()
        assert lease.token == token
