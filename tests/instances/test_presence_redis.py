"""Presence in Redis: every instance sees every other; a silent one expires."""

from __future__ import annotations

from redis.asyncio import Redis

from slurmcast.instances.presence_redis import RedisPresence

from support.redis import REDIS_URL, shared_prefix
from support.waiting import eventually


async def test_instances_see_each_other_and_a_silent_one_expires() -> None:
    async with shared_prefix() as prefix:
        redis = Redis.from_url(REDIS_URL)
        try:
            a, b = RedisPresence(redis, prefix, ttl=30), RedisPresence(redis, prefix, ttl=0.2)
            await a.report("a", {"clients": 1})
            await b.report("b", {"clients": 2})
            assert await a.instances() == {"a": {"clients": 1}, "b": {"clients": 2}}
            await eventually(a.instances, lambda seen: set(seen) == {"a"}, timeout=10)
        finally:
            await redis.aclose()
