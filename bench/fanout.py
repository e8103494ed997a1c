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

Length: over 600 lines, of which this description is 60; the rest is this
benchmark's own (the server unit and its phase, with the anchors' own
publishing and RSS sampling; the ratios and goals of issues 5 and 14; its
table and options). The phases, report and CLI are in harness.py.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import time
from collections.abc import Iterable, Sequence
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
    check_fd_limit,
    client_session,
    log,
    machine_info,
    post_json,
    prepare_anchors,
    prepare_load,
    proc_rss_kib,
    wait_for_counts,
    wsload_errors,
)
from harness import (
    RATE_COLUMNS,
    Column,
    CpuWindow,
    Options,
    PhasePlan,
    Snapshot,
    Unit,
    add_phase_arguments,
    add_run_arguments,
    add_warnings,
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


# --------------------------------------------------------------------------- one run


#: Its fields are the JSON's keys, in this order (kept so that result files compare
#: by diff): which is why the figures both benchmarks share are not in a base class.
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


class ServerUnit(Unit[RunResult]):
    """One server at one N, freshly started: the harness runs both phases against it."""

    def __init__(
        self,
        kind: str,
        clients: int,
        settings: Settings,
        session: aiohttp.ClientSession,
        wsload_bin: Path,
        messages: MessageFactory,
    ) -> None:
        self.kind, self.clients, self.settings = kind, clients, settings
        self.session, self.wsload_bin, self.messages = session, wsload_bin, messages
        self.tag = f"{kind} N={clients}"
        self.plan = PhasePlan(
            max_count=settings.messages_for(clients),
            clients=clients,
            fixed_seconds=settings.latency_seconds,
            fixed_rate=settings.latency_rate,
            rate_fraction=settings.latency_fraction,
            wait_idle=settings.wait_idle,
        )
        self.server: ServerProcess | None = None

    async def start(self) -> None:
        extra = self.settings.slurmcast_args if self.kind == "slurmcast" else ()
        self.server = ServerProcess(self.kind, self.clients, self.settings.ping_interval, extra)
        await self.server.start(self.session)

    def alive(self) -> bool:
        server = self.server
        return server is not None and server.proc is not None and server.proc.returncode is None

    def blank(self, mode: str, count: int, rate: float | None) -> RunResult:
        result = RunResult(self.kind, self.clients, mode, count, rate_pubs_per_s=rate)
        result.expected = self.clients * count
        return result

    async def stop(self, results: list[RunResult]) -> None:
        if self.server is None:
            return
        code = await self.server.stop()
        problem = self.server.log_problem()
        if results:
            if problem:
                results[0].errors.append(problem)
            # Node has no SIGTERM handler: it dies of the signal, which is its normal end.
            if code not in (0, None) and not (self.server.is_anchor and code == -signal.SIGTERM):
                results[-1].errors.append(f"{self.kind} exited with status {code}")

    def log_result(self, r: RunResult) -> None:
        status = status_text(r.errors, r.warnings)
        log(
            f"    {r.msgs_per_s:>9,.0f} msgs/s (driver {r.driver_msgs_per_s:,.0f})  "
            f"p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  "
            f"server CPU {r.server_cpu_pct:.0f}% (sys {r.server_sys_pct:.0f}%)  "
            f"wsload CPU {r.wsload_cpu_pct:.0f}%  "
            f"publisher CPU {r.publisher_cpu_pct:.0f}%  [{status}]"
        )

    async def run_phase(self, mode: str, count: int, rate: float | None) -> RunResult:
        server, session, settings, clients = self.server, self.session, self.settings, self.clients
        assert server is not None
        measure_memory = mode == "max"
        result = self.blank(mode, count, rate)
        url = f"{server.base_url}/broadcast"
        if not server.is_anchor:
            # Settle: the previous phase's clients must be gone.
            [(connected, _)] = await wait_for_counts([server], session, [0], 15)
            if connected != 0:
                result.errors.append(f"{connected} clients still connected before the run")
        if measure_memory:
            await asyncio.sleep(0.3)
            result.rss_before_kib = proc_rss_kib(server.pid)
        wsload = WsLoad(self.wsload_bin)
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
                rss = result.rss_connected_kib - result.rss_before_kib
                result.rss_per_conn_kib = rss / clients
            stats = PublishStats()

            async def send(seq: int, body: bytes) -> None:
                await post_one(session, url, body, clients, stats)

            before = Snapshot.take([server.pid])
            if server.is_anchor:
                # The anchor publishes by itself: count messages, at rate (0: at once).
                await anchor_publish(
                    session, url, self.messages, count, rate or 0.0, clients, stats
                )
            else:
                await publish(self.messages, mode, count, rate, settings.publishers, send)
            remaining = settings.recv_timeout - (time.monotonic() - before.wall) + 10
            failed = await wait_all_done([server], [wsload], max(remaining, 10))
            result.errors.extend(f"wsload did not finish: {exc!r}" for _, exc in failed)
            after = Snapshot.take([server.pid])
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
        cpu = CpuWindow.between(before, after)
        result.window_s = cpu.window
        # Cross-check of wsload's figure: all deliveries over first POST -> last delivery seen.
        result.driver_msgs_per_s = result.expected / cpu.window if cpu.window > 0 else 0.0
        result.server_cpu_pct = cpu.server_pct
        result.server_sys_pct = cpu.servers[0][1]
        result.publisher_cpu_pct = cpu.publisher_pct
        result.core0_busy_pct = cpu.busy.get(SERVER_CORE)
        result.core1_busy_pct = cpu.busy.get(CLIENT_CORE)
        result.steal_pct = cpu.steal_pct
        # Busy time of both cores not accounted for by our three processes.
        ours = result.server_cpu_pct + result.publisher_cpu_pct
        result.other_cpu_pct = cpu.other_pct(ours + wsload_cpu_pct([report], cpu.window))
        result.post_delivered = stats.delivered
        post_figures(result, stats)
        absorb_wsload_report(result, report, clients, count)
        if stats.delivered != result.expected:
            result.errors.append(
                f"POSTs reported {stats.delivered} deliveries, expected {result.expected}"
            )
        if result.clients_after != clients:
            result.errors.append(
                f"{result.clients_after} clients connected at the end, expected {clients}"
            )
        add_warnings(
            result,
            result.core1_busy_pct,
            unsaturated="server used only {:.0f}% CPU: it was not saturated",
            generators="the load generator",
        )
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


#: The table's columns: header, cell.
COLUMNS: list[Column] = [
    ("run", lambda r: str(r.repeat)),
    ("server", lambda r: r.server),
    *RATE_COLUMNS,
    (
        "server CPU % (sys)",
        lambda r: f"{fmt(r.server_cpu_pct, '.0f')} ({fmt(r.server_sys_pct, '.0f')})",
    ),
    ("wsload CPU %", lambda r: fmt(r.wsload_cpu_pct, ".0f")),
    ("publisher CPU %", lambda r: fmt(r.publisher_cpu_pct, ".0f")),
    ("other CPU %", lambda r: fmt(r.other_cpu_pct, ".0f")),
    ("RSS/conn KiB", lambda r: fmt(r.rss_per_conn_kib, ".1f")),
    ("ok", ok_cell),
]


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
    add_phase_arguments(
        parser,
        rate="--latency-rate",
        fraction="--latency-fraction",
        seconds="--latency-seconds",
        fraction_of="the first server's max-phase",
        rate_first=False,
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
    clients = int_list(parser, args.clients, "--clients")
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
    require_positive(parser, args, ("repeat", "publishers"))
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
    async with client_session(settings.recv_timeout) as session:

        def groups() -> Iterable[list[ServerUnit]]:
            for n in settings.clients:
                yield [
                    ServerUnit(kind, n, settings, session, wsload_bin, messages)
                    for kind in settings.only
                ]

        results = await run_matrix(settings.repeat, groups)
    rows = ratios(results)
    return {
        "machine": machine_info(),
        "settings": settings_json(settings, messages)
        | {"messages_per_client": {str(n): settings.messages_for(n) for n in settings.clients}},
        "results": results_json(results),
        "ratios": rows,
        "target": target_verdict(rows),
        "ok": all(r.ok for r in results),
        "_results": results,
    }


def show(report: dict[str, Any], results: list[RunResult]) -> None:
    fingerprint = report["machine"]["slurmcast_src_sha256"]
    print_report(
        report,
        results,
        intro=[f"slurmcast source fingerprint (sha256 of src/**/*.py): {fingerprint}"],
        layout=f"server on core {SERVER_CORE}, wsload + publisher on core {CLIENT_CORE}",
        body=[table(COLUMNS, results), "", ratio_lines(report["ratios"], report["target"])],
        label=lambda r: f"{r.server} N={r.clients}",
    )


def verdict(options: Options, report: dict[str, Any]) -> int:
    """With --check-target, 3 when a goal is missed."""
    missed = not (report["target"] and report["target"]["met"])
    return 3 if options.check_target and missed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("fanout", parse_args(argv), run_all, show, verdict=verdict)


if __name__ == "__main__":
    entry(main)
