"""Notification delivery (issue 18): how fast the worker drains the outbox, and what planning
costs a poll; each beside a baseline measured in the same invocation.

The machine is shared and noisy, so what carries over is the ratio to the baseline of the
same run, not the absolute figure.

**Throughput.** A local webhook receiver (aiohttp, a process of its own on core 1; it checks
every signature and counts deliveries by key) and, in this process on core 0, in order:

* ``post``: plain aiohttp POSTs of one signed delivery body through one keep-alive session,
  ``--concurrency`` (16, the worker's batch) in a closed loop: the baseline;
* ``post-fresh``: the same, a new session and connection per POST, as ``HttpPoster`` does
  (nothing pooled outlives the address check that allowed it);
* ``sink``: ``render`` + ``WebhookSink.send`` of N distinct deliveries (signing, URL and
  address checks, pinned connection), no database, closed loop of 16;
* ``sink-batch``: the same in lockstep batches of 16 (``gather``), as the worker sends;
* ``worker-sqlite``, ``worker-postgresql``: N deliveries written to the outbox beforehand
  (``OutboxStore.add_with_notification``, 200 per transaction), then one ``DeliveryWorker``
  (the server's ``NotificationStore`` and engine, rate limit at its maximum) drains them:
  claims, renders, signs, posts, records each outcome. Logging at INFO to
  bench/.build/logs/delivery.log, as ``slurmcast serve`` logs by default.

Each row: deliveries (or POSTs) per second, its ratio to ``post`` of the same repetition, this
process's CPU per delivery (all its threads: aiosqlite's too), the receiver's CPU and the
other CPU of both cores (anything else on the machine; PostgreSQL's server too). For the
worker rows also the mean wall time of its three steps per call (``claim``, ``send``,
recording ``delivered``; timed around the outbox's and the sink's methods) and the database
connections the engine opened meanwhile (SQLAlchemy pool events). Checks: every POST answered
200 and was signed; every worker run delivered each of the N once (distinct keys at the
receiver), recorded them delivered, left nothing pending or dead, and logged no error.
``--profile`` adds a cProfile of one SQLite drain (top functions).

**Planning.** A jobs poll of ``--jobs`` (20,000) jobs, ``--pending`` (5,000) pending, owned by
``--users`` (1,000) users, in which ``--changes`` (500) jobs change state (half start, half
end). Timed per step, CPU of this thread: ``diff_jobs`` on the listing (the baseline: what the
poller pays anyway; collector paused, as the poller runs it) and ``DeliveryPlanner.plan`` of
the step's events and notifications with the listing (on the event loop, as the poller calls
it) with no rules; one rule per user for job starts and ends; and the same rules also asking
for ``job_pending_long`` (60 minutes): its first step (every job waiting over an hour is told
of) and the steady state (the next steps: already told).

    .venv/bin/python bench/delivery.py                      # under 2 minutes
    .venv/bin/python bench/delivery.py --only throughput --backends sqlite --deliveries 500
    .venv/bin/python bench/delivery.py --only planning --rules 100,1000
    .venv/bin/python bench/delivery.py --profile --json-out bench/results/delivery.json

PostgreSQL: a throw-away database on ``--postgres`` (default ``$SLURMCAST_TEST_POSTGRES`` or
``postgresql://postgres@127.0.0.1:5432/postgres``), dropped at the end; skipped with a warning
when the server does not answer. Exit status: 0 clean, 1 a check failed, 2 setup error.
Results and their reading: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import itertools
import logging
import os
import pstats
import random
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from sqlalchemy import event, text
from sqlalchemy.pool import Pool

ROOT = Path(__file__).resolve().parents[1]
# bench.benchlib, as mypy (which runs from the repository) sees it.
sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    BAD_LOG_MARKERS,
    BUILD_DIR,
    CLIENT_CORE,
    LOG_DIR,
    SERVER_CORE,
    SetupError,
    core_times,
    cores_busy,
    log,
    machine_info,
    machine_line,
    proc_cpu_seconds,
    write_json,
)

from slurmcast.core.diff import diff_jobs  # noqa: E402
from slurmcast.core.events import job_payload  # noqa: E402
from slurmcast.core.notifications import (  # noqa: E402
    Notification,
    NotificationType,
    Severity,
    notifications_for,
)
from slurmcast.core.notify.messages import render  # noqa: E402
from slurmcast.core.notify.rules import FINAL_EVENTS, NotifyEvent, Rule, restore_rule  # noqa: E402
from slurmcast.core.notify.signing import DELIVERY_HEADER, sign, verify  # noqa: E402
from slurmcast.core.notify.ssrf import UrlPolicy, parse_networks  # noqa: E402
from slurmcast.core.records import JobRecord, JobsListing, JobState  # noqa: E402
from slurmcast.core.timefmt import iso_z  # noqa: E402
from slurmcast.delivery.planner import DeliveryPlanner  # noqa: E402
from slurmcast.delivery.worker import BATCH, DeliveryWorker  # noqa: E402
from slurmcast.gcpause import paused  # noqa: E402
from slurmcast.logs import configure_logging  # noqa: E402
from slurmcast.sinks.base import Outgoing, Secret, SendResult, Sink  # noqa: E402
from slurmcast.sinks.config import SinksConfig  # noqa: E402
from slurmcast.sinks.posting import HttpSinkSettings, utc_now  # noqa: E402
from slurmcast.sinks.webhook import WebhookSink  # noqa: E402
from slurmcast.storage.engine import create_engine, parse_url  # noqa: E402
from slurmcast.storage.notifications import NotificationStore  # noqa: E402
from slurmcast.storage.outbox import (  # noqa: E402
    DeliveryState,
    DestinationKind,
    NewDelivery,
    OutboxStore,
)

SCRIPT = Path(__file__).resolve()
SECRET = "whsec-bench-" + "0123456789abcdef" * 2
#: The lab's policy of the tests: plain http to this machine only.
LOCAL = UrlPolicy(allow_http=True, allowed_networks=parse_networks(["127.0.0.1/32"]))
INSTANCE = "bench-delivery"
#: Deliveries per ``add_with_notification`` when filling the outbox.
WRITE_CHUNK = 200
#: A run that takes longer than this is stuck, not slow.
RUN_TIMEOUT = 120.0
DEFAULT_POSTGRES = os.environ.get(
    "SLURMCAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
LOG_FILE = LOG_DIR / "delivery.log"
#: Job names and partitions of the generated listings.
NAMES = ("train_resnet", "md_sim", "bwa_align", "wrf_run", "jupyter", "eval_bert", "vasp")
PARTITIONS = ("cpu", "gpu", "bigmem", "debug")
ENDS = (
    JobState.COMPLETED,
    JobState.COMPLETED,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.TIMEOUT,
    JobState.CANCELLED,
    JobState.OUT_OF_MEMORY,
)
#: The planning benchmark's clock.
NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
PENDING_MINUTES = 60


T = TypeVar("T")


class CheckFailed(Exception):
    """A run did not do what it should (a delivery missing, twice, unsigned, an error...)."""


# --------------------------------------------------------------------------- the receiver


def pin(core: int) -> bool:
    """Run this process on ``core`` only (whatever mask it inherited); False when it cannot."""
    try:
        if core >= (os.cpu_count() or 1):
            return False
        os.sched_setaffinity(0, {core})
    except (OSError, AttributeError):
        return False
    return True


def receiver_main(core: int) -> None:
    """The webhook receiver (``--receiver``): on ``core``, prints ``READY <port>``, serves
    ``POST /hook`` (signature checked, counted by delivery key), ``GET /stats`` and
    ``POST /reset``, until stdin closes."""
    pin(core)
    import uvloop

    uvloop.run(_receive())


async def _receive() -> None:
    secret = SECRET.encode()
    stats = {"posts": 0, "bad": 0}
    keys: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        stats["posts"] += 1
        if not verify(raw, request.headers, secret, datetime.now(UTC)):
            stats["bad"] += 1
            return web.Response(status=401, text="bad signature")
        keys.add(request.headers.get(DELIVERY_HEADER, ""))
        return web.Response(text="ok")

    async def read_stats(request: web.Request) -> web.Response:
        return web.json_response({**stats, "distinct": len(keys)})

    async def reset(request: web.Request) -> web.Response:
        stats.update(posts=0, bad=0)
        keys.clear()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", read_stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    print(f"READY {sock.getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    # Until the benchmark closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


class Receiver:
    """The receiver process, and its counters over HTTP."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def cpu(self) -> float:
        user, system = proc_cpu_seconds(self.pid)
        return user + system

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--receiver",
            str(CLIENT_CORE),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(30):
                line = (await self.proc.stdout.readline()).decode()
        except TimeoutError:
            raise SetupError("the webhook receiver did not start within 30 s") from None
        if not line.startswith("READY "):
            raise SetupError(f"the webhook receiver did not start: {line!r}")
        self.port = int(line.split()[1])
        with contextlib.suppress(OSError, AttributeError):
            cores = os.sched_getaffinity(self.pid)
            if cores != {CLIENT_CORE}:
                log(f"warning: the receiver runs on cores {sorted(cores)}, not {CLIENT_CORE}")

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, int]:
        async with session.get(f"http://127.0.0.1:{self.port}/stats") as resp:
            body: dict[str, int] = orjson.loads(await resp.read())
            return body

    async def reset(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"http://127.0.0.1:{self.port}/reset") as resp:
            await resp.read()


# --------------------------------------------------------------------------- deliveries


def sample_job(index: int) -> dict[str, Any]:
    """A finished job's ``job_update`` data (the payload of a ``job_failed`` delivery)."""
    started = NOW - timedelta(hours=2, seconds=index)
    record = JobRecord(
        job_id=str(4_200_000 + index),
        name=NAMES[index % len(NAMES)],
        user=f"user{index % 1000:04d}",
        partition=PARTITIONS[index % len(PARTITIONS)],
        state=JobState.FAILED,
        nodes=(f"node{index % 500:04d}",),
        cpus=8,
        memory_mb=32768,
        submit_time=started - timedelta(minutes=5),
        start_time=started,
        end_time=NOW,
        exit_code=3,
        time_limit_min=240,
        account="physics",
        qos="normal",
    )
    return job_payload(record, JobState.RUNNING)


def delivery_payload(index: int) -> dict[str, Any]:
    return {"event": "job_failed", "data": sample_job(index), "at": iso_z(NOW, millis=True)}


def delivery_key(run: str, index: int) -> str:
    return f"{run}-{index:06d}".ljust(64, "0")


async def fill_outbox(outbox: OutboxStore, count: int, url: str, run: str) -> float:
    """Write ``count`` due deliveries (one notification each); the seconds it took."""
    due = utc_now() - timedelta(seconds=1)
    started = time.perf_counter()
    for first in range(0, count, WRITE_CHUNK):
        notes, deliveries = [], []
        for index in range(first, min(count, first + WRITE_CHUNK)):
            owner = f"user{index % 1000:04d}"
            note = Notification(
                id=f"bench-{run}-{index:06d}",
                type=NotificationType.JOB_FAILED,
                title="Job Failed",
                message=f"Job #{4_200_000 + index} failed with exit code 3",
                severity=Severity.ERROR,
                created_at=due,
                user=owner,
                details={"job_id": str(4_200_000 + index)},
            )
            notes.append(note)
            deliveries.append(
                NewDelivery(
                    notification_id=note.id,
                    owner=owner,
                    rule_id="rule-bench",
                    kind=DestinationKind.WEBHOOK,
                    target=url,
                    payload=delivery_payload(index),
                    idempotency_key=delivery_key(run, index),
                )
            )
        inserted = await outbox.add_with_notification(notes, deliveries, due)
        if len(inserted) != len(notes):
            raise CheckFailed(f"{len(notes) - len(inserted)} notifications were not written")
    return time.perf_counter() - started


def http_settings() -> HttpSinkSettings:
    return HttpSinkSettings(policy=LOCAL)


def make_worker(outbox: OutboxStore, sink: Sink) -> DeliveryWorker:
    config = SinksConfig(
        http=http_settings(),
        webhook_secret=Secret(SECRET),
        # The highest rate and burst [sinks] accepts: one destination gets everything.
        rate_per_minute=1e6,
        rate_burst=10_000,
        poll_interval=2.0,
        lease_s=120.0,
    )
    return DeliveryWorker(outbox, {"webhook": sink}, config, instance_id=INSTANCE, clock=utc_now)


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    """One measured run of the throughput table."""

    name: str
    repetition: int
    count: int
    seconds: float
    cpu_s: float
    receiver_cpu_s: float
    cores_busy: dict[int, float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repetition": self.repetition,
            "count": self.count,
            "seconds": round(self.seconds, 4),
            "per_s": round(self.rate, 1),
            "cpu_us_per_delivery": round(self.cpu_s / self.count * 1e6, 1),
            "cpu_percent": round(100 * self.cpu_s / self.seconds, 1),
            "receiver_cpu_percent": round(100 * self.receiver_cpu_s / self.seconds, 1),
            "cores_busy_percent": {k: round(v, 1) for k, v in self.cores_busy.items()},
            # Both cores' busy time not ours nor the receiver's (PostgreSQL's is in it).
            "other_cpu_percent": round(
                max(
                    0.0,
                    sum(self.cores_busy.values())
                    - 100 * (self.cpu_s + self.receiver_cpu_s) / self.seconds,
                ),
                1,
            ),
            **self.extra,
        }


@contextlib.asynccontextmanager
async def measured(
    name: str, repetition: int, count: int, receiver: Receiver, rows: list[Row]
) -> AsyncIterator[dict[str, Any]]:
    """Time the block (wall, this process's CPU, the receiver's, both cores); add its Row."""
    gc.collect()
    cores, receiver_cpu = core_times(), receiver.cpu()
    cpu, started = time.process_time(), time.perf_counter()
    extra: dict[str, Any] = {}
    yield extra
    seconds = time.perf_counter() - started
    row = Row(
        name,
        repetition,
        count,
        seconds,
        time.process_time() - cpu,
        receiver.cpu() - receiver_cpu,
        cores_busy(cores, core_times()),
        extra,
    )
    rows.append(row)
    receiver_percent = row.data()["receiver_cpu_percent"]
    log(
        f"  {name}: {row.rate:,.0f}/s ({seconds:.2f} s, "
        f"{row.cpu_s / count * 1e6:,.0f} µs CPU each, receiver {receiver_percent}%)"
    )


async def closed_loop(count: int, concurrency: int, send: Callable[[int], Awaitable[None]]) -> None:
    """``send(0)`` .. ``send(count - 1)``, ``concurrency`` at a time, each as soon as one ends."""
    sequence = itertools.count()

    async def one() -> None:
        while (index := next(sequence)) < count:
            await send(index)

    await asyncio.gather(*(one() for _ in range(concurrency)))


async def lockstep(count: int, batch: int, send: Callable[[int], Awaitable[None]]) -> None:
    """``send`` in batches of ``batch`` gathered together, as the worker sends a claim."""
    for first in range(0, count, batch):
        await asyncio.gather(*(send(i) for i in range(first, min(count, first + batch))))


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


async def run_posts(
    receiver: Receiver, session: aiohttp.ClientSession, count: int, concurrency: int, fresh: bool
) -> tuple[int, int]:
    """``count`` POSTs of one signed delivery body; (answered 200, failed)."""
    sink = WebhookSink(http_settings(), Secret(SECRET))
    key = delivery_key("post", 0)
    message = render(NotifyEvent.JOB_FAILED, sample_job(0), now=NOW, delivery_id=key)
    body = sink.body(Outgoing("dlv-post", key, receiver.url, message))
    headers = {
        "Content-Type": "application/json",
        # Signed once for the whole run: within the receiver's 5 minutes.
        **sign(body, SECRET.encode(), int(time.time()), delivery_id=key),
    }
    ok = failed = 0

    async def post(via: aiohttp.ClientSession) -> None:
        nonlocal ok, failed
        try:
            async with via.post(receiver.url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 200:
                    ok += 1
                else:
                    failed += 1
        except (aiohttp.ClientError, OSError):
            failed += 1

    async def send(index: int) -> None:
        if not fresh:
            await post(session)
            return
        connector = aiohttp.TCPConnector(force_close=True, limit=1, use_dns_cache=False)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as own:
            await post(own)

    await closed_loop(count, concurrency, send)
    return ok, failed


async def run_sink(
    receiver: Receiver, count: int, concurrency: int, batched: bool, run: str
) -> tuple[int, int]:
    """``render`` + ``WebhookSink.send`` of ``count`` distinct deliveries; (sent, failed)."""
    sink = WebhookSink(http_settings(), Secret(SECRET))
    payloads = [delivery_payload(i) for i in range(count)]
    ok = failed = 0

    async def send(index: int) -> None:
        nonlocal ok, failed
        key = delivery_key(run, index)
        payload = payloads[index]
        message = render(NotifyEvent.JOB_FAILED, payload["data"], now=NOW, delivery_id=key)
        try:
            await sink.send(Outgoing(f"dlv-{index}", key, receiver.url, message))
            ok += 1
        except Exception as exc:  # counted and reported: the run fails its check
            failed += 1
            if failed == 1:
                log(f"  first sink failure: {exc!r}")

    if batched:
        await lockstep(count, concurrency, send)
    else:
        await closed_loop(count, concurrency, send)
    return ok, failed


@contextlib.asynccontextmanager
async def postgres_database(admin_dsn: str) -> AsyncIterator[str]:
    """A throw-away database on the server of ``admin_dsn``: its SQLAlchemy URL; dropped after."""
    name = f"slurmcast_bench_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base, _, _ = admin_dsn.rpartition("/")
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        connection = await asyncpg.connect(admin_dsn, timeout=5)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


async def postgres_reason(admin_dsn: str) -> str | None:
    """None when PostgreSQL answers at ``admin_dsn``; else why not."""
    try:
        connection = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


async def empty_outbox(url: str) -> None:
    """No notification and no delivery left from an earlier repetition."""
    engine = create_engine(parse_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM deliveries"))
            await conn.execute(text("DELETE FROM notifications"))
    finally:
        await engine.dispose()


async def drain(worker: DeliveryWorker, count: int) -> None:
    """Run the worker until it has recorded ``count`` deliveries (or anything else)."""
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            # Polled: the worker has no event to wait for (every 2 ms, a few wake-ups per batch).
            while sum(worker.outcomes.values()) < count and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.002)
    finally:
        # As a shutdown does: the batch under way is finished and recorded.
        worker.stop()
        async with asyncio.timeout(RUN_TIMEOUT):
            await task


class Phases:
    """Wall time spent in the worker's three steps (summed over concurrent calls), and the
    database connections the engine opened and checked out meanwhile (SQLAlchemy pool events,
    every pool of the process: only the store's is in use)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds: dict[str, float] = {}
        self.pool: Counter[str] = Counter()
        self.counting = False
        self._listeners = {name: self._pool_event(name) for name in ("connect", "checkout")}
        for name, listener in self._listeners.items():
            event.listen(Pool, name, listener)

    def close(self) -> None:
        for name, listener in self._listeners.items():
            event.remove(Pool, name, listener)

    def _pool_event(self, name: str) -> Callable[..., None]:
        def count(*args: object) -> None:
            if self.counting:
                self.pool[name] += 1

        return count

    def wrap(self, name: str, call: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def timed_call(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                self.calls[name] += 1
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return timed_call

    def data(self, count: int) -> dict[str, Any]:
        return {
            "mean_ms": {
                name: round(self.seconds[name] / self.calls[name] * 1000, 3) for name in self.calls
            },
            "calls": dict(self.calls),
            "connections_opened": self.pool["connect"],
            "checkouts_per_delivery": round(self.pool["checkout"] / count, 2),
        }


class TimedSink:
    """A sink that times another's ``send``."""

    kind = "webhook"

    def __init__(self, sink: WebhookSink, phases: Phases) -> None:
        self._send = phases.wrap("send", sink.send)

    async def send(self, outgoing: Outgoing) -> SendResult:
        return await self._send(outgoing)


async def run_worker(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    backend: str,
    url: str,
    count: int,
    repetition: int,
    rows: list[Row],
    profile: cProfile.Profile | None = None,
) -> None:
    """Fill the outbox at ``url`` with ``count`` deliveries, drain it, check everything."""
    store = NotificationStore(url)
    await store.start()
    phases = Phases()
    try:
        run = f"w{backend[:2]}{repetition}{'p' if profile else ''}"
        fill_s = await fill_outbox(store.outbox, count, receiver.url, run)
        await receiver.reset(session)
        outbox = store.outbox
        # Timed from outside: the instance's methods, not the class's.
        # "delivered": recording a batch's outcomes (``record``, one transaction a batch).
        for method, step in (("claim", "claim"), ("record", "delivered")):
            setattr(outbox, method, phases.wrap(step, getattr(outbox, method)))
        sink = TimedSink(WebhookSink(http_settings(), Secret(SECRET)), phases)
        worker = make_worker(outbox, sink)
        name = f"worker-{backend}" + (" (cProfile)" if profile else "")
        async with measured(name, repetition, count, receiver, rows) as extra:
            phases.counting = True
            if profile is not None:
                profile.enable()
            try:
                await drain(worker, count)
            finally:
                if profile is not None:
                    profile.disable()
                phases.counting = False
        extra["phases"] = phases.data(count)
        log(f"    {extra['phases']}")
        extra["fill_seconds"] = round(fill_s, 3)
        outcomes = {f"{k}/{o}": n for (k, o), n in worker.outcomes.items()}
        extra["outcomes"] = outcomes
        stats = await receiver.stats(session)
        extra["receiver"] = stats
        expect(outcomes == {"webhook/delivered": count}, f"{name}: outcomes {outcomes}")
        expect(
            stats == {"posts": count, "bad": 0, "distinct": count},
            f"{name}: the receiver saw {stats}, expected {count} distinct signed posts",
        )
        for state in (DeliveryState.PENDING, DeliveryState.DELIVERING, DeliveryState.DEAD):
            left = await store.outbox.list(state=state, limit=1)
            expect(not left.items, f"{name}: deliveries left {state.value}")
        delivered = 0
        before: str | None = None
        while True:
            page = await store.outbox.list(state=DeliveryState.DELIVERED, limit=500, before=before)
            delivered += len(page.items)
            if page.next_before is None:
                break
            before = page.next_before
        expect(delivered == count, f"{name}: {delivered} deliveries recorded delivered")
    finally:
        phases.close()
        await store.close()


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    count, concurrency = args.deliveries, args.concurrency
    backends = [b for b in args.backends.split(",") if b]
    postgres_skipped = None
    if "postgresql" in backends:
        postgres_skipped = await postgres_reason(args.postgres)
        if postgres_skipped is not None:
            log(f"warning: PostgreSQL skipped ({postgres_skipped})")
            backends.remove("postgresql")
    rows: list[Row] = []
    profile_text = None
    receiver = Receiver()
    await receiver.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            urls: dict[str, str] = {}
            # On the disk the server's data directory would be on, not a tmpfs.
            BUILD_DIR.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="delivery-", dir=BUILD_DIR)
            )
            if "postgresql" in backends:
                urls["postgresql"] = await stack.enter_async_context(
                    postgres_database(args.postgres)
                )
            # Warm up: connections, the receiver, the imports of the first send.
            await run_posts(receiver, session, 200, concurrency, fresh=False)
            await run_sink(receiver, 50, concurrency, batched=False, run="warm")
            for rep in range(1, args.repeat + 1):
                log(f"throughput, repetition {rep}/{args.repeat} ({count} each)")
                for fresh in (False, True):
                    await receiver.reset(session)
                    name = "post-fresh" if fresh else "post"
                    async with measured(name, rep, count, receiver, rows):
                        ok, failed = await run_posts(receiver, session, count, concurrency, fresh)
                    stats = await receiver.stats(session)
                    expect(ok == count and failed == 0, f"{name}: {ok} ok, {failed} failed")
                    expect(stats["posts"] == count and stats["bad"] == 0, f"{name}: {stats}")
                for batched in (False, True):
                    await receiver.reset(session)
                    name = "sink-batch" if batched else "sink"
                    async with measured(name, rep, count, receiver, rows):
                        ok, failed = await run_sink(
                            receiver, count, concurrency, batched, f"s{int(batched)}{rep}"
                        )
                    stats = await receiver.stats(session)
                    expect(ok == count and failed == 0, f"{name}: {ok} sent, {failed} failed")
                    expect(
                        stats == {"posts": count, "bad": 0, "distinct": count},
                        f"{name}: the receiver saw {stats}",
                    )
                for backend in backends:
                    url = urls.get(backend) or f"sqlite+aiosqlite:///{tmp}/outbox-{rep}.db"
                    if backend == "postgresql" and rep > 1:
                        await empty_outbox(url)
                    await run_worker(receiver, session, backend, url, count, rep, rows)
            if args.profile and "sqlite" in backends:
                log("throughput: one SQLite drain under cProfile")
                profile = cProfile.Profile()
                url = f"sqlite+aiosqlite:///{tmp}/outbox-profile.db"
                profiled: list[Row] = []
                await run_worker(receiver, session, "sqlite", url, count, 0, profiled, profile)
                profile_text = profile_summary(profile)
    finally:
        await receiver.stop()
    return summarise_throughput(rows, count, concurrency, postgres_skipped, profile_text)


def profile_summary(profile: cProfile.Profile, top: int = 20) -> str:
    """The top functions by own time, then slurmcast's by cumulative time.

    SQLAlchemy's asyncio layer runs on greenlets: cProfile charges a suspended call the time
    other tasks ran meanwhile, so cumulative times are summed over the 16 concurrent
    deliveries (wall, not CPU); they show where deliveries wait. The event loop's thread
    only: aiosqlite's threads are not profiled.
    """
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats("slurmcast/", top)
    return out.getvalue()


def summarise_throughput(
    rows: list[Row],
    count: int,
    concurrency: int,
    postgres_skipped: str | None,
    profile_text: str | None,
) -> dict[str, Any]:
    base = {r.repetition: r.rate for r in rows if r.name == "post"}
    data = []
    for row in rows:
        item = row.data()
        item["ratio_to_post"] = round(row.rate / base[row.repetition], 3)
        data.append(item)
    names = list(dict.fromkeys(r.name for r in rows))
    summary = {}
    for name in names:
        mine = [d for d in data if d["name"] == name]
        summary[name] = {
            "per_s": statistics.median(d["per_s"] for d in mine),
            "ratio_to_post": statistics.median(d["ratio_to_post"] for d in mine),
            "ratios": [d["ratio_to_post"] for d in mine],
            "cpu_us_per_delivery": statistics.median(d["cpu_us_per_delivery"] for d in mine),
            "cpu_percent": statistics.median(d["cpu_percent"] for d in mine),
            "receiver_cpu_percent": statistics.median(d["receiver_cpu_percent"] for d in mine),
            "other_cpu_percent": statistics.median(d["other_cpu_percent"] for d in mine),
        }
        phases = [d["phases"] for d in mine if "phases" in d]
        if phases:
            summary[name]["mean_ms"] = {
                step: statistics.median(p["mean_ms"][step] for p in phases)
                for step in ("claim", "send", "delivered")
            }
            summary[name]["connections_opened_per_100"] = statistics.median(
                100 * p["connections_opened"] / count for p in phases
            )
            summary[name]["fill_seconds"] = statistics.median(d["fill_seconds"] for d in mine)
    return {
        "deliveries": count,
        "concurrency": concurrency,
        "worker_batch": BATCH,
        "rows": data,
        "summary": summary,
        "postgresql_skipped": postgres_skipped,
        "profile": profile_text,
    }


# --------------------------------------------------------------------------- planning


def listings(
    jobs: int, pending: int, changes: int, users: int, seed: int = 18
) -> tuple[dict[str, JobRecord], dict[str, JobRecord]]:
    """Two jobs polls: ``changes`` jobs change state between them (half start, half end);
    the second lists ``pending`` pending jobs, the rest running or just ended."""
    rng = random.Random(seed)
    starts = changes // 2
    ends = changes - starts
    if pending + changes > jobs:
        raise SetupError("--pending + --changes must not exceed --jobs")
    before: dict[str, JobRecord] = {}
    after: dict[str, JobRecord] = {}
    for index in range(jobs):
        job_id = str(2_000_000 + index)
        submitted = NOW - timedelta(minutes=rng.uniform(1, 600))
        queued = JobRecord(
            job_id=job_id,
            name=f"{NAMES[index % len(NAMES)]}-{index % 97}",
            user=f"user{index % users:04d}",
            partition=PARTITIONS[index % len(PARTITIONS)],
            state=JobState.PENDING,
            cpus=4,
            memory_mb=8192,
            submit_time=submitted,
            time_limit_min=240,
            account="physics",
            qos="normal",
            reason="Priority",
        )
        started = min(NOW - timedelta(seconds=30), submitted + timedelta(minutes=1))
        running = JobRecord(
            **{
                **_fields(queued),
                "state": JobState.RUNNING,
                "nodes": (f"node{index % 2000:04d}",),
                "start_time": started,
                "reason": None,
            }
        )
        if index < pending:
            before[job_id] = after[job_id] = queued
        elif index < pending + starts:
            before[job_id], after[job_id] = queued, running
        elif index < pending + starts + ends:
            state = ENDS[index % len(ENDS)]
            ended = JobRecord(
                **{
                    **_fields(running),
                    "state": state,
                    "end_time": NOW - timedelta(seconds=10),
                    "exit_code": 0 if state is JobState.COMPLETED else 1,
                }
            )
            before[job_id], after[job_id] = running, ended
        else:
            before[job_id] = after[job_id] = running
    return before, after


def _fields(job: JobRecord) -> dict[str, Any]:
    return {name: getattr(job, name) for name in JobRecord.__dataclass_fields__}


def make_rules(users: int, count: int, pending: bool) -> list[Rule]:
    """``count`` rules, one per user in turn (user0000's first), as ``reload`` reads them."""
    events = ["job_started", *sorted(event.value for event in FINAL_EVENTS)]
    spec: dict[str, Any] = {"events": events, "destination": {"kind": "email"}}
    if pending:
        spec = {**spec, "events": [*events, "job_pending_long"]}
        spec["pending_minutes"] = PENDING_MINUTES
    return [
        restore_rule(spec, f"user{i % users:04d}", f"rule-{i:05d}", LOCAL) for i in range(count)
    ]


def counter() -> Callable[[], str]:
    numbers = itertools.count()
    return lambda: f"notif-{next(numbers)}"


@dataclass
class Timed:
    cpu_s: float
    wall_s: float
    planned: int = 0
    deliveries: int = 0


@contextlib.contextmanager
def timed(into: list[Timed]) -> Iterator[Timed]:
    result = Timed(0.0, 0.0)
    cpu, wall = time.thread_time(), time.perf_counter()
    yield result
    result.cpu_s, result.wall_s = time.thread_time() - cpu, time.perf_counter() - wall
    into.append(result)


def plan_step(
    planner: DeliveryPlanner, events: Sequence[object], jobs: JobsListing, into: list[Timed]
) -> None:
    with timed(into) as result:
        planned = planner.plan(events, NOW, jobs)
    result.planned = len(planned)
    result.deliveries = sum(len(p.deliveries) for p in planned)


async def planning(args: argparse.Namespace) -> dict[str, Any]:
    log(
        f"planning: {args.jobs:,} jobs ({args.pending:,} pending), {args.changes} changes, "
        f"{args.users:,} users"
    )
    before, after = listings(args.jobs, args.pending, args.changes, args.users)
    rule_counts = [int(n) for n in args.rules.split(",") if n]
    # An outbox the planner never touches here (rules are given, not reloaded).
    with tempfile.TemporaryDirectory(prefix="bench-planner-") as tmp:
        engine = create_engine(parse_url(f"sqlite+aiosqlite:///{tmp}/unused.db"))
        try:
            result = await _planning(args, before, after, rule_counts, OutboxStore(engine))
        finally:
            await engine.dispose()
    return result


async def _planning(
    args: argparse.Namespace,
    before: dict[str, JobRecord],
    after: dict[str, JobRecord],
    rule_counts: list[int],
    outbox: OutboxStore,
) -> dict[str, Any]:
    configs: list[tuple[str, int, bool]] = [("no rules", 0, False)]
    for n in rule_counts:
        configs += [(f"{n} rules: start/end", n, False), (f"{n} rules: + pending", n, True)]
    rules = {(n, p): make_rules(args.users, n, p) for _, n, p in configs}
    diffs: list[Timed] = []
    first: dict[str, list[Timed]] = {name: [] for name, _, _ in configs}
    steady: dict[str, list[Timed]] = {name: [] for name, _, _ in configs}
    events: list[object] = []
    # What the poller hands the planner: the listing, taken now.
    listing = JobsListing(NOW, after)
    for rep in range(1, args.repeat + 1):
        gc.collect()
        with timed(diffs):
            changes, _ = paused(diff_jobs)(before, after, {})
        notes = notifications_for(changes, NOW, counter())
        events = [*changes, *notes]
        for name, n, pending in configs:
            planner = DeliveryPlanner(outbox, LOCAL, counter())
            planner.rules = rules[(n, pending)]
            gc.collect()
            plan_step(planner, events, listing, first[name])
            for _ in range(args.steps - 1):
                plan_step(planner, events, listing, steady[name])
            line = f"  repetition {rep}: {name}: first step {first[name][-1].cpu_s * 1000:,.1f} ms"
            if args.steps > 1:
                recent = steady[name][-(args.steps - 1) :]
                line += f", next {statistics.median(t.cpu_s for t in recent) * 1000:,.1f} ms"
            log(f"{line} (diff {diffs[-1].cpu_s * 1000:.1f} ms)")
    diff_ms = statistics.median(t.cpu_s for t in diffs) * 1000
    rows = []
    for name, n, pending in configs:
        for kind, samples in (("first step", first[name]), ("next steps", steady[name])):
            if not samples:
                continue
            cpu_ms = statistics.median(t.cpu_s for t in samples) * 1000
            rows.append(
                {
                    "config": name,
                    "rules": n,
                    "pending_rules": pending,
                    "step": kind,
                    "cpu_ms": round(cpu_ms, 2),
                    "wall_ms": round(statistics.median(t.wall_s for t in samples) * 1000, 2),
                    "max_wall_ms": round(max(t.wall_s for t in samples) * 1000, 2),
                    "ratio_to_diff": round(cpu_ms / diff_ms, 3),
                    "notifications": samples[-1].planned,
                    "deliveries": samples[-1].deliveries,
                    "samples": len(samples),
                }
            )
    return {
        "jobs": args.jobs,
        "pending": args.pending,
        "changes": args.changes,
        "users": args.users,
        "events": len(events),
        "pending_minutes": PENDING_MINUTES,
        "diff_cpu_ms": round(diff_ms, 2),
        "diff_samples_ms": [round(t.cpu_s * 1000, 2) for t in diffs],
        "rows": rows,
    }


# --------------------------------------------------------------------------- report


def print_report(report: dict[str, Any]) -> None:
    print(machine_line(report["machine"]))
    result = report.get("throughput")
    if result:
        print(
            f"\nthroughput: {result['deliveries']} deliveries, concurrency {result['concurrency']} "
            f"(medians of {max(r['repetition'] for r in result['rows'])})"
        )
        print(
            f"{'run':20} {'per s':>9} {'/ post':>7} {'ratios':>20} {'CPU µs each':>12} "
            f"{'CPU %':>6} {'receiver %':>11} {'other %':>8}"
        )
        for name, s in result["summary"].items():
            ratios = ", ".join(f"{r:.3f}" for r in s["ratios"])
            print(
                f"{name:20} {s['per_s']:9,.0f} {s['ratio_to_post']:7.3f} {ratios:>20} "
                f"{s['cpu_us_per_delivery']:12,.0f} {s['cpu_percent']:6.0f} "
                f"{s['receiver_cpu_percent']:11.0f} {s['other_cpu_percent']:8.0f}"
            )
        workers = {n: w for n, w in result["summary"].items() if "mean_ms" in w}
        if workers:
            print(
                f"\n{'worker':20} {'claim ms':>9} {'send ms':>8} {'record ms':>10} "
                f"{'DB connections opened / 100':>28} {'fill s':>7}"
            )
            for name, w in workers.items():
                ms = w["mean_ms"]
                print(
                    f"{name:20} {ms['claim']:9.1f} {ms['send']:8.1f} {ms['delivered']:10.1f} "
                    f"{w['connections_opened_per_100']:28.0f} {w['fill_seconds']:7.2f}"
                )
            print("(mean wall time per call; 16 deliveries are sent and recorded at once)")
        if result["postgresql_skipped"]:
            print(f"PostgreSQL skipped: {result['postgresql_skipped']}")
        if result["profile"]:
            print("\ncProfile of one SQLite drain:\n" + result["profile"])
    plan = report.get("planning")
    if plan:
        print(
            f"\nplanning: {plan['jobs']:,} jobs, {plan['pending']:,} pending, "
            f"{plan['changes']} changes ({plan['events']} events with notifications), "
            f"{plan['users']:,} users; diff_jobs {plan['diff_cpu_ms']:.1f} ms CPU"
        )
        print(
            f"{'rules':28} {'step':11} {'CPU ms':>9} {'/ diff':>8} {'max wall ms':>12} "
            f"{'notifications':>14} {'deliveries':>11}"
        )
        for r in plan["rows"]:
            print(
                f"{r['config']:28} {r['step']:11} {r['cpu_ms']:9,.1f} {r['ratio_to_diff']:8.2f} "
                f"{r['max_wall_ms']:12,.1f} {r['notifications']:14,} {r['deliveries']:11,}"
            )


def log_problems() -> list[str]:
    try:
        lines = LOG_FILE.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if any(marker in line for marker in BAD_LOG_MARKERS)]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine_info(), "started": iso_z(utc_now())}
    started = time.perf_counter()
    if args.only in (None, "throughput"):
        report["throughput"] = await throughput(args)
    if args.only in (None, "planning"):
        report["planning"] = await planning(args)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Delivery worker throughput and planning cost, against same-run baselines.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--only", choices=("throughput", "planning"), default=None)
    parser.add_argument("--repeat", type=int, default=2, help="repetitions (medians reported)")
    parser.add_argument("--deliveries", type=int, default=2000, help="deliveries (POSTs) per run")
    parser.add_argument("--concurrency", type=int, default=BATCH, help="POSTs in flight")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin DSN (trust auth)")
    parser.add_argument("--profile", action="store_true", help="cProfile one SQLite drain")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--pending", type=int, default=5_000)
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--rules", default="1000", help="comma-separated rule counts")
    parser.add_argument("--steps", type=int, default=3, help="planner steps per repetition")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--receiver", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.deliveries < 1 or args.steps < 1 or args.concurrency < 1:
        parser.error("--repeat, --deliveries, --steps and --concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.receiver is not None:
        receiver_main(args.receiver)
        return 0
    if not pin(SERVER_CORE):
        log("warning: this process is not pinned (fewer than 2 cores?)")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_stream = LOG_FILE.open("w")
    # As `slurmcast serve` logs by default: one INFO line per delivery sent.
    configure_logging("INFO", stream=log_stream)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    import uvloop

    try:
        report = uvloop.run(run(args))
    except SetupError as exc:
        log(f"delivery: {exc}")
        return 2
    except CheckFailed as exc:
        log(f"delivery: check failed: {exc}")
        return 1
    finally:
        log_stream.close()
    problems = log_problems()
    report["log_problems"] = problems[:10]
    write_json(report, args.json_out, args.json)
    if not args.json:
        print_report(report)
        print(f"\n{report['seconds']} s; log: {LOG_FILE}")
    if problems:
        log(f"delivery: {len(problems)} error lines in {LOG_FILE}, first: {problems[0][:200]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
