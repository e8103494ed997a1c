"""Accounting records in JSON to final job states: ``sacct --json`` and slurmdbd's REST jobs.

``sacct --json`` and slurmrestd's ``/slurmdb/vX/jobs`` print the same
document (``{meta, errors, jobs}``) from 22.05 to 25.11. What moved between
releases, all read here:

* ``state.current``: a string up to 23.02, a list from 23.11;
* ``exit_code``: ``{status, return_code}`` with plain integers up to 23.02,
  ``return_code``/``signal.id`` as ``{set, infinite, number}`` later. 22.05's
  slurmdbd reports ``return_code 0`` for a job that exited 3: its text
  ``sacct`` is right where its JSON is not (``docs/slurm.md``);
* ``time.total``: 0 for the job itself in 22.05, the sum of its steps later;
  the steps' sum is taken either way;
* a step's peak memory is ``tres.requested.max`` entry ``mem``, in bytes.
"""

from __future__ import annotations

from typing import Any, Final

from slurmcast.core.records import TERMINAL_JOB_STATES, JobState, JobUsage
from slurmcast.errors import SourceError
from slurmcast.sources.slurm._common import each_record, gc_paused, load_json_list
from slurmcast.sources.slurm.hostlist import expand
from slurmcast.sources.slurm.sacct import FinalState
from slurmcast.sources.slurm.states import parse_job_state
from slurmcast.sources.slurm.values import epoch_to_datetime, exit_from_json, number, to_int

__all__ = ["parse_sacct_json"]

_ENDED: Final = TERMINAL_JOB_STATES | {JobState.COMPLETING}
_MIB: Final = 1024 * 1024


def parse_sacct_json(raw: bytes | str, command: str = "sacct --json") -> dict[str, FinalState]:
    """Parse ``sacct --json`` or a slurmrestd ``/slurmdb/vX/jobs`` reply.

    Args:
        raw: the document.
        command: what produced it, for error messages.

    Returns:
        Final states keyed by raw job id; with several records of one job id
        (requeued jobs, ``--duplicates``) the last wins.

    Raises:
        SourceError: not such a document, Slurm reported errors, or a job
            lacks an id or a state.
    """
    finals: dict[str, FinalState] = {}
    with gc_paused():
        items = load_json_list(raw, "jobs", command)
        for final in each_record(items, _final_from_json, command, "job"):
            finals[final.job_id] = final
        del items
    return finals


def _final_from_json(item: dict[str, Any]) -> FinalState:
    job_id = to_int(item.get("job_id"))
    if job_id is None:
        raise SourceError(f"no job_id (got {item.get('job_id')!r})")
    state_block = item.get("state") or {}
    raw_state = state_block.get("current") if isinstance(state_block, dict) else state_block
    if not raw_state or not isinstance(raw_state, (str, list)):
        raise SourceError(f"job {job_id}: no state (got {raw_state!r})")
    state = parse_job_state(raw_state)
    ended = state in _ENDED
    exit_pair = exit_from_json(item.get("exit_code")) if ended else None
    derived = exit_from_json(item.get("derived_exit_code")) if ended else None
    times = item.get("time") or {}
    nodes = expand(_text(item.get("nodes")))
    start = epoch_to_datetime(times.get("start"))
    if not nodes and state.is_terminal:
        start = None  # never ran: accounting gives the end time as its start
    reason = state_block.get("reason") if isinstance(state_block, dict) else None
    elapsed = to_int(times.get("elapsed"))
    return FinalState(
        job_id=str(job_id),
        state=state,
        exit_code=exit_pair[0] if exit_pair else None,
        exit_signal=exit_pair[1] if exit_pair else None,
        derived_exit_code=derived[0] if derived else None,
        start_time=start,
        end_time=epoch_to_datetime(times.get("end")),
        elapsed_s=elapsed,
        reason=reason if isinstance(reason, str) and reason and reason != "None" else None,
        nodes=nodes,
        usage=_usage(item, elapsed),
    )


def _usage(item: dict[str, Any], elapsed: int | None) -> JobUsage:
    allocated = _tres_counts((item.get("tres") or {}).get("allocated"))
    steps = item.get("steps") or []
    step_cpu = sum(_seconds((step.get("time") or {}).get("total")) or 0.0 for step in steps)
    job_cpu = _seconds((item.get("time") or {}).get("total"))
    peaks = [_step_peak_bytes(step) for step in steps]
    known = [peak for peak in peaks if peak is not None]
    memory = allocated.get("mem")
    if memory is None:
        memory = _required_memory(item.get("required") or {}, allocated)
    return JobUsage(
        elapsed_s=elapsed,
        cpus=allocated.get("cpu") or to_int((item.get("required") or {}).get("CPUs")),
        cpu_time_s=round(max(job_cpu or 0.0, step_cpu), 3) if steps or job_cpu else None,
        memory_requested_mb=memory,
        memory_peak_mb=round(max(known) / _MIB) if known else None,
    )


def _tres_counts(entries: object) -> dict[str, int]:
    counts: dict[str, int] = {}
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("type"), str):
                count = to_int(entry.get("count"))
                if count is not None and count >= 0:
                    counts[entry["type"]] = count
    return counts


def _step_peak_bytes(step: dict[str, Any]) -> int | None:
    requested = ((step.get("tres") or {}).get("requested") or {}).get("max")
    return _tres_counts(requested).get("mem")


def _required_memory(required: dict[str, Any], allocated: dict[str, int]) -> int | None:
    per_node = number(required.get("memory_per_node"))
    if per_node:
        return int(per_node) * max(allocated.get("node", 1), 1)
    per_cpu = number(required.get("memory_per_cpu"))
    if per_cpu:
        return int(per_cpu) * max(allocated.get("cpu") or to_int(required.get("CPUs")) or 1, 1)
    return None


def _seconds(value: object) -> float | None:
    """``{"seconds": S, "microseconds": U}`` (U may exceed a million) as seconds."""
    if not isinstance(value, dict):
        return None
    seconds = number(value.get("seconds"))
    micros = number(value.get("microseconds"))
    if seconds is None and micros is None:
        return None
    return (seconds or 0) + (micros or 0) / 1_000_000


def _text(value: object) -> str:
    return value if isinstance(value, str) and value not in ("None assigned", "(null)") else ""
