"""What cluster.py checks besides wsload's counts: Redis's figures and exactly-once delivery.

RedisProbe reads Redis's CPU and command counts (``INFO``) and deletes a
row's keys (``SCAN`` + ``UNLINK``); a Tracker is a Python client on one
instance that records ``seq``, ``offset`` and ``epoch`` of every message, and
check_trackers() judges what the trackers of a row saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from benchlib import SetupError

#: Seconds the trackers keep listening after the last delivery, to catch duplicates.
DUPLICATE_GRACE = 0.5


# --------------------------------------------------------------------------- Redis


@dataclass(frozen=True, slots=True)
class RedisSample:
    cpu_s: float  # used_cpu_sys + used_cpu_user
    commands: int  # total_commands_processed (INFO itself counts: one per sample)
    clients: int  # connected_clients
    script_calls: int  # scripts run (commandstats of eval and evalsha)


class RedisProbe:
    """The few Redis commands the benchmark needs: INFO, SCAN, UNLINK."""

    def __init__(self, url: str) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:
            raise SetupError("redis-py is needed for the redis rows (pip install redis)") from exc
        self.url = url
        self.client = aioredis.Redis.from_url(url)
        self.port = int(self.client.connection_pool.connection_kwargs.get("port", 6379))

    async def check(self) -> dict[str, Any]:
        try:
            info = await self.client.info("server")
        except Exception as exc:
            raise SetupError(f"Redis at {self.url} does not answer: {exc!r}") from exc
        pid = int(info.get("process_id", 0))
        affinity: list[int] | None = None
        with contextlib.suppress(OSError):
            affinity = sorted(os.sched_getaffinity(pid)) if pid else None
        return {"version": info.get("redis_version"), "pid": pid, "cpu_affinity": affinity}

    async def sample(self) -> RedisSample:
        info = await self.client.info("cpu", "stats", "clients", "commandstats")
        scripts = [info.get(f"cmdstat_{name}", {}) for name in ("eval", "evalsha")]
        return RedisSample(
            float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            int(info["total_commands_processed"]),
            int(info["connected_clients"]),
            sum(int(stats.get("calls", 0)) for stats in scripts),
        )

    async def keys(self, prefix: str) -> list[bytes]:
        # Our prefixes are [a-z0-9-] only: nothing to escape in the pattern.
        return [key async for key in self.client.scan_iter(match=f"{prefix}*", count=1000)]

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.keys(prefix)
        for start in range(0, len(keys), 500):
            await self.client.unlink(*keys[start : start + 500])
        return len(keys)

    async def close(self) -> None:
        await self.client.aclose()


def tcp_connections_to(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to ``port`` (from /proc, IPv4 and IPv6)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    count = 0
    for table_name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table_name}").read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


class Tracked(Protocol):
    """The instance a Tracker listens to."""

    name: str

    @property
    def ws_url(self) -> str: ...


# --------------------------------------------------------------------------- trackers


class Tracker:
    """A Python client on one instance that records what it receives on ``jobs``."""

    def __init__(self, instance: Tracked) -> None:
        self.instance = instance
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None
        self.subscribed_at: tuple[str | None, int | None] = (None, None)
        #: (seq, epoch, offset) of each benchmark message, in arrival order.
        self.data: list[tuple[int, str | None, int | None]] = []
        #: (epoch, offset) of every positioned message on jobs, in arrival order.
        self.positions: list[tuple[str | None, int]] = []
        self.other: Counter[str] = Counter()
        self.closed: str | None = None
        self._target = 0
        self._reached = asyncio.Event()

    async def start(self, timeout: float) -> None:
        from websockets.asyncio.client import connect

        async with asyncio.timeout(timeout):
            self.ws = await connect(
                self.instance.ws_url, compression=None, ping_interval=None, max_size=None
            )
            await self.ws.send('{"type":"subscribe","channel":"jobs","id":"tracker"}')
            reply = orjson.loads(await self.ws.recv())
        if reply.get("type") != "subscribed" or reply.get("channel") != "jobs":
            raise RuntimeError(f"tracker on {self.instance.name} got {reply!r} to subscribe")
        position = reply.get("position") or {}
        self.subscribed_at = (position.get("epoch"), position.get("offset"))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                message = orjson.loads(raw)
                offset = message.get("offset")
                epoch = message.get("epoch")
                if message.get("channel") == "jobs" and isinstance(offset, int):
                    self.positions.append((epoch, offset))
                data = message.get("data")
                if (
                    message.get("type") == "broadcast"
                    and isinstance(data, dict)
                    and isinstance(data.get("seq"), int)
                    and "ts_us" in data
                ):
                    self.data.append((data["seq"], epoch, offset))
                    if len(self.data) >= self._target:
                        self._reached.set()
                else:
                    self.other[f"{message.get('channel')}/{message.get('type')}"] += 1
        except ConnectionClosed as exc:
            self.closed = repr(exc)
        finally:
            self._reached.set()

    async def wait_for(self, count: int, timeout: float) -> None:
        """Until ``count`` benchmark messages came, the connection closed, or ``timeout``."""
        self._target = count
        if len(self.data) >= count or self.task is None or self.task.done():
            return
        self._reached.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reached.wait(), timeout)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def check_trackers(trackers: Sequence[Tracker], count: int) -> tuple[list[str], list[str]]:
    """Errors and warnings from what the trackers saw of ``count`` publications."""
    errors: list[str] = []
    warnings: list[str] = []
    expected = set(range(count))
    reference: dict[int, tuple[str | None, int | None]] | None = None
    reference_name = ""
    for tracker in trackers:
        name = tracker.instance.name
        seqs = Counter(seq for seq, _, _ in tracker.data)
        missing = len(expected - seqs.keys())
        duplicated = sum(n - 1 for n in seqs.values() if n > 1)
        unexpected = len(seqs.keys() - expected)
        if missing or duplicated or unexpected:
            errors.append(
                f"tracker on {name}: {missing} of {count} publications missing, "
                f"{duplicated} duplicated, {unexpected} unexpected"
            )
        if tracker.closed is not None:
            errors.append(f"tracker on {name} was disconnected: {tracker.closed}")
        epochs = {epoch for epoch, _ in tracker.positions}
        if len(epochs) > 1:
            errors.append(f"tracker on {name}: messages of {len(epochs)} epochs on jobs")
        offsets = [offset for _, offset in tracker.positions]
        gaps = sum(1 for a, b in itertools.pairwise(offsets) if b != a + 1)
        if gaps:
            errors.append(f"tracker on {name}: offsets not consecutive at {gaps} places")
        sub_epoch, sub_offset = tracker.subscribed_at
        if offsets and sub_offset is not None and offsets[0] != sub_offset + 1:
            errors.append(
                f"tracker on {name}: subscribed at offset {sub_offset}, "
                f"first message at {offsets[0]}"
            )
        if tracker.positions and sub_epoch is not None and tracker.positions[0][0] != sub_epoch:
            errors.append(f"tracker on {name}: subscribed in epoch {sub_epoch}, got another")
        if tracker.other:
            shown = ", ".join(f"{n} {kind}" for kind, n in tracker.other.most_common(4))
            warnings.append(f"tracker on {name}: other messages during the run: {shown}")
        mapping = {seq: (epoch, offset) for seq, epoch, offset in tracker.data}
        if reference is None:
            reference, reference_name = mapping, name
        else:
            differ = sum(1 for seq in expected if mapping.get(seq) != reference.get(seq))
            if differ:
                errors.append(
                    f"{name} and {reference_name} gave {differ} of {count} publications "
                    "different (epoch, offset)"
                )
    return errors, warnings
