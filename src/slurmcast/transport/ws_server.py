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
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Origin

from slurmcast.auth.jwt import parse_bearer
from slurmcast.core.policy import AccessPolicy
from slurmcast.core.session import Session, SessionLimits, Verifier
from slurmcast.errors import AuthError, CloseCode
from slurmcast.node import Node
from slurmcast.transport.ws_connection import (
    ClientConnection,
    GatewayConnection,
    NotificationReader,
)

log = logging.getLogger("slurmcast.ws")
#: websockets' own logger for server connections: it logs request headers
#: and frames at DEBUG, tokens included (see ``RedactTokens``).
WEBSOCKETS_LOGGER = "websockets.server"


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """The listener's settings.

    ``handshake_timeout``: seconds a client has, from its TCP connection, to
    complete the opening handshake (websockets' ``open_timeout``).
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


class WebSocketServer:
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
        self._server: Server | None = None
        # TCP connections from accept to close: handshaking and open alike.
        self._open = 0
        self._per_ip: Counter[str] = Counter()

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        s = self.settings
        origins: Sequence[Origin | None] | None = None
        if s.allowed_origins:
            # Clients other than browsers send no Origin header at all.
            origins = [*(Origin(o) for o in s.allowed_origins), None]
        websockets_log = logging.getLogger(WEBSOCKETS_LOGGER)
        if not any(isinstance(f, RedactTokens) for f in websockets_log.filters):
            websockets_log.addFilter(RedactTokens())
        gate = self

        class Connection(GatewayConnection):
            # asyncio's own callbacks: called exactly once each, whatever
            # becomes of the handshake.
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                gate._accepted(self)

            def connection_lost(self, exc: Exception | None) -> None:
                try:
                    super().connection_lost(exc)
                finally:
                    gate._released(self)

        self._server = await serve(
            self._handle,
            s.host,
            s.port,
            # No permessage-deflate: frames are prepared once and shared by all
            # clients, which per-connection compression contexts would forbid.
            compression=None,
            max_size=s.max_message_size,
            ping_interval=s.ping_interval,
            ping_timeout=s.ping_timeout,
            close_timeout=s.close_timeout,
            server_header=None,
            origins=origins,
            process_request=self._process_request,
            open_timeout=s.handshake_timeout,
            logger=websockets_log,
            create_connection=Connection,
        )
        log.info("WebSocket server listening on ws://%s:%d", s.host, self.port)

    def _accepted(self, connection: GatewayConnection) -> None:
        """A TCP connection was accepted: count it, or cut it if far over a limit."""
        connection.note_peer()
        self._open += 1
        self._per_ip[connection.address] += 1
        s = self.settings
        if (
            self._per_ip[connection.address] > 2 * s.max_connections_per_ip
            or self._open > 2 * s.max_connections
        ):
            # Not even an HTTP answer: this is a flood, and answering costs.
            log.debug("cut %s at accept: far over the connection limits", connection.address)
            connection.transport.abort()

    def _released(self, connection: GatewayConnection) -> None:
        self._open -= 1
        self._per_ip[connection.address] -= 1
        if not self._per_ip[connection.address]:
            del self._per_ip[connection.address]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse at the handshake what would be refused anyway."""
        assert isinstance(connection, GatewayConnection)
        # Not connection.remote_address: under uvloop it raises once the client
        # is gone, and a client may vanish before its request is processed.
        remote, ip = connection.remote, connection.address
        # Both counts include this connection (counted since accept).
        if self._open > self.settings.max_connections:
            log.warning(
                "refused %s: server at its limit of %d", remote, self.settings.max_connections
            )
            return _refuse(HTTPStatus.SERVICE_UNAVAILABLE, "server is full, retry later")
        if self._per_ip[ip] > self.settings.max_connections_per_ip:
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
            log.info("refused %s at the handshake: %s: %s", remote, exc.code, exc.message)
            return _refuse(HTTPStatus.UNAUTHORIZED, exc.message, exc.code.value)
        if principal.user is not None and (
            self.hub.connections_of(principal.user) >= self.settings.max_connections_per_user
        ):
            log.warning("refused %s: user %s at the connection limit", remote, principal.user)
            return _refuse(HTTPStatus.TOO_MANY_REQUESTS, "too many connections for this user")
        connection.principal = principal
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, GatewayConnection)
        s = self.settings
        session = Session(self.policy, s.limits, self.verify, time.time(), ws.principal)
        client = ClientConnection(
            ws,
            self.node,
            session,
            buffer_limit=s.client_buffer_limit,
            slow_grace=s.slow_client_grace,
            max_per_user=s.max_connections_per_user,
            notifications=self.notifications,
        )
        ws.on_ping = client.on_ping
        try:
            await client.serve()
        finally:
            ws.on_ping = None

    async def stop(self) -> None:
        """Refuse new clients, close open ones with 1001, wait for their handlers."""
        if self._server is None:
            return
        self._server.close(code=CloseCode.GOING_AWAY, reason="server shutting down")
        await self._server.wait_closed()
        log.info("WebSocket server stopped")


def bearer_token(headers: Headers, path: str) -> str | None:
    """The token of ``Authorization: Bearer <token>``, else of ``?token=`` (browsers)."""
    token = parse_bearer(headers.get("Authorization"))
    if token is not None:
        return token
    tokens = parse_qs(urlsplit(path).query).get("token")
    return tokens[0] if tokens else None


class RedactTokens(logging.Filter):
    """Keeps tokens out of websockets' DEBUG log.

    At DEBUG, websockets logs every request header (``Authorization``), the
    request line (``?token=``) and the start and end of every frame (a first
    ``auth`` message, a ``refresh``). The log is not a place for bearer
    credentials: those parts are replaced before the record is emitted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


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
