"""The Redis lease with several holders: one at a time, released or expired, fenced."""

from __future__ import annotations

from redis.asyncio import Redis

from slurmcast.instances.lease_redis import RedisLease

from support.redis import REDIS_URL, shared_prefix
from support.waiting import eventually


async def test_the_lease_has_one_holder_and_moves_when_released_or_expired() -> None:
    async with shared_prefix() as prefix:
        redis = Redis.from_url(REDIS_URL)
        try:
            key = f"{prefix}:lease"
            first, second = RedisLease(redis, key, 30), RedisLease(redis, key, 0.3)
            assert await first.acquire() and first.token
            assert not await second.acquire() and second.token is None
            assert await first.renew()
            await first.release()
            assert await second.acquire()
            assert not await first.renew(), "a lost lease cannot be renewed"
            # second's 0.3 s lease runs out without renewal
            await eventually(first.acquire, bool, timeout=10)
            assert not await second.renew()
        finally:
            await redis.aclose()
