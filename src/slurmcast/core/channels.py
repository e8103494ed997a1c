"""The channels clients can subscribe to.

Five public channels carry the cluster's events. A private channel
``user:<name>`` carries one Slurm user's job notifications; who may
subscribe to it is decided by ``core.policy``.
"""

from __future__ import annotations

import re
from enum import StrEnum

from slurmcast.errors import ErrorCode, ProtocolError


class Channel(StrEnum):
    JOBS = "jobs"
    NODES = "nodes"
    METRICS = "metrics"
    NOTIFICATIONS = "notifications"
    ALERTS = "alerts"


CHANNEL_NAMES = frozenset(c.value for c in Channel)

USER_CHANNEL_PREFIX = "user:"
# Slurm user names are POSIX login names: letters, digits, '.', '_', '-'. Always
# fullmatch: with match() and '$', "bob\n" would pass ('$' also matches before a
# trailing newline).
_USER_NAME = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,63}")


def user_channel(user: str) -> str:
    """The private channel of a Slurm user."""
    return USER_CHANNEL_PREFIX + user


def channel_user(channel: str) -> str | None:
    """The user owning a private channel, or None for a public channel."""
    if channel.startswith(USER_CHANNEL_PREFIX):
        return channel[len(USER_CHANNEL_PREFIX) :]
    return None


def is_valid_user_name(name: str) -> bool:
    return _USER_NAME.fullmatch(name) is not None


def parse_channel(name: object, *, request_id: str | int | None = None) -> str:
    """Validate a channel name from a client.

    Returns:
        The name: one of the public channels, or ``user:<name>``.

    Raises:
        ProtocolError: ``invalid_field`` if not a string, ``unknown_channel`` if
            no such channel exists.
    """
    if not isinstance(name, str):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "channel must be a string", request_id=request_id
        )
    if name in CHANNEL_NAMES:
        return name
    owner = channel_user(name)
    if owner is not None and is_valid_user_name(owner):
        return name
    known = ", ".join(sorted(CHANNEL_NAMES))
    raise ProtocolError(
        ErrorCode.UNKNOWN_CHANNEL,
        f"unknown channel {name[:64]!r}; channels are: {known}, and user:<name>",
        request_id=request_id,
    )
