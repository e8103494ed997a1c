"""Notification sinks (issue 18): the adapters that send a delivery by e-mail, to a
Slack-compatible chat, or to a signed JSON webhook.

Each implements ``base.Sink``: ``await sink.send(outgoing)`` returns a ``SendResult`` or raises
``PermanentFailure`` (dead-letter it) or ``TemporaryFailure`` (retry it, not before
``retry_after_s``).
"""

from slurmcast.sinks.base import (
    Outgoing,
    PermanentFailure,
    Secret,
    SendFailure,
    SendResult,
    Sink,
    TemporaryFailure,
    load_secret,
)

__all__ = [
    "Outgoing",
    "PermanentFailure",
    "Secret",
    "SendFailure",
    "SendResult",
    "Sink",
    "TemporaryFailure",
    "load_secret",
]
