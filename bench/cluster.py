"""Cluster benchmark: slurmcast instances sharing one Redis, against one in-memory instance.

For each row of the matrix -- one instance with the in-process broker
(``--broker memory``, the baseline), then 1, 2 and 3 instances sharing one
Redis (``--broker redis``, a fresh ``--redis-prefix`` per row) -- this

1. waits (briefly) for the machine to be idle, then starts the instances, all
   pinned to core 0 (``taskset -c 0``) like fanout.py's server, the simulated
   cluster made quiet (``--*-interval 3600``), keepalive pings moved out of the
   measurement (``--ping-interval 600``) and the connection limits raised
   (``--max-connections(-per-ip) 100000``: every client comes from 127.0.0.1,
   and the per-address default of 200 would refuse the rest);
2. runs one C load generator wsload (../shared/tools/wsload.c, compiled into
   bench/.build/) per instance, pinned to core 1: N clients in total, split
   evenly over the instances, all subscribed to ``jobs``; plus one *tracker*
   per instance, a Python client in this process that records the ``seq``,
   ``offset`` and ``epoch`` of every message it gets;
3. **max phase**: publishes M messages through ``POST /broadcast``, round-robin
   over the instances' HTTP APIs, in a closed loop of ``--publishers``
   concurrent POSTs (from this process, on core 1); a message POSTed to one
   instance must reach the subscribers of every instance;
4. **fixed phase** (``--fixed-seconds``, 0 skips it): a fresh set of clients,
   messages published open-loop at a fixed rate, by default half the memory
   baseline's max-phase publications/s, so every row is measured at the same
   offered load (``sched_us`` carries the scheduled publish time);
5. checks that every client got every message exactly once: wsload counts
   the messages of each connection (all must have exactly M, none closed);
   the trackers check, by ``seq``, that nothing is missing or duplicated
   (they wait a moment after the last delivery, to see late duplicates), that
   offsets follow the ``subscribed`` position without a gap, and that every
   instance gave each publication the same (epoch, offset); every POST must
   answer ``success`` and, as ``delivered``, the number of clients of the
   instance it went to; instance logs must be clean;
6. stops the instances and deletes the row's Redis keys (``SCAN`` for the
   prefix, then ``UNLINK``); Redis itself is never flushed or restarted.

Reported per phase: delivered messages/s over all clients (N x M / (last
delivery - first publish), from wsload), end-to-end latency p50/p99 (wsload
reports per instance; the table shows the worst instance, an upper bound of
the percentile over all clients; the JSON has each), each instance's CPU
(/proc/<pid>/stat over the publishing window) and the instances' CPU per
delivered message, Redis CPU (``INFO cpu`` used_cpu_sys + used_cpu_user over
the same window) and Redis CPU per publication, also net of what Redis used at
rest in the ``--idle-seconds`` (2) before publishing, with every client
connected. The JSON adds Redis commands and scripts per publication (more
than the broker's 1 script means someone else used that Redis meanwhile: the
run is flagged), each instance's connections to Redis, POST latency, and each
instance's figures. "other CPU" is the busy time of both cores not accounted
for by the instances, Redis, the wsloads and this process; when it is high
the run is flagged (``yes*``) as disturbed. The memory row measures Redis too,
as a control: it should stay idle.

On a 2-core machine this cannot show horizontal scaling: every instance shares
core 0, so the rows compare the *cost* of the same fan-out done by 1, 2 or 3
processes through Redis with the in-process broker. Redis is not pinned (it
is not ours to move); its CPU is measured and counted.

Usage::

    .venv/bin/python bench/cluster.py                        # memory baseline + 1, 2, 3 instances
    .venv/bin/python bench/cluster.py --instances 2 --clients 3000 --messages 300
    .venv/bin/python bench/cluster.py --no-memory-baseline --fixed-seconds 0
    .venv/bin/python bench/cluster.py --json-out bench/results/cluster.json

Needs what fanout.py needs (Linux, gcc, taskset, the venv, wsload's source)
plus a Redis at ``--redis-url`` (default redis://127.0.0.1:6379/0) for the
redis rows, and redis-py (a dependency of slurmcast's Redis broker). Per-run
instance logs are kept in bench/.build/logs/cluster-*.log, each instance's
SQLite data in bench/.build/cluster/ (both git-ignored).

Exit status: 0 when every run delivered everything exactly once, 1 when
something failed (see the ``errors`` of each run), 2 for a usage or setup
error (no Redis, slurmcast without ``--broker``, ...), 130 on Ctrl-C, 143 on
SIGTERM; every process it started is stopped in all cases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from benchlib import (
    BUILD_DIR,
    CLIENT_CORE,
    LOG_DIR,
    REPO_DIR,
    SERVER_CORE,
    MessageFactory,
    PostLog,
    ServerProcess,
    SetupError,
    WsLoad,
    add_run_arguments,
    check_fd_limit,
    client_session,
    core_times,
    cores_busy,
    fixed_phase_count,
    fmt,
    free_port,
    log,
    machine_info,
    machine_line,
    ok_cell,
    percentile,
    phase_cell,
    post_json,
    prepare_load,
    proc_cpu_seconds,
    publish_closed_loop,
    publish_fixed_rate,
    run_benchmark,
    run_settings,
    self_cpu_seconds,
    settings_json,
    status_text,
    wait_for_counts,
    wait_until_idle,
    write_json,
    wsload_errors,
)

DATA_DIR = BUILD_DIR / "cluster"
#: Every process this script started, for a last-resort SIGKILL (see main()).
STARTED: list[ServerProcess | WsLoad] = []
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


# --------------------------------------------------------------------------- instances


class Instance(ServerProcess):
    """One slurmcast instance of a row, pinned to core 0 by benchlib's ServerProcess."""

    def __init__(
        self, label: str, index: int, settings: Settings, broker_args: Sequence[str]
    ) -> None:
        data_dir = DATA_DIR / f"{label}-{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        for stale in data_dir.glob("*.db*"):
            stale.unlink()
        extra = ["--max-connections", "100000", "--max-connections-per-ip", "100000"]
        extra += ["--data-dir", str(data_dir), *broker_args, *settings.slurmcast_args]
        super().__init__("slurmcast", settings.clients, settings.ping_interval, extra)
        self.name = f"{label}#{index}"
        self.log_path = LOG_DIR / f"cluster-{label}-{index}.log"
        STARTED.append(self)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


def distinct_ports(instances: Sequence[Instance]) -> None:
    """free_port() may hand two instances the same port; draw again until all differ."""
    used: set[int] = set()
    for inst in instances:
        while inst.ws_port in used:
            inst.ws_port = free_port()
        used.add(inst.ws_port)
        while inst.http_port in used:
            inst.http_port = free_port()
        used.add(inst.http_port)


async def start_instances(instances: Sequence[Instance], session: aiohttp.ClientSession) -> None:
    try:
        async with asyncio.TaskGroup() as group:
            for inst in instances:
                group.create_task(inst.start(session))
    except* SetupError as failures:
        raise failures.exceptions[0] from None


# --------------------------------------------------------------------------- trackers


class Tracker:
    """A Python client on one instance that records what it receives on ``jobs``."""

    def __init__(self, instance: Instance) -> None:
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


# --------------------------------------------------------------------------- publishing


@dataclass(slots=True)
class PublishStats(PostLog):
    """PostLog plus, per instance index, how often each "delivered" value was answered."""

    delivered: dict[int, Counter[int]] = field(default_factory=dict)


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, index: int, stats: PublishStats
) -> None:
    """POST one message to the instance ``index``; record the "delivered" it answers."""
    answer = await post_json(session, url, body, stats, f"POST {url}")
    if answer is not None:
        stats.delivered.setdefault(index, Counter())[int(answer.get("delivered", -1))] += 1


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True, slots=True)
class Snapshot:
    wall: float
    instances: tuple[tuple[float, float], ...]  # (user, sys) seconds of each instance
    redis: RedisSample | None
    publisher: float
    cores: dict[int, tuple[float, float, float]]

    @classmethod
    async def take(cls, instances: Sequence[Instance], redis: RedisProbe | None) -> Snapshot:
        redis_sample = await redis.sample() if redis is not None else None
        return cls(
            time.monotonic(),
            tuple(proc_cpu_seconds(inst.pid) for inst in instances),
            redis_sample,
            self_cpu_seconds(),
            core_times(),
        )


@dataclass(slots=True)
class InstanceFigures:
    name: str
    clients: int
    cpu_pct: float = float("nan")
    sys_pct: float = float("nan")
    msgs_per_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    sched_p99_ms: float | None = None
    received: int = 0
    min_per_conn: int | None = None
    max_per_conn: int | None = None
    other_text: int = 0
    delivered_answers: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class ClusterResult:
    broker: str
    instances: int
    clients: int
    mode: str  # "max" (closed loop) or "fixed" (open loop at rate)
    messages: int
    repeat: int = 1
    rate_pubs_per_s: float | None = None
    msgs_per_s: float = 0.0
    driver_msgs_per_s: float = 0.0
    pubs_per_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    best_p50_ms: float = float("nan")
    best_p99_ms: float = float("nan")
    sched_p99_ms: float | None = None
    post_p50_ms: float = float("nan")
    post_p99_ms: float = float("nan")
    server_cpu_pct: float = float("nan")
    server_us_per_delivery: float = float("nan")
    redis_cpu_pct: float | None = None
    redis_us_per_pub: float | None = None
    #: Commands Redis processed per publication: much more than the broker
    #: needs means someone else used Redis meanwhile (and its CPU is inflated).
    redis_commands_per_pub: float | None = None
    #: Scripts run per publication: 1 (the commit) unless someone else used Redis.
    redis_scripts_per_pub: float | None = None
    #: Redis's connected_clients before publishing (everyone's, not only ours).
    redis_clients: int | None = None
    #: Connections each instance holds to Redis at the end of the phase.
    redis_connections: list[int] = field(default_factory=list)
    #: With every client connected, before publishing (``--idle-seconds``):
    idle_server_cpu_pct: float | None = None
    idle_redis_cpu_pct: float | None = None
    #: Redis CPU per publication less what Redis used while idle.
    redis_net_us_per_pub: float | None = None
    wsload_cpu_pct: float = float("nan")
    publisher_cpu_pct: float = float("nan")
    core_busy_pct: dict[int, float] = field(default_factory=dict)
    steal_pct: float | None = None
    other_cpu_pct: float | None = None
    window_s: float = 0.0
    expected: int = 0
    received: int = 0
    per_instance: list[InstanceFigures] = field(default_factory=list)
    redis_prefix: str | None = None
    redis_keys_deleted: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def label(self) -> str:
        return f"{self.broker} x{self.instances}"


def split(total: int, parts: int) -> list[int]:
    """``total`` clients over ``parts`` instances, as evenly as possible."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class InstanceDied(RuntimeError):
    """An instance exited during a run."""


async def wait_all_done(
    instances: Sequence[Instance], wsloads: Sequence[WsLoad], timeout: float
) -> list[str]:
    """Wait for every wsload's DONE; give up at once if an instance exits meanwhile."""
    done = [asyncio.ensure_future(w.done(timeout)) for w in wsloads]
    dead = [asyncio.ensure_future(inst.proc.wait()) for inst in instances if inst.proc]
    try:
        pending: set[asyncio.Future[Any]] = set(done)
        while pending:
            finished, _ = await asyncio.wait(
                pending | set(dead), return_when=asyncio.FIRST_COMPLETED
            )
            for inst, waiter in zip(instances, dead, strict=True):
                if waiter in finished:
                    code = inst.proc.returncode if inst.proc else None
                    raise InstanceDied(f"{inst.name} exited with status {code} mid-run")
            pending -= finished
    finally:
        for future in dead + done:
            if not future.done():
                future.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await future
    errors = []
    for wsload, future in zip(wsloads, done, strict=True):
        if future.cancelled():
            continue
        exc = future.exception()
        if exc is not None:
            errors.append(f"wsload {wsloads.index(wsload)} did not finish: {exc!r}")
    return errors


@dataclass(frozen=True, slots=True)
class Row:
    """What the phases of one row share."""

    broker: str
    instances: Sequence[Instance]
    session: aiohttp.ClientSession
    redis: RedisProbe | None
    wsload_bin: Path
    settings: Settings
    messages: MessageFactory


async def run_phase(row: Row, mode: str, count: int, rate: float | None) -> ClusterResult:
    instances, broker, session, redis = row.instances, row.broker, row.session, row.redis
    settings, messages = row.settings, row.messages
    clients = settings.clients
    shares = split(clients, len(instances))
    result = ClusterResult(broker, len(instances), clients, mode, count, rate_pubs_per_s=rate)
    result.expected = clients * count
    result.per_instance = [
        InstanceFigures(inst.name, n) for inst, n in zip(instances, shares, strict=True)
    ]
    counts = await wait_for_counts(instances, session, [0] * len(instances), 15)
    if any(c[0] != 0 for c in counts):
        result.errors.append(f"clients still connected before the run: {counts}")
    trackers = [Tracker(inst) for inst in instances]
    wsloads = [WsLoad(row.wsload_bin) for _ in instances]
    STARTED.extend(wsloads)
    try:
        for tracker in trackers:
            await tracker.start(settings.connect_timeout)
        for wsload, inst, n in zip(wsloads, instances, shares, strict=True):
            await wsload.start(
                inst.ws_port, n, count, settings.connect_timeout, settings.recv_timeout
            )
        for wsload, inst, n in zip(wsloads, instances, shares, strict=True):
            ready = await wsload.ready(settings.connect_timeout + 15)
            if ready.get("acks") != n or ready.get("errors", 0) != 0:
                detail = " | ".join(wsload.stderr_lines[:3])
                raise RuntimeError(f"clients of {inst.name} could not subscribe: {ready} {detail}")
        wanted = [n + 1 for n in shares]  # + the tracker
        counts = await wait_for_counts(instances, session, wanted, 10)
        if [c[0] for c in counts] != wanted:
            result.errors.append(f"instances count {counts} (clients, on jobs), not {wanted}")
        urls = [f"{inst.base_url}/broadcast" for inst in instances]
        stats = PublishStats()

        async def send(seq: int, body: bytes) -> None:
            index = seq % len(urls)  # round-robin over the instances
            await post(session, urls[index], body, index, stats)

        idle = await Snapshot.take(instances, redis)
        await asyncio.sleep(settings.idle_seconds)
        before = await Snapshot.take(instances, redis)
        if mode == "max":
            await publish_closed_loop(messages, count, settings.publishers, send)
        else:
            assert rate is not None
            await publish_fixed_rate(messages, count, rate, send)
        remaining = settings.recv_timeout - (time.monotonic() - before.wall) + 10
        result.errors.extend(await wait_all_done(instances, wsloads, max(remaining, 10)))
        after = await Snapshot.take(instances, redis)
        for tracker in trackers:
            await tracker.wait_for(count, 10)
        await asyncio.sleep(DUPLICATE_GRACE)
        final_counts = await wait_for_counts(instances, session, wanted, 0)
        if redis is not None and broker == "redis":
            port = redis.port
            result.redis_connections = [tcp_connections_to(i.pid, port) for i in instances]
        reports = await asyncio.gather(*(w.finish() for w in wsloads))
    except BaseException:
        await asyncio.gather(*(w.kill() for w in wsloads), return_exceptions=True)
        raise
    finally:
        await asyncio.gather(*(t.close() for t in trackers), return_exceptions=True)
    summarise(result, before, after, stats, reports, wsloads)
    subtract_idle(result, idle, before, after)
    if [c[0] for c in final_counts] != wanted:
        result.errors.append(f"{final_counts} (clients, on jobs) at the end, expected {wanted}")
    tracker_errors, tracker_warnings = check_trackers(trackers, count)
    result.errors.extend(tracker_errors)
    result.warnings.extend(tracker_warnings)
    check_delivered(result, stats, wanted)
    add_warnings(result)
    return result


def summarise(
    result: ClusterResult,
    before: Snapshot,
    after: Snapshot,
    stats: PublishStats,
    reports: Sequence[dict[str, Any]],
    wsloads: Sequence[WsLoad],
) -> None:
    """Fill ``result`` from the CPU snapshots, the POSTs and wsload's reports."""
    window = after.wall - before.wall
    result.window_s = window
    result.driver_msgs_per_s = result.expected / window if window > 0 else 0.0
    server_cpu = 0.0
    for figures, (u0, s0), (u1, s1) in zip(
        result.per_instance, before.instances, after.instances, strict=True
    ):
        figures.cpu_pct = 100 * (u1 + s1 - u0 - s0) / window
        figures.sys_pct = 100 * (s1 - s0) / window
        server_cpu += u1 + s1 - u0 - s0
    result.server_cpu_pct = 100 * server_cpu / window
    if before.redis is not None and after.redis is not None:
        redis_cpu = after.redis.cpu_s - before.redis.cpu_s
        result.redis_cpu_pct = 100 * redis_cpu / window
        result.redis_us_per_pub = 1e6 * redis_cpu / result.messages
        commands = after.redis.commands - before.redis.commands - 1
        script_calls = after.redis.script_calls - before.redis.script_calls
        result.redis_scripts_per_pub = script_calls / result.messages
        result.redis_commands_per_pub = commands / result.messages
        result.redis_clients = before.redis.clients
    result.publisher_cpu_pct = 100 * (after.publisher - before.publisher) / window
    busy = cores_busy(before.cores, after.cores)
    result.core_busy_pct = busy
    steal = cores_busy(before.cores, after.cores, 2)
    result.steal_pct = max(steal.values()) if steal else None
    # wsload's CPU figure covers first delivery -> its end; scale it to the window.
    wsload_cpu = sum(float(r.get("phase2_cpu_s", 0.0)) for r in reports)
    result.wsload_cpu_pct = 100 * wsload_cpu / window
    ours = result.server_cpu_pct + result.publisher_cpu_pct + result.wsload_cpu_pct
    ours += result.redis_cpu_pct or 0.0
    result.other_cpu_pct = sum(busy.get(core, 0.0) for core in (SERVER_CORE, CLIENT_CORE)) - ours
    result.post_p50_ms = percentile(stats.post_ms, 50)
    result.post_p99_ms = percentile(stats.post_ms, 99)
    result.errors.extend(stats.failures[:10])
    if stats.posts != result.messages:
        result.errors.append(f"{stats.posts} of {result.messages} POSTs succeeded")
    spans = []
    for index, (figures, report) in enumerate(zip(result.per_instance, reports, strict=True)):
        lat = report.get("lat_ms", {})
        figures.msgs_per_s = float(report.get("msgs_per_s", 0.0))
        figures.p50_ms = float(lat.get("p50", float("nan")))
        figures.p99_ms = float(lat.get("p99", float("nan")))
        if result.mode == "fixed":
            figures.sched_p99_ms = float(report.get("lat_sched_ms", {}).get("p99", float("nan")))
        figures.received = int(report.get("received", 0))
        figures.min_per_conn = report.get("min_per_conn")
        figures.max_per_conn = report.get("max_per_conn")
        figures.other_text = int(report.get("other_text", 0))
        figures.delivered_answers = dict(stats.delivered.get(index, {}))
        spans.append(float(report.get("deliver_span_s", 0.0)))
        result.received += figures.received
        name, n, count = figures.name, figures.clients, result.messages
        if figures.received != n * count:
            result.errors.append(f"{name}: wsload received {figures.received} of {n * count}")
        result.errors.extend(f"{name}: {error}" for error in wsload_errors(report, n, count))
        if figures.other_text:
            result.warnings.append(f"{name}: clients got {figures.other_text} other text frames")
        if wsloads[index].stderr_lines:
            result.errors.extend(
                f"wsload {name}: {line}" for line in wsloads[index].stderr_lines[:3]
            )
    # Every wsload's span starts at the same first publication (every client gets
    # it), so the cluster's span is the longest one.
    span = max(spans, default=0.0)
    result.msgs_per_s = result.received / span if span > 0 else 0.0
    result.pubs_per_s = result.msgs_per_s / result.clients
    p50s = [f.p50_ms for f in result.per_instance]
    p99s = [f.p99_ms for f in result.per_instance]
    result.p50_ms, result.best_p50_ms = max(p50s), min(p50s)
    result.p99_ms, result.best_p99_ms = max(p99s), min(p99s)
    if result.mode == "fixed":
        result.sched_p99_ms = max(f.sched_p99_ms or 0.0 for f in result.per_instance)
    if result.received:
        result.server_us_per_delivery = 1e6 * server_cpu / result.received


def subtract_idle(result: ClusterResult, idle: Snapshot, before: Snapshot, after: Snapshot) -> None:
    """CPU of the instances and Redis with nothing published (audits, leases, Redis's
    own cron), and the Redis CPU per publication without it."""
    span = before.wall - idle.wall
    if span <= 0:
        return
    pairs = zip(idle.instances, before.instances, strict=True)
    server = sum(u1 + s1 - u0 - s0 for (u0, s0), (u1, s1) in pairs)
    result.idle_server_cpu_pct = 100 * server / span
    if idle.redis is not None and before.redis is not None and after.redis is not None:
        idle_rate = (before.redis.cpu_s - idle.redis.cpu_s) / span
        result.idle_redis_cpu_pct = 100 * idle_rate
        busy = after.redis.cpu_s - before.redis.cpu_s - idle_rate * (after.wall - before.wall)
        result.redis_net_us_per_pub = 1e6 * busy / result.messages


def check_delivered(result: ClusterResult, stats: PublishStats, wanted: Sequence[int]) -> None:
    """What each POST says it delivered: the subscribers of the instance it went to.

    With the memory broker that is the fan-out the POST did. With the Redis
    broker a POST waits (up to a timeout) for its own instance to receive the
    message back from Pub/Sub and answers how many local clients got it, so 0
    means the confirmation timed out; other instances' clients are not counted.
    Every answer is kept in the JSON (``delivered_answers``: value -> times).
    """
    for index, answers in stats.delivered.items():
        name = result.per_instance[index].name
        wrong = {value: n for value, n in answers.items() if value != wanted[index]}
        if wrong:
            result.errors.append(
                f"POSTs to {name} answered delivered={wrong} (value: times), "
                f"expected {wanted[index]} (its clients + the tracker)"
            )


def add_warnings(result: ClusterResult) -> None:
    """Flag measurements whose conditions were not the intended ones."""
    if result.mode == "max" and result.server_cpu_pct < 90:
        result.warnings.append(
            f"instances used only {result.server_cpu_pct:.0f}% CPU together: not saturated"
        )
    client_busy = result.core_busy_pct.get(CLIENT_CORE)
    if client_busy is not None and client_busy > 90:
        result.warnings.append(
            f"client core {client_busy:.0f}% busy: the load generators may be the limit"
        )
    if result.other_cpu_pct is not None and result.other_cpu_pct > 15:
        result.warnings.append(
            f"{result.other_cpu_pct:.0f}% of a core used by other processes during the run: "
            "the measurement was disturbed, run it again"
        )
    if result.redis_scripts_per_pub is not None:
        ours = 1.0 if result.broker == "redis" else 0.0
        if result.redis_scripts_per_pub - ours > 0.1:
            result.warnings.append(
                f"Redis ran {result.redis_scripts_per_pub:.2f} scripts per publication, not "
                f"{ours:.0f}: someone else used it meanwhile, its CPU figures are inflated"
            )
    if result.steal_pct is not None and result.steal_pct > 2:
        result.warnings.append(f"{result.steal_pct:.0f}% steal time: the host was busy")


async def guarded_phase(row: Row, mode: str, count: int, rate: float | None) -> ClusterResult:
    """run_phase, with a run that cannot complete reported as a failed result."""
    try:
        return await run_phase(row, mode, count, rate)
    except (RuntimeError, TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
        clients = row.settings.clients
        result = ClusterResult(
            row.broker, len(row.instances), clients, mode, count, rate_pubs_per_s=rate
        )
        result.expected = clients * count
        result.errors.append(f"run aborted: {exc!r}")
        return result


# --------------------------------------------------------------------------- one row


@dataclass(frozen=True, slots=True)
class Settings:
    clients: int
    instances: tuple[int, ...]
    memory_baseline: bool
    messages: int
    size: int
    publishers: int
    rate: float | None
    rate_fraction: float
    fixed_seconds: float
    redis_url: str
    idle_seconds: float
    connect_timeout: float
    recv_timeout: float
    wsload_src: Path
    repeat: int
    wait_idle: float
    ping_interval: float
    slurmcast_args: tuple[str, ...]

    def rows(self) -> list[tuple[str, int]]:
        rows = [("memory", 1)] if self.memory_baseline else []
        return rows + [("redis", k) for k in self.instances]


async def bench_row(
    broker: str,
    count: int,
    settings: Settings,
    wsload_bin: Path,
    session: aiohttp.ClientSession,
    redis: RedisProbe | None,
    messages: MessageFactory,
    baseline_pubs: float | None,
) -> list[ClusterResult]:
    """Both phases on a fresh set of ``count`` instances."""
    busy = await wait_until_idle(settings.wait_idle) if settings.wait_idle > 0 else None
    label = f"{broker}{count}"
    prefix: str | None = None
    broker_args: list[str] = []
    if broker == "redis":
        assert redis is not None
        prefix = f"slurmcast-bench-{secrets.token_hex(4)}"
        if await redis.keys(prefix):
            raise SetupError(f"Redis already holds keys starting with {prefix}")
        broker_args = ["--broker", "redis", "--redis-url", settings.redis_url]
        # The same simulated cluster in every instance (any of them may poll it),
        # starting now: a start far in the past is simulated up to now first.
        sim_start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        broker_args += ["--redis-prefix", prefix, "--sim-start", sim_start]
    instances = []
    for index in range(count):
        ident = ["--instance-id", f"bench-{index}"] if broker == "redis" else []
        instances.append(Instance(label, index, settings, [*broker_args, *ident]))
    distinct_ports(instances)
    results: list[ClusterResult] = []
    # The memory row measures Redis's CPU too, as a control (it should be idle).
    row = Row(broker, instances, session, redis, wsload_bin, settings, messages)
    try:
        await start_instances(instances, session)
        log(
            f"[{broker} x{count}] max phase: {settings.messages} publications x "
            f"{settings.clients} clients" + (f", Redis prefix {prefix}" if prefix else "")
        )
        maximum = await guarded_phase(row, "max", settings.messages, None)
        if busy:
            maximum.warnings.append(busy)
        results.append(maximum)
        log_result(maximum)
        if settings.fixed_seconds > 0 and all(inst.alive for inst in instances):
            rate = settings.rate
            if rate is None:
                capacity = baseline_pubs if baseline_pubs else maximum.pubs_per_s
                rate = settings.rate_fraction * capacity
            if rate > 0:
                fixed_count = fixed_phase_count(rate, settings.fixed_seconds)
                log(f"[{broker} x{count}] fixed phase: {fixed_count} publications at {rate:.2f}/s")
                fixed = await guarded_phase(row, "fixed", fixed_count, rate)
                results.append(fixed)
                log_result(fixed)
    finally:
        codes = await asyncio.gather(*(inst.stop() for inst in instances), return_exceptions=True)
        deleted: int | None = None
        if prefix is not None and redis is not None:
            with contextlib.suppress(Exception):
                deleted = await redis.delete_prefix(prefix)
        for result in results:
            result.redis_prefix = prefix
            result.redis_keys_deleted = deleted
        if results:
            for inst, code in zip(instances, codes, strict=True):
                problem = inst.log_problem()
                if problem:
                    results[0].errors.append(problem)
                if code not in (0, None):
                    results[-1].errors.append(f"{inst.name} exited with status {code!r}")
        if prefix is not None and redis is not None:
            left = await redis.keys(prefix)
            if left and results:
                results[-1].errors.append(f"{len(left)} Redis keys of {prefix} left after cleanup")
    return results


def log_result(r: ClusterResult) -> None:
    status = status_text(r.errors, r.warnings)
    each = "+".join(fmt(f.cpu_pct, ".0f") for f in r.per_instance)
    log(
        f"    {r.msgs_per_s:>9,.0f} msgs/s (driver {r.driver_msgs_per_s:,.0f})  "
        f"p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  instances CPU {each}%  "
        f"Redis CPU {fmt(r.redis_cpu_pct, '.1f')}% ({fmt(r.redis_us_per_pub, '.0f')} us/pub, "
        f"net {fmt(r.redis_net_us_per_pub, '.0f')} us/pub, "
        f"{fmt(r.redis_commands_per_pub, '.1f')} commands and "
        f"{fmt(r.redis_scripts_per_pub, '.2f')} scripts/pub"
        + (f", connections {r.redis_connections}" if r.redis_connections else "")
        + ")  "
        f"[{status}]"
    )


# --------------------------------------------------------------------------- report


def table(results: Sequence[ClusterResult]) -> str:
    header = (
        "| run | broker | instances | clients | phase | delivered msgs/s | pubs/s | "
        "p50 ms | p99 ms | instance CPU % | server µs/delivery | Redis CPU % | "
        "Redis µs/pub | wsload + publisher CPU % | other CPU % | ok |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        phase = phase_cell(r.mode, r.rate_pubs_per_s)
        each = " + ".join(fmt(f.cpu_pct, ".0f") for f in r.per_instance)
        cpu = each if len(r.per_instance) < 2 else f"{each} = {fmt(r.server_cpu_pct, '.0f')}"
        lines.append(
            f"| {r.repeat} | {r.broker} | {r.instances} | {r.clients} | {phase} | "
            f"{r.msgs_per_s:,.0f} | {r.pubs_per_s:.1f} | {fmt(r.p50_ms, '.2f')} | "
            f"{fmt(r.p99_ms, '.2f')} | {cpu} | {fmt(r.server_us_per_delivery, '.1f')} | "
            f"{fmt(r.redis_cpu_pct, '.1f')} | {fmt(r.redis_us_per_pub, '.0f')} | "
            f"{fmt(r.wsload_cpu_pct + r.publisher_cpu_pct, '.0f')} | "
            f"{fmt(r.other_cpu_pct, '.0f')} | {ok_cell(r.errors, r.warnings)} |"
        )
    return "\n".join(lines)


def slurmcast_source() -> dict[str, Any]:
    """Which slurmcast the instances run: its directory, git commit, and a hash of it."""
    spec = importlib.util.find_spec("slurmcast")
    if spec is None or spec.origin is None:
        raise SetupError("slurmcast is not importable; install it in this venv")
    package = Path(spec.origin).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    info: dict[str, Any] = {"path": str(package), "sha256": digest.hexdigest()[:16]}
    git = shutil.which("git")
    if git is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            head = subprocess.run(
                [git, "-C", str(package), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            dirty = subprocess.run(
                [git, "-C", str(package), "status", "--porcelain", "--", "."],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if head.returncode == 0:
                info["git_head"] = head.stdout.strip()
                info["git_dirty"] = bool(dirty.stdout.strip())
    return info


async def supports_redis_broker() -> bool:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slurmcast",
        "serve",
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO_DIR,
    )
    out, _ = await proc.communicate()
    return b"--broker" in out and b"redis" in out


async def run_all(settings: Settings) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    rows = settings.rows()
    check_fd_limit(settings.clients)
    source = slurmcast_source()
    wants_redis = any(broker == "redis" for broker, _ in rows)
    if wants_redis and not await supports_redis_broker():
        raise SetupError(f"slurmcast at {source['path']} has no '--broker redis' yet")
    wsload_bin, messages = await prepare_load(settings.wsload_src, settings.size)
    redis: RedisProbe | None = None
    redis_info: dict[str, Any] | None = None
    results: list[ClusterResult] = []
    try:
        if wants_redis:
            redis = RedisProbe(settings.redis_url)
            redis_info = await redis.check()
        else:  # Redis's CPU is still measured as a control, when there is one
            with contextlib.suppress(SetupError):
                redis = RedisProbe(settings.redis_url)
                redis_info = await redis.check()
            if redis_info is None and redis is not None:
                await redis.close()
                redis = None
        async with client_session(settings.recv_timeout) as session:
            for repeat in range(1, settings.repeat + 1):
                if settings.repeat > 1:
                    log(f"--- run {repeat} of {settings.repeat}")
                baseline: float | None = None
                for broker, count in rows:
                    runs = await bench_row(
                        broker,
                        count,
                        settings,
                        wsload_bin,
                        session,
                        redis,
                        messages,
                        baseline,
                    )
                    if baseline is None and runs and runs[0].ok:
                        baseline = runs[0].pubs_per_s
                    for run in runs:
                        run.repeat = repeat
                    results.extend(runs)
    finally:
        if redis is not None:
            await redis.close()
    return {
        "machine": machine_info() | {"slurmcast_source": source, "redis": redis_info},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": settings_json(settings, messages)
        | {"layout": {"instances_core": SERVER_CORE, "clients_core": CLIENT_CORE}},
        "results": [dataclasses.asdict(r) | {"ok": r.ok} for r in results],
        "ok": bool(results) and all(r.ok for r in results),
        "_results": results,
    }


# --------------------------------------------------------------------------- main


@dataclass(frozen=True, slots=True)
class Options:
    settings: Settings
    json: bool
    json_out: Path | None


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description="Cluster benchmark: slurmcast instances sharing Redis vs one in-memory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=1500, help="subscribers in total")
    parser.add_argument(
        "--instances", default="1,2,3", help="comma-separated instance counts of the redis rows"
    )
    parser.add_argument(
        "--memory-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run one --broker memory instance first",
    )
    parser.add_argument("--messages", type=int, default=600, help="publications per max phase")
    parser.add_argument("--size", type=int, default=300, help="bytes of each delivered message")
    parser.add_argument(
        "--publishers", type=int, default=2, help="concurrent POSTs in the max phase"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="fixed phase publications/s (overrides)"
    )
    parser.add_argument(
        "--rate-fraction",
        type=float,
        default=0.5,
        help="fixed phase rate as a fraction of the baseline's (first row's) max publications/s",
    )
    parser.add_argument(
        "--fixed-seconds", type=float, default=5.0, help="fixed phase length; 0 skips it"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=2.0,
        help="before publishing, measure the instances' and Redis's CPU this long at rest",
    )
    add_run_arguments(
        parser,
        wait_idle=5.0,
        wait_idle_help="before each row, wait up to this many seconds for both cores to be idle",
        ping_help=None,
        slurmcast_arg_help="extra argument for every 'slurmcast serve' (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        instances = tuple(int(part) for part in args.instances.split(",") if part.strip())
    except ValueError:
        parser.error("--instances takes comma-separated integers")
    if any(k < 1 for k in instances):
        parser.error("--instances needs positive counts")
    if not instances and not args.memory_baseline:
        parser.error("nothing to run: no --instances and --no-memory-baseline")
    if args.clients < max((*instances, 1)):
        parser.error("--clients must be at least the largest instance count")
    for name in ("messages", "publishers", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    settings = Settings(
        clients=args.clients,
        instances=instances,
        memory_baseline=args.memory_baseline,
        messages=args.messages,
        size=args.size,
        publishers=args.publishers,
        rate=args.rate,
        rate_fraction=args.rate_fraction,
        fixed_seconds=args.fixed_seconds,
        redis_url=args.redis_url,
        idle_seconds=args.idle_seconds,
        **run_settings(args),
    )
    return Options(settings, args.json, args.json_out)


def kill_leftovers() -> None:
    """SIGKILL whatever we started that is still running (Ctrl-C twice, a crash...).

    A process whose ``returncode`` is still None was not reaped by us, so its
    pid cannot belong to anyone else yet.
    """
    for started in STARTED:
        proc = started.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)


def print_report(report: dict[str, Any], results: Sequence[ClusterResult]) -> None:
    m = report["machine"]
    source = m["slurmcast_source"]
    print(machine_line(m))
    git = f" (git {source['git_head']}{', dirty' if source.get('git_dirty') else ''})"
    print(
        f"slurmcast from {source['path']}{git if 'git_head' in source else ''}, "
        f"sha256 {source['sha256']}"
    )
    if m.get("redis"):
        r = m["redis"]
        print(f"Redis {r['version']}, pid {r['pid']}, CPUs {r['cpu_affinity']} (not pinned by us)")
    print(
        f"message {report['settings']['message_bytes']} B; instances on core {SERVER_CORE}, "
        f"wsloads + publisher + trackers on core {CLIENT_CORE}; {report['elapsed_s']} s\n"
    )
    print(table(results))
    print()
    for r in results:
        if len(r.per_instance) > 1:
            latencies = ", ".join(
                f"{f.name} {fmt(f.p50_ms, '.2f')}/{fmt(f.p99_ms, '.2f')}" for f in r.per_instance
            )
            print(f"{r.label} {r.mode}: p50/p99 ms per instance: {latencies}")
    for r in results:
        for error in r.errors:
            print(f"ERROR {r.label} {r.mode}: {error}")
        for warning_text in r.warnings:
            print(f"warning {r.label} {r.mode}: {warning_text}")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    settings = options.settings
    try:
        report = run_benchmark("cluster", settings.wsload_src, functools.partial(run_all, settings))
    except asyncio.CancelledError:  # SIGTERM
        return 143
    finally:
        kill_leftovers()
    if report is None:
        return 2
    results: list[ClusterResult] = report.pop("_results")
    write_json(report, options.json_out, options.json)
    if not options.json:
        print_report(report, results)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
