"""The polling lease in Redis: exactly one instance polls the Slurm cluster at a time.

``RedisLease`` is ``SET key token NX PX ttl``, renewed by its holder (a Lua
check-and-extend, so nobody extends a lease it lost). The token is random per
acquisition and doubles as the fencing token: the broker's commit script
refuses a poller's batch unless the lease still holds that token, so a
poller that was paused past its lease (GC, a stopped VM) cannot publish
transitions its successor also reports.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from slurmcast.brokers import redis_scripts


class RedisLease:
    """A lease in Redis. Redis errors propagate: the caller decides what an
    unreachable Redis means (the leader steps down once its lease has run out)."""

    def __init__(self, redis: Redis, key: str, ttl: float) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self._token: str | None = None
        self._renew = redis.register_script(redis_scripts.RENEW)
        self._release = redis.register_script(redis_scripts.RELEASE)

    @property
    def token(self) -> str | None:
        return self._token

    async def acquire(self) -> bool:
        token = secrets.token_hex(8)
        if await self.redis.set(self.key, token, nx=True, px=self.ttl_ms):
            self._token = token
            return True
        self._token = None
        return False

    async def renew(self) -> bool:
        if self._token is None:
            return False
        if await self._renew(keys=[self.key], args=[self._token, self.ttl_ms]):
            return True
        self._token = None
        return False

    async def release(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            await self._release(keys=[self.key], args=[token])
