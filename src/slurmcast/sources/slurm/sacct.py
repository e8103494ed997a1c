"""sacct output to final job states: how jobs that left squeue really ended.

slurmdbd is the authority once slurmctld has purged a finished job (after
MinJobAge). ``sacct -X`` gives one line per job allocation; its ``ExitCode``
is already ``rc:signal`` (not the raw wait status squeue reports).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Final

from slurmcast.core.snapshot import TERMINAL_JOB_STATES, JobRecord, JobState
from slurmcast.errors import SourceError
from slurmcast.sources.slurm._common import decode_text, split_fields
from slurmcast.sources.slurm.hostlist import expand
from slurmcast.sources.slurm.states import parse_job_state
from slurmcast.sources.slurm.values import parse_duration_s, parse_exit_pair, parse_slurm_time

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
    "Reason",
)

#: Fixed part of the command line for :func:`parse_sacct`; :func:`sacct_args`
#: adds the time window (always give one: without ``-S`` a ``--jobs`` lookup
#: scans all history) and optionally the job ids.
SACCT_ARGS: Final[tuple[str, ...]] = (
    "sacct",
    "--allusers",
    "--allocations",
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
    """Parse ``sacct -X -P`` output with :data:`SACCT_FIELDS`.

    A header line (output without ``--noheader``) is recognised and then
    names the columns, so any ``--format`` containing the needed fields also
    works. Job steps (``123.batch``) are skipped; with ``--duplicates`` the
    last line of a job id wins.

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
    columns: list[int] | None = None
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first < len(lines) and _is_header(lines[first]):
        columns = _columns_from_header(lines[first])
        first += 1
    finals: dict[str, FinalState] = {}
    for index in range(first, len(lines)):
        line, line_no = lines[index], index + 1
        if not line.strip():
            continue
        if columns is None:
            values = split_fields(line, "|", len(SACCT_FIELDS), "sacct", line_no)
        else:
            parts = line.split("|")
            if len(parts) <= max(columns):
                raise SourceError(f"sacct: line {line_no} has too few fields: {line[:120]!r}")
            values = [parts[column] for column in columns]
        try:
            final = _final_from_fields(values, tz)
        except SourceError as exc:
            raise SourceError(f"sacct: line {line_no}: {exc.message}") from None
        if final is not None:
            finals[final.job_id] = final
    return finals


def _is_header(line: str) -> bool:
    names = {name.strip().lower() for name in line.split("|")}
    return "jobidraw" in names and "state" in names


def _columns_from_header(header: str) -> list[int]:
    names = [name.strip().lower() for name in header.split("|")]
    columns: list[int] = []
    for field in SACCT_FIELDS:
        try:
            columns.append(names.index(field.lower()))
        except ValueError:
            raise SourceError(f"sacct: header lacks {field!r}: {header[:200]!r}") from None
    return columns


def _final_from_fields(values: Sequence[str], tz: tzinfo) -> FinalState | None:
    job_id, state_text, exit_text, derived_text, start, end, elapsed, node_list, reason = values
    job_id = job_id.strip()
    if not job_id:
        raise SourceError("empty JobIDRaw")
    if "." in job_id:
        return None
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
    reason = reason.strip()
    return FinalState(
        job_id=job_id,
        state=state,
        exit_code=exit_pair[0] if exit_pair else None,
        exit_signal=exit_pair[1] if exit_pair else None,
        derived_exit_code=derived[0] if derived else None,
        start_time=started,
        end_time=parse_slurm_time(end, tz),
        elapsed_s=parse_duration_s(elapsed),
        reason=reason if reason and reason != "None" else None,
        nodes=nodes,
    )


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
    )
