"""Reading job payload fields: times, durations, partitions, odd values as unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from slurmcast.core.notify.jobdata import (
    integer,
    parse_time,
    partitions,
    run_seconds,
    text,
    waited_seconds,
)

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-28T04:20:13Z", datetime(2026, 11, 28, 4, 20, 13, tzinfo=UTC)),
        ("2026-11-28T04:20:13", datetime(2026, 11, 28, 4, 20, 13, tzinfo=UTC)),
        ("2026-11-28T05:20:13+01:00", datetime(2026, 11, 28, 4, 20, 13, tzinfo=UTC)),
        ("2026-11-28T04:20:13.500Z", datetime(2026, 11, 28, 4, 20, 13, 500000, tzinfo=UTC)),
        ("", None),
        ("yesterday", None),
        (None, None),
        (1796531946, None),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"start_time": "2026-11-28T04:00:00Z", "end_time": "2026-11-28T06:05:00Z"}, 7500.0),
        ({"start_time": "2026-11-28T04:00:00Z", "end_time": "2026-11-28T04:00:00Z"}, 0.0),
        ({"start_time": None, "end_time": "2026-11-28T06:05:00Z"}, None),
        ({"start_time": "2026-11-28T04:00:00Z", "end_time": None}, None),
        ({"start_time": "2026-11-28T05:00:00Z", "end_time": "2026-11-28T04:00:00Z"}, None),
    ],
)
def test_run_seconds(fields: dict[str, Any], expected: float | None) -> None:
    assert run_seconds(fields) == expected


def test_waited_until_start_or_now() -> None:
    submitted = {"submit_time": "2026-11-28T05:00:00Z"}
    assert waited_seconds(submitted, NOW) == 3600.0
    assert waited_seconds({**submitted, "start_time": "2026-11-28T05:10:00Z"}, NOW) == 600.0
    assert waited_seconds({}, NOW) is None
    # A submit time ahead of the clock (skew) is no negative wait.
    assert waited_seconds(submitted, NOW - timedelta(hours=2)) == 0.0
    assert waited_seconds(submitted, NOW.astimezone(timezone(timedelta(hours=-5)))) == 3600.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gpu", {"gpu"}),
        ("gpu,cpu", {"gpu", "cpu"}),
        (" gpu , cpu ,", {"gpu", "cpu"}),
        ("", set()),
        (None, set()),
        (["gpu"], set()),
    ],
)
def test_partitions(value: object, expected: set[str]) -> None:
    assert partitions({"partition": value}) == expected


def test_wrong_types_read_as_unknown() -> None:
    job = {"name": 5, "exit_code": True, "status": "FAILED", "exit_signal": 9}
    assert text(job, "name") is None
    assert text(job, "status") == "FAILED"
    assert integer(job, "exit_code") is None
    assert integer(job, "exit_signal") == 9
    assert integer(job, "missing") is None
