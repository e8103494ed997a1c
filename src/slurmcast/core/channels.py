"""The channels clients can subscribe to."""

from __future__ import annotations

from enum import StrEnum

from slurmcast.errors import ErrorCode, ProtocolError


class Channel(StrEnum):
    JOBS = "jobs"
    NODES = "nodes"
    METRICS = "metrics"
    NOTIFICATIONS = "notifications"
    ALERTS = "alerts"


CHANNEL_NAMES = frozenset(c.value for c in Channel)


def parse_channel(name: object, *, request_id: str | int | None = None) -> Channel:
    """Validate a channel name from a client.

    Raises:
        ProtocolError: ``invalid_field`` if not a string, ``unknown_channel`` if
            no such channel exists.
    """
    if not isinstance(name, str):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "channel must be a string", request_id=request_id
        )
    try:
        return Channel(name)
    except ValueError:
        known = ", ".join(sorted(CHANNEL_NAMES))
        raise ProtocolError(
            ErrorCode.UNKNOWN_CHANNEL,
            f"unknown channel {name[:64]!r}; channels are: {known}",
            request_id=request_id,
        ) from None
