from datetime import UTC, datetime, timedelta, timezone

import pytest

from slurmcast.core.timefmt import format_duration, iso_z
from slurmcast.core.units import format_memory


def test_iso_z_is_utc_with_z() -> None:
    moment = datetime(2025, 10, 10, 23, 30, 0, tzinfo=timezone(timedelta(hours=9)))
    assert iso_z(moment) == "2025-10-10T14:30:00Z"
    assert iso_z(datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), millis=True) == (
        "2025-01-01T00:00:00.123Z"
    )
    assert iso_z(None) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (60, "1m"),
        (125, "2m 5s"),
        (9000, "2h 30m"),
        (7200, "2h"),
        (7205, "2h"),
        (93600, "1d 2h"),
        (None, None),
        (-1, None),
    ],
)
def test_format_duration(seconds: float | None, text: str | None) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("mib", "text"),
    [(65536, "64GB"), (1536, "1.5GB"), (512, "512MB"), (0, "0MB"), (2 * 1024 * 1024, "2TB")],
)
def test_format_memory(mib: int, text: str) -> None:
    assert format_memory(mib) == text
