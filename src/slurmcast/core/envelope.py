"""The one envelope every channel message travels in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slurmcast.core.timefmt import iso_z


def envelope(channel: str, event_type: str, data: Any, now: datetime) -> dict[str, Any]:
    """``{"channel", "type", "timestamp", "data"}`` with a UTC ``Z`` timestamp (ms)."""
    return {
        "channel": channel,
        "type": event_type,
        "timestamp": iso_z(now, millis=True),
        "data": data,
    }
