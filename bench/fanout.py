"""WebSocket fan-out benchmark: slurmcast against Node ``ws`` and uWebSockets.js, same run.

For each subscriber count N (default 1000, 5000 and 10000) and each server of
``--servers`` (by default the two anchors of ../shared/bench-anchors, Node
``ws`` and uWebSockets.js, installed into bench/.build/anchors, then
slurmcast; the naive Python baseline of bench/naive_server.py on request) this

1. waits (briefly) for the machine to be idle, then starts the server pinned
   to core 0 (``taskset -c 0``), the simulated cluster made quiet
   (``--*-interval 3600``) and keepalive pings moved out of the measurement
   (``--ping-interval 600``: all N clients connect within a second or two, so
   with the default 20 s their pings would arrive as one burst in the middle
   of a run instead of spread evenly as in production);
2. runs the C load generator wsload (../shared/tools/wsload.c, compiled into
   bench/.build/) pinned to core 1: N WebSocket clients subscribed to ``jobs``;
3. samples the server's RSS before and after the clients connect (memory per
   connection);
4. **max phase**: publishes M messages through ``POST /broadcast`` as fast as
   the server completes them (a closed loop of ``--publishers`` concurrent
   POSTs on one keep-alive aiohttp session, from this process, also on core 1),
   so the server is never idle; an anchor is asked once to publish M messages
   itself, one per loop iteration (it has no HTTP parsing to pay per message);
   wsload reports delivered messages/s (N x M / (last delivery - first
   publish)) and end-to-end latency (delivery time - ``ts_us`` stamped into
   the message just before its POST);
5. **fixed phase**: a fresh set of N clients, and messages published open-loop
   at a fixed rate (``--latency-rate``, or by default half the first server's
   max-phase capacity at that N), so latency is measured below saturation
   too (``sched_us`` carries the scheduled publish time, so a server that
   falls behind is charged for it: coordinated omission is accounted for);
6. checks that nothing was lost: every client got every message, nobody was
   disconnected, every POST reported N deliveries, the server log is clean.

Server CPU is read from /proc/<pid>/stat (utime+stime, and stime alone) over
the publishing window; wsload reports its own; the publisher's is this
process's rusage. "other CPU" is the busy time of cores 0 and 1 (/proc/stat)
not accounted for by those three: when it is high, something else ran during
the measurement and the run is flagged (``yes*`` in the table) as disturbed.
Results vary from run to run on a shared VM; ``--repeat`` runs the whole
matrix several times and judges the target on the median ratios.

Usage::

    .venv/bin/python bench/fanout.py                       # 1k, 5k, 10k; node-ws, uws, slurmcast
    .venv/bin/python bench/fanout.py --latency-rate 10     # issue 14: 10 publishes/s
    .venv/bin/python bench/fanout.py --clients 5000 --only slurmcast
    .venv/bin/python bench/fanout.py --servers naive,slurmcast   # issue 5's comparison
    .venv/bin/python bench/fanout.py --json > results.json
    .venv/bin/python bench/fanout.py --repeat 3 --json-out bench/results/fanout.json

Per-run server logs are kept in bench/.build/logs/ (git-ignored).

Exit status: 0 when every run delivered everything cleanly, 1 when something
failed (see the ``errors`` of each run), 2 for a usage or setup error,
3 with ``--check-target`` when a goal is missed: at least 1.0x Node ``ws``'s
and 0.8x uWebSockets.js's delivered msgs/s at every N (issue 14); against the
naive server, 1.3x its throughput at the largest N with a lower p99 (issue 5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import itertools
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from benchlib import (
    ANCHORS,
    CLIENT_CORE,
    SERVER_CORE,
    MessageFactory,
    PostLog,
    ServerProcess,
    WsLoad,
    add_run_arguments,
    check_fd_limit,
    client_session,
    core_times,
    cores_busy,
    fixed_phase_count,
    fmt,
    log,
    machine_info,
    machine_line,
    ok_cell,
    percentile,
    phase_cell,
    post_json,
    prepare_anchors,
    prepare_load,
    proc_cpu_seconds,
    proc_rss_kib,
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

#: Every server this benchmark knows, in the order they run at each N.
SERVERS = ("naive", "node-ws", "uws", "slurmcast")
#: What runs by default: the two anchors of issue 14, then slurmcast.
DEFAULT_SERVERS = ("node-ws", "uws", "slurmcast")
#: Issue 14's goals: slurmcast / anchor delivered msgs/s at every N.
ANCHOR_GOALS = {"node-ws": 1.0, "uws": 0.8}
#: Deliveries per max-phase run when --messages-per-client is "auto".
AUTO_DELIVERIES = 2_000_000
#: Target of the issue: slurmcast / naive delivered msgs/s at the largest N.
TARGET_RATIO = 1.3


# --------------------------------------------------------------------------- publishing


@dataclass(slots=True)
class PublishStats(PostLog):
    """PostLog plus the deliveries the POSTs reported, in total."""

    delivered: int = 0


async def post_one(
    session: aiohttp.ClientSession, url: str, body: bytes, expect: int, stats: PublishStats
) -> None:
    """POST one message, which the server must deliver to ``expect`` clients."""
    answer = await post_json(session, url, body, stats)
    if answer is None:
        return
    delivered = int(answer.get("delivered", 0))
    stats.delivered += delivered
    if delivered != expect:
        stats.fail(f"POST delivered to {delivered}, expected {expect}")


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    wall: float
    server_user: float
    server_sys: float
    publisher: float
    cores: dict[int, tuple[float, float, float]]

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        user, system = proc_cpu_seconds(server_pid)
        return cls(time.monotonic(), user, system, self_cpu_seconds(), core_times())

    @property
    def server(self) -> float:
        return self.server_user + self.server_sys


# --------------------------------------------------------------------------- one run


@dataclass(slots=True)
class RunResult:
    server: str
    clients: int
    mode: str  # "max" (closed loop, saturating) or "fixed" (open loop at rate)
    messages_per_client: int
    repeat: int = 1
    rate_pubs_per_s: float | None = None
    msgs_per_s: float = 0.0
    driver_msgs_per_s: float = 0.0
    pubs_per_s: float = 0.0
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    p999_ms: float = float("nan")
    max_ms: float = float("nan")
    sched_p50_ms: float | None = None
    sched_p99_ms: float | None = None
    post_p50_ms: float = float("nan")
    post_p99_ms: float = float("nan")
    server_cpu_pct: float = float("nan")
    server_sys_pct: float = float("nan")
    core0_busy_pct: float | None = None
    core1_busy_pct: float | None = None
    steal_pct: float | None = None
    other_cpu_pct: float | None = None
    wsload_cpu_pct: float = float("nan")
    publisher_cpu_pct: float = float("nan")
    window_s: float = 0.0
    connect_s: float = 0.0
    rss_before_kib: int | None = None
    rss_connected_kib: int | None = None
    rss_after_kib: int | None = None
    rss_per_conn_kib: float | None = None
    expected: int = 0
    received: int = 0
    post_delivered: int = 0
    other_text: int = 0
    pings: int = 0
    closes: int = 0
    conn_errors: int = 0
    clients_after: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class Settings:
    clients: tuple[int, ...]
    messages_per_client: int | None
    size: int
    only: tuple[str, ...]
    publishers: int
    latency_fraction: float
    latency_rate: float | None
    latency_seconds: float
    connect_timeout: float
    recv_timeout: float
    wsload_src: Path
    repeat: int = 1
    wait_idle: float = 10.0
    ping_interval: float = 600.0
    slurmcast_args: tuple[str, ...] = ()

    def messages_for(self, clients: int) -> int:
        if self.messages_per_client is not None:
            return self.messages_per_client
        return max(20, round(AUTO_DELIVERIES / clients))


@dataclass(frozen=True, slots=True)
class ServerRun:
    """What the phases against one server share."""

    server: ServerProcess
    session: aiohttp.ClientSession
    wsload_bin: Path
    settings: Settings
    messages: MessageFactory
    clients: int


async def run_phase(
    run: ServerRun, mode: str, count: int, rate: float | None, measure_memory: bool
) -> RunResult:
    server, session, settings, clients = run.server, run.session, run.settings, run.clients
    messages = run.messages
    result = RunResult(server.kind, clients, mode, count, rate_pubs_per_s=rate)
    result.expected = clients * count
    url = f"{server.base_url}/broadcast"
    if not server.is_anchor:
        # Settle: the previous phase's clients must be gone.
        [(connected, _)] = await wait_for_counts([server], session, [0], 15)
        if connected != 0:
            result.errors.append(f"{connected} clients still connected before the run")
    if measure_memory:
        await asyncio.sleep(0.3)
        result.rss_before_kib = proc_rss_kib(server.pid)
    wsload = WsLoad(run.wsload_bin)
    try:
        await wsload.start(
            server.ws_port, clients, count, settings.connect_timeout, settings.recv_timeout
        )
        ready = await wsload.ready(settings.connect_timeout + 15)
        result.connect_s = ready.get("connect_s", 0.0)
        if ready.get("acks") != clients or ready.get("errors", 0) != 0:
            detail = " | ".join(wsload.stderr_lines[:3])
            raise RuntimeError(f"clients could not subscribe: {ready} {detail}".strip())
        if not server.is_anchor:
            [(connected, _)] = await wait_for_counts([server], session, [clients], 10)
            if connected != clients:
                result.errors.append(f"server counts {connected} clients, not {clients}")
        if measure_memory:
            await asyncio.sleep(0.3)
            result.rss_connected_kib = proc_rss_kib(server.pid)
            assert result.rss_before_kib is not None
            result.rss_per_conn_kib = (result.rss_connected_kib - result.rss_before_kib) / clients
        stats = PublishStats()

        async def send(seq: int, body: bytes) -> None:
            await post_one(session, url, body, clients, stats)

        before = CpuSnapshot.take(server.pid)
        if server.is_anchor:
            # The anchor publishes by itself: count messages, at rate (0: at once).
            await anchor_publish(session, url, messages, count, rate or 0.0, clients, stats)
        elif mode == "max":
            await publish_closed_loop(messages, count, settings.publishers, send)
        else:
            assert rate is not None
            await publish_fixed_rate(messages, count, rate, send)
        published = time.monotonic()
        remaining = settings.recv_timeout - (published - before.wall) + 10
        await wait_done_or_dead(server, wsload, max(remaining, 10), result)
        after = CpuSnapshot.take(server.pid)
        if server.is_anchor:
            result.clients_after = clients  # no /health: wsload's report speaks for them
        else:
            health = await server.health(session)
            result.clients_after = health.get("clients")
        result.rss_after_kib = proc_rss_kib(server.pid)
        report = await wsload.finish()
    except BaseException:
        await wsload.kill()
        raise
    window = after.wall - before.wall
    result.window_s = window
    # Cross-check of wsload's figure: all deliveries over first POST -> last delivery seen.
    result.driver_msgs_per_s = result.expected / window if window > 0 else 0.0
    result.server_cpu_pct = 100 * (after.server - before.server) / window
    result.server_sys_pct = 100 * (after.server_sys - before.server_sys) / window
    result.publisher_cpu_pct = 100 * (after.publisher - before.publisher) / window
    busy = cores_busy(before.cores, after.cores)
    result.core0_busy_pct = busy.get(SERVER_CORE)
    result.core1_busy_pct = busy.get(CLIENT_CORE)
    steal = cores_busy(before.cores, after.cores, 2)
    steals = [steal.get(core) for core in (SERVER_CORE, CLIENT_CORE)]
    result.steal_pct = max((s for s in steals if s is not None), default=None)
    if result.core0_busy_pct is not None and result.core1_busy_pct is not None:
        # Busy time of both cores not accounted for by our three processes.
        ours = result.server_cpu_pct + result.publisher_cpu_pct
        # wsload's own figure covers first delivery -> end; scale it to the window.
        wsload_cpu = float(report.get("phase2_cpu_s", 0.0)) * 100 / window
        result.other_cpu_pct = result.core0_busy_pct + result.core1_busy_pct - ours - wsload_cpu
    result.post_delivered = stats.delivered
    result.post_p50_ms = percentile(stats.post_ms, 50)
    result.post_p99_ms = percentile(stats.post_ms, 99)
    result.errors.extend(stats.failures[:10])
    absorb_wsload_report(result, report, clients, count)
    if stats.delivered != result.expected:
        result.errors.append(
            f"POSTs reported {stats.delivered} deliveries, expected {result.expected}"
        )
    if result.clients_after != clients:
        result.errors.append(
            f"{result.clients_after} clients connected at the end, expected {clients}"
        )
    add_warnings(result)
    if wsload.stderr_lines:
        result.errors.extend(f"wsload: {line}" for line in wsload.stderr_lines[:5])
    return result


async def anchor_publish(
    session: aiohttp.ClientSession,
    url: str,
    messages: MessageFactory,
    count: int,
    rate: float,
    clients: int,
    stats: PublishStats,
) -> None:
    """One POST that makes an anchor publish ``count`` messages to its subscribers."""
    body = orjson.dumps(
        {"channel": "jobs", "count": count, "rate": rate, "event": messages.anchor_event()}
    )
    started = time.perf_counter()
    try:
        async with session.post(url, data=body) as resp:
            raw, status = await resp.read(), resp.status
    except (aiohttp.ClientError, OSError) as exc:
        stats.fail(f"POST failed: {exc!r}")
        return
    stats.post_ms.append((time.perf_counter() - started) * 1000)
    stats.posts += 1
    answer = orjson.loads(raw) if status == 200 else None
    if not isinstance(answer, dict) or "published" not in answer:
        stats.fail(f"POST answered {status}: {raw[:200]!r}")
        return
    subscribers = int(answer.get("subscribers", 0))
    if subscribers != clients:
        stats.fail(f"the anchor had {subscribers} subscribers, expected {clients}")
    stats.delivered += subscribers * int(answer.get("published", 0))


class ServerDied(RuntimeError):
    """The server under test exited during a run."""


async def wait_done_or_dead(
    server: ServerProcess, wsload: WsLoad, timeout: float, result: RunResult
) -> None:
    """Wait for wsload's DONE; give up at once if the server exits meanwhile."""
    assert server.proc is not None
    done = asyncio.ensure_future(wsload.done(timeout))
    dead = asyncio.ensure_future(server.proc.wait())
    try:
        await asyncio.wait({done, dead}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        dead.cancel()
    if not done.done():
        done.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await done
        raise ServerDied(f"{server.kind} exited with status {server.proc.returncode} mid-run")
    exc = done.exception()
    if exc is not None:
        result.errors.append(f"wsload did not finish: {exc!r}")


async def guarded_phase(
    run: ServerRun, mode: str, count: int, rate: float | None, measure_memory: bool
) -> RunResult:
    """run_phase, with a run that cannot complete reported as a failed result."""
    try:
        return await run_phase(run, mode, count, rate, measure_memory)
    except (RuntimeError, TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
        result = RunResult(run.server.kind, run.clients, mode, count, rate_pubs_per_s=rate)
        result.expected = run.clients * count
        result.errors.append(f"run aborted: {exc!r}")
        return result


def add_warnings(result: RunResult) -> None:
    """Flag measurements whose conditions were not the intended ones."""
    if result.mode == "max" and result.server_cpu_pct < 90:
        result.warnings.append(
            f"server used only {result.server_cpu_pct:.0f}% CPU: it was not saturated"
        )
    if result.core1_busy_pct is not None and result.core1_busy_pct > 90:
        result.warnings.append(
            f"client core {result.core1_busy_pct:.0f}% busy: the load generator may be the limit"
        )
    if result.other_cpu_pct is not None and result.other_cpu_pct > 15:
        result.warnings.append(
            f"{result.other_cpu_pct:.0f}% of a core used by other processes during the run: "
            "the measurement was disturbed, run it again"
        )
    if result.steal_pct is not None and result.steal_pct > 2:
        result.warnings.append(f"{result.steal_pct:.0f}% steal time: the host was busy")


def absorb_wsload_report(
    result: RunResult, report: dict[str, Any], clients: int, count: int
) -> None:
    lat = report.get("lat_ms", {})
    sched = report.get("lat_sched_ms", {})
    result.msgs_per_s = float(report.get("msgs_per_s", 0.0))
    result.pubs_per_s = result.msgs_per_s / clients
    result.p50_ms = float(lat.get("p50", float("nan")))
    result.p90_ms = float(lat.get("p90", float("nan")))
    result.p99_ms = float(lat.get("p99", float("nan")))
    result.p999_ms = float(lat.get("p999", float("nan")))
    result.max_ms = float(lat.get("max", float("nan")))
    if result.mode == "fixed":
        result.sched_p50_ms = float(sched.get("p50", float("nan")))
        result.sched_p99_ms = float(sched.get("p99", float("nan")))
    result.wsload_cpu_pct = float(report.get("active_cpu_pct", float("nan")))
    result.received = int(report.get("received", 0))
    result.other_text = int(report.get("other_text", 0))
    result.pings = int(report.get("pings", 0))
    result.closes = int(report.get("closes", 0))
    result.conn_errors = int(report.get("conn_errors", 0))
    if result.received != result.expected:
        result.errors.append(f"wsload received {result.received} of {result.expected} messages")
    result.errors.extend(wsload_errors(report, clients, count))


async def bench_server(
    kind: str,
    clients: int,
    settings: Settings,
    wsload_bin: Path,
    session: aiohttp.ClientSession,
    messages: MessageFactory,
    baseline_capacity: float | None,
) -> list[RunResult]:
    """Both phases against one freshly started server."""
    busy = await wait_until_idle(settings.wait_idle) if settings.wait_idle > 0 else None
    extra = settings.slurmcast_args if kind == "slurmcast" else ()
    server = ServerProcess(kind, clients, settings.ping_interval, extra)
    await server.start(session)
    results: list[RunResult] = []
    run = ServerRun(server, session, wsload_bin, settings, messages, clients)
    try:
        count = settings.messages_for(clients)
        log(f"[{kind} N={clients}] max phase: {count} publications x {clients} clients")
        maximum = await guarded_phase(run, "max", count, None, True)
        if busy:
            maximum.warnings.append(busy)
        results.append(maximum)
        log_result(maximum)
        alive = server.proc is not None and server.proc.returncode is None
        if settings.latency_seconds > 0 and alive:
            if settings.latency_rate is not None:
                rate = settings.latency_rate
            else:
                capacity = baseline_capacity if baseline_capacity else maximum.pubs_per_s
                rate = settings.latency_fraction * capacity
            if rate > 0:
                fixed_count = fixed_phase_count(rate, settings.latency_seconds)
                log(f"[{kind} N={clients}] fixed phase: {fixed_count} publications at {rate:.2f}/s")
                fixed = await guarded_phase(run, "fixed", fixed_count, rate, False)
                results.append(fixed)
                log_result(fixed)
    finally:
        code = await server.stop()
        problem = server.log_problem()
        if results:
            if problem:
                results[0].errors.append(problem)
            # Node has no SIGTERM handler: it dies of the signal, which is its normal end.
            if code not in (0, None) and not (server.is_anchor and code == -signal.SIGTERM):
                results[-1].errors.append(f"{kind} exited with status {code}")
    return results


def log_result(r: RunResult) -> None:
    status = status_text(r.errors, r.warnings)
    log(
        f"    {r.msgs_per_s:>9,.0f} msgs/s (driver {r.driver_msgs_per_s:,.0f})  "
        f"p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  "
        f"server CPU {r.server_cpu_pct:.0f}% (sys {r.server_sys_pct:.0f}%)  "
        f"wsload CPU {r.wsload_cpu_pct:.0f}%  "
        f"publisher CPU {r.publisher_cpu_pct:.0f}%  [{status}]"
    )


# --------------------------------------------------------------------------- report


def ratios(results: list[RunResult]) -> list[dict[str, Any]]:
    """slurmcast / every other server at each (repeat, N)."""
    by_key = {(r.repeat, r.server, r.clients, r.mode): r for r in results}
    rows = []
    baselines = [kind for kind in SERVERS if kind != "slurmcast"]
    for repeat, clients in sorted({(r.repeat, r.clients) for r in results}):
        fast = by_key.get((repeat, "slurmcast", clients, "max"))
        for baseline in baselines:
            slow = by_key.get((repeat, baseline, clients, "max"))
            if fast is None or slow is None or not (fast.ok and slow.ok):
                continue  # a failed run has no meaningful ratio
            row: dict[str, Any] = {
                "repeat": repeat,
                "clients": clients,
                "baseline": baseline,
                "throughput_ratio": fast.msgs_per_s / slow.msgs_per_s,
                "p50_ratio": fast.p50_ms / slow.p50_ms if slow.p50_ms else None,
                "p99_ratio": fast.p99_ms / slow.p99_ms if slow.p99_ms else None,
                "p99_lower": fast.p99_ms < slow.p99_ms,
            }
            if fast.rss_per_conn_kib is not None and slow.rss_per_conn_kib:
                row["rss_ratio"] = fast.rss_per_conn_kib / slow.rss_per_conn_kib
            fast_fixed = by_key.get((repeat, "slurmcast", clients, "fixed"))
            slow_fixed = by_key.get((repeat, baseline, clients, "fixed"))
            if fast_fixed and slow_fixed and slow_fixed.p99_ms:
                row["fixed_p50_ratio"] = fast_fixed.p50_ms / slow_fixed.p50_ms
                row["fixed_p99_ratio"] = fast_fixed.p99_ms / slow_fixed.p99_ms
            row["disturbed"] = bool(
                [w for w in fast.warnings + slow.warnings if "other processes" in w or "idle" in w]
            )
            rows.append(row)
    return rows


def target_verdict(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The goals against each baseline, at every N (medians over repeats).

    Against the anchors (issue 14): at least ANCHOR_GOALS[baseline] x their
    delivered msgs/s at every N. Against the naive server (issue 5): at least
    TARGET_RATIO x at the largest N, with a lower p99.
    """
    if not rows:
        return None
    goals = []
    for baseline in sorted({row["baseline"] for row in rows}):
        mine = [row for row in rows if row["baseline"] == baseline]
        sizes = sorted({row["clients"] for row in mine})
        if baseline == "naive":
            sizes = sizes[-1:]
        for clients in sizes:
            at_n = [row for row in mine if row["clients"] == clients]
            throughput = statistics.median(row["throughput_ratio"] for row in at_n)
            p99s = [row["p99_ratio"] for row in at_n if row["p99_ratio"] is not None]
            p99 = statistics.median(p99s) if p99s else None
            required = ANCHOR_GOALS.get(baseline, TARGET_RATIO)
            met = throughput >= required
            if baseline == "naive":
                met = met and p99 is not None and p99 < 1
            goals.append(
                {
                    "baseline": baseline,
                    "clients": clients,
                    "repeats": len(at_n),
                    "throughput_ratio": throughput,
                    "throughput_ratios": [row["throughput_ratio"] for row in at_n],
                    "p99_ratio": p99,
                    "required_ratio": required,
                    "met": met,
                }
            )
    return {"goals": goals, "met": all(goal["met"] for goal in goals)}


def table(results: list[RunResult]) -> str:
    header = (
        "| run | server | clients | phase | delivered msgs/s | pubs/s | p50 ms | p99 ms | "
        "server CPU % (sys) | wsload CPU % | publisher CPU % | other CPU % | "
        "RSS/conn KiB | ok |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        lines.append(
            f"| {r.repeat} | {r.server} | {r.clients} | {phase_cell(r.mode, r.rate_pubs_per_s)} | "
            f"{r.msgs_per_s:,.0f} | "
            f"{r.pubs_per_s:.1f} | {fmt(r.p50_ms, '.2f')} | {fmt(r.p99_ms, '.2f')} | "
            f"{fmt(r.server_cpu_pct, '.0f')} ({fmt(r.server_sys_pct, '.0f')}) | "
            f"{fmt(r.wsload_cpu_pct, '.0f')} | {fmt(r.publisher_cpu_pct, '.0f')} | "
            f"{fmt(r.other_cpu_pct, '.0f')} | {fmt(r.rss_per_conn_kib, '.1f')} | "
            f"{ok_cell(r.errors, r.warnings)} |"
        )
    return "\n".join(lines)


def ratio_lines(rows: list[dict[str, Any]], verdict: dict[str, Any] | None) -> str:
    lines = []
    for row in rows:
        text = (
            f"run {row['repeat']} N={row['clients']}: slurmcast/{row['baseline']} delivered "
            f"msgs/s = {row['throughput_ratio']:.2f}x; p50 {fmt(row['p50_ratio'], '.2f')}x, "
            f"p99 {fmt(row['p99_ratio'], '.2f')}x at max load"
        )
        if "fixed_p99_ratio" in row:
            text += (
                f"; at the fixed rate p50 {row['fixed_p50_ratio']:.2f}x, "
                f"p99 {row['fixed_p99_ratio']:.2f}x"
            )
        if "rss_ratio" in row:
            text += f"; RSS per connection {row['rss_ratio']:.2f}x"
        if row["disturbed"]:
            text += " (disturbed by other processes)"
        lines.append(text)
    if verdict is None:
        lines.append("Goals: not evaluated (no successful pair of runs to compare)")
        return "\n".join(lines)
    for goal in verdict["goals"]:
        median = f"median of {goal['repeats']} runs: " if goal["repeats"] > 1 else ""
        extra = " and a lower p99" if goal["baseline"] == "naive" else ""
        lines.append(
            f"Goal >= {goal['required_ratio']}x {goal['baseline']}'s msgs/s{extra} at "
            f"N={goal['clients']}: {'MET' if goal['met'] else 'NOT MET'} "
            f"({median}{goal['throughput_ratio']:.2f}x)"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


@dataclass(frozen=True, slots=True)
class Options:
    settings: Settings
    json: bool
    json_out: Path | None
    check_target: bool


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description="WebSocket fan-out benchmark: slurmcast vs Node ws and uWebSockets.js.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--clients", default="1000,5000,10000", help="comma-separated subscriber counts"
    )
    parser.add_argument(
        "--messages-per-client",
        default="auto",
        help=f"publications per max-phase run; auto = {AUTO_DELIVERIES:,} / clients (min 20)",
    )
    parser.add_argument("--size", type=int, default=300, help="bytes of each delivered message")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated servers to run at each N, in this order, from {', '.join(SERVERS)}",
    )
    parser.add_argument(
        "--only", default=None, help="one server only (shorthand for --servers NAME)"
    )
    parser.add_argument(
        "--publishers", type=int, default=2, help="concurrent POSTs in the max phase"
    )
    parser.add_argument(
        "--latency-fraction",
        type=float,
        default=0.5,
        help="fixed phase rate as a fraction of the first server's max-phase publications/s",
    )
    parser.add_argument(
        "--latency-rate", type=float, default=None, help="fixed phase publications/s (overrides)"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=5.0, help="fixed phase length; 0 skips it"
    )
    add_run_arguments(
        parser,
        wait_idle=10.0,
        wait_idle_help="before each server, wait up to this many seconds for both cores to be idle",
        ping_help=(
            "keepalive ping interval given to both servers; the default keeps the burst of "
            "pings all N clients get at once (they connect together) out of the measurement"
        ),
        slurmcast_arg_help=(
            "extra argument for 'slurmcast serve' (repeatable), e.g. --slurmcast-arg=--x=1"
        ),
    )
    parser.add_argument(
        "--check-target", action="store_true", help="exit 3 if the issue's target is missed"
    )
    args = parser.parse_args(argv)
    try:
        clients = tuple(int(part) for part in args.clients.split(",") if part.strip())
    except ValueError:
        parser.error("--clients takes comma-separated integers")
    if not clients or min(clients) < 1:
        parser.error("--clients needs positive counts")
    messages: int | None = None
    if args.messages_per_client != "auto":
        try:
            messages = int(args.messages_per_client)
        except ValueError:
            parser.error("--messages-per-client takes an integer or 'auto'")
        if messages < 1:
            parser.error("--messages-per-client must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    if args.publishers < 1:
        parser.error("--publishers must be positive")
    only = tuple(part.strip() for part in (args.only or args.servers).split(",") if part.strip())
    unknown = [kind for kind in only if kind not in SERVERS]
    if unknown or not only:
        parser.error(f"unknown server {unknown}; choose from {', '.join(SERVERS)}")
    settings = Settings(
        clients=clients,
        messages_per_client=messages,
        size=args.size,
        only=only,
        publishers=args.publishers,
        latency_fraction=args.latency_fraction,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        **run_settings(args),
    )
    return Options(settings, args.json, args.json_out, args.check_target)


async def run_all(settings: Settings) -> dict[str, Any]:
    """Every (clients, server) combination, in the order of --servers at each N."""
    check_fd_limit(max(settings.clients))
    if any(kind in ANCHORS for kind in settings.only):
        await prepare_anchors()
    wsload_bin, messages = await prepare_load(settings.wsload_src, settings.size)
    results: list[RunResult] = []
    async with client_session(settings.recv_timeout) as session:
        for repeat, clients in itertools.product(range(1, settings.repeat + 1), settings.clients):
            if settings.repeat > 1:
                log(f"--- run {repeat} of {settings.repeat}")
            baseline_capacity: float | None = None
            for kind in settings.only:
                runs = await bench_server(
                    kind,
                    clients,
                    settings,
                    wsload_bin,
                    session,
                    messages,
                    baseline_capacity,
                )
                if baseline_capacity is None and runs and runs[0].ok:
                    baseline_capacity = runs[0].pubs_per_s
                for run in runs:
                    run.repeat = repeat
                results.extend(runs)
    rows = ratios(results)
    return {
        "machine": machine_info(),
        "settings": settings_json(settings, messages)
        | {"messages_per_client": {str(n): settings.messages_for(n) for n in settings.clients}},
        "results": [dataclasses.asdict(r) | {"ok": r.ok} for r in results],
        "ratios": rows,
        "target": target_verdict(rows),
        "ok": all(r.ok for r in results),
        "_results": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    settings = options.settings
    report = run_benchmark("fanout", settings.wsload_src, functools.partial(run_all, settings))
    if report is None:
        return 2
    results: list[RunResult] = report.pop("_results")
    write_json(report, options.json_out, options.json)
    if not options.json:
        m = report["machine"]
        print(machine_line(m))
        print(f"slurmcast source fingerprint (sha256 of src/**/*.py): {m['slurmcast_src_sha256']}")
        print(
            f"message {report['settings']['message_bytes']} B; server on core {SERVER_CORE}, "
            f"wsload + publisher on core {CLIENT_CORE}; {report['elapsed_s']} s\n"
        )
        print(table(results))
        print()
        print(ratio_lines(report["ratios"], report["target"]))
        for r in results:
            for error in r.errors:
                print(f"ERROR {r.server} N={r.clients} {r.mode}: {error}")
            for warning_text in r.warnings:
                print(f"warning {r.server} N={r.clients} {r.mode}: {warning_text}")
    if not report["ok"]:
        return 1
    if options.check_target and not (report["target"] and report["target"]["met"]):
        return 3
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
