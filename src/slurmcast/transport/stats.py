"""``WsStats``: what the WebSocket listener and its connections count, as plain integers.

Each figure is bumped where the event happens (a refusal, a close, an error
reply, a failed authentication), which is never a per-message path;
``GET /metrics`` reads them at scrape time (``observability.collector``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

#: Error codes that mean a token or its absence was refused.
AUTH_ERROR_CODES: Final = frozenset(
    {"invalid_token", "token_expired", "unauthorized", "missing_token"}
)
#: ``auth_failures`` reason of a client that sent no ``auth`` message in time.
AUTH_TIMEOUT: Final = "auth_timeout"


@dataclass(slots=True)
class WsStats:
    """Counts since start.

    Attributes:
        refusals: connections refused for a limit, by limit (``total``,
            ``per_ip``, ``per_user``), whether answered (503, 429, close 4029)
            or cut at accept (far over a limit).
        auth_failures: refused credentials by (stage, reason): stage
            ``handshake`` (a token in the request), ``auth`` (the first message),
            ``refresh``; reason an error code, or ``auth_timeout``.
        handshake_failures: opening handshakes that failed otherwise, by reason
            (``origin``, ``invalid``, ``timeout``).
        error_replies: ``{"type": "error"}`` replies sent, by code.
        closes: connections the server closed (or failed), by close code.
    """

    refusals: Counter[str] = field(default_factory=Counter)
    auth_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    handshake_failures: Counter[str] = field(default_factory=Counter)
    error_replies: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
