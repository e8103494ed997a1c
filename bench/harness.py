"""The harness bench/fanout.py and bench/cluster.py run in: phases, guards, warnings, report, CLI.

Both benchmarks measure *units* -- fanout.py one server at one N, cluster.py
one row of instances -- and every unit the same way: wait for the machine to
be idle, start it, a **max** phase (closed loop), then a **fixed** phase at a
share of the first unit's max rate, each phase guarded so that a run which
cannot complete becomes a failed result, and stop it. Around that the same
matrix loop (``--repeat``), the same warnings, the same markdown table and
JSON, the same common options and the same exit codes. A benchmark keeps only
what is its own: its Unit (what it starts, how one phase runs, how it is
stopped), its result dataclass, its table columns and its goals. The
processes, load and publishing themselves are in benchlib.py.

Length: over 600 lines because it is the one harness issue 15 asks for (phase
runner, guard, warnings, table and CLI); the CPU accounting of a phase is here
too, as both phase bodies use it the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
from benchlib import (
    CLIENT_CORE,
    DEFAULT_WSLOAD_SRC,
    SERVER_CORE,
    MessageFactory,
    PostLog,
    SetupError,
    WsLoad,
    core_times,
    cores_busy,
    log,
    machine_line,
    percentile,
    pin_self,
    proc_cpu_seconds,
    publish_closed_loop,
    publish_fixed_rate,
    self_cpu_seconds,
    write_json,
)

#: What makes a phase a failed result ("run aborted: ...") instead of ending the benchmark.
ABORTS = (RuntimeError, TimeoutError, OSError, ValueError, aiohttp.ClientError)


class PhaseResult(Protocol):
    """What the harness reads and writes of a benchmark's result of one phase."""

    mode: str  # "max" (closed loop, saturating) or "fixed" (open loop at a rate)
    repeat: int
    rate_pubs_per_s: float | None
    pubs_per_s: float
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool: ...


R = TypeVar("R", bound=PhaseResult)


# --------------------------------------------------------------------------- phases


@dataclass(frozen=True, slots=True)
class PhasePlan:
    """How the phases of every unit run (from the options)."""

    max_count: int  # publications of the max phase
    clients: int  # subscribers in all
    fixed_seconds: float  # fixed phase length; 0 skips it
    fixed_rate: float | None  # fixed phase publications/s, if given
    rate_fraction: float  # else this share of the baseline's max publications/s
    wait_idle: float  # wait up to this long for idle cores before each unit


class Unit(ABC, Generic[R]):
    """What one benchmark starts for both phases: fanout's server, cluster's row."""

    #: Names the unit in the progress lines, e.g. ``slurmcast N=1000``.
    tag: str
    plan: PhasePlan
    #: Appended to the max phase's progress line (after start()).
    note: str = ""

    @abstractmethod
    async def start(self) -> None:
        """Start the servers (called inside the try whose finally is stop())."""

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def blank(self, mode: str, count: int, rate: float | None) -> R:
        """An empty result of a phase; with an error, that of a phase that was aborted."""

    @abstractmethod
    async def run_phase(self, mode: str, count: int, rate: float | None) -> R: ...

    @abstractmethod
    async def stop(self, results: list[R]) -> None:
        """Stop the servers, blaming ``results`` (if any) for bad logs and exit codes."""

    @abstractmethod
    def log_result(self, result: R) -> None: ...


async def guarded_phase(unit: Unit[R], mode: str, count: int, rate: float | None) -> R:
    """unit.run_phase, with a run that cannot complete reported as a failed result."""
    try:
        return await unit.run_phase(mode, count, rate)
    except ABORTS as exc:
        result = unit.blank(mode, count, rate)
        result.errors.append(f"run aborted: {exc!r}")
        return result


def fixed_phase_count(rate: float, seconds: float) -> int:
    """Publications of a fixed phase: ``seconds`` at ``rate``, at least 20."""
    return max(20, round(rate * seconds))


async def bench_unit(unit: Unit[R], baseline: float | None) -> list[R]:
    """Both phases on a freshly started unit; ``baseline``: the first unit's max pubs/s."""
    plan = unit.plan
    busy = await wait_until_idle(plan.wait_idle) if plan.wait_idle > 0 else None
    results: list[R] = []
    try:
        await unit.start()
        log(
            f"[{unit.tag}] max phase: {plan.max_count} publications x "
            f"{plan.clients} clients{unit.note}"
        )
        maximum = await guarded_phase(unit, "max", plan.max_count, None)
        if busy:
            maximum.warnings.append(busy)
        results.append(maximum)
        unit.log_result(maximum)
        if plan.fixed_seconds > 0 and unit.alive():
            rate = plan.fixed_rate
            if rate is None:
                capacity = baseline if baseline else maximum.pubs_per_s
                rate = plan.rate_fraction * capacity
            if rate > 0:
                count = fixed_phase_count(rate, plan.fixed_seconds)
                log(f"[{unit.tag}] fixed phase: {count} publications at {rate:.2f}/s")
                fixed = await guarded_phase(unit, "fixed", count, rate)
                results.append(fixed)
                unit.log_result(fixed)
    finally:
        await unit.stop(results)
    return results


async def run_matrix(repeats: int, groups: Callable[[], Iterable[Sequence[Unit[R]]]]) -> list[R]:
    """Every group of units, ``repeats`` times (``groups()`` gives fresh units each time).

    Within a group the first unit's max publications/s is the baseline of the
    fixed phases' rate.
    """
    results: list[R] = []
    for repeat in range(1, repeats + 1):
        for group in groups():
            if repeats > 1:
                log(f"--- run {repeat} of {repeats}")
            baseline: float | None = None
            for unit in group:
                runs = await bench_unit(unit, baseline)
                if baseline is None and runs and runs[0].ok:
                    baseline = runs[0].pubs_per_s
                for run in runs:
                    run.repeat = repeat
                results.extend(runs)
    return results


async def publish(
    messages: MessageFactory,
    mode: str,
    count: int,
    rate: float | None,
    publishers: int,
    send: Callable[[int, bytes], Coroutine[Any, Any, None]],
) -> None:
    """A phase's publications: closed loop (max) or open loop at ``rate`` (fixed)."""
    if mode == "max":
        await publish_closed_loop(messages, count, publishers, send)
    else:
        assert rate is not None
        await publish_fixed_rate(messages, count, rate, send)


class ServerDied(RuntimeError):
    """A server under test exited during a run."""


async def wait_all_done(
    servers: Sequence[Any],
    wsloads: Sequence[WsLoad],
    timeout: float,
    died: type[RuntimeError] = ServerDied,
) -> list[tuple[int, BaseException]]:
    """Wait for every wsload's DONE; raise ``died`` at once if a server exits meanwhile.

    ``servers`` are ServerProcesses (their ``name`` or ``kind`` in the error).
    Returns (index, exception) of each wsload that did not finish.
    """
    done = [asyncio.ensure_future(w.done(timeout)) for w in wsloads]
    dead = [asyncio.ensure_future(server.proc.wait()) for server in servers]
    try:
        pending: set[asyncio.Future[Any]] = set(done)
        while pending:
            finished, _ = await asyncio.wait(
                pending | set(dead), return_when=asyncio.FIRST_COMPLETED
            )
            for server, waiter in zip(servers, dead, strict=True):
                if waiter in finished:
                    name = getattr(server, "name", server.kind)
                    code = server.proc.returncode
                    raise died(f"{name} exited with status {code} mid-run")
            pending -= finished
    finally:
        for future in dead + done:
            if not future.done():
                future.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await future
    failed: list[tuple[int, BaseException]] = []
    for index, future in enumerate(done):
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            failed.append((index, exc))
    return failed


# --------------------------------------------------------------------------- CPU


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU times at one moment: each server's (user, sys), this process's, each core's."""

    wall: float
    servers: tuple[tuple[float, float], ...]
    publisher: float
    cores: dict[int, tuple[float, float, float]]
    extra: Any = None  # a benchmark's own sample taken with it (cluster.py: Redis's)

    @classmethod
    def take(cls, pids: Iterable[int], extra: Any = None) -> Snapshot:
        servers = tuple(proc_cpu_seconds(pid) for pid in pids)
        return cls(time.monotonic(), servers, self_cpu_seconds(), core_times(), extra)


@dataclass(frozen=True, slots=True)
class CpuWindow:
    """What was used between two Snapshots, in percent of one core."""

    window: float  # seconds
    servers: list[tuple[float, float]]  # (CPU %, sys %) of each server
    server_pct: float  # all servers
    publisher_pct: float
    busy: dict[int, float]  # busy % of each core
    steal_pct: float | None  # of the worse of the two cores

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> CpuWindow:
        window = after.wall - before.wall
        servers = []
        total = 0.0
        for (u0, s0), (u1, s1) in zip(before.servers, after.servers, strict=True):
            servers.append((100 * (u1 + s1 - u0 - s0) / window, 100 * (s1 - s0) / window))
            total += u1 + s1 - u0 - s0
        steal = cores_busy(before.cores, after.cores, 2)
        steals = [steal[core] for core in (SERVER_CORE, CLIENT_CORE) if core in steal]
        return cls(
            window,
            servers,
            100 * total / window,
            100 * (after.publisher - before.publisher) / window,
            cores_busy(before.cores, after.cores),
            max(steals, default=None),
        )

    def other_pct(self, ours: float) -> float | None:
        """Busy time of both cores not accounted for by ``ours`` (percent)."""
        if SERVER_CORE not in self.busy or CLIENT_CORE not in self.busy:
            return None
        return self.busy[SERVER_CORE] + self.busy[CLIENT_CORE] - ours


def wsload_cpu_pct(reports: Iterable[Mapping[str, Any]], window: float) -> float:
    """The wsloads' CPU (their own figure covers first delivery -> end) over ``window``."""
    return 100 * sum(float(r.get("phase2_cpu_s", 0.0)) for r in reports) / window


def post_figures(result: Any, stats: PostLog) -> None:
    """POST latency percentiles and the first failures into ``result``."""
    result.post_p50_ms = percentile(stats.post_ms, 50)
    result.post_p99_ms = percentile(stats.post_ms, 99)
    result.errors.extend(stats.failures[:10])


# --------------------------------------------------------------------------- warnings


def add_warnings(
    result: Any,
    client_busy: float | None,
    *,
    unsaturated: str,
    generators: str,
    extra: Sequence[str] = (),
) -> None:
    """Flag measurements whose conditions were not the intended ones.

    ``unsaturated`` formats the max phase's server CPU % when under 90;
    ``generators`` names what loads the client core; ``extra`` are the
    benchmark's own, before the steal time's.
    """
    if result.mode == "max" and result.server_cpu_pct < 90:
        result.warnings.append(unsaturated.format(result.server_cpu_pct))
    if client_busy is not None and client_busy > 90:
        result.warnings.append(
            f"client core {client_busy:.0f}% busy: {generators} may be the limit"
        )
    if result.other_cpu_pct is not None and result.other_cpu_pct > 15:
        result.warnings.append(
            f"{result.other_cpu_pct:.0f}% of a core used by other processes during the run: "
            "the measurement was disturbed, run it again"
        )
    result.warnings.extend(extra)
    if result.steal_pct is not None and result.steal_pct > 2:
        result.warnings.append(f"{result.steal_pct:.0f}% steal time: the host was busy")


def busy_cores(interval: float, threshold: float) -> dict[int, float]:
    """Cores more than ``threshold`` percent busy over the next ``interval`` seconds."""
    first = core_times()
    time.sleep(interval)
    busy = cores_busy(first, core_times())
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


# --------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return format(value, spec)


def status_text(errors: Sequence[str], warnings: Sequence[str]) -> str:
    """How a phase went, for the progress lines on stderr."""
    status = "ok" if not errors else "FAILED: " + "; ".join(errors)
    if warnings:
        status += "; warning: " + "; ".join(warnings)
    return status


def phase_cell(result: PhaseResult) -> str:
    """The table's phase column: ``max``, or ``fixed`` with its publication rate."""
    return "max" if result.mode == "max" else f"fixed {fmt(result.rate_pubs_per_s, '.1f')}/s"


def ok_cell(result: PhaseResult) -> str:
    """The table's ok column: ``yes``, ``yes*`` (flagged by a warning) or ``NO``."""
    return ("yes" if not result.warnings else "yes*") if not result.errors else "NO"


#: A table column: its header and its cell of one result.
Column = tuple[str, Callable[[Any], str]]


#: The columns both tables have, after what the rows are of (server, or broker and instances).
RATE_COLUMNS: list[Column] = [
    ("clients", lambda r: str(r.clients)),
    ("phase", phase_cell),
    ("delivered msgs/s", lambda r: f"{r.msgs_per_s:,.0f}"),
    ("pubs/s", lambda r: f"{r.pubs_per_s:.1f}"),
    ("p50 ms", lambda r: fmt(r.p50_ms, ".2f")),
    ("p99 ms", lambda r: fmt(r.p99_ms, ".2f")),
]


def table(columns: Sequence[Column], results: Iterable[Any]) -> str:
    """The results as a markdown table."""
    header = "| " + " | ".join(name for name, _ in columns) + " |"
    lines = [header, "|" + "---|" * len(columns)]
    for r in results:
        lines.append("| " + " | ".join(cell(r) for _, cell in columns) + " |")
    return "\n".join(lines)


def results_json(results: Iterable[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(r) | {"ok": r.ok} for r in results]


def settings_json(settings: Any, messages: MessageFactory) -> dict[str, Any]:
    """A benchmark's settings (a dataclass with ``wsload_src``) for the JSON report."""
    return {
        **{k: v for k, v in dataclasses.asdict(settings).items() if k != "wsload_src"},
        "wsload_src": str(settings.wsload_src),
        "message_bytes": messages.envelope_size,
    }


def print_report(
    report: dict[str, Any],
    results: Sequence[Any],
    *,
    intro: Sequence[str],
    layout: str,
    body: Sequence[str],
    label: Callable[[Any], str],
) -> None:
    """The text report: machine, ``intro`` lines, ``layout`` of the cores, the table
    and ``body`` (a benchmark's lines after it), then every error and warning."""
    print(machine_line(report["machine"]))
    for line in intro:
        print(line)
    print(f"message {report['settings']['message_bytes']} B; {layout}; {report['elapsed_s']} s\n")
    for line in body:
        print(line)
    for r in results:
        for error in r.errors:
            print(f"ERROR {label(r)} {r.mode}: {error}")
        for warning_text in r.warnings:
            print(f"warning {label(r)} {r.mode}: {warning_text}")


# --------------------------------------------------------------------------- CLI


def add_phase_arguments(
    parser: argparse.ArgumentParser,
    *,
    rate: str,
    fraction: str,
    seconds: str,
    fraction_of: str,
    rate_first: bool,
) -> None:
    """--publishers, then the fixed phase's options, named ``rate``, ``fraction``, ``seconds``."""
    parser.add_argument(
        "--publishers", type=int, default=2, help="concurrent POSTs in the max phase"
    )
    options: list[tuple[str, Any, str]] = [
        (rate, None, "fixed phase publications/s (overrides)"),
        (fraction, 0.5, f"fixed phase rate as a fraction of {fraction_of} publications/s"),
    ]
    for name, default, text in options if rate_first else options[::-1]:
        parser.add_argument(name, type=float, default=default, help=text)
    parser.add_argument(seconds, type=float, default=5.0, help="fixed phase length; 0 skips it")


def add_run_arguments(
    parser: argparse.ArgumentParser,
    *,
    wait_idle: float,
    wait_idle_help: str,
    ping_help: str | None,
    slurmcast_arg_help: str,
) -> None:
    """The options both benchmarks take, from --connect-timeout to --json-out."""
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--recv-timeout", type=float, default=90.0)
    parser.add_argument("--wsload-src", type=Path, default=DEFAULT_WSLOAD_SRC)
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the whole matrix this many times"
    )
    parser.add_argument("--wait-idle", type=float, default=wait_idle, help=wait_idle_help)
    parser.add_argument("--ping-interval", type=float, default=600.0, help=ping_help)
    parser.add_argument(
        "--slurmcast-arg", action="append", default=[], metavar="ARG", help=slurmcast_arg_help
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    parser.add_argument(
        "--json-out", type=Path, default=None, help="also write the JSON results to this file"
    )


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of the options add_run_arguments() added, by their Settings names."""
    return {
        "connect_timeout": args.connect_timeout,
        "recv_timeout": args.recv_timeout,
        "wsload_src": args.wsload_src,
        "repeat": args.repeat,
        "wait_idle": args.wait_idle,
        "ping_interval": args.ping_interval,
        "slurmcast_args": tuple(args.slurmcast_arg),
    }


def int_list(parser: argparse.ArgumentParser, value: str, option: str) -> tuple[int, ...]:
    """A comma-separated list of integers (``option`` names it in the error)."""
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        parser.error(f"{option} takes comma-separated integers")


def require_positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]
) -> None:
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")


# --------------------------------------------------------------------------- main


def cancel_on_sigterm() -> None:
    """SIGTERM cancels the running task: its finally blocks stop what it started."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def run_benchmark(
    name: str, wsload_src: Path, main: Callable[[], Coroutine[Any, Any, dict[str, Any]]]
) -> dict[str, Any] | None:
    """Run a benchmark's ``main`` on uvloop, from this process pinned to the client core.

    Its report with ``elapsed_s`` added, or None after a setup error (logged as
    ``name: ...``), for which the benchmark exits with status 2.
    """
    if not wsload_src.is_file():
        log(f"{name}: wsload source {wsload_src} not found (use --wsload-src)")
        return None
    pin_self()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a slurmcast dependency on POSIX
        runner: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = asyncio.run
    else:
        runner = uvloop.run
    started = time.monotonic()
    try:
        report = runner(main())
    except SetupError as exc:
        log(f"{name}: {exc}")
        return None
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


@dataclass(frozen=True, slots=True)
class Options:
    """A benchmark's parsed command line: its Settings and what to do with the report."""

    settings: Any  # a dataclass with wsload_src (and the fields of run_settings())
    json: bool
    json_out: Path | None
    check_target: bool = False


def run_main(
    name: str,
    options: Options,
    run_all: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]],
    show: Callable[[dict[str, Any], list[Any]], None],
    *,
    verdict: Callable[[Options, dict[str, Any]], int] = lambda options, report: 0,
    cleanup: Callable[[], None] | None = None,
) -> int:
    """Run ``run_all(options.settings)``, write the JSON, print the report; the exit status.

    0 clean, 1 a run failed (``report["ok"]`` false), 2 setup error, 143 on
    SIGTERM (with cancel_on_sigterm()), else what ``verdict`` says (fanout.py:
    3 when a goal is missed). ``cleanup`` runs in every case.
    """
    try:
        settings = options.settings
        report = run_benchmark(name, settings.wsload_src, functools.partial(run_all, settings))
    except asyncio.CancelledError:  # SIGTERM
        return 143
    finally:
        if cleanup is not None:
            cleanup()
    if report is None:
        return 2
    results: list[Any] = report.pop("_results")
    write_json(report, options.json_out, options.json)
    if not options.json:
        show(report, results)
    if not report["ok"]:
        return 1
    return verdict(options, report)


def entry(main: Callable[[], int]) -> None:
    """``if __name__ == "__main__"``: exit with main()'s status, 130 on Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
