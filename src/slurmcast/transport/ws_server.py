"""The WebSocket listener (port 5011 by default).

The handshake is where connections are refused cheaply, before any
WebSocket frame: a full server answers 503, an address or a user over its
limit 429, a bad token (``Authorization: Bearer`` or ``?token=``) 401, a
foreign browser origin 403.

A connection counts toward the limits from the moment its TCP connection is
accepted, not once its handshake succeeds: a client that opens sockets and
never finishes a handshake uses its address's allowance like any other.
Connections beyond twice a limit are cut at once, without an answer; those
between the limit and twice it get their 429 or 503 (so that a client that
merely reached the limit learns why). Whatever a handshake decided (the
token's principal) lives on the connection object itself, and goes with it.

The listener is a plain asyncio server whose protocol objects are
``WsConnection``: websockets' sans-I/O ``ServerProtocol`` parses and answers
the handshake and frames, and every connection shares this server's one
deadline timer and end-of-iteration flush (see ``transport.timers``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.datastructures import Headers
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol

from slurmcast.auth.jwt import parse_bearer
from slurmcast.core.policy import AccessPolicy
from slurmcast.core.session import SessionLimits, Verifier
from slurmcast.errors import AuthError
from slurmcast.logs import Redacting
from slurmcast.node import Node
from slurmcast.ports import NotificationReader
from slurmcast.transport.encoding import MSGPACK_SUBPROTOCOL
from slurmcast.transport.stats import WsStats
from slurmcast.transport.timers import Deadlines, Flusher
from slurmcast.transport.ws_connection import WsConnection

log = logging.getLogger("slurmcast.ws")
#: websockets' own logger for server connections: it logs request headers
#: and frames at DEBUG, tokens included (see ``RedactTokens``).
WEBSOCKETS_LOGGER = "websockets.server"
#: Pending TCP connections the kernel may queue: a restart brings every
#: client back within a second or two.
BACKLOG = 4096


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """The listener's settings.

    ``handshake_timeout``: seconds a client has, from its TCP connection, to
    complete the opening handshake. ``compression``: whether
    ``permessage-deflate`` is offered to clients that ask for it.
    """

    host: str
    port: int
    max_message_size: int
    client_buffer_limit: int
    ping_interval: float
    ping_timeout: float
    slow_client_grace: float = 5.0
    close_timeout: float = 5.0
    max_connections: int = 10000
    max_connections_per_ip: int = 200
    max_connections_per_user: int = 50
    allowed_origins: tuple[str, ...] = ()
    limits: SessionLimits = field(default_factory=SessionLimits)
    handshake_timeout: float = 10.0
    compression: bool = True


class WebSocketServer:
    """Accepts WebSocket clients and owns what they share (timer, flush, limits)."""

    def __init__(
        self,
        node: Node,
        settings: WebSocketSettings,
        *,
        policy: AccessPolicy,
        verify: Verifier,
        notifications: NotificationReader | None = None,
    ) -> None:
        self.node = node
        self.hub = node.hub
        self.settings = settings
        self.policy = policy
        self.verify = verify
        self.notifications = notifications
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None
        self._flusher: Flusher | None = None
        # TCP connections from accept to close: handshaking and open alike.
        self.connections: set[WsConnection] = set()
        self._per_ip: Counter[str] = Counter()
        self._all_gone: asyncio.Event | None = None
        self._origins: Sequence[Origin | None] | None = None
        self._extensions: list[ServerExtensionFactory] = []
        self._websockets_log = logging.getLogger(WEBSOCKETS_LOGGER)
        #: Refusals, failed authentications, error replies and closes (GET /metrics).
        self.stats = WsStats()

    # -- what connections use ---------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "server not started"
        return self._loop

    @property
    def deadlines(self) -> Deadlines:
        assert self._deadlines is not None, "server not started"
        return self._deadlines

    @property
    def flusher(self) -> Flusher:
        assert self._flusher is not None, "server not started"
        return self._flusher

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def open_sockets(self) -> int:
        """TCP connections from accept to close, handshaking and closing ones too."""
        return len(self.connections)

    @property
    def bytes_written(self) -> int:
        """Bytes written to every client since start."""
        return self._flusher.bytes_written if self._flusher is not None else 0

    def new_protocol(self) -> ServerProtocol:
        return ServerProtocol(
            origins=self._origins,
            extensions=self._extensions,
            subprotocols=[Subprotocol(MSGPACK_SUBPROTOCOL)],
            select_subprotocol=_select_subprotocol,
            max_size=self.settings.max_message_size,
            logger=self._websockets_log,
        )

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        if s.allowed_origins:
            # Clients other than browsers send no Origin header at all.
            self._origins = [*(Origin(o) for o in s.allowed_origins), None]
        if s.compression:
            # No context takeover either way: one deflated frame per publication
            # serves every client (ours), and no connection keeps a zlib
            # window (~300 KB for a compressor) between messages (theirs).
            self._extensions = [
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True, client_no_context_takeover=True
                )
            ]
        if not any(isinstance(f, RedactTokens) for f in self._websockets_log.filters):
            self._websockets_log.addFilter(RedactTokens())
        self._loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(self._loop)
        self._flusher = Flusher(self._loop)
        self._server = await self._loop.create_server(
            lambda: WsConnection(self), s.host, s.port, backlog=BACKLOG
        )
        log.info("WebSocket server listening on ws://%s:%d", s.host, self.port)

    async def stop(self) -> None:
        """Refuse new clients, close open ones with 1001, wait for them to go."""
        if self._server is None:
            return
        self._server.close()
        if self.connections:
            self._all_gone = asyncio.Event()
            for connection in tuple(self.connections):
                connection.close_going_away()
            try:
                await asyncio.wait_for(self._all_gone.wait(), self.settings.close_timeout + 1.0)
            except TimeoutError:
                for connection in tuple(self.connections):
                    connection.abort()
                # Aborted transports report connection_lost on the next iterations.
                await asyncio.sleep(0)
        await self._server.wait_closed()
        self.deadlines.close()
        log.info("WebSocket server stopped")

    # -- accounting -------------------------------------------------------------

    def accepted(self, connection: WsConnection) -> None:
        """A TCP connection was accepted: count it, or cut it if far over a limit."""
        self.connections.add(connection)
        self._per_ip[connection.address] += 1
        s = self.settings
        over_ip = self._per_ip[connection.address] > 2 * s.max_connections_per_ip
        if over_ip or len(self.connections) > 2 * s.max_connections:
            # Not even an HTTP answer: this is a flood, and answering costs.
            self.stats.refusals["per_ip" if over_ip else "total"] += 1
            log.debug("cut %s at accept: far over the connection limits", connection.address)
            connection.abort()
            return
        self.deadlines.set(connection, "handshake", self.loop.time() + s.handshake_timeout)

    def released(self, connection: WsConnection) -> None:
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        self._per_ip[connection.address] -= 1
        if not self._per_ip[connection.address]:
            del self._per_ip[connection.address]
        if self._all_gone is not None and not self.connections:
            self._all_gone.set()

    def admission(self, connection: WsConnection, request: Request) -> Response | None:
        """Refuse at the handshake what would be refused anyway (None: go on)."""
        remote, ip = connection.remote, connection.address
        # Both counts include this connection (counted since accept).
        if len(self.connections) > self.settings.max_connections:
            self.stats.refusals["total"] += 1
            log.warning(
                "refused %s: server at its limit of %d", remote, self.settings.max_connections
            )
            return _refuse(HTTPStatus.SERVICE_UNAVAILABLE, "server is full, retry later")
        if self._per_ip[ip] > self.settings.max_connections_per_ip:
            self.stats.refusals["per_ip"] += 1
            log.warning(
                "refused %s: address at its limit of %d",
                remote,
                self.settings.max_connections_per_ip,
            )
            return _refuse(HTTPStatus.TOO_MANY_REQUESTS, "too many connections from your address")
        token = bearer_token(request.headers, request.path)
        if token is None:
            return None  # authenticates with its first message, or auth is disabled
        if not self.policy.auth_enabled:
            return None
        try:
            principal = self.verify(token)
        except AuthError as exc:
            self.stats.auth_failures["handshake", exc.code.value] += 1
            log.info("refused %s at the handshake: %s: %s", remote, exc.code, exc.message)
            return _refuse(HTTPStatus.UNAUTHORIZED, exc.message, exc.code.value)
        if principal.user is not None and (
            self.hub.connections_of(principal.user) >= self.settings.max_connections_per_user
        ):
            self.stats.refusals["per_user"] += 1
            log.warning("refused %s: user %s at the connection limit", remote, principal.user)
            return _refuse(HTTPStatus.TOO_MANY_REQUESTS, "too many connections for this user")
        connection.principal = principal
        return None


def _select_subprotocol(
    protocol: ServerProtocol, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    # websockets refuses clients that offer no subprotocol once the server has
    # one; JSON without a subprotocol is the default here.
    return Subprotocol(MSGPACK_SUBPROTOCOL) if MSGPACK_SUBPROTOCOL in offered else None


def bearer_token(headers: Headers, path: str) -> str | None:
    """The token of ``Authorization: Bearer <token>``, else of ``?token=`` (browsers)."""
    token = parse_bearer(headers.get("Authorization"))
    if token is not None:
        return token
    tokens = parse_qs(urlsplit(path).query).get("token")
    return tokens[0] if tokens else None


class RedactTokens(Redacting):
    """Keeps tokens out of websockets' DEBUG log.

    At DEBUG, websockets logs every request header (``Authorization``), the
    request line (``?token=``) and the start and end of every frame (a first
    ``auth`` message, a ``refresh``). The log is not a place for bearer
    credentials: those parts are replaced before the record is emitted.
    """

    def __init__(self) -> None:
        super().__init__(redact_tokens)


# Header lines as websockets logs them ("< Authorization: Bearer x").
_SECRET_HEADER = re.compile(
    r"^([<>] (?:authorization|proxy-authorization|cookie|sec-websocket-protocol):).*$",
    re.IGNORECASE,
)
_QUERY_TOKEN = re.compile(r"([?&]token=)[^&\s]*", re.IGNORECASE)
# Frames are logged elided in the middle, so a token's key may be cut off
# while its end is still there: any long base64url run in a frame goes.
_FRAME = re.compile(r"^[<>] (?:TEXT|BINARY|CONT) ")
_BASE64_RUN = re.compile(r"[A-Za-z0-9_\-]{16,}")


def redact_tokens(message: str) -> str:
    """``message`` with anything that may be a token replaced by ``<redacted>``."""
    message = _SECRET_HEADER.sub(r"\1 <redacted>", message)
    message = _QUERY_TOKEN.sub(r"\1<redacted>", message)
    if _FRAME.match(message):
        message = _BASE64_RUN.sub("<redacted>", message)
    return message


def _refuse(status: HTTPStatus, message: str, code: str | None = None) -> Response:
    """An HTTP error at the handshake, with the same JSON body as the HTTP API's errors."""
    body = orjson.dumps(
        {
            "success": False,
            "code": code or status.phrase.lower().replace(" ", "_"),
            "message": message,
        }
    )
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)
