"""Time formatting shared by every payload: UTC ISO-8601 with a ``Z`` and durations."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_z(moment: datetime | None, *, millis: bool = False) -> str | None:
    """Format an aware datetime as UTC ISO-8601 ending in ``Z``; None stays None.

    Naive datetimes are taken to be UTC already (Slurm's epoch fields are).
    """
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    timespec = "milliseconds" if millis else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def format_duration(seconds: float | None) -> str | None:
    """Human duration as dashboards show it: ``"2h 30m"``, ``"1d 4h"``, ``"45s"``.

    Two most significant units at most; None for an unknown duration.
    """
    if seconds is None or seconds < 0:
        return None
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    first = next((i for i, (value, _) in enumerate(units) if value), len(units) - 1)
    shown = [units[first]]
    if first + 1 < len(units) and units[first + 1][0]:
        shown.append(units[first + 1])
    return " ".join(f"{value}{unit}" for value, unit in shown)
