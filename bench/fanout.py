"""WebSocket fan-out benchmark: slurmcast against a naive baseline, same run.

For each subscriber count N (default 1000 and 5000) and each server (the naive
baseline of bench/naive_server.py first, then slurmcast) this

1. waits (briefly) for the machine to be idle, then starts the server pinned
   to core 0 (``taskset -c 0``), the simulated cluster made quiet
   (``--*-interval 3600``) and keepalive pings moved out of the measurement
   (``--ping-interval 600`` for both servers: all N clients connect within a
   second or two, so with the default 20 s their pings would arrive as one
   burst in the middle of a run instead of spread evenly as in production);
2. runs the C load generator wsload (../shared/tools/wsload.c, compiled into
   bench/.build/) pinned to core 1: N WebSocket clients subscribed to ``jobs``;
3. samples the server's RSS before and after the clients connect (memory per
   connection);
4. **max phase**: publishes M messages through ``POST /broadcast`` as fast as
   the server completes them (a closed loop of ``--publishers`` concurrent
   POSTs on one keep-alive aiohttp session, from this process, also on core 1),
   so the server is never idle; wsload reports delivered messages/s
   (N x M / (last delivery - first publish)) and end-to-end latency
   (delivery time - ``ts_us`` stamped into the message just before its POST);
5. **fixed phase**: a fresh set of N clients, and messages published open-loop
   at a fixed rate, by default half the naive server's max-phase capacity at
   that N, so latency is measured below saturation too (``sched_us`` carries
   the scheduled publish time, so a server that falls behind is charged for
   it: coordinated omission is accounted for);
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

    .venv/bin/python bench/fanout.py                       # 1000 and 5000 clients, both servers
    .venv/bin/python bench/fanout.py --clients 5000 --only slurmcast
    .venv/bin/python bench/fanout.py --json > results.json
    .venv/bin/python bench/fanout.py --repeat 3 --json-out bench/results/fanout.json

Per-run server logs are kept in bench/.build/logs/ (git-ignored).

Exit status: 0 when every run delivered everything cleanly, 1 when something
failed (see the ``errors`` of each run), 2 for a usage or setup error,
3 with ``--check-target`` when the target of the issue (slurmcast at least
1.3x the naive throughput at the largest N, with a lower p99) is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / ".build"
LOG_DIR = BUILD_DIR / "logs"
DEFAULT_WSLOAD_SRC = REPO_DIR.parent / "shared" / "tools" / "wsload.c"
NAIVE_SERVER = BENCH_DIR / "naive_server.py"

SERVER_CORE = 0
CLIENT_CORE = 1
SERVERS = ("naive", "slurmcast")
#: Deliveries per max-phase run when --messages-per-client is "auto".
AUTO_DELIVERIES = 2_000_000
#: Target of the issue: slurmcast / naive delivered msgs/s at the largest N.
TARGET_RATIO = 1.3
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Server log lines that mean something went wrong during a run.
BAD_LOG_MARKERS = ("Traceback", "ERROR", "CRITICAL", "slow consumer", "Exception")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def core_times() -> dict[int, tuple[float, float, float]]:
    """Per core: (busy, total, steal) seconds since boot, from /proc/stat."""
    result: dict[int, tuple[float, float, float]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            ticks = [int(v) for v in values[:8]]
            total = sum(ticks)
            idle = ticks[3] + ticks[4]
            result[int(name[3:])] = ((total - idle) / CLK_TCK, total / CLK_TCK, ticks[7] / CLK_TCK)
    return result


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def core_busy_pct(
    before: CpuSnapshot, after: CpuSnapshot, core: int, column: int = 0
) -> float | None:
    """Busy (column 0) or steal (column 2) share of one core between two snapshots."""
    if core not in before.cores or core not in after.cores:
        return None
    part = after.cores[core][column] - before.cores[core][column]
    total = after.cores[core][1] - before.cores[core][1]
    return 100.0 * part / total if total > 0 else None


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    versions = {}
    for package in ("slurmcast", "websockets", "uvloop", "aiohttp", "orjson"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    digest = hashlib.sha256()
    for path in sorted((REPO_DIR / "src").rglob("*.py")):
        digest.update(path.relative_to(REPO_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return {
        "slurmcast_src_sha256": digest.hexdigest()[:16],
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
    }


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        needed = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
    return ordered[index]


async def compile_wsload(source: Path) -> Path:
    """Build wsload into bench/.build/ (git-ignored) with gcc -O2."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SetupError("gcc is needed to build wsload")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    binary = BUILD_DIR / "wsload"
    proc = await asyncio.create_subprocess_exec(
        gcc, "-O2", "-o", str(binary), str(source), stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SetupError(f"gcc failed: {err.decode(errors='replace')}")
    return binary


class SetupError(Exception):
    """The benchmark cannot run at all (missing tool, server does not start...)."""


# --------------------------------------------------------------------------- messages


class MessageFactory:
    """Bodies of POST /broadcast whose delivered envelope is about ``size`` bytes.

    The data looks like a job state change, carries ``ts_us`` (monotonic µs at
    publish, for wsload's latency) and ``sched_us`` (when it was meant to be
    published), and is padded so that the envelope clients receive, e.g.
    ``{"channel":"jobs","type":"broadcast","timestamp":"...Z","data":{...}}``,
    is ``size`` bytes long.
    """

    ENVELOPE_SAMPLE = {
        "channel": "jobs",
        "type": "broadcast",
        "timestamp": "2025-01-01T00:00:00.000Z",
        "data": None,
    }

    def __init__(self, size: int) -> None:
        self.pad = ""
        sample = self._data(0, time.monotonic_ns() // 1000, time.monotonic_ns() // 1000)
        self.pad = "x" * max(0, size - self._envelope_size(sample))
        self.envelope_size = self._envelope_size(
            self._data(0, time.monotonic_ns() // 1000, time.monotonic_ns() // 1000)
        )

    def _data(self, seq: int, ts_us: int, sched_us: int) -> dict[str, Any]:
        return {
            "event": "job_state_change",
            "job_id": 4_200_000 + seq % 100_000,
            "seq": seq,
            "ts_us": ts_us,
            "sched_us": sched_us,
            "name": "cfd-sweep-17",
            "user": "alice",
            "partition": "compute",
            "state": "RUNNING",
            "nodes": "node[03-06]",
            "pad": self.pad,
        }

    def _envelope_size(self, data: dict[str, Any]) -> int:
        return len(orjson.dumps({**self.ENVELOPE_SAMPLE, "data": data}))

    def body(self, seq: int, ts_us: int, sched_us: int) -> bytes:
        return orjson.dumps({"channel": "jobs", "message": self._data(seq, ts_us, sched_us)})


def now_us() -> int:
    return time.monotonic_ns() // 1000


# --------------------------------------------------------------------------- processes


class ServerProcess:
    """slurmcast or the naive server, pinned to core 0, logging to a file."""

    def __init__(
        self, kind: str, clients: int, ping_interval: float, extra_args: Sequence[str] = ()
    ) -> None:
        self.kind = kind
        self.ping_interval = ping_interval
        self.extra_args = list(extra_args)
        self.ws_port = free_port()
        self.http_port = free_port()
        while self.http_port == self.ws_port:
            self.http_port = free_port()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{kind}-{clients}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        common = ["--host", "127.0.0.1", "--ws-port", str(self.ws_port)]
        common += ["--http-port", str(self.http_port), "--log-level", "WARNING"]
        common += ["--ping-interval", str(self.ping_interval)]
        if self.kind == "slurmcast":
            quiet = ["--jobs-interval", "3600", "--nodes-interval", "3600"]
            quiet += ["--metrics-interval", "3600"]
            # Every load client comes from 127.0.0.1: lift the per-address limit (200).
            quiet += ["--max-connections-per-ip", "100000", "--max-connections", "100000"]
            return [sys.executable, "-m", "slurmcast", "serve", *common, *quiet, *self.extra_args]
        return [sys.executable, str(NAIVE_SERVER), *common]

    async def start(self, session: aiohttp.ClientSession) -> None:
        taskset = shutil.which("taskset")
        pin = [taskset, "-c", str(SERVER_CORE)] if taskset else []
        with self.log_path.open("wb") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                *pin,
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                cwd=REPO_DIR,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise SetupError(f"{self.kind} exited at start; see {self.log_path}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{self.base_url}/health") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise SetupError(f"{self.kind} did not answer /health within 30 s")

    async def health(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.base_url}/health") as resp:
            body: dict[str, Any] = orjson.loads(await resp.read())
            return body

    async def stop(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    def bad_log_lines(self) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if any(m in line for m in BAD_LOG_MARKERS)]


class WsLoad:
    """One run of the C load generator, pinned to core 1."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_lines: list[str] = []
        self._stderr_task: asyncio.Task[None] | None = None

    async def start(
        self, port: int, conns: int, msgs: int, connect_timeout: float, recv_timeout: float
    ) -> None:
        taskset = shutil.which("taskset")
        pin = [taskset, "-c", str(CLIENT_CORE)] if taskset else []
        args = [str(self.binary), "127.0.0.1", str(port), str(conns), str(msgs)]
        args += [str(connect_timeout), str(recv_timeout)]
        self.proc = await asyncio.create_subprocess_exec(
            *pin,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._stderr_task = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr_lines.append(line.decode(errors="replace").rstrip())

    async def _line(self, prefix: str, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise RuntimeError(
                        f"wsload ended before {prefix!r}: {' | '.join(self.stderr_lines[-5:])}"
                    )
                line = raw.decode(errors="replace").strip()
                if line.startswith(prefix):
                    return line

    async def ready(self, timeout: float) -> dict[str, float]:
        line = await self._line("READY", timeout)
        values = dict(part.split("=", 1) for part in line.split()[1:])
        return {key: float(value) for key, value in values.items()}

    async def done(self, timeout: float) -> int:
        line = await self._line("DONE", timeout)
        return int(line.split("=", 1)[1])

    async def finish(self, timeout: float = 30) -> dict[str, Any]:
        """Let wsload close its connections and print its results."""
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            self.proc.stdin.write(b"go\n")
            await self.proc.stdin.drain()
        line = await self._line("{", timeout)
        await asyncio.wait_for(self.proc.wait(), timeout)
        if self._stderr_task is not None:
            await self._stderr_task
        result: dict[str, Any] = json.loads(line)
        return result

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task


# --------------------------------------------------------------------------- publishing


@dataclass(slots=True)
class PublishStats:
    posts: int = 0
    delivered: int = 0
    failures: list[str] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)


async def post_one(
    session: aiohttp.ClientSession, url: str, body: bytes, expect: int, stats: PublishStats
) -> None:
    started = time.perf_counter()
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError) as exc:
        stats.failures.append(f"POST failed: {exc!r}")
        return
    stats.post_ms.append((time.perf_counter() - started) * 1000)
    stats.posts += 1
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = {}
    if status != 200 or not isinstance(answer, dict) or answer.get("success") is not True:
        stats.failures.append(f"POST answered {status}: {raw[:200]!r}")
        return
    delivered = int(answer.get("delivered", 0))
    stats.delivered += delivered
    if delivered != expect and len(stats.failures) < 20:
        stats.failures.append(f"POST delivered to {delivered}, expected {expect}")


async def publish_closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    messages: MessageFactory,
    count: int,
    publishers: int,
    expect: int,
) -> PublishStats:
    """Publish ``count`` messages as fast as the server completes them."""
    stats = PublishStats()
    sequence = itertools.count()

    async def worker() -> None:
        while (seq := next(sequence)) < count:
            stamp = now_us()
            await post_one(session, url, messages.body(seq, stamp, stamp), expect, stats)

    await asyncio.gather(*(worker() for _ in range(publishers)))
    return stats


async def publish_fixed_rate(
    session: aiohttp.ClientSession,
    url: str,
    messages: MessageFactory,
    count: int,
    rate: float,
    expect: int,
) -> PublishStats:
    """Publish ``count`` messages open-loop at ``rate`` per second."""
    stats = PublishStats()
    tasks: list[asyncio.Task[None]] = []
    start = now_us() + 20_000
    for seq in range(count):
        scheduled = start + round(seq * 1_000_000 / rate)
        delay = (scheduled - now_us()) / 1e6
        if delay > 0:
            await asyncio.sleep(delay)
        body = messages.body(seq, now_us(), scheduled)
        tasks.append(asyncio.create_task(post_one(session, url, body, expect, stats)))
    await asyncio.gather(*tasks)
    return stats


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


async def wait_for_clients(
    server: ServerProcess, session: aiohttp.ClientSession, clients: int, timeout: float
) -> dict[str, Any]:
    """Poll /health until the server counts ``clients`` clients (all on ``jobs``)."""
    deadline = time.monotonic() + timeout
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = await server.health(session)
        jobs = health.get("subscriptions", {}).get("jobs", 0)
        if health.get("clients") == clients and (clients == 0 or jobs == clients):
            return health
        await asyncio.sleep(0.05)
    return health


async def run_phase(
    server: ServerProcess,
    session: aiohttp.ClientSession,
    wsload_bin: Path,
    settings: Settings,
    messages: MessageFactory,
    clients: int,
    mode: str,
    count: int,
    rate: float | None,
    measure_memory: bool,
) -> RunResult:
    result = RunResult(server.kind, clients, mode, count, rate_pubs_per_s=rate)
    result.expected = clients * count
    url = f"{server.base_url}/broadcast"
    # Settle: the previous phase's clients must be gone.
    health = await wait_for_clients(server, session, 0, 15)
    if health.get("clients") != 0:
        result.errors.append(f"{health.get('clients')} clients still connected before the run")
    if measure_memory:
        await asyncio.sleep(0.3)
        result.rss_before_kib = proc_rss_kib(server.pid)
    wsload = WsLoad(wsload_bin)
    try:
        await wsload.start(
            server.ws_port, clients, count, settings.connect_timeout, settings.recv_timeout
        )
        ready = await wsload.ready(settings.connect_timeout + 15)
        result.connect_s = ready.get("connect_s", 0.0)
        if ready.get("acks") != clients or ready.get("errors", 0) != 0:
            detail = " | ".join(wsload.stderr_lines[:3])
            raise RuntimeError(f"clients could not subscribe: {ready} {detail}".strip())
        health = await wait_for_clients(server, session, clients, 10)
        if health.get("clients") != clients:
            result.errors.append(f"server counts {health.get('clients')} clients, not {clients}")
        if measure_memory:
            await asyncio.sleep(0.3)
            result.rss_connected_kib = proc_rss_kib(server.pid)
            assert result.rss_before_kib is not None
            result.rss_per_conn_kib = (result.rss_connected_kib - result.rss_before_kib) / clients
        before = CpuSnapshot.take(server.pid)
        if mode == "max":
            stats = await publish_closed_loop(
                session, url, messages, count, settings.publishers, clients
            )
        else:
            assert rate is not None
            stats = await publish_fixed_rate(session, url, messages, count, rate, clients)
        published = time.monotonic()
        remaining = settings.recv_timeout - (published - before.wall) + 10
        await wait_done_or_dead(server, wsload, max(remaining, 10), result)
        after = CpuSnapshot.take(server.pid)
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
    result.core0_busy_pct = core_busy_pct(before, after, SERVER_CORE)
    result.core1_busy_pct = core_busy_pct(before, after, CLIENT_CORE)
    steals = [core_busy_pct(before, after, core, 2) for core in (SERVER_CORE, CLIENT_CORE)]
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
    server: ServerProcess,
    session: aiohttp.ClientSession,
    wsload_bin: Path,
    settings: Settings,
    messages: MessageFactory,
    clients: int,
    mode: str,
    count: int,
    rate: float | None,
    measure_memory: bool,
) -> RunResult:
    """run_phase, with a run that cannot complete reported as a failed result."""
    try:
        return await run_phase(
            server,
            session,
            wsload_bin,
            settings,
            messages,
            clients,
            mode,
            count,
            rate,
            measure_memory,
        )
    except (RuntimeError, TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
        result = RunResult(server.kind, clients, mode, count, rate_pubs_per_s=rate)
        result.expected = clients * count
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
    if report.get("min_per_conn") != count or report.get("max_per_conn") != count:
        result.errors.append(
            f"per-client deliveries ranged {report.get('min_per_conn')}.."
            f"{report.get('max_per_conn')}, expected {count} each"
        )
    if result.closes or result.conn_errors:
        result.errors.append(
            f"{result.closes} clients closed by the server, {result.conn_errors} errors"
        )
    if report.get("acks") != clients:
        result.errors.append(f"{report.get('acks')} of {clients} clients subscribed")


async def bench_server(
    kind: str,
    clients: int,
    settings: Settings,
    wsload_bin: Path,
    session: aiohttp.ClientSession,
    messages: MessageFactory,
    naive_capacity: float | None,
) -> list[RunResult]:
    """Both phases against one freshly started server."""
    busy = await wait_until_idle(settings.wait_idle) if settings.wait_idle > 0 else None
    extra = settings.slurmcast_args if kind == "slurmcast" else ()
    server = ServerProcess(kind, clients, settings.ping_interval, extra)
    await server.start(session)
    results: list[RunResult] = []
    try:
        count = settings.messages_for(clients)
        log(f"[{kind} N={clients}] max phase: {count} publications x {clients} clients")
        maximum = await guarded_phase(
            server, session, wsload_bin, settings, messages, clients, "max", count, None, True
        )
        if busy:
            maximum.warnings.append(busy)
        results.append(maximum)
        log_result(maximum)
        alive = server.proc is not None and server.proc.returncode is None
        if settings.latency_seconds > 0 and alive:
            if settings.latency_rate is not None:
                rate = settings.latency_rate
            else:
                capacity = naive_capacity if naive_capacity else maximum.pubs_per_s
                rate = settings.latency_fraction * capacity
            if rate > 0:
                fixed_count = max(20, round(rate * settings.latency_seconds))
                log(f"[{kind} N={clients}] fixed phase: {fixed_count} publications at {rate:.2f}/s")
                fixed = await guarded_phase(
                    server,
                    session,
                    wsload_bin,
                    settings,
                    messages,
                    clients,
                    "fixed",
                    fixed_count,
                    rate,
                    False,
                )
                results.append(fixed)
                log_result(fixed)
    finally:
        code = await server.stop()
        bad = server.bad_log_lines()
        if results:
            if bad:
                results[0].errors.append(
                    f"{len(bad)} bad lines in {server.log_path}, first: {bad[0][:200]}"
                )
            if code not in (0, None):
                results[-1].errors.append(f"{kind} exited with status {code}")
    return results


def log_result(r: RunResult) -> None:
    status = "ok" if r.ok else "FAILED: " + "; ".join(r.errors)
    if r.warnings:
        status += "; warning: " + "; ".join(r.warnings)
    log(
        f"    {r.msgs_per_s:>9,.0f} msgs/s (driver {r.driver_msgs_per_s:,.0f})  "
        f"p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  "
        f"server CPU {r.server_cpu_pct:.0f}% (sys {r.server_sys_pct:.0f}%)  "
        f"wsload CPU {r.wsload_cpu_pct:.0f}%  "
        f"publisher CPU {r.publisher_cpu_pct:.0f}%  [{status}]"
    )


# --------------------------------------------------------------------------- report


def ratios(results: list[RunResult]) -> list[dict[str, Any]]:
    """slurmcast / naive at each (repeat, N)."""
    by_key = {(r.repeat, r.server, r.clients, r.mode): r for r in results}
    rows = []
    for repeat, clients in sorted({(r.repeat, r.clients) for r in results}):
        fast = by_key.get((repeat, "slurmcast", clients, "max"))
        slow = by_key.get((repeat, "naive", clients, "max"))
        if fast is None or slow is None or not (fast.ok and slow.ok):
            continue  # a failed run has no meaningful ratio
        row: dict[str, Any] = {
            "repeat": repeat,
            "clients": clients,
            "throughput_ratio": fast.msgs_per_s / slow.msgs_per_s,
            "p50_ratio": fast.p50_ms / slow.p50_ms if slow.p50_ms else None,
            "p99_ratio": fast.p99_ms / slow.p99_ms if slow.p99_ms else None,
            "p99_lower": fast.p99_ms < slow.p99_ms,
        }
        fast_fixed = by_key.get((repeat, "slurmcast", clients, "fixed"))
        slow_fixed = by_key.get((repeat, "naive", clients, "fixed"))
        if fast_fixed and slow_fixed and slow_fixed.p99_ms:
            row["fixed_p50_ratio"] = fast_fixed.p50_ms / slow_fixed.p50_ms
            row["fixed_p99_ratio"] = fast_fixed.p99_ms / slow_fixed.p99_ms
        row["disturbed"] = bool(
            [w for w in fast.warnings + slow.warnings if "other processes" in w or "idle" in w]
        )
        rows.append(row)
    return rows


def target_verdict(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The issue's target at the largest N; with repeats, on the median ratios."""
    if not rows:
        return None
    clients = max(row["clients"] for row in rows)
    at_n = [row for row in rows if row["clients"] == clients]
    throughput = statistics.median(row["throughput_ratio"] for row in at_n)
    p99 = statistics.median(row["p99_ratio"] for row in at_n if row["p99_ratio"] is not None)
    return {
        "clients": clients,
        "repeats": len(at_n),
        "throughput_ratio": throughput,
        "throughput_ratios": [row["throughput_ratio"] for row in at_n],
        "p99_ratio": p99,
        "required_ratio": TARGET_RATIO,
        "p99_lower": p99 < 1,
        "met": throughput >= TARGET_RATIO and p99 < 1,
    }


def fmt(value: float | None, spec: str) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return format(value, spec)


def table(results: list[RunResult]) -> str:
    header = (
        "| run | server | clients | phase | delivered msgs/s | pubs/s | p50 ms | p99 ms | "
        "server CPU % (sys) | wsload CPU % | publisher CPU % | other CPU % | "
        "RSS/conn KiB | ok |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        phase = "max" if r.mode == "max" else f"fixed {fmt(r.rate_pubs_per_s, '.1f')}/s"
        ok = ("yes" if not r.warnings else "yes*") if r.ok else "NO"
        lines.append(
            f"| {r.repeat} | {r.server} | {r.clients} | {phase} | {r.msgs_per_s:,.0f} | "
            f"{r.pubs_per_s:.1f} | {fmt(r.p50_ms, '.2f')} | {fmt(r.p99_ms, '.2f')} | "
            f"{fmt(r.server_cpu_pct, '.0f')} ({fmt(r.server_sys_pct, '.0f')}) | "
            f"{fmt(r.wsload_cpu_pct, '.0f')} | {fmt(r.publisher_cpu_pct, '.0f')} | "
            f"{fmt(r.other_cpu_pct, '.0f')} | {fmt(r.rss_per_conn_kib, '.1f')} | {ok} |"
        )
    return "\n".join(lines)


def ratio_lines(rows: list[dict[str, Any]], verdict: dict[str, Any] | None) -> str:
    lines = []
    for row in rows:
        text = (
            f"run {row['repeat']} N={row['clients']}: slurmcast/naive delivered msgs/s = "
            f"{row['throughput_ratio']:.2f}x; p50 {fmt(row['p50_ratio'], '.2f')}x, "
            f"p99 {fmt(row['p99_ratio'], '.2f')}x of naive at max load"
        )
        if "fixed_p99_ratio" in row:
            text += (
                f"; at the fixed rate p50 {row['fixed_p50_ratio']:.2f}x, "
                f"p99 {row['fixed_p99_ratio']:.2f}x of naive"
            )
        if row["disturbed"]:
            text += " (disturbed by other processes)"
        lines.append(text)
    if verdict is None:
        lines.append("Target: not evaluated (no successful pair of runs to compare)")
    else:
        median = f"median of {verdict['repeats']} runs: " if verdict["repeats"] > 1 else ""
        lines.append(
            f"Target (>= {verdict['required_ratio']}x msgs/s and lower p99 at "
            f"N={verdict['clients']}): {'MET' if verdict['met'] else 'NOT MET'} "
            f"({median}{verdict['throughput_ratio']:.2f}x msgs/s, "
            f"p99 {verdict['p99_ratio']:.2f}x of naive)"
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
        description="WebSocket fan-out benchmark: slurmcast vs a naive baseline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", default="1000,5000", help="comma-separated subscriber counts")
    parser.add_argument(
        "--messages-per-client",
        default="auto",
        help=f"publications per max-phase run; auto = {AUTO_DELIVERIES:,} / clients (min 20)",
    )
    parser.add_argument("--size", type=int, default=300, help="bytes of each delivered message")
    parser.add_argument("--only", choices=("slurmcast", "naive", "both"), default="both")
    parser.add_argument(
        "--publishers", type=int, default=2, help="concurrent POSTs in the max phase"
    )
    parser.add_argument(
        "--latency-fraction",
        type=float,
        default=0.5,
        help="fixed phase rate as a fraction of the naive server's max-phase publications/s",
    )
    parser.add_argument(
        "--latency-rate", type=float, default=None, help="fixed phase publications/s (overrides)"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=5.0, help="fixed phase length; 0 skips it"
    )
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--recv-timeout", type=float, default=90.0)
    parser.add_argument("--wsload-src", type=Path, default=DEFAULT_WSLOAD_SRC)
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the whole matrix this many times"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=10.0,
        help="before each server, wait up to this many seconds for both cores to be idle",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=600.0,
        help=(
            "keepalive ping interval given to both servers; the default keeps the burst of "
            "pings all N clients get at once (they connect together) out of the measurement"
        ),
    )
    parser.add_argument(
        "--slurmcast-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for 'slurmcast serve' (repeatable), e.g. --slurmcast-arg=--x=1",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    parser.add_argument(
        "--json-out", type=Path, default=None, help="also write the JSON results to this file"
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
    only = SERVERS if args.only == "both" else (args.only,)
    settings = Settings(
        clients=clients,
        messages_per_client=messages,
        size=args.size,
        only=only,
        publishers=args.publishers,
        latency_fraction=args.latency_fraction,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        connect_timeout=args.connect_timeout,
        recv_timeout=args.recv_timeout,
        wsload_src=args.wsload_src,
        repeat=args.repeat,
        wait_idle=args.wait_idle,
        ping_interval=args.ping_interval,
        slurmcast_args=tuple(args.slurmcast_arg),
    )
    return Options(settings, args.json, args.json_out, args.check_target)


def pin_self() -> None:
    with contextlib.suppress(OSError, AttributeError):
        if len(os.sched_getaffinity(0)) > CLIENT_CORE:
            os.sched_setaffinity(0, {CLIENT_CORE})


def busy_cores(interval: float, threshold: float) -> dict[int, float]:
    """Cores more than ``threshold`` percent busy over the next ``interval`` seconds."""
    first = core_times()
    time.sleep(interval)
    second = core_times()
    busy = {
        core: 100 * (second[core][0] - first[core][0]) / max(1e-9, second[core][1] - first[core][1])
        for core in second
        if core in first
    }
    return {core: pct for core, pct in busy.items() if pct > threshold}


async def wait_until_idle(limit: float) -> str | None:
    """Wait (at most ``limit`` s) until no core is busy: other work skews the numbers."""
    deadline = time.monotonic() + limit
    loud = await asyncio.to_thread(busy_cores, 0.5, 10)
    if loud:
        log(f"waiting up to {limit:.0f} s for the machine to become idle ...")
    while loud and time.monotonic() < deadline:
        loud = await asyncio.to_thread(busy_cores, 0.5, 10)
    if loud:
        shown = ", ".join(f"core {c}: {p:.0f}%" for c, p in sorted(loud.items()))
        message = f"machine was not idle before the run ({shown})"
        log(f"warning: {message}")
        return message
    return None


async def run_all(settings: Settings) -> dict[str, Any]:
    """Every (clients, server) combination, naive first at each N."""
    fd_limit = raise_fd_limit(max(settings.clients) * 2 + 1024)
    if fd_limit < max(settings.clients) + 256:
        raise SetupError(f"cannot raise the open-file limit above {fd_limit}")
    wsload_bin = await compile_wsload(settings.wsload_src)
    if shutil.which("taskset") is None:
        log("warning: taskset not found; processes are not pinned")
    messages = MessageFactory(settings.size)
    log(f"message: {messages.envelope_size} bytes delivered per client (--size {settings.size})")
    results: list[RunResult] = []
    connector = aiohttp.TCPConnector(limit=64, force_close=False)
    timeout = aiohttp.ClientTimeout(total=settings.recv_timeout + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for repeat, clients in itertools.product(range(1, settings.repeat + 1), settings.clients):
            if settings.repeat > 1:
                log(f"--- run {repeat} of {settings.repeat}")
            naive_capacity: float | None = None
            for kind in SERVERS:
                if kind not in settings.only:
                    continue
                runs = await bench_server(
                    kind,
                    clients,
                    settings,
                    wsload_bin,
                    session,
                    messages,
                    naive_capacity,
                )
                if kind == "naive" and runs:
                    naive_capacity = runs[0].pubs_per_s
                for run in runs:
                    run.repeat = repeat
                results.extend(runs)
    rows = ratios(results)
    return {
        "machine": machine_info(),
        "settings": {
            **{k: v for k, v in dataclasses.asdict(settings).items() if k != "wsload_src"},
            "wsload_src": str(settings.wsload_src),
            "message_bytes": messages.envelope_size,
            "messages_per_client": {str(n): settings.messages_for(n) for n in settings.clients},
        },
        "results": [dataclasses.asdict(r) | {"ok": r.ok} for r in results],
        "ratios": rows,
        "target": target_verdict(rows),
        "ok": all(r.ok for r in results),
        "_results": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    settings = options.settings
    if not settings.wsload_src.is_file():
        log(f"fanout: wsload source {settings.wsload_src} not found (use --wsload-src)")
        return 2
    pin_self()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a slurmcast dependency on POSIX
        runner: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = asyncio.run
    else:
        runner = uvloop.run
    started = time.monotonic()
    try:
        report = runner(run_all(settings))
    except SetupError as exc:
        log(f"fanout: {exc}")
        return 2
    results: list[RunResult] = report.pop("_results")
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if options.json_out is not None:
        options.json_out.parent.mkdir(parents=True, exist_ok=True)
        options.json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if options.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        m = report["machine"]
        print(
            f"\nmachine: {m['nproc']} cores, {m['cpu_model']}, kernel {m['kernel']}, "
            f"Python {m['python']}, websockets {m['versions']['websockets']}, "
            f"uvloop {m['versions']['uvloop']}"
        )
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
