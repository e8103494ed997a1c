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

Length: over 600 lines, of which this description is 80; the rest is this
benchmark's own (the row unit: instances, wsloads, trackers and Redis in one
phase; the per-instance and Redis accounting; its table and options). Redis
probing and the trackers are in clusterlib.py, the phases, report and CLI in
harness.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
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
    check_fd_limit,
    client_session,
    free_port,
    log,
    machine_info,
    post_json,
    prepare_load,
    wait_for_counts,
    wsload_errors,
)
from clusterlib import (
    DUPLICATE_GRACE,
    RedisProbe,
    Tracker,
    check_trackers,
    tcp_connections_to,
)
from harness import (
    RATE_COLUMNS,
    Column,
    CpuWindow,
    Options,
    PhasePlan,
    ServerDied,
    Snapshot,
    Unit,
    add_phase_arguments,
    add_run_arguments,
    add_warnings,
    cancel_on_sigterm,
    entry,
    fmt,
    int_list,
    ok_cell,
    post_figures,
    print_report,
    publish,
    require_positive,
    results_json,
    run_main,
    run_matrix,
    run_settings,
    settings_json,
    status_text,
    table,
    wait_all_done,
    wsload_cpu_pct,
)

DATA_DIR = BUILD_DIR / "cluster"
#: Every process this script started, for a last-resort SIGKILL (see main()).
STARTED: list[ServerProcess | WsLoad] = []


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


async def snapshot(instances: Sequence[Instance], redis: RedisProbe | None) -> Snapshot:
    """CPU of the instances, this process and the cores, with a Redis sample (taken first)."""
    redis_sample = await redis.sample() if redis is not None else None
    return Snapshot.take([inst.pid for inst in instances], redis_sample)


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


#: Its fields are the JSON's keys, in this order (kept so that result files compare
#: by diff): which is why the figures both benchmarks share are not in a base class.
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


class InstanceDied(ServerDied):
    """An instance exited during a run."""


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


class RowUnit(Unit[ClusterResult]):
    """One row: ``count`` fresh instances on one broker; the harness runs both phases on it."""

    def __init__(
        self,
        broker: str,
        count: int,
        settings: Settings,
        session: aiohttp.ClientSession,
        redis: RedisProbe | None,
        wsload_bin: Path,
        messages: MessageFactory,
    ) -> None:
        self.broker, self.count, self.settings = broker, count, settings
        self.session, self.redis = session, redis
        self.wsload_bin, self.messages = wsload_bin, messages
        self.tag = f"{broker} x{count}"
        self.plan = PhasePlan(
            max_count=settings.messages,
            clients=settings.clients,
            fixed_seconds=settings.fixed_seconds,
            fixed_rate=settings.rate,
            rate_fraction=settings.rate_fraction,
            wait_idle=settings.wait_idle,
        )
        self.prefix: str | None = None
        self.instances: list[Instance] = []

    async def start(self) -> None:
        settings, redis = self.settings, self.redis
        label = f"{self.broker}{self.count}"
        broker_args: list[str] = []
        if self.broker == "redis":
            assert redis is not None
            prefix = f"slurmcast-bench-{secrets.token_hex(4)}"
            if await redis.keys(prefix):
                raise SetupError(f"Redis already holds keys starting with {prefix}")
            self.prefix = prefix
            self.note = f", Redis prefix {prefix}"
            broker_args = ["--broker", "redis", "--redis-url", settings.redis_url]
            # The same simulated cluster in every instance (any of them may poll it),
            # starting now: a start far in the past is simulated up to now first.
            sim_start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            broker_args += ["--redis-prefix", prefix, "--sim-start", sim_start]
        for index in range(self.count):
            ident = ["--instance-id", f"bench-{index}"] if self.broker == "redis" else []
            self.instances.append(Instance(label, index, settings, [*broker_args, *ident]))
        distinct_ports(self.instances)
        # The memory row measures Redis's CPU too, as a control (it should be idle).
        await start_instances(self.instances, self.session)

    def alive(self) -> bool:
        return all(inst.alive for inst in self.instances)

    def blank(self, mode: str, count: int, rate: float | None) -> ClusterResult:
        clients = self.settings.clients
        result = ClusterResult(
            self.broker, len(self.instances), clients, mode, count, rate_pubs_per_s=rate
        )
        result.expected = clients * count
        return result

    async def stop(self, results: list[ClusterResult]) -> None:
        instances, prefix, redis = self.instances, self.prefix, self.redis
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

    def log_result(self, r: ClusterResult) -> None:
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

    async def run_phase(self, mode: str, count: int, rate: float | None) -> ClusterResult:
        instances, broker, session, redis = self.instances, self.broker, self.session, self.redis
        settings = self.settings
        shares = split(settings.clients, len(instances))
        result = self.blank(mode, count, rate)
        result.per_instance = [
            InstanceFigures(inst.name, n) for inst, n in zip(instances, shares, strict=True)
        ]
        counts = await wait_for_counts(instances, session, [0] * len(instances), 15)
        if any(c[0] != 0 for c in counts):
            result.errors.append(f"clients still connected before the run: {counts}")
        trackers = [Tracker(inst) for inst in instances]
        wsloads = [WsLoad(self.wsload_bin) for _ in instances]
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
                    raise RuntimeError(
                        f"clients of {inst.name} could not subscribe: {ready} {detail}"
                    )
            wanted = [n + 1 for n in shares]  # + the tracker
            counts = await wait_for_counts(instances, session, wanted, 10)
            if [c[0] for c in counts] != wanted:
                result.errors.append(f"instances count {counts} (clients, on jobs), not {wanted}")
            urls = [f"{inst.base_url}/broadcast" for inst in instances]
            stats = PublishStats()

            async def send(seq: int, body: bytes) -> None:
                index = seq % len(urls)  # round-robin over the instances
                await post(session, urls[index], body, index, stats)

            idle = await snapshot(instances, redis)
            await asyncio.sleep(settings.idle_seconds)
            before = await snapshot(instances, redis)
            await publish(self.messages, mode, count, rate, settings.publishers, send)
            remaining = settings.recv_timeout - (time.monotonic() - before.wall) + 10
            failed = await wait_all_done(instances, wsloads, max(remaining, 10), InstanceDied)
            result.errors.extend(f"wsload {i} did not finish: {exc!r}" for i, exc in failed)
            after = await snapshot(instances, redis)
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
        add_warnings(
            result,
            result.core_busy_pct.get(CLIENT_CORE),
            unsaturated="instances used only {:.0f}% CPU together: not saturated",
            generators="the load generators",
            extra=redis_warnings(result),
        )
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
    cpu = CpuWindow.between(before, after)
    window = cpu.window
    result.window_s = window
    result.driver_msgs_per_s = result.expected / window if window > 0 else 0.0
    for figures, (cpu_pct, sys_pct) in zip(result.per_instance, cpu.servers, strict=True):
        figures.cpu_pct, figures.sys_pct = cpu_pct, sys_pct
    result.server_cpu_pct = cpu.server_pct
    server_cpu = cpu.server_pct * window / 100  # seconds, all instances
    redis_before, redis_after = before.extra, after.extra
    if redis_before is not None and redis_after is not None:
        redis_cpu = redis_after.cpu_s - redis_before.cpu_s
        result.redis_cpu_pct = 100 * redis_cpu / window
        result.redis_us_per_pub = 1e6 * redis_cpu / result.messages
        commands = redis_after.commands - redis_before.commands - 1
        script_calls = redis_after.script_calls - redis_before.script_calls
        result.redis_scripts_per_pub = script_calls / result.messages
        result.redis_commands_per_pub = commands / result.messages
        result.redis_clients = redis_before.clients
    result.publisher_cpu_pct = cpu.publisher_pct
    result.core_busy_pct = cpu.busy
    result.steal_pct = cpu.steal_pct
    result.wsload_cpu_pct = wsload_cpu_pct(reports, window)
    ours = result.server_cpu_pct + result.publisher_cpu_pct + result.wsload_cpu_pct
    result.other_cpu_pct = cpu.other_pct(ours + (result.redis_cpu_pct or 0.0))
    post_figures(result, stats)
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
    result.idle_server_cpu_pct = CpuWindow.between(idle, before).server_pct
    if idle.extra is not None and before.extra is not None and after.extra is not None:
        idle_rate = (before.extra.cpu_s - idle.extra.cpu_s) / span
        result.idle_redis_cpu_pct = 100 * idle_rate
        busy = after.extra.cpu_s - before.extra.cpu_s - idle_rate * (after.wall - before.wall)
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


def redis_warnings(result: ClusterResult) -> list[str]:
    """More scripts per publication than the broker runs: someone else used Redis."""
    if result.redis_scripts_per_pub is not None:
        ours = 1.0 if result.broker == "redis" else 0.0
        if result.redis_scripts_per_pub - ours > 0.1:
            return [
                f"Redis ran {result.redis_scripts_per_pub:.2f} scripts per publication, not "
                f"{ours:.0f}: someone else used it meanwhile, its CPU figures are inflated"
            ]
    return []


# --------------------------------------------------------------------------- report


def instance_cpu_cell(r: ClusterResult) -> str:
    each = " + ".join(fmt(f.cpu_pct, ".0f") for f in r.per_instance)
    return each if len(r.per_instance) < 2 else f"{each} = {fmt(r.server_cpu_pct, '.0f')}"


#: The table's columns: header, cell.
COLUMNS: list[Column] = [
    ("run", lambda r: str(r.repeat)),
    ("broker", lambda r: r.broker),
    ("instances", lambda r: str(r.instances)),
    *RATE_COLUMNS,
    ("instance CPU %", instance_cpu_cell),
    ("server µs/delivery", lambda r: fmt(r.server_us_per_delivery, ".1f")),
    ("Redis CPU %", lambda r: fmt(r.redis_cpu_pct, ".1f")),
    ("Redis µs/pub", lambda r: fmt(r.redis_us_per_pub, ".0f")),
    ("wsload + publisher CPU %", lambda r: fmt(r.wsload_cpu_pct + r.publisher_cpu_pct, ".0f")),
    ("other CPU %", lambda r: fmt(r.other_cpu_pct, ".0f")),
    ("ok", ok_cell),
]


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
    cancel_on_sigterm()
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

            def groups() -> Iterable[list[RowUnit]]:
                yield [
                    RowUnit(broker, count, settings, session, redis, wsload_bin, messages)
                    for broker, count in rows
                ]

            results = await run_matrix(settings.repeat, groups)
    finally:
        if redis is not None:
            await redis.close()
    return {
        "machine": machine_info() | {"slurmcast_source": source, "redis": redis_info},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": settings_json(settings, messages)
        | {"layout": {"instances_core": SERVER_CORE, "clients_core": CLIENT_CORE}},
        "results": results_json(results),
        "ok": bool(results) and all(r.ok for r in results),
        "_results": results,
    }


# --------------------------------------------------------------------------- main


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
    add_phase_arguments(
        parser,
        rate="--rate",
        fraction="--rate-fraction",
        seconds="--fixed-seconds",
        fraction_of="the baseline's (first row's) max",
        rate_first=True,
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
    instances = int_list(parser, args.instances, "--instances")
    if any(k < 1 for k in instances):
        parser.error("--instances needs positive counts")
    if not instances and not args.memory_baseline:
        parser.error("nothing to run: no --instances and --no-memory-baseline")
    if args.clients < max((*instances, 1)):
        parser.error("--clients must be at least the largest instance count")
    require_positive(parser, args, ("messages", "publishers", "repeat"))
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


def show(report: dict[str, Any], results: Sequence[ClusterResult]) -> None:
    m = report["machine"]
    source = m["slurmcast_source"]
    git = f" (git {source['git_head']}{', dirty' if source.get('git_dirty') else ''})"
    intro = [
        f"slurmcast from {source['path']}{git if 'git_head' in source else ''}, "
        f"sha256 {source['sha256']}"
    ]
    if m.get("redis"):
        r = m["redis"]
        intro.append(
            f"Redis {r['version']}, pid {r['pid']}, CPUs {r['cpu_affinity']} (not pinned by us)"
        )
    body = [table(COLUMNS, results), ""]
    for r in results:
        if len(r.per_instance) > 1:
            latencies = ", ".join(
                f"{f.name} {fmt(f.p50_ms, '.2f')}/{fmt(f.p99_ms, '.2f')}" for f in r.per_instance
            )
            body.append(f"{r.label} {r.mode}: p50/p99 ms per instance: {latencies}")
    print_report(
        report,
        results,
        intro=intro,
        layout=(
            f"instances on core {SERVER_CORE}, wsloads + publisher + trackers on core {CLIENT_CORE}"
        ),
        body=body,
        label=lambda r: r.label,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("cluster", parse_args(argv), run_all, show, cleanup=kill_leftovers)


if __name__ == "__main__":
    entry(main)
