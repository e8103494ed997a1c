"""The HTTP port's connections: a per-address limit, and deadlines for headers and bodies.

aiohttp waits as long as a client takes to send a request's headers and body:
it has no header-read timeout, and its keep-alive timer (an hour by default)
only closes a connection that is idle between requests. A client that sends
a request a byte at a time, or never finishes it, holds its connection, and
a file descriptor shared with the WebSocket port, for as long as it likes.

``ConnectionGuard`` wraps the protocol factory of the listening socket (see
``HttpServer``), so it sees every connection before aiohttp does:

* a connection from an address that already has ``max_per_ip`` open ones is
  answered 429 and closed; aiohttp never sees it;
* a request's headers must arrive within ``header_timeout`` seconds of the
  connection being opened (or, on a kept-alive connection, of the request's
  first byte), and its body within ``body_timeout`` seconds of its headers;
  a connection that misses a deadline is closed;
* a kept-alive connection idle for ``header_timeout`` after a response is
  closed too, quietly: that is an ordinary end for one (as in Go's
  net/http, whose idle timeout defaults to its header timeout). It also
  bounds a next request pipelined behind the last, whose bytes arrived
  with it, before anything here could tell them apart.

When a request's headers are complete is learnt from aiohttp itself: it
calls the server's request handler, wrapped by ``track``, only then. Each
refusal and each timeout is counted (``stats()``, in /health) and logged, at
most once a minute for each of the two kinds, with the running total.

There is no deadline on writing a response to a client that reads it slowly;
the per-address limit bounds what such clients can hold.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http import HttpProcessingError

log = logging.getLogger("slurmcast.http")

RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

#: Seconds between two log lines about the same kind of refusal or timeout.
LOG_INTERVAL = 60.0
#: Seconds a refused connection is kept half-closed, its input discarded,
#: so that the 429 reaches a client that had already sent its request.
REFUSAL_LINGER = 1.0

#: Failures a client causes; aiohttp logs them with a traceback at ERROR.
CLIENT_ERRORS = (HttpProcessingError, web.RequestPayloadError, ConnectionError)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What ``ConnectionGuard`` enforces.

    Attributes:
        header_timeout: seconds for a request's line and headers to arrive.
        body_timeout: seconds for a request's body to arrive once its headers have.
        max_per_ip: connections one client address may hold open.
    """

    header_timeout: float = 10.0
    body_timeout: float = 15.0
    max_per_ip: int = 100


class LogThrottle:
    """Logs the first event, then at most one every ``interval`` seconds.

    An attack produces thousands of events a second: one line each would
    flood the log. The message carries the running total, so the events not
    logged are still accounted for.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next: float | None = None

    def warning(self, message: str, *args: Any) -> None:
        now = self._clock()
        if self._next is not None and now < self._next:
            return
        self._next = now + self._interval
        self._logger.warning(message, *args)


class _Phase(enum.Enum):
    HEADERS = "waiting for a request's headers"
    BODY = "waiting for a request's body"
    HANDLING = "handling a request"
    IDLE = "idle between requests"


class ConnectionGuard:
    """Admits, times and counts the HTTP port's connections."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.refused_per_ip = 0
        self.timed_out = 0
        self._per_ip: Counter[str] = Counter()
        self._open: dict[asyncio.BaseTransport, GuardedProtocol] = {}
        self._refusals = LogThrottle(log)
        self._timeouts = LogThrottle(log)

    def protocol_factory(
        self, make_inner: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """A factory for ``loop.create_server`` wrapping aiohttp's (``web.Server``)."""
        return lambda: GuardedProtocol(self, make_inner)

    def stats(self) -> dict[str, int]:
        """For /health: connections open now, and refusals and timeouts so far."""
        return {
            "connections": len(self._open),
            "refused_per_ip": self.refused_per_ip,
            "timed_out": self.timed_out,
        }

    def _admit(self, connection: GuardedProtocol, transport: asyncio.BaseTransport) -> bool:
        ip = connection.ip
        if self._per_ip[ip] >= self.limits.max_per_ip:
            self.refused_per_ip += 1
            self._refusals.warning(
                "refused an HTTP connection from %s: address at its limit of %d connections "
                "(%d refused so far; logged at most once a minute)",
                ip,
                self.limits.max_per_ip,
                self.refused_per_ip,
            )
            return False
        self._per_ip[ip] += 1
        self._open[transport] = connection
        return True

    def _closed(self, connection: GuardedProtocol, transport: asyncio.BaseTransport) -> None:
        if self._open.pop(transport, None) is None:
            return
        self._per_ip[connection.ip] -= 1
        if not self._per_ip[connection.ip]:
            del self._per_ip[connection.ip]

    def _timed_out(self, connection: GuardedProtocol, phase: _Phase, limit: float) -> None:
        self.timed_out += 1
        self._timeouts.warning(
            "closed an HTTP connection from %s %s for more than %g s "
            "(%d timed out so far; logged at most once a minute)",
            connection.ip,
            phase.value,
            limit,
            self.timed_out,
        )

    def track(self, handler: RequestHandler) -> RequestHandler:
        """``handler`` (``web.Server.request_handler``), telling each request's connection
        when the request starts (its headers are complete) and when its handling ends."""

        async def tracked(request: web.BaseRequest) -> web.StreamResponse:
            connection = self._open.get(request.transport) if request.transport else None
            if connection is None:  # closed meanwhile
                return await handler(request)
            connection.request_started(request)
            try:
                return await handler(request)
            finally:
                connection.request_finished()

        return tracked


class GuardedProtocol(asyncio.Protocol):
    """One connection: passes everything to aiohttp's protocol, and keeps the deadlines.

    The aiohttp protocol is only created once the connection is admitted.
    """

    def __init__(self, guard: ConnectionGuard, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.ip = ""
        self._phase = _Phase.HEADERS
        self._timer: asyncio.TimerHandle | None = None
        self._request: web.BaseRequest | None = None
        # The handler returned before the body arrived: the connection is
        # idle once it has (aiohttp reads and discards it).
        self._handled = False
        # Bytes came while a request was being handled: a next one has begun.
        self._next_begun = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._guard._admit(self, transport):
            self._refuse(transport)
            return
        self._inner = self._make_inner()
        self._arm(_Phase.HEADERS)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return  # refused: discarded, see _refuse
        self._inner.data_received(data)
        if self._phase is _Phase.IDLE:
            self._arm(_Phase.HEADERS)
        elif self._phase is _Phase.HANDLING:
            self._next_begun = True
        elif self._phase is _Phase.BODY:
            self._check_body()

    def eof_received(self) -> bool | None:
        # A refused connection's client has read the 429 and closed: close too.
        return self._inner.eof_received() if self._inner is not None else False

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._request = None
        if self._inner is None or self.transport is None:
            return
        self._guard._closed(self, self.transport)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        """Answer 429, then close.

        Closing a socket whose client has sent bytes not yet read resets the
        connection, and the client may never see the answer. So the answer
        is followed by a half-close, and what arrives is read and discarded,
        until the client closes too or ``REFUSAL_LINGER`` runs out.
        """
        writable = _writable(transport)
        writable.write(REFUSAL)
        if not writable.can_write_eof():
            writable.close()
            return
        writable.write_eof()
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER, writable.close)

    # -- told by ConnectionGuard.track -------------------------------------------

    def request_started(self, request: web.BaseRequest) -> None:
        """The request's headers are complete (aiohttp calls handlers only then)."""
        self._request = request
        self._handled = False
        self._next_begun = False
        self._disarm()
        self._phase = _Phase.HANDLING
        if not request.content.is_eof():
            self._arm(_Phase.BODY)

    def request_finished(self) -> None:
        if self._phase is _Phase.BODY:
            self._handled = True  # aiohttp still reads the rest, within the deadline
        else:
            self._idle()

    # -- deadlines ---------------------------------------------------------

    def _check_body(self) -> None:
        if self._request is None or not self._request.content.is_eof():
            return
        self._disarm()
        self._phase = _Phase.HANDLING
        if self._handled:
            self._idle()

    def _idle(self) -> None:
        self._request = None
        self._arm(_Phase.HEADERS if self._next_begun else _Phase.IDLE)

    def _arm(self, phase: _Phase) -> None:
        self._disarm()
        self._phase = phase
        limits = self._guard.limits
        limit = limits.body_timeout if phase is _Phase.BODY else limits.header_timeout
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(limit, self._expired, phase, limit)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, phase: _Phase, limit: float) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if phase is _Phase.IDLE:
            if _writable(transport).get_write_buffer_size():
                self._arm(_Phase.IDLE)  # the last response is still being sent
                return
            log.debug("closed an HTTP connection from %s idle for %g s", self.ip, limit)
        else:
            self._guard._timed_out(self, phase, limit)
        transport.close()


def _writable(transport: asyncio.BaseTransport) -> asyncio.Transport:
    # A stream server's transports are; uvloop's do not inherit from
    # asyncio's classes, so isinstance() would say otherwise.
    return cast(asyncio.Transport, transport)


_REFUSAL_BODY = orjson.dumps(
    {
        "success": False,
        "code": "too_many_requests",
        "message": "too many connections from your address",
    }
)
#: The whole answer to a connection over the per-address limit.
REFUSAL = (
    b"HTTP/1.1 429 Too Many Requests\r\n"
    b"Content-Type: application/json\r\n"
    + f"Content-Length: {len(_REFUSAL_BODY)}\r\n".encode()
    + b"Connection: close\r\n\r\n"
    + _REFUSAL_BODY
)


class QuietClientErrors(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with the client's own failures at DEBUG.

    aiohttp logs a malformed request, an undecodable body or a client that
    went away mid-request as an ERROR with a traceback: anyone could fill
    the log with them. They are answered (400) or dropped as before.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(error, CLIENT_ERRORS):
            text = str(msg) % args if args else str(msg)
            self.debug("%s: %s: %s", text, type(error).__name__, error)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)
