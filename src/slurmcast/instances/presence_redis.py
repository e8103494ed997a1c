"""Client counts of every instance in Redis, for /health.

Each instance writes its own counts under ``<prefix>:presence:<id>`` with a
TTL a few report intervals long: a killed instance disappears from the
totals on its own, and nothing grows without bound.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis


class RedisPresence:
    def __init__(self, redis: Redis, prefix: str, ttl: float) -> None:
        self.redis = redis
        self.prefix = prefix + ":presence:"
        self.ttl_ms = int(ttl * 1000)

    async def report(self, instance: str, counts: dict[str, Any]) -> None:
        await self.redis.set(self.prefix + instance, orjson.dumps(counts), px=self.ttl_ms)

    async def instances(self) -> dict[str, dict[str, Any]]:
        keys = [key async for key in self.redis.scan_iter(match=self.prefix + "*", count=200)]
        if not keys:
            return {}
        values = await self.redis.mget(keys)
        reports = {}
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                name = key.decode() if isinstance(key, bytes) else key
                reports[name[len(self.prefix) :]] = orjson.loads(value)
        return reports
