"""Logging set-up: text for people, JSON lines for log collectors (``--log-format``).

Both formats carry the same information. In JSON every line is one object:

    {"time": "2026-12-06T23:10:04.512Z", "level": "INFO", "logger": "slurmcast.ws",
     "event": "client 12 (127.0.0.1, alice) subscribed to jobs", "client": 12,
     "user": "alice", "channel": "jobs"}

``event`` is the message as the text format shows it; the context fields
(``CONTEXT_FIELDS``) appear when the code that logs knows them, passed as
``extra=context(client=..., user=...)``. Whatever the format, anything shaped
like a JWT is replaced by ``<redacted>`` before a line is written: a token
pasted into an error message never reaches the log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from slurmcast.core.timefmt import iso_z

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

#: Fields a log line may carry besides its message, the same names everywhere.
CONTEXT_FIELDS = (
    "client",
    "user",
    "channel",
    "code",
    "remote",
    "request",
    "instance",
    "delivery",
)

#: header.payload.signature, each base64url; a JWT's header always starts with ``eyJ``.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")


def context(**fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the context fields that are known (None ones left out)."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"not log context fields: {', '.join(sorted(unknown))}")
    return {name: value for name, value in fields.items() if value is not None}


def redact(text: str) -> str:
    return _JWT.sub("<redacted>", text)


class Redacting(logging.Filter):
    """Rewrites a record's message (arguments included) with ``clean`` before it is written."""

    def __init__(self, clean: Callable[[str], str] = redact) -> None:
        super().__init__()
        self.clean = clean

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (orjson: fast, and never fails on odd values)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso_z(datetime.fromtimestamp(record.created, UTC), millis=True),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["error"] = redact(record.exc_text)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Send every logger's records to ``stream`` (stderr) in ``log_format``."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.setFormatter(formatter)
    handler.addFilter(Redacting(redact))
    logging.basicConfig(level=level, handlers=[handler], force=True)
