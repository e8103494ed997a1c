"""Scalar values as Slurm prints them: unset numbers, exit codes, memory, times.

Conventions: "unknown" is always ``None``; memory is MiB (Slurm's ``M`` is
MiB, ``G`` GiB); datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

# format_memory is re-exported: the dashboards' format lives in core so payloads share it.
from slurmcast.core.units import format_memory
from slurmcast.errors import SourceError

__all__ = [
    "INFINITE",
    "INFINITE64",
    "NO_VAL",
    "NO_VAL64",
    "UNSET_WORDS",
    "decode_wait_status",
    "epoch_to_datetime",
    "exit_from_json",
    "format_memory",
    "number",
    "parse_cpu_time_s",
    "parse_duration_s",
    "parse_exit_pair",
    "parse_int",
    "parse_memory_mb",
    "parse_slurm_time",
    "parse_squeue_exit",
    "parse_time_limit_min",
    "to_int",
]

#: Slurm's "not set" and "unlimited" markers (``slurm.h``), as 32 and 64-bit integers.
NO_VAL: Final = 0xFFFFFFFE
INFINITE: Final = 0xFFFFFFFF
NO_VAL64: Final = 0xFFFFFFFFFFFFFFFE
INFINITE64: Final = 0xFFFFFFFFFFFFFFFF
_SENTINELS: Final = frozenset({NO_VAL, INFINITE, NO_VAL64, INFINITE64})

#: Words the text tools print for "no value".
UNSET_WORDS: Final = frozenset(
    {"", "N/A", "n/a", "NONE", "None", "none", "Unknown", "UNKNOWN", "(null)", "n/s", "INVALID"}
)

#: Words a duration or time limit field holds when there is no limit to give.
_NO_LIMIT_WORDS: Final = frozenset({"UNLIMITED", "INFINITE", "PARTITION_LIMIT", "NOT_SET"})

_MEMORY_FACTORS: Final = {
    "K": 1 / 1024,
    "M": 1,
    "G": 1024,
    "T": 1024 * 1024,
    "P": 1024 * 1024 * 1024,
}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def number(value: object) -> int | float | None:
    """Unwrap a Slurm JSON number: plain, NO_VAL-tagged or a sentinel.

    REST v0.0.39+ wraps numbers that may be unset as
    ``{"set": bool, "infinite": bool, "number": N}``; older versions use plain
    integers with the NO_VAL/INFINITE sentinels (4294967294, 4294967295 and
    their 64-bit forms).

    Args:
        value: the JSON value.

    Returns:
        The number, or None when unset, infinite, a sentinel, null or not a number.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value in _SENTINELS else value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite", False):
            return None
        return number(value.get("number"))
    return None


def to_int(value: object) -> int | None:
    """Like :func:`number` but truncated to an int.

    Args:
        value: the JSON value.

    Returns:
        The integer, or None when unset.
    """
    found = number(value)
    return None if found is None else int(found)


def parse_int(text: str) -> int | None:
    """Parse an integer text field; sentinels and "no value" words give None.

    Args:
        text: e.g. ``"4"``, ``"4294967294"``, ``"N/A"``.

    Returns:
        The integer or None.

    Raises:
        SourceError: the text is neither an integer nor a "no value" word.
    """
    text = text.strip()
    if text in UNSET_WORDS:
        return None
    try:
        value = int(text)
    except ValueError:
        raise SourceError(f"expected an integer, got {text[:40]!r}") from None
    return None if value in _SENTINELS else value


def decode_wait_status(status: int) -> tuple[int, int]:
    """Split a raw wait(2) status into ``(exit_code, signal)``.

    squeue ``--json``/``-O exit_code`` and REST <= v0.0.38 give the raw status
    (``exit 3`` -> 768, killed by SIGTERM -> 15) where sacct/scontrol print
    ``3:0`` / ``0:15``.

    Args:
        status: the raw status.

    Returns:
        ``(exit_code, signal)``: 768 -> (3, 0), 15 -> (0, 15).
    """
    return (status >> 8) & 0xFF, status & 0x7F


def exit_from_json(value: object) -> tuple[int, int] | None:
    """Read a job's exit code from any REST/CLI JSON shape.

    Args:
        value: a raw wait status integer (v0.0.38 and older) or the v0.0.40+
            object ``{"status": [...], "return_code": N|{number}, "signal":
            {"id": N|{number}, "name": ...}}``.

    Returns:
        ``(exit_code, signal)``, or None when unset.
    """
    if isinstance(value, dict) and ("return_code" in value or "signal" in value):
        code = to_int(value.get("return_code"))
        signal_field = value.get("signal")
        signal = to_int(signal_field.get("id")) if isinstance(signal_field, dict) else None
        if code is None and signal is None:
            return None
        return code or 0, signal or 0
    status = to_int(value)
    return None if status is None else decode_wait_status(status)


def parse_exit_pair(text: str) -> tuple[int, int] | None:
    """Parse sacct/scontrol ``ExitCode``/``DerivedExitCode`` text ``rc:signal``.

    Args:
        text: e.g. ``"3:0"``, ``"0:15"``; empty or a "no value" word gives None.

    Returns:
        ``(exit_code, signal)`` or None.

    Raises:
        SourceError: the text is not ``int:int``.
    """
    text = text.strip()
    if text in UNSET_WORDS:
        return None
    code, _, signal = text.partition(":")
    try:
        return int(code), int(signal or 0)
    except ValueError:
        raise SourceError(f"bad exit code {text[:40]!r}") from None


def parse_squeue_exit(text: str) -> tuple[int, int] | None:
    """Parse ``squeue -O exit_code``: a raw wait status up to 22.05, ``rc:signal`` since 23.02.

    Args:
        text: e.g. ``"768"`` (22.05, exit 3), ``"3:0"`` or ``"0:15"`` (23.02+).

    Returns:
        ``(exit_code, signal)``, or None for a "no value" word.

    Raises:
        SourceError: neither form.
    """
    if ":" in text:
        return parse_exit_pair(text)
    status = parse_int(text)
    return None if status is None else decode_wait_status(status)


def parse_memory_mb(text: str, default_unit: str = "M") -> int | None:
    """Parse a Slurm memory size into MiB.

    Slurm's units are binary and its labels short: ``"4000M"``, ``"1G"``,
    ``"64GB"``, ``"1.5T"``, ``"512K"``; a bare number is ``default_unit``
    (MiB for ``--mem``, sinfo ``%m``, ``RealMemory``). Older sacct appends
    ``n``/``c`` (per node/per CPU) to ``ReqMem``: ignored.

    Args:
        text: the size.
        default_unit: unit of a bare number.

    Returns:
        MiB, rounded to the nearest integer, or None for a "no value" word.

    Raises:
        SourceError: the text is not a size.
    """
    text = text.strip()
    if text in UNSET_WORDS:
        return None
    body = text.upper()
    if body.endswith(("N", "C")) and len(body) > 1 and not body[-2].isdigit():
        body = body[:-1]
    if body.endswith("IB"):
        body = body[:-2]
    elif body.endswith("B"):
        body = body[:-1]
    unit = default_unit.upper()
    if body and body[-1] in _MEMORY_FACTORS:
        unit = body[-1]
        body = body[:-1]
    try:
        amount = float(body)
    except ValueError:
        raise SourceError(f"bad memory size {text[:40]!r}") from None
    if amount < 0 or unit not in _MEMORY_FACTORS:
        raise SourceError(f"bad memory size {text[:40]!r}")
    return round(amount * _MEMORY_FACTORS[unit])


def epoch_to_datetime(value: object) -> datetime | None:
    """Convert a Slurm epoch field to an aware UTC datetime.

    Args:
        value: seconds since the epoch, plain or NO_VAL-wrapped.

    Returns:
        The moment, or None for 0 (Slurm's "not set"), negatives and sentinels.
    """
    seconds = number(value)
    if seconds is None or seconds <= 0:
        return None
    try:
        # Adding to a constant avoids fromtimestamp's platform limits and is faster.
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None


def parse_slurm_time(text: str, tz: tzinfo = UTC) -> datetime | None:
    """Parse a time printed by the text tools (``2026-11-28T03:26:40``).

    squeue/sinfo/sacct/scontrol print local time of the machine running them,
    without a zone; run them with ``TZ=UTC`` (and ``SLURM_TIME_FORMAT`` unset)
    so ``tz=UTC`` is right.

    Args:
        text: the time, or a "no value" word (``Unknown``, ``None``, ``N/A``...).
        tz: the zone the tool printed in.

    Returns:
        An aware UTC datetime, or None.

    Raises:
        SourceError: the text is not an ISO date-time.
    """
    text = text.strip()
    if text in UNSET_WORDS:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SourceError(f"bad time {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def parse_duration_s(text: str) -> int | None:
    """Parse a Slurm duration into seconds.

    Formats: ``D-HH:MM:SS``, ``D-HH:MM``, ``D-HH``, ``HH:MM:SS``, ``MM:SS``
    (squeue prints 30 minutes as ``30:00``), an optional fraction of a second
    (sacct ``00:01.500``), or a bare number of minutes (a ``--time`` value).

    Args:
        text: the duration, or a "no value"/limit word (``UNLIMITED``,
            ``INVALID``, ``Partition_Limit``, ``NOT_SET``).

    Returns:
        Whole seconds, or None.

    Raises:
        SourceError: the text is not a duration.
    """
    text = text.strip()
    if text in UNSET_WORDS or text.upper() in _NO_LIMIT_WORDS:
        return None
    try:
        days = 0
        clock = text
        if "-" in text:
            day_text, clock = text.split("-", 1)
            days = int(day_text)
            parts = clock.split(":")
            # After a day count the fields are hours[:minutes[:seconds]].
            while len(parts) < 3:
                parts.append("0")
        else:
            parts = clock.split(":")
            if len(parts) == 1:
                return int(float(parts[0]) * 60)
            while len(parts) < 3:
                parts.insert(0, "0")
        if len(parts) != 3:
            raise ValueError(text)
        hours, minutes = int(parts[0]), int(parts[1])
        seconds = float(parts[2])
    except ValueError:
        raise SourceError(f"bad duration {text[:40]!r}") from None
    if days < 0 or hours < 0 or minutes < 0 or seconds < 0:
        raise SourceError(f"bad duration {text[:40]!r}")
    return int(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def parse_cpu_time_s(text: str) -> float | None:
    """Parse a CPU time as sacct prints ``TotalCPU`` into seconds, fractions kept.

    Args:
        text: ``MM:SS.mmm``, ``HH:MM:SS``, ``D-HH:MM:SS`` (sacct drops the
            milliseconds once there are hours), or a "no value" word.

    Returns:
        Seconds, or None.

    Raises:
        SourceError: the text is not a duration.
    """
    text = text.strip()
    if text in UNSET_WORDS:
        return None
    whole, dot, fraction = text.rpartition(".") if "." in text else (text, "", "")
    seconds = parse_duration_s(whole if dot else text)
    if seconds is None:
        return None
    if dot:
        if not fraction.isdigit():
            raise SourceError(f"bad CPU time {text[:40]!r}")
        return round(seconds + float("0." + fraction), 3)
    return float(seconds)


def parse_time_limit_min(text: str) -> int | None:
    """Parse a time limit (``30:00``, ``1-00:00:00``, ``UNLIMITED``) into minutes.

    Args:
        text: the limit as squeue/sacct/scontrol print it.

    Returns:
        Minutes (rounded down), or None when unlimited/unset.

    Raises:
        SourceError: the text is not a duration.
    """
    seconds = parse_duration_s(text)
    return None if seconds is None else seconds // 60
