"""The WebSocket listener (port 5011 by default).

The handshake is where connections are refused cheaply, before any
WebSocket frame: a full server answers 503, an address or a user over its
limit 429, a bad token (``Authorization: Bearer`` or ``?token=``) 401, a
foreign browser origin 403.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Origin

from slurmcast.auth.jwt import parse_bearer
from slurmcast.core.policy import AccessPolicy, Principal
from slurmcast.core.session import Session, SessionLimits, Verifier
from slurmcast.errors import AuthError, CloseCode
from slurmcast.node import Node
from slurmcast.transport.ws_connection import (
    ClientConnection,
    NotificationReader,
    format_address,
)

log = logging.getLogger("slurmcast.ws")


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
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
        self._per_ip: Counter[str] = Counter()
        self._handshake_principals: dict[ServerConnection, Principal] = {}

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
        )
        log.info("WebSocket server listening on ws://%s:%d", s.host, self.port)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse at the handshake what would be refused anyway."""
        remote = format_address(connection.remote_address)
        ip = remote.rsplit(":", 1)[0]
        if self.hub.client_count >= self.settings.max_connections:
            log.warning(
                "refused %s: server at its limit of %d", remote, self.settings.max_connections
            )
            return _refuse(HTTPStatus.SERVICE_UNAVAILABLE, "server is full, retry later")
        if self._per_ip[ip] >= self.settings.max_connections_per_ip:
            log.warning("refused %s: address at its limit of %d", remote, self._per_ip[ip])
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
        self._handshake_principals[connection] = principal
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        s = self.settings
        principal = self._handshake_principals.pop(ws, None)
        session = Session(self.policy, s.limits, self.verify, time.time(), principal)
        ip = format_address(ws.remote_address).rsplit(":", 1)[0]
        self._per_ip[ip] += 1
        try:
            await ClientConnection(
                ws,
                self.node,
                session,
                buffer_limit=s.client_buffer_limit,
                slow_grace=s.slow_client_grace,
                max_per_user=s.max_connections_per_user,
                notifications=self.notifications,
            ).serve()
        finally:
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]

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
