"""The real Slurm source: squeue, sinfo, sacct and scontrol, run without blocking.

Every command runs through ``asyncio.create_subprocess_exec`` (never a
shell) under a timeout, with ``TZ=UTC`` so the text tools print UTC times;
a command that is cancelled or times out is killed. Outputs are parsed in a
worker thread by the pure parsers of ``sources/slurm/``.

What the installed Slurm can do is detected once, at start-up (and again
after a failed detection): its version, whether ``--json`` works (21.08+) and
prints a document the parsers know, whether accounting (slurmdbd) is
configured, and MinJobAge. ``describe()`` shows all of it in /health, with how
many commands of each kind ran.

Which command lists nodes in JSON depends on the release: ``sinfo --json``
up to 22.05, ``scontrol show nodes --json`` from 23.02 (whose ``sinfo --json``
groups nodes). In ``auto`` format a JSON document of a shape the parsers do
not know switches that listing to the delimited format, said once in the log
and in ``describe()``; with ``--slurm-format json`` it is a clear error naming
the command, the release and the missing key.

Longer than ~400 lines on purpose: detection of what the installed Slurm can do, and the
four commands, share one set of settings and counters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from slurmcast.core.records import JobRecord, JobsListing, NodesListing
from slurmcast.errors import ErrorCode, SourceError
from slurmcast.observability.histogram import DURATION_BUCKETS, Histogram
from slurmcast.sources.final_states import Accounting
from slurmcast.sources.slurm._common import UnknownShapeError
from slurmcast.sources.slurm.jobs import (
    SQUEUE_ARGS,
    SQUEUE_JSON_ARGS,
    parse_squeue_delimited,
    parse_squeue_json,
)
from slurmcast.sources.slurm.nodes import (
    SCONTROL_NODES_ARGS,
    SINFO_ARGS,
    fill_allocations,
    nodes_json_args,
    parse_nodes_json,
    parse_scontrol_nodes,
    parse_sinfo_delimited,
)
from slurmcast.sources.slurm.sacct import FinalState, parse_sacct, sacct_args

log = logging.getLogger("slurmcast.slurm")

#: ``squeue --json`` and ``sinfo --json`` exist from this release on.
JSON_SINCE: Final = (21, 8)
#: Largest ``squeue --json`` document auto mode decodes: ``orjson.loads`` holds the GIL
#: for the whole call, about 3 ms per MB here (docs/performance.md), so 8 MB keeps the
#: event loop's stall near 25 ms.
JSON_MAX_BYTES: Final = 8 * 1024 * 1024
#: Bytes per job of ``squeue --json`` before one has been measured: recorded 22.05-23.02
#: jobs print 3-6 KB, 24.05-25.11 ones 7-37 KB (``job_resources`` grew).
_JSON_BYTES_PER_JOB: Final = ((23, 11), 4 * 1024, 20 * 1024)
#: Job ids per sacct call: keeps the command line short, the query bounded.
SACCT_BATCH: Final = 500
#: stderr kept in an error message.
STDERR_LIMIT: Final = 600

_VERSION = re.compile(rb"slurm(?:-wlm)?\s+(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class SlurmSettings:
    """How to run the Slurm commands.

    ``output_format`` is ``auto`` (JSON where supported, delimited otherwise),
    ``json`` or ``delimited``. Decoding a JSON document is one uninterruptible
    call, so above ``json_max_jobs`` jobs the job listing switches to the
    delimited format, which parses line by line in a worker thread without
    holding up the event loop (and costs slurmctld less to produce).
    """

    bin_dir: str = ""
    timeout: float = 20.0
    output_format: str = "auto"
    json_max_jobs: int = 2000


@dataclass(frozen=True, slots=True)
class CommandResult:
    stdout: bytes
    stderr: bytes


Runner = Callable[[Sequence[str], float], Awaitable[CommandResult]]


def command_env() -> dict[str, str]:
    """The environment every Slurm command runs in.

    ``TZ=UTC`` because squeue/sinfo/sacct print and read local times;
    ``SLURM_TIME_FORMAT`` unset because a site profile may change the format
    the parsers read.
    """
    env = {k: v for k, v in os.environ.items() if k != "SLURM_TIME_FORMAT"}
    env["TZ"] = "UTC"
    return env


async def run_command(args: Sequence[str], timeout: float) -> CommandResult:
    """Run one command to completion; raise ``SourceError`` on any failure.

    The child is killed if it outlives ``timeout`` or if the caller is
    cancelled (e.g. by the monitor's own deadline), so no command outlives
    the poll that started it.
    """
    name = os.path.basename(args[0])
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=command_env(),
        )
    except FileNotFoundError:
        raise SourceError(
            f"{name}: command not found ({args[0]}); is Slurm installed and on PATH, "
            "or is --slurm-bin-dir right?"
        ) from None
    except OSError as exc:
        raise SourceError(f"{name}: cannot run: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        raise SourceError(
            f"{name} did not finish within {timeout:g}s", code=ErrorCode.SOURCE_TIMEOUT
        ) from None
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.shield(process.wait())
    if process.returncode != 0:
        detail = stderr.decode("utf-8", "replace").strip()[:STDERR_LIMIT] or "no error output"
        raise SourceError(f"{name} exited with status {process.returncode}: {detail}")
    if stderr.strip():
        log.debug("%s wrote to stderr: %s", name, stderr[:STDERR_LIMIT].decode("utf-8", "replace"))
    return CommandResult(stdout, stderr)


def parse_version(text: bytes) -> tuple[int, int, int]:
    """``slurm 22.05.8`` -> (22, 5, 8).

    Raises:
        SourceError: the text names no Slurm version.
    """
    match = _VERSION.search(text)
    if match is None:
        raise SourceError(f"cannot read a Slurm version from {text[:80]!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def format_version(version: tuple[int, int, int]) -> str:
    """(22, 5, 8) -> ``22.05.8``, as Slurm spells its releases."""
    return f"{version[0]}.{version[1]:02d}.{version[2]}"


class SlurmCliSource:
    """``Source`` backed by the Slurm command-line tools."""

    kind = "slurm"

    def __init__(
        self,
        settings: SlurmSettings | None = None,
        *,
        runner: Runner = run_command,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings or SlurmSettings()
        self._run_command = runner
        self._clock = clock
        self.version: tuple[int, int, int] | None = None
        self.json_supported = False
        self.accounting_storage: str | None = None
        self.min_job_age: int | None = None
        self._accounting = Accounting("accounting query (sacct)")
        self.detect_error: str | None = None
        self.commands: Counter[str] = Counter()
        self.command_seconds: dict[str, float] = {}
        #: Per command: how long each run took, and the runs that failed
        #: (exit status, timeout, not found): GET /metrics.
        self.command_durations: dict[str, Histogram] = {}
        self.command_failures: Counter[str] = Counter()
        self._last_job_count: int | None = None
        self._json_bytes_per_job: float | None = None
        self._node_details_needed: bool | None = None
        #: Why a listing went delimited in auto mode although JSON is supported.
        self.json_fallbacks: dict[str, str] = {}

    # -- Source ------------------------------------------------------------

    async def start(self) -> None:
        """Detect what the installed Slurm offers; a failure is retried at the next poll."""
        try:
            await self._detect()
        except SourceError as exc:
            self.detect_error = exc.message
            log.warning("Slurm detection failed (will retry at the next poll): %s", exc.message)

    async def jobs(self) -> JobsListing:
        await self._ensure_detected()
        taken_at = self._clock()
        snapshot = None
        if self._jobs_as_json:
            result = await self._run(SQUEUE_JSON_ARGS)
            try:
                snapshot = await asyncio.to_thread(parse_squeue_json, result.stdout, taken_at)
            except UnknownShapeError as exc:
                self._json_failed("jobs", exc)
            else:
                if snapshot.jobs:
                    self._json_bytes_per_job = len(result.stdout) / len(snapshot.jobs)
        if snapshot is None:
            result = await self._run(SQUEUE_ARGS)
            snapshot = await asyncio.to_thread(parse_squeue_delimited, result.stdout, taken_at)
        self._last_job_count = len(snapshot.jobs)
        return snapshot

    async def nodes(self) -> NodesListing:
        await self._ensure_detected()
        taken_at = self._clock()
        if self._nodes_as_json:
            args = self._nodes_json_args
            result = await self._run(args)
            try:
                snapshot = await asyncio.to_thread(
                    parse_nodes_json, result.stdout, taken_at, " ".join(args[:4])
                )
            except UnknownShapeError as exc:
                self._json_failed("nodes", exc)
            else:
                return await self._with_allocations(snapshot, result.stdout)
        result = await self._run(SINFO_ARGS)
        return await asyncio.to_thread(parse_sinfo_delimited, result.stdout, taken_at)

    def _json_failed(self, listing: str, exc: UnknownShapeError) -> None:
        """A JSON document of an unknown shape: delimited from now on in auto mode, else fail."""
        if self.settings.output_format == "json":
            raise SourceError(
                f"{exc.message}; this release's JSON is not supported yet: "
                "run with --slurm-format delimited (or auto)"
            ) from None
        if listing not in self.json_fallbacks:
            log.warning("%s; listing %s in the delimited format instead", exc.message, listing)
        self.json_fallbacks[listing] = exc.message

    async def _with_allocations(self, snapshot: NodesListing, raw: bytes) -> NodesListing:
        if self._node_details_needed is None:
            # Only the oldest JSON schema lacks allocations; check once.
            self._node_details_needed = b'"alloc_memory"' not in raw
        if self._node_details_needed:
            details = await self._run(SCONTROL_NODES_ARGS)
            snapshot = fill_allocations(snapshot, parse_scontrol_nodes(details.stdout))
        return snapshot

    async def final_states(
        self, jobs: Mapping[str, JobRecord], since: datetime
    ) -> Mapping[str, JobRecord]:
        """How the jobs ended, from ``sacct`` (one query per batch of ids).

        Without accounting, or when sacct fails, returns what it could and
        records why in ``describe()``: job events keep flowing, and final
        states the caller cannot confirm are marked so.
        """
        if not self.accounting_available or not jobs:
            return {}

        async def fetch(batch: Sequence[str]) -> Mapping[str, FinalState]:
            result = await self._run(sacct_args(since, job_ids=batch))
            return await asyncio.to_thread(parse_sacct, result.stdout)

        return await self._accounting.resolve(jobs, SACCT_BATCH, fetch)

    @property
    def accounting_error(self) -> str | None:
        return self._accounting.error

    def describe(self) -> dict[str, Any]:
        problems = []
        if self.detect_error:
            problems.append(f"detection failed: {self.detect_error}")
        if self.accounting_error:
            problems.append(f"accounting query failed: {self.accounting_error}")
        return {
            "kind": self.kind,
            "version": format_version(self.version) if self.version else None,
            "jobs_format": "json" if self._jobs_as_json else "delimited",
            "nodes_format": "json" if self._nodes_as_json else "delimited",
            "nodes_json_command": " ".join(self._nodes_json_args) if self.version else None,
            # Listings that went delimited in auto mode: working, so not a problem.
            "json_fallbacks": dict(self.json_fallbacks),
            "json_supported": self.json_supported,
            "accounting": {
                "storage": self.accounting_storage,
                "available": self.accounting_available,
                "error": self.accounting_error,
            },
            "min_job_age_s": self.min_job_age,
            "commands": dict(self.commands),
            "command_seconds": {k: round(v, 3) for k, v in self.command_seconds.items()},
            "problems": problems,
        }

    async def close(self) -> None:
        return None

    # -- internals ---------------------------------------------------------

    @property
    def accounting_answers(self) -> bool:
        return self.accounting_available and self.accounting_error is None

    @property
    def accounting_available(self) -> bool:
        # sacct needs slurmdbd; with jobcomp only, slurmdbd-less sites have no sacct history.
        return self.accounting_storage is not None and "slurmdbd" in self.accounting_storage

    @property
    def _nodes_json_args(self) -> tuple[str, ...]:
        return nodes_json_args(self.version or (0, 0, 0))

    @property
    def _nodes_as_json(self) -> bool:
        wanted = self.settings.output_format
        if wanted == "json":
            return True
        return wanted == "auto" and self.json_supported and "nodes" not in self.json_fallbacks

    @property
    def _jobs_as_json(self) -> bool:
        if self.settings.output_format == "json":
            return True
        # In auto mode the first listing is delimited: it tells how big the
        # queue is before a JSON document of unknown size is decoded.
        # Bounded by the document's expected size too: a 25.11 job prints 5x a 22.05 one.
        count = self._last_job_count
        return (
            self.settings.output_format == "auto"
            and self.json_supported
            and "jobs" not in self.json_fallbacks
            and count is not None
            and count <= self.settings.json_max_jobs
            and count * self._bytes_per_job <= JSON_MAX_BYTES
        )

    @property
    def _bytes_per_job(self) -> float:
        if self._json_bytes_per_job is not None:
            return self._json_bytes_per_job
        since, older, newer = _JSON_BYTES_PER_JOB
        return newer if (self.version or (0, 0))[:2] >= since else older

    async def _ensure_detected(self) -> None:
        if self.version is None:
            await self._detect()

    async def _detect(self) -> None:
        version = parse_version((await self._run(("squeue", "--version"))).stdout)
        config = (await self._run(("scontrol", "show", "config"))).stdout
        settings = _config_values(config)
        self.accounting_storage = settings.get("AccountingStorageType")
        age = settings.get("MinJobAge", "")
        self.min_job_age = int(age.split()[0]) if age.split() and age.split()[0].isdigit() else None
        self.json_supported = version[:2] >= JSON_SINCE
        self.json_fallbacks.clear()
        if self.json_supported and self.settings.output_format == "auto":
            args = nodes_json_args(version)
            try:
                # Not the exit status alone: the document must be one the parser reads.
                result = await self._run(args)
                await asyncio.to_thread(
                    parse_nodes_json, result.stdout, self._clock(), " ".join(args[:4])
                )
            except UnknownShapeError as exc:
                self.json_fallbacks["nodes"] = exc.message
                log.warning("%s; listing nodes in the delimited format", exc.message)
            except SourceError as exc:
                # --json needs Slurm's data_parser plugins, which packagers may split off.
                log.warning(
                    "%s --json does not work here (%s); using delimited output", args[0], exc
                )
                self.json_supported = False
        self.version = version
        self.detect_error = None
        log.info(
            "Slurm %s detected: %s output, accounting %s, MinJobAge %s",
            format_version(version),
            "JSON" if self._nodes_as_json else "delimited",
            self.accounting_storage or "unknown",
            self.min_job_age,
        )

    async def _run(self, args: Sequence[str]) -> CommandResult:
        name = args[0]
        path = os.path.join(self.settings.bin_dir, name) if self.settings.bin_dir else name
        self.commands[name] += 1
        started = time.monotonic()
        try:
            return await self._run_command((path, *args[1:]), self.settings.timeout)
        except SourceError:
            self.command_failures[name] += 1
            raise
        finally:
            elapsed = time.monotonic() - started
            self.command_seconds[name] = self.command_seconds.get(name, 0.0) + elapsed
            durations = self.command_durations.get(name)
            if durations is None:
                durations = self.command_durations[name] = Histogram(DURATION_BUCKETS)
            durations.observe(elapsed)


def _config_values(raw: bytes) -> dict[str, str]:
    """``scontrol show config`` lines ``Key = value`` as a dict."""
    values: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values
