"""Scalar values: unset numbers, exit codes, memory, times, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from slurmcast.errors import SourceError
from slurmcast.sources.slurm.values import (
    INFINITE,
    INFINITE64,
    NO_VAL,
    NO_VAL64,
    decode_wait_status,
    epoch_to_datetime,
    exit_from_json,
    format_memory,
    number,
    parse_duration_s,
    parse_exit_pair,
    parse_int,
    parse_memory_mb,
    parse_slurm_time,
    parse_time_limit_min,
    to_int,
)


def _wrapped(value: int, *, is_set: bool = True, infinite: bool = False) -> dict[str, Any]:
    return {"set": is_set, "infinite": infinite, "number": value}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        (0, 0),
        (1.5, 1.5),
        (None, None),
        (NO_VAL, None),
        (INFINITE, None),
        (NO_VAL64, None),
        (INFINITE64, None),
        (_wrapped(7), 7),
        (_wrapped(7, is_set=False), None),
        (_wrapped(0, infinite=True), None),
        (_wrapped(NO_VAL), None),
        (True, None),
        ("5", None),
        ([5], None),
    ],
)
def test_number(value: object, expected: float | None) -> None:
    assert number(value) == expected


def test_to_int_truncates() -> None:
    assert to_int(2.9) == 2
    assert to_int(_wrapped(4)) == 4
    assert to_int(None) is None


@pytest.mark.parametrize(
    ("text", "expected"), [("4", 4), (" 12 ", 12), ("4294967294", None), ("N/A", None), ("", None)]
)
def test_parse_int(text: str, expected: int | None) -> None:
    assert parse_int(text) == expected


def test_parse_int_rejects_garbage() -> None:
    with pytest.raises(SourceError):
        parse_int("four")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (768, (3, 0)),
        (15, (0, 15)),
        (0, (0, 0)),
        (9, (0, 9)),
        (256, (1, 0)),
        (1, (0, 1)),
        (137, (0, 9)),
    ],
)
def test_decode_wait_status(status: int, expected: tuple[int, int]) -> None:
    assert decode_wait_status(status) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (768, (3, 0)),
        (15, (0, 15)),
        (None, None),
        (NO_VAL, None),
        (_wrapped(768), (3, 0)),
        (
            {
                "status": ["ERROR"],
                "return_code": _wrapped(3),
                "signal": {"id": _wrapped(0, is_set=False), "name": ""},
            },
            (3, 0),
        ),
        (
            {
                "status": ["SIGNALED"],
                "return_code": _wrapped(0),
                "signal": {"id": _wrapped(15), "name": "TERM"},
            },
            (0, 15),
        ),
        ({"status": ["SUCCESS"], "return_code": 0, "signal": {"id": 0, "name": ""}}, (0, 0)),
        (
            {
                "status": ["PENDING"],
                "return_code": _wrapped(0, is_set=False),
                "signal": {"id": _wrapped(0, is_set=False)},
            },
            None,
        ),
    ],
)
def test_exit_from_json(value: object, expected: tuple[int, int] | None) -> None:
    assert exit_from_json(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3:0", (3, 0)), ("0:15", (0, 15)), ("1:0", (1, 0)), ("2", (2, 0)), ("", None)],
)
def test_parse_exit_pair(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_exit_pair(text) == expected


@pytest.mark.parametrize("text", ["x:y", "3:z", ":"])
def test_parse_exit_pair_rejects_garbage(text: str) -> None:
    with pytest.raises(SourceError):
        parse_exit_pair(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4000M", 4000),
        ("4000", 4000),
        ("1G", 1024),
        ("64GB", 65536),
        ("64GiB", 65536),
        ("1.5G", 1536),
        ("1T", 1024 * 1024),
        ("2048K", 2),
        ("999G", 1022976),
        ("100Mc", 100),
        ("100Mn", 100),
        ("0", 0),
        ("N/A", None),
        ("", None),
    ],
)
def test_parse_memory_mb(text: str, expected: int | None) -> None:
    assert parse_memory_mb(text) == expected


def test_parse_memory_mb_default_unit() -> None:
    assert parse_memory_mb("2", default_unit="G") == 2048


@pytest.mark.parametrize("text", ["lots", "-1G", "1X", "G"])
def test_parse_memory_mb_rejects_garbage(text: str) -> None:
    with pytest.raises(SourceError):
        parse_memory_mb(text)


@pytest.mark.parametrize(
    ("mib", "text"), [(65536, "64GB"), (1536, "1.5GB"), (512, "512MB"), (2 * 1024 * 1024, "2TB")]
)
def test_format_memory_round_trips(mib: int, text: str) -> None:
    assert format_memory(mib) == text
    assert parse_memory_mb(text) == mib


def test_format_memory_none() -> None:
    assert format_memory(None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795836400, datetime(2026, 11, 28, 3, 26, 40, tzinfo=UTC)),
        (_wrapped(1795836400), datetime(2026, 11, 28, 3, 26, 40, tzinfo=UTC)),
        (0, None),
        (None, None),
        (-5, None),
        (NO_VAL, None),
        (INFINITE, None),
        (_wrapped(0, is_set=False), None),
        (10**20, None),
    ],
)
def test_epoch_to_datetime(value: object, expected: datetime | None) -> None:
    moment = epoch_to_datetime(value)
    assert moment == expected
    if moment is not None:
        assert moment.utcoffset() == timedelta(0)


def test_parse_slurm_time() -> None:
    moment = parse_slurm_time("2026-11-01T10:00:00")
    assert moment == datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    assert moment is not None and moment.tzinfo is UTC


def test_parse_slurm_time_converts_local_time() -> None:
    paris_winter = timezone(timedelta(hours=1))
    moment = parse_slurm_time("2026-11-01T10:00:00", tz=paris_winter)
    assert moment == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert moment is not None and moment.tzinfo is UTC


@pytest.mark.parametrize("text", ["Unknown", "None", "N/A", "NONE", "", "(null)"])
def test_parse_slurm_time_unset(text: str) -> None:
    assert parse_slurm_time(text) is None


def test_parse_slurm_time_rejects_garbage() -> None:
    with pytest.raises(SourceError):
        parse_slurm_time("yesterday")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1-02:03:04", 93784),
        ("02:03:04", 7384),
        ("03:04", 184),
        ("0:08", 8),
        ("30:00", 1800),
        ("1-00:00:00", 86400),
        ("365-00:00:00", 365 * 86400),
        ("1-02", 93600),
        ("1-02:03", 93780),
        ("00:01.500", 1),
        ("5", 300),
        ("UNLIMITED", None),
        ("Partition_Limit", None),
        ("INVALID", None),
        ("NOT_SET", None),
        ("", None),
    ],
)
def test_parse_duration_s(text: str, seconds: int | None) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["bad", "1:2:3:4", "x-01:00:00", "-1:00"])
def test_parse_duration_s_rejects_garbage(text: str) -> None:
    with pytest.raises(SourceError):
        parse_duration_s(text)


@pytest.mark.parametrize(
    ("text", "minutes"), [("30:00", 30), ("1-00:00:00", 1440), ("UNLIMITED", None), ("00:00:59", 0)]
)
def test_parse_time_limit_min(text: str, minutes: int | None) -> None:
    assert parse_time_limit_min(text) == minutes
