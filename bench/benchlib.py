"""The processes, load and publishing bench/fanout.py and bench/cluster.py are built of.

Both benchmarks start slurmcast (or the naive server) pinned to core 0, drive
it with the C load generator wsload pinned to core 1, publish through
``POST /broadcast`` from this process, and account for the CPU of every
process involved; the pieces that do this the same way in both live here
(restart.py and compression.py use a few). How the phases run and what is
reported is harness.py's.

Length: over 600 lines, most of them the process classes (anchors, servers,
wsload); each section below is one kind of piece.
"""

from __future__ import annotations

import asyncio
import contextlib
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
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
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
#: Node ``ws`` and uWebSockets.js fan-out servers to measure against (read-only here).
ANCHORS_SRC = REPO_DIR.parent / "shared" / "bench-anchors"
#: Where they are installed (npm needs a writable folder).
ANCHORS_DIR = BUILD_DIR / "anchors"
#: Anchor kinds and their scripts.
ANCHORS = {"node-ws": "node_ws_server.js", "uws": "uws_server.js"}

SERVER_CORE = 0
CLIENT_CORE = 1
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


def cores_busy(
    before: Mapping[int, tuple[float, float, float]],
    after: Mapping[int, tuple[float, float, float]],
    column: int = 0,
) -> dict[int, float]:
    """Busy (column 0) or steal (column 2) percent of each core between two core_times()."""
    result = {}
    for core, now in after.items():
        if core in before:
            total = now[1] - before[core][1]
            if total > 0:
                result[core] = 100 * (now[column] - before[core][column]) / total
    return result


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

    def anchor_event(self) -> dict[str, Any]:
        """The ``event`` an anchor server repeats, padded so its messages are as long as ours.

        An anchor sends ``{"type":"job_update","channel":"jobs","seq":i,"ts_us":T,
        "sched_us":S,"job":event}``.
        """
        event = {k: v for k, v in self._data(0, 0, 0).items() if k not in _STAMPS}
        event["pad"] = ""
        stamp = time.monotonic_ns() // 1000
        sample = {"type": "job_update", "channel": "jobs", "seq": 100_000, "ts_us": stamp}
        sample |= {"sched_us": stamp, "job": event}
        event["pad"] = "x" * max(0, self.envelope_size - len(orjson.dumps(sample)))
        return event


_STAMPS = ("seq", "ts_us", "sched_us")


def now_us() -> int:
    return time.monotonic_ns() // 1000


# --------------------------------------------------------------------------- processes


async def prepare_anchors(source: Path = ANCHORS_SRC) -> Path:
    """Install the anchor servers into bench/.build/anchors (npm ci --ignore-scripts), once.

    They are copied first: the shared folder is read-only, and npm writes
    node_modules next to package.json. A copy whose lock file matches is reused.
    """
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise SetupError("node and npm are needed for the Node ws and uWebSockets.js anchors")
    lock = source / "package-lock.json"
    if not lock.is_file():
        raise SetupError(f"anchors not found in {source}")
    installed = ANCHORS_DIR / "package-lock.json"
    if (
        installed.is_file()
        and installed.read_bytes() == lock.read_bytes()
        and (ANCHORS_DIR / "node_modules").is_dir()
    ):
        return ANCHORS_DIR
    if ANCHORS_DIR.exists():
        shutil.rmtree(ANCHORS_DIR)
    shutil.copytree(source, ANCHORS_DIR, ignore=shutil.ignore_patterns("node_modules"))
    proc = await asyncio.create_subprocess_exec(
        npm,
        "ci",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        cwd=ANCHORS_DIR,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SetupError(f"npm ci of the anchors failed: {err.decode(errors='replace')[-500:]}")
    return ANCHORS_DIR


class ServerProcess:
    """slurmcast, the naive server or an anchor, pinned to core 0, logging to a file.

    Anchors (``node-ws``, ``uws``) have no ``/health``: they are ready when their
    WebSocket port accepts, and they publish by themselves on ``POST /broadcast``
    (``count`` messages at ``rate``) instead of one message per POST.
    """

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

    @property
    def is_anchor(self) -> bool:
        return self.kind in ANCHORS

    def command(self) -> list[str]:
        if self.is_anchor:
            script = ANCHORS_DIR / ANCHORS[self.kind]
            node = shutil.which("node") or "node"
            ports = ["--port", str(self.ws_port), "--http-port", str(self.http_port)]
            return [node, str(script), *ports]
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
            if self.is_anchor:
                if await _accepts(self.ws_port) and await _accepts(self.http_port):
                    return
            else:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{self.base_url}/health") as resp:
                        if resp.status == 200:
                            return
            await asyncio.sleep(0.1)
        raise SetupError(f"{self.kind} did not start within 30 s; see {self.log_path}")

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

    def log_problem(self) -> str | None:
        """An error for the run when the server's log has bad lines, else None."""
        bad = self.bad_log_lines()
        if not bad:
            return None
        return f"{len(bad)} bad lines in {self.log_path}, first: {bad[0][:200]}"


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


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
class PostLog:
    """What the POSTs of one phase did: how many succeeded, how long each took, what failed."""

    posts: int = 0
    failures: list[str] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)

    def fail(self, text: str) -> None:
        """Keep the first failures only: a broken server would fill memory with them."""
        if len(self.failures) < 20:
            self.failures.append(text)


async def post_json(
    session: aiohttp.ClientSession, url: str, body: bytes, stats: PostLog, name: str = "POST"
) -> dict[str, Any] | None:
    """POST one message; its answer when it succeeded, else None (the failure is in ``stats``).

    ``name`` starts the failure texts (e.g. ``POST <url>`` where there are several URLs).
    """
    started = time.perf_counter()
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError) as exc:
        stats.fail(f"{name} failed: {exc!r}")
        return None
    stats.post_ms.append((time.perf_counter() - started) * 1000)
    stats.posts += 1
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = {}
    if status != 200 or not isinstance(answer, dict) or answer.get("success") is not True:
        stats.fail(f"{name} answered {status}: {raw[:200]!r}")
        return None
    return answer


#: Sends message ``seq`` (its body given): one POST, its outcome recorded by the callee.
Send = Callable[[int, bytes], Coroutine[Any, Any, None]]


async def publish_closed_loop(
    messages: MessageFactory, count: int, publishers: int, send: Send
) -> None:
    """Publish ``count`` messages as fast as ``send`` completes them, ``publishers`` at once."""
    sequence = itertools.count()

    async def worker() -> None:
        while (seq := next(sequence)) < count:
            stamp = now_us()
            await send(seq, messages.body(seq, stamp, stamp))

    await asyncio.gather(*(worker() for _ in range(publishers)))


async def publish_fixed_rate(messages: MessageFactory, count: int, rate: float, send: Send) -> None:
    """Publish ``count`` messages open-loop at ``rate`` per second (``sched_us``: when due)."""
    tasks: list[asyncio.Task[None]] = []
    start = now_us() + 20_000
    for seq in range(count):
        scheduled = start + round(seq * 1_000_000 / rate)
        delay = (scheduled - now_us()) / 1e6
        if delay > 0:
            await asyncio.sleep(delay)
        body = messages.body(seq, now_us(), scheduled)
        tasks.append(asyncio.create_task(send(seq, body)))
    await asyncio.gather(*tasks)


# --------------------------------------------------------------------------- measuring


async def local_counts(
    server: ServerProcess, session: aiohttp.ClientSession
) -> tuple[int | None, int | None]:
    """(clients, subscribers of jobs) of one server, from its /health."""
    health = await server.health(session)
    clients = health.get("clients")
    jobs = (health.get("subscriptions") or {}).get("jobs")
    return clients, jobs


async def wait_for_counts(
    servers: Sequence[ServerProcess],
    session: aiohttp.ClientSession,
    wanted: Sequence[int],
    timeout: float,
) -> list[tuple[int | None, int | None]]:
    """Poll every server's /health until it counts ``wanted`` clients, all on jobs."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [await local_counts(server, session) for server in servers]
        if all(c == (n, n) or (n == 0 and c[0] == 0) for c, n in zip(counts, wanted, strict=True)):
            return counts
        if time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.05)


def wsload_errors(report: dict[str, Any], clients: int, count: int) -> list[str]:
    """What is wrong in one wsload's report of ``clients`` clients expecting ``count`` each."""
    errors = []
    if report.get("min_per_conn") != count or report.get("max_per_conn") != count:
        errors.append(
            f"per-client deliveries ranged {report.get('min_per_conn')}.."
            f"{report.get('max_per_conn')}, expected {count} each"
        )
    closes, conn_errors = int(report.get("closes", 0)), int(report.get("conn_errors", 0))
    if closes or conn_errors:
        errors.append(f"{closes} clients closed by the server, {conn_errors} errors")
    if report.get("acks") != clients:
        errors.append(f"{report.get('acks')} of {clients} clients subscribed")
    return errors


# --------------------------------------------------------------------------- report


def machine_line(m: dict[str, Any]) -> str:
    """The report's first line: the machine ``m`` (machine_info()) and the main versions."""
    return (
        f"\nmachine: {m['nproc']} cores, {m['cpu_model']}, kernel {m['kernel']}, "
        f"Python {m['python']}, websockets {m['versions']['websockets']}, "
        f"uvloop {m['versions']['uvloop']}"
    )


def write_json(report: dict[str, Any], path: Path | None, stdout: bool) -> None:
    """The JSON report to ``path`` (if any) and, with ``stdout``, to stdout."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if stdout:
        print(json.dumps(report, indent=2, default=str))


# --------------------------------------------------------------------------- setup


def pin_self() -> None:
    with contextlib.suppress(OSError, AttributeError):
        if len(os.sched_getaffinity(0)) > CLIENT_CORE:
            os.sched_setaffinity(0, {CLIENT_CORE})


def check_fd_limit(clients: int) -> None:
    """Raise the open-file limit for ``clients`` connections (and their other ends)."""
    fd_limit = raise_fd_limit(clients * 2 + 1024)
    if fd_limit < clients + 256:
        raise SetupError(f"cannot raise the open-file limit above {fd_limit}")


async def prepare_load(wsload_src: Path, size: int) -> tuple[Path, MessageFactory]:
    """Build wsload and the messages of ``size`` bytes; warn when nothing can be pinned."""
    wsload_bin = await compile_wsload(wsload_src)
    if shutil.which("taskset") is None:
        log("warning: taskset not found; processes are not pinned")
    messages = MessageFactory(size)
    log(f"message: {messages.envelope_size} bytes delivered per client (--size {size})")
    return wsload_bin, messages


def client_session(recv_timeout: float) -> aiohttp.ClientSession:
    """The keep-alive HTTP session the publisher POSTs and polls /health through."""
    connector = aiohttp.TCPConnector(limit=64, force_close=False)
    timeout = aiohttp.ClientTimeout(total=recv_timeout + 30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)
