"""sacct output to final job states: how jobs ended and what they used.

slurmdbd is the authority once slurmctld has purged a finished job (after
MinJobAge). Its ``ExitCode`` is already ``rc:signal`` (not the raw wait status
squeue reports). The query lists job steps too (no ``--allocations``): the
job's line gives state, exit code, elapsed time, CPUs and total CPU time, and
only the step lines (``123.batch``, ``123.0``) carry ``MaxRSS``, the peak
memory that ``seff`` compares with the request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Final

from slurmcast.core.records import TERMINAL_JOB_STATES, JobRecord, JobState, JobUsage
from slurmcast.errors import SourceError
from slurmcast.sources.slurm._common import decode_text, split_fields
from slurmcast.sources.slurm.gres import tres_get
from slurmcast.sources.slurm.hostlist import expand
from slurmcast.sources.slurm.states import parse_job_state
from slurmcast.sources.slurm.values import (
    parse_cpu_time_s,
    parse_duration_s,
    parse_exit_pair,
    parse_int,
    parse_memory_mb,
    parse_slurm_time,
)

#: ``sacct --format`` fields read by :func:`parse_sacct`, in order. ``Reason``
#: is last: the only field that is not a fixed word, number or time.
SACCT_FIELDS: Final[tuple[str, ...]] = (
    "JobIDRaw",
    "State",
    "ExitCode",
    "DerivedExitCode",
    "Start",
    "End",
    "Elapsed",
    "NodeList",
    "AllocCPUS",
    "TotalCPU",
    "MaxRSS",
    "ReqMem",
    "AllocTRES",
    "Reason",
)
#: Fields a header-named output may lack (older captures, other ``--format``s):
#: the usage figures are then unknown.
_USAGE_FIELDS: Final = frozenset({"AllocCPUS", "TotalCPU", "MaxRSS", "ReqMem", "AllocTRES"})

#: Fixed part of the command line for :func:`parse_sacct`; :func:`sacct_args`
#: adds the time window (always give one: without ``-S`` a ``--jobs`` lookup
#: scans all history) and optionally the job ids.
SACCT_ARGS: Final[tuple[str, ...]] = (
    "sacct",
    "--allusers",
    "--parsable2",
    "--noheader",
    f"--format={','.join(SACCT_FIELDS)}",
)

_ENDED: Final = TERMINAL_JOB_STATES | {JobState.COMPLETING}

#: Terminal states to ask sacct for with ``--state`` (sacct.1 "JOB STATE CODES").
SACCT_TERMINAL_STATES: Final = "CA,CD,F,TO,NF,PR,BF,DL,OOM"


@dataclass(frozen=True, slots=True)
class FinalState:
    """How a job ended, as slurmdbd recorded it.

    ``state`` may still be non-terminal (slurmdbd lags behind slurmctld, or
    the job is not finished): callers check ``state.is_terminal``; exit codes
    are None until the job has ended. ``start_time`` is None for a job that
    never got nodes (sacct reports the end time as its start); ``nodes`` is
    empty then.
    """

    job_id: str
    state: JobState
    exit_code: int | None
    exit_signal: int | None
    derived_exit_code: int | None
    start_time: datetime | None
    end_time: datetime | None
    elapsed_s: int | None
    reason: str | None
    nodes: tuple[str, ...] = ()
    usage: JobUsage | None = None


def sacct_args(
    since: datetime,
    until: datetime | None = None,
    job_ids: Iterable[str] = (),
    *,
    terminal_only: bool = False,
) -> list[str]:
    """The sacct command line for :func:`parse_sacct` over a time window.

    Run it with ``TZ=UTC``: sacct reads and prints times in local time.

    Args:
        since: start of the window (jobs running or ending after it).
        until: end of the window; None means sacct's ``now``.
        job_ids: restrict to these raw job ids (a job array's id also
            selects all its tasks).
        terminal_only: add ``--state`` with every terminal state.

    Returns:
        The argument list, ``sacct`` first.
    """
    args = [
        *SACCT_ARGS,
        f"--starttime={_sacct_time(since)}",
        f"--endtime={_sacct_time(until) if until is not None else 'now'}",
    ]
    ids = ",".join(job_ids)
    if ids:
        args.append(f"--jobs={ids}")
    if terminal_only:
        args.append(f"--state={SACCT_TERMINAL_STATES}")
    return args


def _sacct_time(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None, microsecond=0).isoformat()


def parse_sacct(raw: bytes | str, *, tz: tzinfo = UTC) -> dict[str, FinalState]:
    """Parse ``sacct -P`` output with :data:`SACCT_FIELDS`.

    A header line (output without ``--noheader``) is recognised and then
    names the columns, so any ``--format`` containing the needed fields also
    works (without the usage fields, ``usage`` is None). Step lines
    (``123.batch``) add their peak memory and CPU time to their job; with
    ``--duplicates`` the last line of a job id wins.

    Args:
        raw: the command's stdout.
        tz: the zone sacct printed times in (run it with ``TZ=UTC``).

    Returns:
        Final states keyed by raw job id.

    Raises:
        SourceError: a line with too few fields or an unparsable value.
    """
    text = decode_text(raw, "sacct")
    lines = text.splitlines()
    columns: list[int | None] | None = None
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first < len(lines) and _is_header(lines[first]):
        columns = _columns_from_header(lines[first])
        first += 1
    finals: dict[str, FinalState] = {}
    steps: dict[str, _StepTotals] = {}
    for index in range(first, len(lines)):
        line, line_no = lines[index], index + 1
        if not line.strip():
            continue
        if columns is None:
            values = split_fields(line, "|", len(SACCT_FIELDS), "sacct", line_no)
        else:
            parts = line.split("|")
            if len(parts) <= max(column for column in columns if column is not None):
                raise SourceError(f"sacct: line {line_no} has too few fields: {line[:120]!r}")
            values = ["" if column is None else parts[column] for column in columns]
        try:
            job_id = values[0].strip()
            if "." in job_id:
                steps.setdefault(job_id.split(".", 1)[0], _StepTotals()).add(values)
                continue
            final = _final_from_fields(
                values, tz, usage_known=columns is None or columns[_MAXRSS] is not None
            )
        except SourceError as exc:
            raise SourceError(f"sacct: line {line_no}: {exc.message}") from None
        finals[final.job_id] = final
    return {job_id: _with_steps(final, steps.get(job_id)) for job_id, final in finals.items()}


_ALLOC_CPUS, _TOTAL_CPU, _MAXRSS, _REQ_MEM, _ALLOC_TRES = (
    SACCT_FIELDS.index(name) for name in ("AllocCPUS", "TotalCPU", "MaxRSS", "ReqMem", "AllocTRES")
)


@dataclass(slots=True)
class _StepTotals:
    """What a job's step lines add up to: the largest MaxRSS, the summed TotalCPU."""

    memory_peak_mb: int | None = None
    cpu_time_s: float = 0.0

    def add(self, values: Sequence[str]) -> None:
        rss = parse_memory_mb(values[_MAXRSS], default_unit="K")
        if rss is not None:
            self.memory_peak_mb = max(rss, self.memory_peak_mb or 0)
        self.cpu_time_s += parse_cpu_time_s(values[_TOTAL_CPU]) or 0.0


def _with_steps(final: FinalState, steps: _StepTotals | None) -> FinalState:
    if steps is None or final.usage is None:
        return final
    usage = final.usage
    # The job line's TotalCPU already sums its steps on the releases seen; the
    # larger of the two is right either way, and never counts a step twice.
    cpu_time = max(usage.cpu_time_s or 0.0, round(steps.cpu_time_s, 3))
    return dataclasses.replace(
        final,
        usage=dataclasses.replace(
            usage,
            cpu_time_s=cpu_time if usage.cpu_time_s is not None or steps.cpu_time_s else None,
            memory_peak_mb=steps.memory_peak_mb,
        ),
    )


def _is_header(line: str) -> bool:
    names = {name.strip().lower() for name in line.split("|")}
    return "jobidraw" in names and "state" in names


def _columns_from_header(header: str) -> list[int | None]:
    names = [name.strip().lower() for name in header.split("|")]
    columns: list[int | None] = []
    for field in SACCT_FIELDS:
        try:
            columns.append(names.index(field.lower()))
        except ValueError:
            if field in _USAGE_FIELDS:
                columns.append(None)
                continue
            raise SourceError(f"sacct: header lacks {field!r}: {header[:200]!r}") from None
    return columns


def _final_from_fields(values: Sequence[str], tz: tzinfo, *, usage_known: bool) -> FinalState:
    (
        job_id,
        state_text,
        exit_text,
        derived_text,
        start,
        end,
        elapsed_text,
        node_list,
        cpus_text,
        cpu_time_text,
        _max_rss,
        req_mem,
        alloc_tres,
        reason,
    ) = values
    job_id = job_id.strip()
    if not job_id:
        raise SourceError("empty JobIDRaw")
    if not state_text.strip():
        raise SourceError(f"job {job_id}: empty State")
    state = parse_job_state(state_text)
    exit_pair = parse_exit_pair(exit_text)
    derived = parse_exit_pair(derived_text)
    if state not in _ENDED:
        # sacct prints 0:0 for jobs still pending or running: not an exit code yet.
        exit_pair = derived = None
    nodes = expand(node_list)
    started = parse_slurm_time(start, tz)
    if not nodes and state in TERMINAL_JOB_STATES:
        started = None
    elapsed = parse_duration_s(elapsed_text)
    usage = None
    if usage_known:
        cpus = parse_int(cpus_text)
        usage = JobUsage(
            elapsed_s=elapsed,
            cpus=cpus,
            cpu_time_s=parse_cpu_time_s(cpu_time_text),
            memory_requested_mb=_requested_memory(alloc_tres, req_mem, len(nodes), cpus),
        )
    reason = reason.strip()
    return FinalState(
        job_id=job_id,
        state=state,
        exit_code=exit_pair[0] if exit_pair else None,
        exit_signal=exit_pair[1] if exit_pair else None,
        derived_exit_code=derived[0] if derived else None,
        start_time=started,
        end_time=parse_slurm_time(end, tz),
        elapsed_s=elapsed,
        reason=reason if reason and reason != "None" else None,
        nodes=nodes,
        usage=usage,
    )


def _requested_memory(alloc_tres: str, req_mem: str, nodes: int, cpus: int | None) -> int | None:
    """The job's whole memory: AllocTRES ``mem=``, else ReqMem with its old n/c suffix resolved."""
    allocated = tres_get(alloc_tres.strip(), "mem")
    if allocated is not None:
        return parse_memory_mb(allocated)
    text = req_mem.strip()
    per_node = text.endswith("n")
    per_cpu = text.endswith("c")
    amount = parse_memory_mb(text)
    if amount is None:
        return None
    if per_node:
        return amount * max(nodes, 1)
    if per_cpu and cpus:
        return amount * cpus
    return amount


def apply_final_state(record: JobRecord, final: FinalState) -> JobRecord:
    """The last-seen record of a job updated with how it ended.

    For ``Source.final_states``: state, exit code and signal, end time and
    reason come from ``final``; the start time and nodes too when sacct knows
    them (a job may have started and ended between two polls).

    Args:
        record: the job as last seen in squeue.
        final: its sacct record.

    Returns:
        The updated record.
    """
    return dataclasses.replace(
        record,
        state=final.state,
        exit_code=final.exit_code,
        exit_signal=final.exit_signal,
        start_time=final.start_time or record.start_time,
        end_time=final.end_time,
        reason=final.reason,
        nodes=final.nodes or record.nodes,
        usage=final.usage or record.usage,
    )
