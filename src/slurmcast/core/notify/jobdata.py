"""Reading the facts notifications need from a ``job_update``'s ``data``.

The rules and messages work on the published job payload (docs/protocol.md, ``job_update``),
a plain mapping: the delivery worker reads it back from the outbox, long after the
``JobRecord`` is gone. Values of the wrong type are read as unknown, never raised on: a
notification is not refused because one field is odd.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def text(job: Mapping[str, Any], key: str) -> str | None:
    value = job.get(key)
    return value if isinstance(value, str) else None


def integer(job: Mapping[str, Any], key: str) -> int | None:
    value = job.get(key)
    # bool is an int in Python; a True exit code is a mistake, not 1.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 time as the payloads carry it (``2026-11-28T04:20:13Z``), aware, in UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # A time without an offset is UTC (the payloads' times all are).
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00:00+01:00" is before the first UTC datetime
        return None


def run_seconds(job: Mapping[str, Any]) -> float | None:
    """How long a finished job ran (end - start); None if it never started or is unknown."""
    start = parse_time(job.get("start_time"))
    end = parse_time(job.get("end_time"))
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds()


def waited_seconds(job: Mapping[str, Any], now: datetime) -> float | None:
    """How long a job has waited since it was submitted (until it started, if it did)."""
    submitted = parse_time(job.get("submit_time"))
    if submitted is None:
        return None
    until = parse_time(job.get("start_time")) or now
    return max(0.0, (until - submitted).total_seconds())


def partitions(job: Mapping[str, Any]) -> frozenset[str]:
    """A job's partitions: a pending job submitted to several lists them comma-separated."""
    value = text(job, "partition")
    if not value:
        return frozenset()
    return frozenset(part.strip() for part in value.split(",") if part.strip())
