"""squeue output to ``JobsListing``: ``squeue --json`` and a delimited fallback.

Job ids are Slurm's raw job ids (``job_id`` in JSON, ``JobID`` in ``-O``,
``JobIDRaw`` in sacct): unique per job record, array tasks included (task
``6_1`` is job ``14``), so they key the snapshot and match sacct rows.

What the records hold, whatever the format:

* ``start_time`` only once the job has started: squeue reports an *expected*
  start for pending jobs and a start equal to the end for jobs that ended
  without ever getting nodes (cancelled while pending, rejected);
* ``end_time``, ``exit_code`` and ``exit_signal`` only once the job has ended
  (terminal or COMPLETING): squeue reports an expected end (start + time
  limit, a year ahead when unlimited) for live jobs, and exit code 0 for jobs
  that have not ended;
* ``memory_mb`` the job's total memory (the ``mem`` TRES: per-node or per-CPU
  requests already multiplied out), ``gpus`` the job's total GPUs.

Longer than ~400 lines on purpose: two input formats produce the same records, and what
each field means across releases is written down beside its parsing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Final

from slurmcast.core.records import TERMINAL_JOB_STATES, JobRecord, JobsListing, JobState
from slurmcast.errors import SourceError
from slurmcast.sources.slurm._common import (
    decode_text,
    each_record,
    gc_paused,
    load_json_list,
    split_fields,
)
from slurmcast.sources.slurm.gres import gpu_count, gpu_count_all, tres_get
from slurmcast.sources.slurm.hostlist import expand
from slurmcast.sources.slurm.states import parse_job_state
from slurmcast.sources.slurm.values import (
    NO_VAL,
    epoch_to_datetime,
    exit_from_json,
    number,
    parse_int,
    parse_memory_mb,
    parse_slurm_time,
    parse_squeue_exit,
    parse_time_limit_min,
    to_int,
)

#: Command line for :func:`parse_squeue_json`. Up to 23.11 ``--json`` ignores
#: ``--states`` and dumps every job slurmctld holds; from 24.05.1 it honours the
#: filters, and without ``--states=all`` finished jobs are left out.
SQUEUE_JSON_ARGS: Final[tuple[str, ...]] = ("squeue", "--json", "--all", "--states=all")

#: Field separator of the delimited format: ASCII "unit separator", which no
#: job name, reason or account realistically contains.
SQUEUE_DELIMITER: Final = "\x1f"

#: ``squeue -O`` fields read by :func:`parse_squeue_delimited`, in order. The
#: job name is last: it is the only free-text field, and the parser splits at
#: most ``len(SQUEUE_FIELDS) - 1`` times, so even a name containing the
#: delimiter survives.
SQUEUE_FIELDS: Final[tuple[str, ...]] = (
    "JobID",
    "State",
    "UserName",
    "Account",
    "Partition",
    "QOS",
    "NumCPUs",
    "NumNodes",
    "NumTasks",
    "tres-alloc",
    "tres-per-job",
    "tres-per-node",
    "tres-per-socket",
    "tres-per-task",
    "SubmitTime",
    "StartTime",
    "EndTime",
    "TimeLimit",
    "exit_code",
    "Reason",
    "Dependency",
    "Reservation",
    "NodeList",
    "ReasonList",
    "Name",
)

#: The ``-O`` argument: ``Field:<delimiter>`` (empty width = no padding, the
#: delimiter as suffix); the last field gets ``:`` only, or squeue pads it to 20.
SQUEUE_FORMAT: Final = ",".join(
    [f"{name}:{SQUEUE_DELIMITER}" for name in SQUEUE_FIELDS[:-1]] + [f"{SQUEUE_FIELDS[-1]}:"]
)

#: Command line for :func:`parse_squeue_delimited`. ``--states=all`` keeps
#: finished jobs still in slurmctld's memory; no ``-r``, so a pending job array
#: stays one record (one raw job id), as in ``--json``.
SQUEUE_ARGS: Final[tuple[str, ...]] = (
    "squeue",
    "--noheader",
    "--all",
    "--states=all",
    f"--Format={SQUEUE_FORMAT}",
)

# job_state strings as squeue --json prints them (full names), for the fast path.
_JOB_STATE_NAMES: Final[dict[str, JobState]] = {
    state.value: state for state in JobState if state is not JobState.UNKNOWN
}

# States in which squeue's start time is only a forecast.
_NOT_STARTED: Final = frozenset(
    {JobState.PENDING, JobState.REQUEUE_HOLD, JobState.REQUEUE_FED, JobState.RESV_DEL_HOLD}
)
# States in which the job has ended: end time and exit code are real.
_ENDED: Final = TERMINAL_JOB_STATES | {JobState.COMPLETING, JobState.STAGE_OUT}

_NO_TEXT: Final = frozenset({"", "N/A", "(null)"})
_GPU_REQUESTS: Final = ("tres_per_job", "tres_per_node", "tres_per_socket", "tres_per_task")

#: A forecast start this far ahead is Slurm's "not planned" (it writes now + one
#: year for a pending job the backfill scheduler has not placed).
_NO_FORECAST_AFTER: Final = timedelta(days=300)


def parse_squeue_json(
    raw: bytes | str, taken_at: datetime, command: str = "squeue --json"
) -> JobsListing:
    """Parse ``squeue --json`` (or slurmrestd ``GET /slurm/v0.0.3x/jobs``).

    Reads REST v0.0.36-v0.0.38 shapes (22.05) and the v0.0.39+ ones
    (NO_VAL-tagged numbers, ``job_state`` arrays, structured ``exit_code``).

    Args:
        raw: the command's stdout.
        taken_at: when the command ran (aware UTC).
        command: what produced it, for error messages.

    Returns:
        Every job in the output, keyed by raw job id.

    Raises:
        SourceError: the output is not such a document, Slurm reported
            errors, or a job lacks an id or a state.
    """
    with gc_paused():
        items = load_json_list(raw, "jobs", command)
        jobs: dict[str, JobRecord] = {}
        horizon = taken_at + _NO_FORECAST_AFTER
        parse = functools.partial(_job_from_json, horizon=horizon)
        for record in each_record(items, parse, command, "job"):
            jobs[record.job_id] = record
        # Free the decoded document while the collector is still paused.
        del items
    return JobsListing(taken_at=taken_at, jobs=jobs)


def _job_from_json(item: dict[str, Any], horizon: datetime) -> JobRecord:
    # Hot path (100k jobs per poll): plain ints and strings, the 22.05 shapes,
    # are taken directly; anything else goes through the general helpers.
    get = item.get
    job_id = get("job_id")
    if type(job_id) is not int or job_id >= NO_VAL:
        job_id = to_int(job_id)
        if job_id is None:
            raise SourceError(f"no job_id (got {get('job_id')!r})")
    raw_state = get("job_state")
    state = _JOB_STATE_NAMES.get(raw_state) if type(raw_state) is str else None
    if state is None:
        if not raw_state or not isinstance(raw_state, (str, list)):
            raise SourceError(f"job {job_id}: no job_state (got {raw_state!r})")
        state = parse_job_state(raw_state)
    node_list = get("nodes")
    nodes = expand(node_list) if node_list else ()
    tres = get("tres_alloc_str") or get("tres_req_str") or ""
    tres_cpus, memory, gpus = _tres_summary(tres)
    cpus = get("cpus")
    if type(cpus) is not int or cpus >= NO_VAL:
        cpus = to_int(cpus)
        if cpus is None:
            cpus = tres_cpus
    if memory is None:
        memory = _memory_from_requests(item, _node_count(item, nodes), cpus)
    gres_detail = get("gres_detail")
    if gres_detail and isinstance(gres_detail, list):
        gpus = gpu_count_all(gres_detail) or gpus
    if not gpus and any(get(key) for key in _GPU_REQUESTS):
        gpus = _requested_gpus(
            get("tres_per_job") or "",
            get("tres_per_node") or "",
            get("tres_per_socket") or "",
            get("tres_per_task") or "",
            _node_count(item, nodes),
            to_int(get("tasks")) or 0,
        )
    ended = state in _ENDED
    start = expected = None
    if state in _NOT_STARTED:
        expected = _forecast(_moment(get("start_time")), horizon)
    elif nodes or not ended:
        start = _moment(get("start_time"))
    exit_pair = exit_from_json(get("exit_code")) if ended else None
    reason = get("state_reason")
    user = get("user_name")
    if not user:
        user_id = to_int(get("user_id"))
        user = "" if user_id is None else str(user_id)
    time_limit = get("time_limit")
    if time_limit is not None and (type(time_limit) is not int or time_limit >= NO_VAL):
        time_limit = to_int(time_limit)
    return JobRecord(
        job_id=str(job_id),
        name=get("name") or "",
        user=user,
        partition=get("partition") or "",
        state=state,
        nodes=nodes,
        cpus=cpus or 0,
        memory_mb=memory,
        gpus=gpus,
        submit_time=_moment(get("submit_time")),
        start_time=start,
        end_time=_moment(get("end_time")) if ended else None,
        exit_code=exit_pair[0] if exit_pair else None,
        exit_signal=exit_pair[1] if exit_pair else None,
        reason=reason if reason and reason != "None" else None,
        time_limit_min=time_limit,
        account=get("account") or None,
        qos=get("qos") or None,
        dependency=_text_or_none(get("dependency")),
        reservation=_text_or_none(get("resv_name")),
        reason_detail=_detail(get("state_description"), reason),
        expected_start_time=expected,
    )


def _text_or_none(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return None if value in _NO_TEXT else value


def _detail(description: object, reason: object) -> str | None:
    """Slurm's description of a reason, when it says more than the code."""
    text = _text_or_none(description)
    if text is None or text == reason:
        return None
    return text


def _forecast(start: datetime | None, horizon: datetime) -> datetime | None:
    return start if start is not None and start < horizon else None


def _node_count(item: dict[str, Any], nodes: tuple[str, ...]) -> int:
    return to_int(item.get("node_count")) or len(nodes) or 1


def _moment(value: object) -> datetime | None:
    if type(value) is int and 0 < value < NO_VAL:
        return _epoch_cached(value)
    return epoch_to_datetime(value)


@lru_cache(maxsize=65536)
def _epoch_cached(seconds: int) -> datetime | None:
    # Many jobs share a second (arrays, scripted submissions): cache the conversion.
    return epoch_to_datetime(seconds)


def parse_squeue_delimited(
    raw: bytes | str, taken_at: datetime, *, tz: tzinfo = UTC
) -> JobsListing:
    """Parse the output of :data:`SQUEUE_ARGS` (``squeue -O`` with :data:`SQUEUE_FIELDS`).

    Args:
        raw: the command's stdout (no header line).
        taken_at: when the command ran (aware UTC).
        tz: the zone squeue printed times in (run it with ``TZ=UTC``).

    Returns:
        Every job in the output, keyed by raw job id.

    Raises:
        SourceError: a line with too few fields or an unparsable value.
    """
    text = decode_text(raw, "squeue")
    count = len(SQUEUE_FIELDS)
    jobs: dict[str, JobRecord] = {}
    horizon = taken_at + _NO_FORECAST_AFTER
    with gc_paused():
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = split_fields(line, SQUEUE_DELIMITER, count, "squeue", line_no)
            try:
                record = _job_from_fields(fields, tz, horizon)
            except SourceError as exc:
                raise SourceError(f"squeue: line {line_no}: {exc.message}") from None
            jobs[record.job_id] = record
    return JobsListing(taken_at=taken_at, jobs=jobs)


def _job_from_fields(fields: Sequence[str], tz: tzinfo, horizon: datetime) -> JobRecord:
    (
        job_id,
        state_text,
        user,
        account,
        partition,
        qos,
        cpus_text,
        nodes_text,
        tasks_text,
        tres,
        tres_per_job,
        tres_per_node,
        tres_per_socket,
        tres_per_task,
        submit_text,
        start_text,
        end_text,
        limit_text,
        exit_text,
        reason,
        dependency,
        reservation,
        node_list,
        reason_list,
        name,
    ) = fields
    job_id = job_id.strip()
    if not job_id or " " in job_id:
        raise SourceError(f"bad job id {job_id!r}")
    state = parse_job_state(state_text)
    if state is JobState.UNKNOWN and not state_text.strip():
        raise SourceError(f"job {job_id}: empty state")
    nodes = expand(node_list)
    node_count = parse_int(nodes_text) or len(nodes) or 1
    tres_cpus, memory, gpus = _tres_summary("" if tres in _NO_TEXT else tres)
    cpus = parse_int(cpus_text)
    if cpus is None:
        cpus = tres_cpus
    if not gpus:
        gpus = _requested_gpus(
            tres_per_job,
            tres_per_node,
            tres_per_socket,
            tres_per_task,
            node_count,
            parse_int(tasks_text) or 0,
        )
    ended = state in _ENDED
    start = expected = None
    if state in _NOT_STARTED:
        expected = _forecast(_text_moment(start_text, tz), horizon)
    elif nodes or not ended:
        start = _text_moment(start_text, tz)
    exit_pair = parse_squeue_exit(exit_text) if ended else None
    # -O Reason prints Slurm's description where it has one
    # ("ReqNodeNotAvail, UnavailableNodes:node004"): the code is its first word.
    reason = reason.split(",", 1)[0].strip()
    detail = None
    if state in _NOT_STARTED:
        # For a job that has not started, ReasonList is "(<reason or description>)".
        detail = _detail(reason_list.strip().removeprefix("(").removesuffix(")"), reason)
    return JobRecord(
        job_id=job_id,
        name=name,
        user=user,
        partition=partition,
        state=state,
        nodes=nodes,
        cpus=cpus or 0,
        memory_mb=memory,
        gpus=gpus,
        submit_time=_text_moment(submit_text, tz),
        start_time=start,
        end_time=_text_moment(end_text, tz) if ended else None,
        exit_code=exit_pair[0] if exit_pair else None,
        exit_signal=exit_pair[1] if exit_pair else None,
        reason=reason if reason and reason != "None" else None,
        time_limit_min=parse_time_limit_min(limit_text),
        account=account or None,
        qos=_text_or_none(qos),
        dependency=_text_or_none(dependency),
        reservation=_text_or_none(reservation),
        reason_detail=detail,
        expected_start_time=expected,
    )


@lru_cache(maxsize=65536)
def _text_moment(text: str, tz: tzinfo) -> datetime | None:
    # Many jobs share a second (arrays, scripted submissions): cache the parse.
    return parse_slurm_time(text, tz)


@lru_cache(maxsize=65536)
def _tres_summary(tres: str) -> tuple[int, int | None, int]:
    """``(cpus, memory MiB or None, GPUs)`` of a TRES string.

    Cached: a queue repeats a few request shapes, so most jobs hit the cache.
    """
    return _tres_int(tres, "cpu"), _tres_memory(tres), _tres_int(tres, "gres/gpu")


def _tres_int(tres: str, key: str) -> int:
    value = tres_get(tres, key)
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        raise SourceError(f"bad {key} count {value[:40]!r} in TRES") from None


def _tres_memory(tres: str) -> int | None:
    value = tres_get(tres, "mem")
    return None if value is None else parse_memory_mb(value)


def _memory_from_requests(item: dict[str, Any], node_count: int, cpus: int | None) -> int | None:
    per_node = number(item.get("memory_per_node"))
    if per_node is not None:
        return int(per_node) * node_count
    per_cpu = number(item.get("memory_per_cpu"))
    if per_cpu is not None and cpus:
        return int(per_cpu) * cpus
    return None


def _requested_gpus(
    per_job: str, per_node: str, per_socket: str, per_task: str, nodes: int, tasks: int
) -> int:
    """GPUs from the request fields when neither the allocation nor the GPU TRES says.

    ``gres/gpu`` appears in TRES strings only if AccountingStorageTRES
    includes it (``reference/slurm.md`` section 7), and ``gres_detail`` only
    while the job holds its nodes. A per-socket request counts one socket per
    node: how many sockets Slurm gave is not in the listing (a recorded
    ``--gpus-per-socket 2 --sockets-per-node 2`` job held 2 GPUs).
    """
    if per_job and per_job not in _NO_TEXT:
        return _request_gpus(per_job)
    if per_node and per_node not in _NO_TEXT:
        return _request_gpus(per_node) * nodes
    if per_socket and per_socket not in _NO_TEXT:
        return _request_gpus(per_socket) * nodes
    if per_task and per_task not in _NO_TEXT:
        return _request_gpus(per_task) * max(tasks, 1)
    return 0


def _request_gpus(request: str) -> int:
    # 23.02+ may print "gres/gpu=2" here where 22.05 prints "gres:gpu:2".
    value = tres_get(request, "gres/gpu")
    if value is not None and value.isdigit():
        return int(value)
    return gpu_count(request)
